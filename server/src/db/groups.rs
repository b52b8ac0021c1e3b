//! Groups of a scope, their rules and their members (DESIGN.md section 5).
//!
//! A member always belongs to the group's scope: the routes check it, and the
//! membership table's foreign keys carry the scope so the database refuses it too.

use sqlx::{AnyConnection, AnyPool, FromRow};
use twofold_policy::{GroupRule, Rule, Strength};

use super::b;

#[derive(Debug, Clone, FromRow)]
pub struct GroupRow {
    pub id: String,
    pub scope_key: String,
    pub name: String,
    pub name_key: String,
    pub require_two_factor: i64,
    pub min_strength: Option<String>,
    pub created_at: i64,
    pub member_count: i64,
}

impl GroupRow {
    pub fn rule(&self) -> anyhow::Result<Rule> {
        Ok(Rule { require_two_factor: self.require_two_factor != 0, min_strength: parse_strength(&self.min_strength)? })
    }
}

fn parse_strength(s: &Option<String>) -> anyhow::Result<Option<Strength>> {
    match s {
        None => Ok(None),
        Some(s) => Strength::parse(s).map(Some).ok_or_else(|| anyhow::anyhow!("stored strength {s:?} is not known")),
    }
}

const GROUP_COLUMNS: &str = "g.id, g.scope_key, g.name, g.name_key, g.require_two_factor, g.min_strength, g.created_at, \
     (SELECT COUNT(*) FROM user_group_members m WHERE m.group_id = g.id) AS member_count";

/// The groups of a scope in the order resolution consults them ([`by_name`]).
pub async fn list_groups(pool: &AnyPool, scope_key: &str) -> Result<Vec<GroupRow>, sqlx::Error> {
    let mut groups: Vec<GroupRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {GROUP_COLUMNS} FROM user_groups g WHERE g.scope_key = $1"
    )))
    .bind(scope_key)
    .fetch_all(pool)
    .await?;
    groups.sort_by(|a, b| by_name((&a.name_key, &a.id), (&b.name_key, &b.id)));
    Ok(groups)
}

/// The order in which resolution consults a user's groups, and so which group decides
/// when several require two-factor sign-in: by name key, then id, compared byte by byte
/// (which is how `str` orders).
/// It is sorted here rather than by the database so that it is the same on SQLite and
/// on PostgreSQL whatever the database's collation, and so that reading one user's rules
/// needs no sort in the database (BENCHMARKS.md, "The read's miss path, and jemalloc").
pub fn by_name(a: (&str, &str), b: (&str, &str)) -> std::cmp::Ordering {
    a.cmp(&b)
}

pub async fn get_group<'e, E>(executor: E, id: &str) -> Result<Option<GroupRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {GROUP_COLUMNS} FROM user_groups g WHERE g.id = $1")))
        .bind(id)
        .fetch_optional(executor)
        .await
}

pub async fn name_taken(
    conn: &mut AnyConnection,
    scope_key: &str,
    name_key: &str,
    except_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_groups WHERE scope_key = $1 AND name_key = $2 AND ($3 IS NULL OR id <> $3)",
    )
    .bind(scope_key)
    .bind(name_key)
    .bind(except_id)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

#[derive(Debug)]
pub struct NewGroup<'a> {
    pub id: &'a str,
    pub scope_key: &'a str,
    pub name: &'a str,
    pub name_key: &'a str,
    pub rule: Rule,
    pub now: i64,
}

