//! The point reads that nearly every request makes, on a SQLite file run on the calling
//! thread through SQLite's C API (rusqlite) rather than through sqlx.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every statement is a
//! message to that thread and an answer back: two thread wake-ups, which on a busy
//! server cost many times the read itself (a lookup by key in pages that SQLite or the
//! operating system holds in memory takes microseconds). The reads here are the ones
//! every authenticated request, every step of a sign-in and every effective-policy read
//! makes: a session with its user, a user with their group rules, a user's policy
//! inputs, a pending sign-in, an authenticator, the roles and tenant that the answer to
//! a finished sign-in names, the settings of a scope when they are not cached (at 10,000
//! tenants, often), the tenant and user a password step names with whether that user
//! has a recovery code left, and the application and user a token request names. They
//! run the same statements as their sqlx versions ([`super::find_session`],
//! [`super::groups::user_with_rules`], [`super::groups::subject`],
//! [`super::factors::find_attempt`], [`super::factors::get_authenticator`],
//! [`super::roles_of`], [`super::get_tenant`], [`super::load_settings`],
//! [`super::get_tenant_by_name`], [`super::find_user`], [`super::get_user`],
//! [`super::oidc::get_application`],
//! [`super::factors::has_unused_recovery_code`]) and fill the same rows; everything
//! else, and everything on PostgreSQL, goes through sqlx.
//!
//! A read blocks the runtime's thread while it runs. For one row by an indexed key that
//! is shorter than the two wake-ups it replaces, as long as the database's pages are in
//! memory: the operating system keeps a file of a million users (a few hundred
//! megabytes) in its cache. Connections are opened on demand and kept for reuse, at
//! most as many as the pool allows; each is `query_only`, so nothing here can write.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use twofold_policy::GroupRule;

use super::direct::ReturnedRow;
use super::factors::{ATTEMPT_SQL, AUTHENTICATOR_SQL, AttemptRow, AuthenticatorRow, HAS_RECOVERY_CODE_SQL};
use super::groups::{
    RuleColumns, SUBJECT_BY_INDEX_SQL, Subject, SubjectRuleRow, USER_WITH_RULES_SQL, UserRuleRow, fold_subject,
    fold_user_rules,
};
use super::oidc::{APPLICATION_SQL, ApplicationRow};
use super::{
    ROLES_SQL, RoleRow, SESSION_SQL, SETTINGS_SQL, SessionRow, SettingsRow, TENANT_BY_NAME_SQL, TENANT_SQL, TenantRow,
    USER_BY_NAME_SQL, USER_SQL, UserRow,
};

#[derive(Debug)]
pub struct Lookups {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
}

impl Lookups {
    /// Reads from the SQLite file at `path`, keeping up to `keep` connections open.
    pub fn new(path: &Path, keep: usize) -> Self {
        Self { path: path.to_owned(), idle: Mutex::new(Vec::new()), keep }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // The same waiting and page cache as the pool's connections (`Db::connect`);
        // query_only makes a write through this connection an error.
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -1024;")?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection, or a new one when none is idle.
    pub(super) fn run<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        // A connection whose read failed is dropped rather than kept: it might be the
        // connection that is broken, not the statement.
        let out = read(&conn)?;
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
        Ok(out)
    }

    pub fn session(&self, token_hash: &str) -> anyhow::Result<Option<SessionRow>> {
        self.run(|conn| conn.prepare_cached(SESSION_SQL)?.query_row([token_hash], session_row).optional())
    }

