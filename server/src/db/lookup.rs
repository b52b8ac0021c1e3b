//! The point reads that nearly every request makes, on a SQLite file run on the calling
//! thread through SQLite's C API (rusqlite) rather than through sqlx.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every statement is a
//! message to that thread and an answer back: two thread wake-ups, which on a busy
//! server cost many times the read itself (a lookup by key in pages that SQLite or the
//! operating system holds in memory takes microseconds). The reads here are the ones
//! every authenticated request, every step of a sign-in and every effective-policy read
//! makes: a session with its user, a user with their group rules, a pending sign-in, an
//! authenticator, and the roles and tenant that the answer to a finished sign-in names.
//! They run the same statements as their sqlx versions ([`super::find_session`],
//! [`super::groups::user_with_rules`], [`super::factors::find_attempt`],
//! [`super::factors::get_authenticator`], [`super::roles_of`], [`super::get_tenant`]) and fill the
//! same rows; everything else, and everything on PostgreSQL, goes through sqlx.
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

use super::factors::{ATTEMPT_SQL, AUTHENTICATOR_SQL, AttemptRow, AuthenticatorRow};
use super::groups::{USER_WITH_RULES_SQL, UserRuleRow, fold_user_rules};
use super::{ROLES_SQL, RoleRow, SESSION_SQL, SessionRow, TENANT_SQL, TenantRow, UserRow};

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

    pub fn tenant(&self, id: &str) -> anyhow::Result<Option<TenantRow>> {
        self.run(|conn| {
            conn.prepare_cached(TENANT_SQL.as_str())?
                .query_row([id], |r| {
                    Ok(TenantRow {
                        id: r.get("id")?,
                        name: r.get("name")?,
                        display_name: r.get("display_name")?,
                        feature_behaviour: r.get("feature_behaviour")?,
                        created_at: r.get("created_at")?,
                        suspended_at: r.get("suspended_at")?,
                    })
                })
                .optional()
        })
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

/// A user's columns by name, as `sqlx::FromRow` reads them for [`UserRow`].
pub(super) fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get("id")?,
        scope_key: r.get("scope_key")?,
        tenant_id: r.get("tenant_id")?,
        username: r.get("username")?,
        email: r.get("email")?,
        email_confirmed: r.get("email_confirmed")?,
        phone_confirmed: r.get("phone_confirmed")?,
        has_authenticator: r.get("has_authenticator")?,
        password_hash: r.get("password_hash")?,
        two_factor_enabled: r.get("two_factor_enabled")?,
        security_stamp: r.get("security_stamp")?,
        created_at: r.get("created_at")?,
        phone: r.get("phone")?,
        second_factor_failures: r.get("second_factor_failures")?,
        locked_until: r.get("locked_until")?,
        enrollment_required_since: r.get("enrollment_required_since")?,
        pending_email: r.get("pending_email")?,
        pending_phone: r.get("pending_phone")?,
        lockouts: r.get("lockouts")?,
        consecutive_failures: r.get("consecutive_failures")?,
        last_sign_in_at: r.get("last_sign_in_at")?,
        last_sign_in_methods: r.get("last_sign_in_methods")?,
        deactivated_at: r.get("deactivated_at")?,
        must_change_password: r.get("must_change_password")?,
        passkey_count: r.get("passkey_count")?,
    })
}

fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        user_id: r.get("user_id")?,
        security_stamp: r.get("session_stamp")?,
        auth_methods: r.get("auth_methods")?,
        created_at: r.get("session_created_at")?,
        last_seen_at: r.get("last_seen_at")?,
        expires_at: r.get("expires_at")?,
        reauthenticated_at: r.get("reauthenticated_at")?,
        reauth_method: r.get("reauth_method")?,
        second_factor_at: r.get("second_factor_at")?,
        second_factor_method: r.get("second_factor_method")?,
        sid: r.get("sid")?,
        user: user_row(r)?,
    })
}

fn user_rule_row(r: &Row<'_>) -> rusqlite::Result<UserRuleRow> {
    Ok(UserRuleRow {
        user: user_row(r)?,
        rule_group_id: r.get("rule_group_id")?,
        rule_group_name: r.get("rule_group_name")?,
        rule_require: r.get("rule_require")?,
        rule_min_strength: r.get("rule_min_strength")?,
    })
}

fn attempt_row(r: &Row<'_>) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        id: r.get("id")?,
        user_id: r.get("user_id")?,
        stage: r.get("stage")?,
        security_stamp: r.get("security_stamp")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        last_code_sent_at: r.get("last_code_sent_at")?,
        codes_sent: r.get("codes_sent")?,
        completed_at: r.get("completed_at")?,
    })
}