pub async fn insert_group(conn: &mut AnyConnection, g: &NewGroup<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_groups (id, scope_key, name, name_key, require_two_factor, min_strength, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(g.id)
    .bind(g.scope_key)
    .bind(g.name)
    .bind(g.name_key)
    .bind(b(g.rule.require_two_factor))
    .bind(g.rule.min_strength.map(Strength::as_str))
    .bind(g.now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_group(
    conn: &mut AnyConnection,
    id: &str,
    name: &str,
    name_key: &str,
    rule: Rule,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE user_groups SET name = $1, name_key = $2, require_two_factor = $3, min_strength = $4, \
         updated_at = $5 WHERE id = $6",
    )
    .bind(name)
    .bind(name_key)
    .bind(b(rule.require_two_factor))
    .bind(rule.min_strength.map(Strength::as_str))
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_group(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    // Memberships go first: SQLite enforces the cascade only with foreign keys on, and
    // being explicit keeps both databases alike.
    sqlx::query("DELETE FROM user_group_members WHERE group_id = $1").bind(id).execute(&mut *conn).await?;
    let r = sqlx::query("DELETE FROM user_groups WHERE id = $1").bind(id).execute(conn).await?;
    Ok(r.rows_affected() > 0)
}

/// Returns whether the membership is new.
pub async fn add_member(
    conn: &mut AnyConnection,
    group_id: &str,
    user_id: &str,
    scope_key: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO user_group_members (group_id, user_id, scope_key, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(group_id)
    .bind(user_id)
    .bind(scope_key)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Returns whether there was such a membership.
pub async fn remove_member(conn: &mut AnyConnection, group_id: &str, user_id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM user_group_members WHERE group_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    pub user_id: String,
    pub username: String,
}

pub async fn list_members(pool: &AnyPool, group_id: &str) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id AS user_id, u.username FROM user_group_members m JOIN users u ON u.id = m.user_id \
         WHERE m.group_id = $1 ORDER BY u.username_key",
    )
    .bind(group_id)
    .fetch_all(pool)
    .await
}

#[derive(Debug, FromRow)]
pub(super) struct UserRuleRow {
    #[sqlx(flatten)]
    pub user: super::UserRow,
    #[sqlx(flatten)]
    pub rule: RuleColumns,
}

/// One group of a user's, as the statements that join a user with their groups read it:
/// all null when the user belongs to none.
#[derive(Debug, FromRow)]
pub(super) struct RuleColumns {
    pub rule_group_id: Option<String>,
    pub rule_group_name: Option<String>,
    pub rule_group_name_key: Option<String>,
    pub rule_require: Option<i64>,
    pub rule_min_strength: Option<String>,
}

/// The group columns every statement that joins a user `u` with their groups selects,
/// after the user's.
pub(super) const RULE_COLUMNS: &str = "g.id AS rule_group_id, g.name AS rule_group_name, g.name_key AS rule_group_name_key, \
     g.require_two_factor AS rule_require, g.min_strength AS rule_min_strength";
pub(super) const RULE_JOINS: &str =
    "LEFT JOIN user_group_members m ON m.user_id = u.id LEFT JOIN user_groups g ON g.id = m.group_id";

/// What an effective-policy read needs of a user, besides the scope's settings and
/// feature: their tenant (the host's users have none; the scope follows from it, as the
/// schema's check on `users` holds), their own 2FA switch, and the rules of their
/// groups in the order resolution consults them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub tenant_id: Option<std::sync::Arc<str>>,
    pub two_factor_enabled: bool,
    pub groups: Vec<GroupRule>,
}

impl Subject {
    /// The user's scope key: their tenant's id, or the host's.
    pub fn scope_key(&self) -> &str {
        self.tenant_id.as_deref().unwrap_or(super::HOST_SCOPE)
    }
}

#[derive(Debug, FromRow)]
pub(super) struct SubjectRuleRow {
    pub tenant_id: Option<String>,
    pub two_factor_enabled: i64,
    #[sqlx(flatten)]
    pub rule: RuleColumns,
}

/// The statement of [`subject`]: two of the user's columns, then one row per group (or
/// one row of nulls without any), in no particular order.
static SUBJECT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| subject_sql("users u"));

/// [`SUBJECT_SQL`] for SQLite's direct reads (`lookup`): the index `users_policy_inputs`
/// (migration `sqlite/0012`) holds every column it reads of the user, so the read never
/// descends the table's own B-tree, whose leaves (whole user rows) are rarely in memory
/// at a million users (BENCHMARKS.md, "Users' policy inputs kept while the database says
/// they hold"). SQLite's planner, seeing two indexes that start with `id`, takes the
/// primary key's; `INDEXED BY` names the covering one (and fails the statement, rather
/// than reading another way, if it were ever missing).
pub(super) static SUBJECT_BY_INDEX_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| subject_sql("users u INDEXED BY users_policy_inputs"));