    pub fn user_with_rules(&self, user_id: &str) -> anyhow::Result<Option<(UserRow, Vec<GroupRule>)>> {
        let rows = self.run(|conn| {
            let mut statement = conn.prepare_cached(USER_WITH_RULES_SQL.as_str())?;
            let rows = statement.query_map([user_id], user_rule_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        fold_user_rules(rows)
    }

    pub fn subject(&self, user_id: &str) -> anyhow::Result<Option<Subject>> {
        let rows = self.run(|conn| {
            let mut statement = conn.prepare_cached(SUBJECT_BY_INDEX_SQL.as_str())?;
            let rows = statement.query_map([user_id], subject_rule_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        fold_subject(rows)
    }

    pub fn attempt(&self, token_hash: &str) -> anyhow::Result<Option<AttemptRow>> {
        self.run(|conn| conn.prepare_cached(ATTEMPT_SQL)?.query_row([token_hash], attempt_row).optional())
    }

    pub fn roles(&self, user_id: &str) -> anyhow::Result<Vec<RoleRow>> {
        self.run(|conn| {
            let mut statement = conn.prepare_cached(ROLES_SQL)?;
            let rows = statement.query_map([user_id], |r| {
                Ok(RoleRow { user_id: r.get("user_id")?, role: r.get("role")?, scope_key: r.get("scope_key")? })
            })?;
            rows.collect()
        })
    }

    pub fn settings(&self, scope_key: &str) -> anyhow::Result<Option<SettingsRow>> {
        self.run(|conn| {
            conn.prepare_cached(SETTINGS_SQL.as_str())?.query_row([scope_key], SettingsRow::direct).optional()
        })
    }

    pub fn tenant(&self, id: &str) -> anyhow::Result<Option<TenantRow>> {
        self.run(|conn| conn.prepare_cached(TENANT_SQL.as_str())?.query_row([id], tenant_row).optional())
    }

    pub fn tenant_by_name(&self, name: &str) -> anyhow::Result<Option<TenantRow>> {
        self.run(|conn| conn.prepare_cached(TENANT_BY_NAME_SQL.as_str())?.query_row([name], tenant_row).optional())
    }

    pub fn user(&self, id: &str) -> anyhow::Result<Option<UserRow>> {
        self.run(|conn| conn.prepare_cached(USER_SQL.as_str())?.query_row([id], |r| user_row_at(r, 0)).optional())
    }

    pub fn user_by_name(&self, scope_key: &str, username_key: &str) -> anyhow::Result<Option<UserRow>> {
        self.run(|conn| {
            conn.prepare_cached(USER_BY_NAME_SQL.as_str())?
                .query_row([scope_key, username_key], |r| user_row_at(r, 0))
                .optional()
        })
    }

    pub fn application(&self, id: &str) -> anyhow::Result<Option<ApplicationRow>> {
        self.run(|conn| conn.prepare_cached(APPLICATION_SQL.as_str())?.query_row([id], application_row).optional())
    }

    pub fn has_recovery_code(&self, user_id: &str) -> anyhow::Result<bool> {
        self.run(|conn| conn.prepare_cached(&HAS_RECOVERY_CODE_SQL)?.query_row([user_id], |r| r.get::<_, i64>(0)))
            .map(|count| count > 0)
    }

    pub fn authenticator(&self, user_id: &str) -> anyhow::Result<Option<AuthenticatorRow>> {
        self.run(|conn| {
            conn.prepare_cached(AUTHENTICATOR_SQL)?
                .query_row([user_id], |r| {
                    Ok(AuthenticatorRow {
                        secret_enc: r.get("secret_enc")?,
                        confirmed: r.get("confirmed")?,
                        last_used_step: r.get("last_used_step")?,
                    })
                })
                .optional()
        })
    }
}

/// The number of [`super::USER_COLUMNS`].
const USER_COLUMN_COUNT: usize = 25;

/// A user's columns, as `sqlx::FromRow` reads them for [`UserRow`]: found by position
/// from the first of them (`id`), in the order of [`super::USER_COLUMNS`], which every
/// statement that reads a user selects them in (tested below). rusqlite finds a column
/// by name by comparing the name with each column's in turn; for the 25 columns of a
/// user, read one by one, that was a quarter of a read's time in rusqlite (BENCHMARKS.md,
/// "Flamegraphs, before and after").
pub(super) fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    user_row_at(r, r.as_ref().column_index("id")?)
}

fn user_row_at(r: &Row<'_>, at: usize) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(at)?,
        scope_key: r.get(at + 1)?,
        tenant_id: r.get(at + 2)?,
        username: r.get(at + 3)?,
        email: r.get(at + 4)?,
        email_confirmed: r.get(at + 5)?,
        phone_confirmed: r.get(at + 6)?,
        has_authenticator: r.get(at + 7)?,
        password_hash: r.get(at + 8)?,
        two_factor_enabled: r.get(at + 9)?,
        security_stamp: r.get(at + 10)?,
        created_at: r.get(at + 11)?,
        phone: r.get(at + 12)?,
        second_factor_failures: r.get(at + 13)?,
        locked_until: r.get(at + 14)?,
        enrollment_required_since: r.get(at + 15)?,
        pending_email: r.get(at + 16)?,
        pending_phone: r.get(at + 17)?,
        lockouts: r.get(at + 18)?,
        consecutive_failures: r.get(at + 19)?,
        last_sign_in_at: r.get(at + 20)?,
        last_sign_in_methods: r.get(at + 21)?,
        deactivated_at: r.get(at + 22)?,
        must_change_password: r.get(at + 23)?,
        passkey_count: r.get(at + 24)?,
    })
}

/// [`APPLICATION_SQL`]'s row by position, like [`user_row`].
fn application_row(r: &Row<'_>) -> rusqlite::Result<ApplicationRow> {
    Ok(ApplicationRow {
        id: r.get(0)?,
        scope_key: r.get(1)?,
        name: r.get(2)?,
        client_type: r.get(3)?,
        secret_hash: r.get(4)?,
        redirect_uris: r.get(5)?,
        post_logout_redirect_uris: r.get(6)?,
        allowed_scopes: r.get(7)?,
        first_party: r.get(8)?,
        require_two_factor: r.get(9)?,
        min_strength: r.get(10)?,
        max_age_seconds: r.get(11)?,
        token_alg: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
    })
}

fn tenant_row(r: &Row<'_>) -> rusqlite::Result<TenantRow> {
    Ok(TenantRow {
        id: r.get("id")?,
        name: r.get("name")?,
        display_name: r.get("display_name")?,
        feature_behaviour: r.get("feature_behaviour")?,
        created_at: r.get("created_at")?,
        suspended_at: r.get("suspended_at")?,
    })
}

/// [`SESSION_SQL`]'s row by position, like [`user_row`]: seven of the session's columns,
/// the user's, then four more of the session's.
fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let after = SESSION_COLUMNS_BEFORE_USER + USER_COLUMN_COUNT;
    Ok(SessionRow {
        user_id: r.get(0)?,
        security_stamp: r.get(1)?,
        auth_methods: r.get(2)?,
        created_at: r.get(3)?,
        last_seen_at: r.get(4)?,
        expires_at: r.get(5)?,
        reauthenticated_at: r.get(6)?,
        user: user_row_at(r, SESSION_COLUMNS_BEFORE_USER)?,
        reauth_method: r.get(after)?,
        second_factor_at: r.get(after + 1)?,
        second_factor_method: r.get(after + 2)?,
        sid: r.get(after + 3)?,
    })
}

const SESSION_COLUMNS_BEFORE_USER: usize = 7;

/// A user's columns and, right after them, the group rule's (`groups::user_with_rules_sql`).
fn user_rule_row(r: &Row<'_>) -> rusqlite::Result<UserRuleRow> {
    let at = r.as_ref().column_index("id")?;
    Ok(UserRuleRow { user: user_row_at(r, at)?, rule: rule_columns_at(r, at + USER_COLUMN_COUNT)? })
}

/// [`SUBJECT_BY_INDEX_SQL`]'s row by position: the user's tenant and 2FA switch, then the group's.
fn subject_rule_row(r: &Row<'_>) -> rusqlite::Result<SubjectRuleRow> {
    Ok(SubjectRuleRow { tenant_id: r.get(0)?, two_factor_enabled: r.get(1)?, rule: rule_columns_at(r, 2)? })
}

fn rule_columns_at(r: &Row<'_>, at: usize) -> rusqlite::Result<RuleColumns> {
    Ok(RuleColumns {
        rule_group_id: r.get(at)?,
        rule_group_name: r.get(at + 1)?,
        rule_group_name_key: r.get(at + 2)?,
        rule_require: r.get(at + 3)?,
        rule_min_strength: r.get(at + 4)?,
    })
}

/// [`ATTEMPT_SQL`]'s row by position, like [`user_row`].
fn attempt_row(r: &Row<'_>) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        stage: r.get(2)?,
        security_stamp: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        last_code_sent_at: r.get(6)?,
        codes_sent: r.get(7)?,
        completed_at: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// SQLite is built without the two process-wide mutexes that every page fetch and
    /// allocation took (`.cargo/config.toml`): a build that lost those flags would queue
    /// the writer's thread behind the request threads' reads again.
    #[test]
    fn sqlite_is_compiled_without_its_process_wide_mutexes() {
        let conn = Connection::open_in_memory().unwrap();
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
        assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
    }

    /// A user's policy inputs are read from their index alone: SQLite's plan searches
    /// `users` through `users_policy_inputs` as a covering index, so the table's own
    /// B-tree (whole user rows) is never read for them.
    #[test]
    fn the_policy_inputs_come_from_their_covering_index() {
        let conn = Connection::open_in_memory().unwrap();
        for migration in super::super::SQLITE_MIGRATOR.iter() {
            conn.execute_batch(migration.sql.as_str()).unwrap();
        }
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", SUBJECT_BY_INDEX_SQL.as_str()))
            .unwrap()
            .query_map(["u"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let users = plan.iter().find(|step| step.contains(" u ")).unwrap();
        assert!(users.contains("USING COVERING INDEX users_policy_inputs"), "{plan:?}");
    }

    /// The rows above are read by position: each statement must select its columns in
    /// the order the readers expect, under the names the sqlx rows read them by.
    #[test]
    fn every_row_read_by_position_finds_its_columns_where_it_reads_them() {
        let conn = Connection::open_in_memory().unwrap();
        for migration in super::super::SQLITE_MIGRATOR.iter() {
            conn.execute_batch(migration.sql.as_str()).unwrap();
        }
        let names = |sql: &str| -> Vec<String> {
            conn.prepare(sql).unwrap().column_names().into_iter().map(str::to_owned).collect()
        };
        let user: Vec<&str> = super::super::USER_COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(user.len(), USER_COLUMN_COUNT);

        let rule = ["rule_group_id", "rule_group_name", "rule_group_name_key", "rule_require", "rule_min_strength"];
        let with_rules = names(&USER_WITH_RULES_SQL);
        assert_eq!(with_rules[..USER_COLUMN_COUNT], user[..]);
        assert_eq!(with_rules[USER_COLUMN_COUNT..], rule);
        let subject = names(&SUBJECT_BY_INDEX_SQL);
        assert_eq!(subject[..2], ["tenant_id", "two_factor_enabled"]);
        assert_eq!(subject[2..], rule);

        let session = names(SESSION_SQL);
        let before = [
            "user_id",
            "session_stamp",
            "auth_methods",
            "session_created_at",
            "last_seen_at",
            "expires_at",
            "reauthenticated_at",
        ];
        assert_eq!(session[..SESSION_COLUMNS_BEFORE_USER], before);
        assert_eq!(session[SESSION_COLUMNS_BEFORE_USER..SESSION_COLUMNS_BEFORE_USER + USER_COLUMN_COUNT], user[..]);
        assert_eq!(
            session[SESSION_COLUMNS_BEFORE_USER + USER_COLUMN_COUNT..],
            ["reauth_method", "second_factor_at", "second_factor_method", "sid"]
        );

        let attempt = names(ATTEMPT_SQL);
        let expected = [
            "id",
            "user_id",
            "stage",
            "security_stamp",
            "created_at",
            "expires_at",
            "last_code_sent_at",
            "codes_sent",
            "completed_at",
        ];
        assert_eq!(attempt, expected);

        assert_eq!(names(&USER_BY_NAME_SQL), user);
        assert_eq!(names(&USER_SQL), user);

        let application = [
            "id",
            "scope_key",
            "name",
            "client_type",
            "secret_hash",
            "redirect_uris",
            "post_logout_redirect_uris",
            "allowed_scopes",
            "first_party",
            "require_two_factor",
            "min_strength",
            "max_age_seconds",
            "token_alg",
            "created_at",
            "updated_at",
        ];
        assert_eq!(names(&APPLICATION_SQL), application);

        // A sign-in's `UPDATE … RETURNING` of the user, read by `direct`.
        let returning = names(&format!("UPDATE users SET lockouts = 0 WHERE id = 'x' RETURNING {}", user.join(", ")));
        assert_eq!(returning, user);
    }
}