fn subject_sql(users: &str) -> String {
    format!("SELECT u.tenant_id, u.two_factor_enabled, {RULE_COLUMNS} FROM {users} {RULE_JOINS} WHERE u.id = $1")
}

/// A user's policy inputs ([`Subject`]) in one statement.
pub async fn subject<'e, E>(executor: E, user_id: &str) -> anyhow::Result<Option<Subject>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<SubjectRuleRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(SUBJECT_SQL.as_str())).bind(user_id).fetch_all(executor).await?;
    fold_subject(rows)
}

/// The rows of [`SUBJECT_SQL`] as the user's policy inputs.
pub(super) fn fold_subject(rows: impl IntoIterator<Item = SubjectRuleRow>) -> anyhow::Result<Option<Subject>> {
    let folded = fold_rules(rows.into_iter().map(|r| ((r.tenant_id.map(Into::into), r.two_factor_enabled), r.rule)))?;
    Ok(folded.map(|((tenant_id, flag), groups)| Subject { tenant_id, two_factor_enabled: flag != 0, groups }))
}

/// The statement of [`user_with_rules`]: the user's columns, then one row per group
/// (or one row of nulls without any), in no particular order ([`fold_user_rules`] sorts).
pub(super) static USER_WITH_RULES_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| user_with_rules_sql("", "users u", "u.id = $1"));

/// A statement that reads a user's columns and their group rules as
/// [`USER_WITH_RULES_SQL`] does, with `columns` before them, from `from` (which names
/// the user `u`), where `filter` holds.
fn user_with_rules_sql(columns: &str, from: &str, filter: &str) -> String {
    let user: Vec<String> = super::USER_COLUMNS.split(',').map(|c| format!("u.{}", c.trim())).collect();
    format!("SELECT {columns}{}, {RULE_COLUMNS} FROM {from} {RULE_JOINS} WHERE {filter}", user.join(", "))
}

/// The pending sign-in of a token hash with its user and their group rules, in one
/// statement: every step of a pending sign-in reads all three, and on PostgreSQL each
/// statement is a round trip. No row when either is missing.
static PENDING_WITH_USER_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    user_with_rules_sql(PENDING_COLUMNS, "sign_in_attempts a JOIN users u ON u.id = a.user_id", "a.token_hash = $1")
});

#[derive(Debug, FromRow)]
struct PendingUserRuleRow {
    attempt_id: String,
    attempt_stage: String,
    attempt_stamp: String,
    attempt_created_at: i64,
    attempt_expires_at: i64,
    attempt_last_code_sent_at: Option<i64>,
    attempt_codes_sent: i64,
    attempt_completed_at: Option<i64>,
    #[sqlx(flatten)]
    rule: UserRuleRow,
}

/// A pending sign-in, its user and their group rules.
pub type PendingRows = (super::factors::AttemptRow, super::UserRow, Vec<GroupRule>);

/// The statement of [`PENDING_WITH_USER_SQL`], folded as [`user_with_rules`] folds.
pub async fn pending_with_user<'e, E>(executor: E, token_hash: &str) -> anyhow::Result<Option<PendingRows>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<PendingUserRuleRow> = sqlx::query_as(sqlx::AssertSqlSafe(PENDING_WITH_USER_SQL.as_str()))
        .bind(token_hash)
        .fetch_all(executor)
        .await?;
    fold_pending(rows)
}

/// The rows of a pending sign-in joined with its user's groups as the attempt, the user
/// and their rules.
fn fold_pending(rows: impl IntoIterator<Item = PendingUserRuleRow>) -> anyhow::Result<Option<PendingRows>> {
    let mut attempt = None;
    let rules = rows.into_iter().map(|row| {
        attempt.get_or_insert_with(|| super::factors::AttemptRow {
            id: row.attempt_id,
            user_id: row.rule.user.id.clone(),
            stage: row.attempt_stage,
            security_stamp: row.attempt_stamp,
            created_at: row.attempt_created_at,
            expires_at: row.attempt_expires_at,
            last_code_sent_at: row.attempt_last_code_sent_at,
            codes_sent: row.attempt_codes_sent,
            completed_at: row.attempt_completed_at,
        });
        row.rule
    });
    let folded = fold_user_rules(rules.collect::<Vec<_>>())?;
    Ok(attempt.zip(folded).map(|(attempt, (user, rules))| (attempt, user, rules)))
}

/// The columns of a pending sign-in that [`PENDING_WITH_USER_SQL`] and
/// [`PENDING_RESERVING_SQL`] read before the user's.
const PENDING_COLUMNS: &str = "a.id AS attempt_id, a.stage AS attempt_stage, a.security_stamp AS attempt_stamp, \
     a.created_at AS attempt_created_at, a.expires_at AS attempt_expires_at, \
     a.last_code_sent_at AS attempt_last_code_sent_at, a.codes_sent AS attempt_codes_sent, \
     a.completed_at AS attempt_completed_at, ";

/// [`PENDING_WITH_USER_SQL`] that also reserves a second-factor attempt
/// (`factors::RESERVE_SQL`'s conditions) and reads the user's authenticator (which an
/// authenticator code is checked against), for a PostgreSQL verification of a typed
/// second factor: one round trip where there were two. The attempt is counted only for
/// a sign-in that the state machine would let
/// check a code: the token's attempt is at stage `$5`, neither completed nor expired at
/// `$2`, and of the user's current security stamp. The outer read sees the rows as
/// they were before the reservation, as the separate read did.
///
/// Its commit does not wait for PostgreSQL to sync the write-ahead log (`unsynced`:
/// `synchronous_commit` off for this statement's transaction alone): the count is
/// visible to every other request the moment the statement returns, which is what
/// limits guesses racing each other; only a crash of PostgreSQL (or a failover) within
/// the moment before its log writer syncs (at most three times `wal_writer_delay`,
/// 600 ms by default) could lose it, and the next synchronous commit of any session (a
/// completed sign-in syncs everything logged before it) makes it durable. On a cluster that
/// syncs, a verification waited for two syncs, a third of its rate (BENCHMARKS.md,
/// "PostgreSQL that syncs").
static PENDING_RESERVING_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let read = user_with_rules_sql(
        &format!(
            "{PENDING_COLUMNS}r.second_factor_failures AS reserved_failures, \
             r.consecutive_failures AS reserved_consecutive, au.secret_enc AS reserved_secret_enc, \
             au.confirmed AS reserved_confirmed, au.last_used_step AS reserved_last_used_step, "
        ),
        "sign_in_attempts a JOIN users u ON u.id = a.user_id LEFT JOIN reserved r ON r.id = u.id \
         LEFT JOIN authenticators au ON au.user_id = r.id",
        "a.token_hash = $1",
    );
    // The counts and conditions name the user row's columns unqualified: the attempts
    // table has none of those names.
    let reserve = concat!(
        "UPDATE users ru SET ",
        super::factors::reserve_counts!(),
        " FROM sign_in_attempts ra, unsynced WHERE unsynced.setting = 'off' AND ra.token_hash = $1 \
         AND ru.id = ra.user_id AND ra.stage = $5 AND ra.completed_at IS NULL AND ra.expires_at > $2 \
         AND ra.security_stamp = ru.security_stamp AND ",
        super::factors::reserve_allowed!(),
        " RETURNING ru.id, ru.second_factor_failures, ru.consecutive_failures"
    );
    // `true`: for this transaction only, so the connection's next statement (a sign-in
    // completed, say) syncs as before.
    format!(
        "WITH unsynced AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS setting), \
         reserved AS ({reserve}) {read}"
    )
});

#[derive(Debug, FromRow)]
struct PendingReservingRow {
    reserved_failures: Option<i64>,
    reserved_consecutive: Option<i64>,
    reserved_secret_enc: Option<String>,
    reserved_confirmed: Option<i64>,
    reserved_last_used_step: Option<i64>,
    #[sqlx(flatten)]
    pending: PendingUserRuleRow,
}

/// A second-factor attempt counted by [`pending_reserving`]: the counts including it,
/// and the user's authenticator as it was when it was counted.
pub type Reserved = ((i64, i64), Option<super::factors::AuthenticatorRow>);

/// What a reservation needs besides the token: when, in which stage the attempt must
/// stand, and the limits (`factors::reserve_attempt`'s).
#[derive(Debug, Clone, Copy)]
pub struct ReserveAt<'a> {
    pub now: i64,
    pub stage: &'a str,
    pub max_failures: i64,
    pub permanent_after: i64,
}

/// The statement of [`PENDING_RESERVING_SQL`] (PostgreSQL only), folded as
/// [`pending_with_user`] folds; the reservation is `None` when none was counted.
pub async fn pending_reserving(
    conn: &mut AnyConnection,
    token_hash: &str,
    at: ReserveAt<'_>,
) -> anyhow::Result<Option<(PendingRows, Option<Reserved>)>> {
    let mut rows: Vec<PendingReservingRow> = sqlx::query_as(sqlx::AssertSqlSafe(PENDING_RESERVING_SQL.as_str()))
        .bind(token_hash)
        .bind(at.now)
        .bind(at.max_failures)
        .bind(at.permanent_after)
        .bind(at.stage)
        .fetch_all(conn)
        .await?;
    let reserved = rows.first_mut().and_then(|r| {
        let counts = (r.reserved_failures?, r.reserved_consecutive?);
        let (secret_enc, confirmed, step) =
            (r.reserved_secret_enc.take(), r.reserved_confirmed, r.reserved_last_used_step);
        Some((counts, super::factors::AuthenticatorRow::joined(secret_enc, confirmed, step)))
    });
    let pending = fold_pending(rows.into_iter().map(|r| r.pending))?;
    Ok(pending.map(|p| (p, reserved)))
}

/// A user with the groups that carry a rule (by name: the order in which resolution
/// consults them, the same on every node), in one statement: an effective-policy read
/// needs both.
pub async fn user_with_rules<'e, E>(
    executor: E,
    user_id: &str,
) -> anyhow::Result<Option<(super::UserRow, Vec<GroupRule>)>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<UserRuleRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(USER_WITH_RULES_SQL.as_str())).bind(user_id).fetch_all(executor).await?;
    fold_user_rules(rows)
}

/// The rows of [`USER_WITH_RULES_SQL`] as the user and their rules.
pub(super) fn fold_user_rules(
    rows: impl IntoIterator<Item = UserRuleRow>,
) -> anyhow::Result<Option<(super::UserRow, Vec<GroupRule>)>> {
    fold_rules(rows.into_iter().map(|r| (r.user, r.rule)))
}

/// A user's rows joined with their groups as the user (from the first row) and the
/// rules of their groups, by name.
fn fold_rules<U>(rows: impl IntoIterator<Item = (U, RuleColumns)>) -> anyhow::Result<Option<(U, Vec<GroupRule>)>> {
    let mut user = None;
    let mut rules = Vec::new();
    for (row_user, row) in rows {
        // Groups without a rule take no part in resolution.
        if let (Some(id), Some(name), Some(key), Some(require)) =
            (row.rule_group_id, row.rule_group_name, row.rule_group_name_key, row.rule_require)
            && (require == 1 || row.rule_min_strength.is_some())
        {
            let rule = Rule { require_two_factor: require != 0, min_strength: parse_strength(&row.rule_min_strength)? };
            rules.push((key, GroupRule { rule, id, name }));
        }
        user.get_or_insert(row_user);
    }
    rules.sort_by(|(a_key, a), (b_key, b)| by_name((a_key, &a.id), (b_key, &b.id)));
    Ok(user.map(|u| (u, rules.into_iter().map(|(_, rule)| rule).collect())))
}

#[derive(Debug, Clone, FromRow)]
pub struct MembershipRow {
    pub user_id: String,
    pub group_id: String,
}

/// Every membership in a scope, for the views that resolve all of its users at once.
pub async fn scope_memberships(pool: &AnyPool, scope_key: &str) -> Result<Vec<MembershipRow>, sqlx::Error> {
    sqlx::query_as("SELECT user_id, group_id FROM user_group_members WHERE scope_key = $1 ORDER BY user_id")
        .bind(scope_key)
        .fetch_all(pool)
        .await
}
