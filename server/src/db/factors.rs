//! Storage of second factors, pending sign-ins, one-time codes, recovery codes,
//! remembered browsers and the lockout counter.
//!
//! Single use is enforced by the database, not by application memory: each redemption
//! is an `UPDATE ... WHERE used_at IS NULL` (or a step comparison) whose affected-row
//! count says whether this request won. Two nodes or two threads racing for one code
//! therefore get exactly one success on SQLite and on PostgreSQL alike.

use sqlx::{AnyConnection, AnyPool, FromRow};

use super::Db;
use super::b;
use super::direct::{Exec, args};

// ---------------------------------------------------------------- pending sign-ins

#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub id: String,
    pub user_id: String,
    pub stage: String,
    pub security_stamp: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_code_sent_at: Option<i64>,
    pub codes_sent: i64,
    pub completed_at: Option<i64>,
}

#[derive(Debug)]
pub struct NewAttempt<'a> {
    pub token_hash: &'a str,
    pub id: &'a str,
    pub user_id: &'a str,
    pub stage: &'a str,
    pub security_stamp: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert_attempt(conn: &mut AnyConnection, a: &NewAttempt<'_>) -> Result<(), sqlx::Error> {
    sqlx::query_with(INSERT_ATTEMPT_SQL, super::direct::sqlx_arguments(&attempt_args(a))?).execute(conn).await?;
    Ok(())
}

/// The statement of [`insert_attempt`], whose parameters are [`attempt_args`].
const INSERT_ATTEMPT_SQL: &str = "INSERT INTO sign_in_attempts (token_hash, id, user_id, stage, security_stamp, \
     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

fn attempt_args(a: &NewAttempt<'_>) -> [super::direct::Arg; 7] {
    super::direct::args![a.token_hash, a.id, a.user_id, a.stage, a.security_stamp, a.created_at, a.expires_at]
}

/// What lets any node verify an authenticator code of a pending sign-in in one
/// statement (PostgreSQL, `signin::opened`): the keyed tags of the codes of each time
/// step of the sign-in's life, from step `from` on, the key's id, and the SHA-256 of
/// the stored secret they were computed from.
#[derive(Debug, Clone)]
pub struct StepTags {
    pub tags: Vec<u8>,
    pub from: i64,
    pub key: String,
    pub secret: Vec<u8>,
}

/// [`insert_attempt`] with the tags that let any node verify its code in one statement
/// (PostgreSQL only: SQLite's verification runs in the server's own process).
///
/// Its commit does not wait for PostgreSQL to sync the write-ahead log (`unsynced`, as
/// `groups::PENDING_RESERVING_SQL`'s): a pending sign-in grants nothing, and what a
/// crash of PostgreSQL within the moment before its log writer syncs could lose is a
/// sign-in whose user types their password again. Every other node sees the row the
/// moment the statement returns, and the verification that completes it syncs it
/// with its session. The password step's answer no longer waits for the disk.
pub async fn insert_tagged_attempt(
    conn: &mut AnyConnection,
    a: &NewAttempt<'_>,
    tags: &StepTags,
) -> Result<(), sqlx::Error> {
    const SQL: &str = "WITH unsynced AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS setting) \
         INSERT INTO sign_in_attempts (token_hash, id, user_id, stage, security_stamp, created_at, \
         expires_at, code_tags, code_tags_from, code_tags_key, code_secret) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM unsynced WHERE unsynced.setting = 'off'";
    let mut args = Vec::from(attempt_args(a));
    args.extend(super::direct::args![tags.tags.as_slice(), tags.from, tags.key.as_str(), tags.secret.as_slice()]);
    sqlx::query_with(SQL, super::direct::sqlx_arguments(&args)?).execute(conn).await?;
    Ok(())
}

/// The statement of [`find_attempt`].
pub(super) const ATTEMPT_SQL: &str = "SELECT id, user_id, stage, security_stamp, created_at, expires_at, \
     last_code_sent_at, codes_sent, completed_at FROM sign_in_attempts WHERE token_hash = $1";

pub async fn find_attempt(pool: &AnyPool, token_hash: &str) -> Result<Option<AttemptRow>, sqlx::Error> {
    sqlx::query_as(ATTEMPT_SQL).bind(token_hash).fetch_optional(pool).await
}

pub async fn attempt_completed(pool: &AnyPool, id: &str) -> Result<bool, sqlx::Error> {
    let at: Option<Option<i64>> = sqlx::query_scalar("SELECT completed_at FROM sign_in_attempts WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(!matches!(at, Some(None)))
}

/// Moves an open pending sign-in from the second factor to enrolment (a recovery code
/// where only a new passkey will do); false when it is no longer open there.
pub async fn move_attempt_to_enrollment(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE sign_in_attempts SET stage = 'enrollment' WHERE id = $1 AND stage = 'second_factor' \
         AND completed_at IS NULL",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Marks the attempt complete; false when another request completed it first.
pub async fn complete_attempt(conn: &mut impl Exec, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let sql = "UPDATE sign_in_attempts SET completed_at = $1 WHERE id = $2 AND completed_at IS NULL";
    Ok(conn.run(sql, &args![now, id]).await? == 1)
}

/// Records a code send if the throttle allows it; false when it does not.
pub async fn claim_code_send(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
    not_before: i64,
    max_sends: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE sign_in_attempts SET last_code_sent_at = $1, codes_sent = codes_sent + 1 \
         WHERE id = $2 AND completed_at IS NULL AND codes_sent < $3 \
         AND (last_code_sent_at IS NULL OR last_code_sent_at <= $4)",
    )
    .bind(now)
    .bind(id)
    .bind(max_sends)
    .bind(not_before)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

// ---------------------------------------------------------------- lockout

/// Reserves one second-factor attempt before the code is looked at: one conditional
/// statement that counts the attempt only while the user is neither locked nor at the
/// limit, so parallel requests (on any node) can never get more than `max_failures`
/// codes checked per lock. Returns the counts including this attempt, or `None` when
/// the reservation is refused.
pub async fn reserve_attempt(
    db: &Db,
    user_id: &str,
    now: i64,
    max_failures: i64,
    permanent_after: i64,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    // It changes the counters of the user row of `user_id` alone.
    db.write_returning(
        super::Touches::activity_of(user_id),
        RESERVE_SQL,
        Vec::from(args![user_id, now, max_failures, permanent_after]),
    )
    .await
}

/// What a reservation adds to the user row, and when it may (`$2` now, `$3` the most
/// failures, `$4` the consecutive failures that lock for good): [`RESERVE_SQL`]'s, and
/// that of the PostgreSQL statement that reads a pending sign-in and reserves at once
/// (`groups::pending_reserving`).
macro_rules! reserve_counts {
    () => {
        "second_factor_failures = second_factor_failures + 1, consecutive_failures = consecutive_failures + 1"
    };
}
macro_rules! reserve_allowed {
    () => {
        "(locked_until IS NULL OR locked_until <= $2) AND second_factor_failures < $3 AND consecutive_failures < $4"
    };
}
pub(super) use {reserve_allowed, reserve_counts};

/// The statement of [`reserve_attempt`].
const RESERVE_SQL: &str = concat!(
    "UPDATE users SET ",
    reserve_counts!(),
    " WHERE id = $1 AND ",
    reserve_allowed!(),
    " RETURNING second_factor_failures, consecutive_failures"
);

/// [`reserve_attempt`] with the user's authenticator read in the same statement on
/// PostgreSQL, where each statement is a round trip (a SQLite file reads it in process
/// after the reservation). The read sees the authenticator as it was when the
/// reservation was counted; a step spent since is caught where the step is consumed.
pub async fn reserve_attempt_for_authenticator(
    db: &Db,
    user_id: &str,
    now: i64,
    max_failures: i64,
    permanent_after: i64,
) -> anyhow::Result<Option<((i64, i64), Option<AuthenticatorRow>)>> {
    if db.backend == super::Backend::Sqlite {
        let Some(counts) = reserve_attempt(db, user_id, now, max_failures, permanent_after).await? else {
            return Ok(None);
        };
        return Ok(Some((counts, db.authenticator(user_id).await?)));
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH reserved AS ({RESERVE_SQL}) SELECT r.second_factor_failures, r.consecutive_failures, \
             a.secret_enc, a.confirmed, a.last_used_step FROM reserved r LEFT JOIN authenticators a ON a.user_id = $1"
        )
    });
    let query = sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(user_id)
        .bind(now)
        .bind(max_failures)
        .bind(permanent_after);
    let row: Result<Option<ReservedRow>, sqlx::Error> = on_hot!(db, conn => query.fetch_optional(conn));
    db.committed(super::Touches::activity_of(user_id));
    let row = row?;
    Ok(row.map(|r| {
        let authenticator = AuthenticatorRow::joined(r.secret_enc, r.confirmed, r.last_used_step);
        ((r.second_factor_failures, r.consecutive_failures), authenticator)
    }))
}

/// [`reserve_attempt_for_authenticator`] inside the caller's transaction on a SQLite
/// file's writer (`direct::DirectTx`), which a check of the code and the sign-in's
/// completion then join: the authenticator is read after the count, by the transaction
/// that counted it, so it is the row as the writer has it, with every change before it.
pub async fn reserve_in(
    tx: &mut impl Exec,
    user_id: &str,
    now: i64,
    max_failures: i64,
    permanent_after: i64,
) -> Result<Option<((i64, i64), Option<AuthenticatorRow>)>, sqlx::Error> {
    let Some(counts) = tx.returning(RESERVE_SQL, &args![user_id, now, max_failures, permanent_after]).await? else {
        return Ok(None);
    };
    Ok(Some((counts, tx.returning(AUTHENTICATOR_SQL, &args![user_id]).await?)))
}

#[derive(Debug, FromRow)]
struct ReservedRow {
    second_factor_failures: i64,
    consecutive_failures: i64,
    secret_enc: Option<String>,
    confirmed: Option<i64>,
    last_used_step: Option<i64>,
}

/// Gives a reserved attempt back: the code was right but another request used it first
/// (a double submit or a second tab), which is not a guess.
pub async fn refund_attempt(db: &Db, user_id: &str) -> Result<(), sqlx::Error> {
    db.write_statement(
        super::Touches::activity_of(user_id),
        "UPDATE users SET second_factor_failures = second_factor_failures - 1, \
         consecutive_failures = consecutive_failures - 1 \
         WHERE id = $1 AND second_factor_failures > 0 AND consecutive_failures > 0",
        Vec::from(args![user_id]),
    )
    .await?;
    Ok(())
}

/// Locks second-factor sign-in once the failures of this lock period reach the limit.
/// Only the request that finds the count still at the limit locks (the count starts
/// again for after the lock); the others see `None`. Returns the lock's end and how
/// many locks there have been since the last success.
pub async fn lock_if_at_limit(
    conn: &mut AnyConnection,
    user_id: &str,
    max_failures: i64,
    until: impl Fn(i64) -> i64,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let lockouts: Option<i64> =
        sqlx::query_scalar("SELECT lockouts FROM users WHERE id = $1 AND second_factor_failures >= $2")
            .bind(user_id)
            .bind(max_failures)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(lockouts) = lockouts else { return Ok(None) };
    let ends = until(lockouts);
    let r = sqlx::query(
        "UPDATE users SET locked_until = $1, second_factor_failures = 0, lockouts = lockouts + 1 \
         WHERE id = $2 AND second_factor_failures >= $3",
    )
    .bind(ends)
    .bind(user_id)
    .bind(max_failures)
    .execute(&mut *conn)
    .await?;
    Ok((r.rows_affected() == 1).then_some((ends, lockouts + 1)))
}

/// A second factor succeeded, or an admin unlocked the user: every count starts again.
pub async fn reset_failures(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET second_factor_failures = 0, consecutive_failures = 0, lockouts = 0, locked_until = NULL \
         WHERE id = $1",
    )
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_enrollment_required(conn: &mut AnyConnection, user_id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET enrollment_required_since = $1 WHERE id = $2 AND enrollment_required_since IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- one-time codes

#[derive(Debug)]
pub struct NewCode<'a> {
    pub user_id: &'a str,
    pub purpose: &'a str,
    pub binding: &'a str,
    pub destination: &'a str,
    pub code_hash: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Stores a new code after voiding every unused code of the same purpose and binding,
/// so a resend leaves exactly one valid code.
pub async fn replace_code(conn: &mut AnyConnection, c: &NewCode<'_>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE one_time_codes SET used_at = $1 WHERE binding = $2 AND purpose = $3 AND used_at IS NULL")
        .bind(c.created_at)
        .bind(c.binding)
        .bind(c.purpose)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO one_time_codes (id, user_id, purpose, binding, destination, code_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(c.user_id)
    .bind(c.purpose)
    .bind(c.binding)
    .bind(c.destination)
    .bind(c.code_hash)
    .bind(c.created_at)
    .bind(c.expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct CodeRow {
    pub id: String,
    pub destination: String,
    pub code_hash: String,
}

/// The live code of a purpose and binding, if any.
pub async fn live_code(pool: &AnyPool, binding: &str, purpose: &str, now: i64) -> Result<Option<CodeRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, destination, code_hash FROM one_time_codes \
         WHERE binding = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(binding)
    .bind(purpose)
    .bind(now)
    .fetch_optional(pool)
    .await
}

/// Uses a code (`$1` now, `$2` its id); changes no row when another request used it
/// first.
pub const USE_CODE_SQL: &str = "UPDATE one_time_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL";

// ---------------------------------------------------------------- authenticators

#[derive(Debug, Clone, FromRow)]
pub struct AuthenticatorRow {
    pub secret_enc: String,
    pub confirmed: i64,
    pub last_used_step: i64,
}

impl super::direct::ReturnedRow for AuthenticatorRow {
    fn direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self { secret_enc: row.get(0)?, confirmed: row.get(1)?, last_used_step: row.get(2)? })
    }
}

impl AuthenticatorRow {
    /// The row from the columns of an outer join, which are all null without one.
    pub(super) fn joined(
        secret_enc: Option<String>,
        confirmed: Option<i64>,
        last_used_step: Option<i64>,
    ) -> Option<Self> {
        Some(Self { secret_enc: secret_enc?, confirmed: confirmed?, last_used_step: last_used_step? })
    }
}

/// The statement of [`get_authenticator`].
pub(super) const AUTHENTICATOR_SQL: &str =
    "SELECT secret_enc, confirmed, last_used_step FROM authenticators WHERE user_id = $1";

pub async fn get_authenticator<'e, E>(executor: E, user_id: &str) -> Result<Option<AuthenticatorRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(AUTHENTICATOR_SQL).bind(user_id).fetch_optional(executor).await
}

/// Starts (or restarts) an enrolment; refuses to replace a confirmed authenticator.
pub async fn put_pending_authenticator(
    conn: &mut AnyConnection,
    user_id: &str,
    secret_enc: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO authenticators (user_id, secret_enc, confirmed, last_used_step, created_at) \
         VALUES ($1, $2, 0, 0, $3) \
         ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, created_at = excluded.created_at, \
         last_used_step = 0 WHERE authenticators.confirmed = 0",
    )
    .bind(user_id)
    .bind(secret_enc)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records an accepted time step (`$1` the step, `$2` the user); changes no row when
/// this step (or a later one) was already used, i.e. a replay or a lost race.
pub const USE_STEP_SQL: &str =
    "UPDATE authenticators SET last_used_step = $1 WHERE user_id = $2 AND last_used_step < $1";

pub async fn confirm_authenticator(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE authenticators SET confirmed = 1 WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    sqlx::query("UPDATE users SET has_authenticator = 1 WHERE id = $1").bind(user_id).execute(&mut *conn).await?;
    Ok(())
}

pub async fn delete_authenticator(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM authenticators WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    sqlx::query("UPDATE users SET has_authenticator = 0 WHERE id = $1").bind(user_id).execute(&mut *conn).await?;
    Ok(())
}

// ---------------------------------------------------------------- recovery codes

#[derive(Debug, Clone, FromRow)]
pub struct RecoveryRow {
    pub id: String,
    pub code_hash: String,
}

pub async fn replace_recovery_codes(
    conn: &mut AnyConnection,
    user_id: &str,
    hashes: &[String],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    for h in hashes {
        sqlx::query("INSERT INTO recovery_codes (id, user_id, code_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(user_id)
            .bind(h)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn unused_recovery_codes(pool: &AnyPool, user_id: &str) -> Result<Vec<RecoveryRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, code_hash FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
        .bind(user_id)
        .fetch_all(pool)
        .await
}

/// Whether the user whose id is the SQL expression `user_id` has a recovery code not
/// yet used: 1 or 0. `COUNT` is a 64-bit integer on both databases, which `EXISTS` is
/// not. The password step on PostgreSQL asks it within the statement that finds the
/// user (`Db::named`).
pub(super) fn unused_recovery_code(user_id: &str) -> String {
    format!(
        "(SELECT COUNT(*) FROM (SELECT 1 FROM recovery_codes rc WHERE rc.user_id = {user_id} \
         AND rc.used_at IS NULL LIMIT 1) AS left_over)"
    )
}

/// The statement of [`has_unused_recovery_code`]: one row, 1 or 0.
pub(super) static HAS_RECOVERY_CODE_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {}", unused_recovery_code("$1")));

/// Whether `user_id` has a recovery code not yet used; a sign-in offers the recovery
/// code only then.
pub async fn has_unused_recovery_code<'e, E>(executor: E, user_id: &str) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (count,): (i64,) = sqlx::query_as(HAS_RECOVERY_CODE_SQL.as_str()).bind(user_id).fetch_one(executor).await?;
    Ok(count > 0)
}

/// Uses a recovery code (`$1` now, `$2` its id); changes no row when it was used.
pub const USE_RECOVERY_CODE_SQL: &str = "UPDATE recovery_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL";

// ---------------------------------------------------------------- remembered browsers

#[derive(Debug, Clone, FromRow)]
pub struct BrowserRow {
    pub id: String,
    pub user_id: String,
    pub security_stamp: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    /// The strength of the second factor the browser was remembered with.
    pub strength: String,
}

#[derive(Debug)]
pub struct NewBrowser<'a> {
    pub id: &'a str,
    pub token_hash: &'a str,
    pub user_id: &'a str,
    pub security_stamp: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<&'a str>,
    pub strength: &'a str,
}

pub async fn insert_browser(conn: &mut impl Exec, r: &NewBrowser<'_>) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO remembered_browsers (id, token_hash, user_id, security_stamp, created_at, last_used_at, \
               expires_at, user_agent, strength) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)";
    let args =
        args![r.id, r.token_hash, r.user_id, r.security_stamp, r.created_at, r.expires_at, r.user_agent, r.strength];
    conn.run(sql, &args).await?;
    Ok(())
}

const BROWSER_COLUMNS: &str = "id, user_id, security_stamp, created_at, last_used_at, expires_at, user_agent, strength";

pub async fn find_browser(pool: &AnyPool, token_hash: &str) -> Result<Option<BrowserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BROWSER_COLUMNS} FROM remembered_browsers WHERE token_hash = $1"
    )))
    .bind(token_hash)
    .fetch_optional(pool)
    .await
}

pub async fn touch_browser(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE remembered_browsers SET last_used_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn list_browsers(pool: &AnyPool, user_id: &str, now: i64) -> Result<Vec<BrowserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BROWSER_COLUMNS} FROM remembered_browsers WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC"
    )))
    .bind(user_id)
    .bind(now)
    .fetch_all(pool)
    .await
}

pub async fn delete_browser(conn: &mut AnyConnection, user_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM remembered_browsers WHERE user_id = $1 AND id = $2")
        .bind(user_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn delete_browsers(conn: &mut AnyConnection, user_id: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM remembered_browsers WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(r.rows_affected())
}

// ---------------------------------------------------------------- profile changes

/// Rotates the security stamp. Sessions, pending sign-ins and remembered browsers made
/// under the old stamp stop working. `keep_session` (the session that made the change)
/// is carried over to the new stamp, so users are not signed out by their own change.
pub async fn rotate_stamp(
    conn: &mut AnyConnection,
    user_id: &str,
    new_stamp: &str,
    keep_session: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET security_stamp = $1 WHERE id = $2")
        .bind(new_stamp)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    if let Some(hash) = keep_session {
        sqlx::query("UPDATE sessions SET security_stamp = $1 WHERE token_hash = $2 AND user_id = $3")
            .bind(new_stamp)
            .bind(hash)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn set_user_flag(conn: &mut AnyConnection, user_id: &str, enabled: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET two_factor_enabled = $1 WHERE id = $2")
        .bind(b(enabled))
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_pending_email(conn: &mut AnyConnection, user_id: &str, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET pending_email = $1 WHERE id = $2").bind(email).bind(user_id).execute(conn).await?;
    Ok(())
}

pub async fn set_pending_phone(conn: &mut AnyConnection, user_id: &str, phone: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET pending_phone = $1 WHERE id = $2").bind(phone).bind(user_id).execute(conn).await?;
    Ok(())
}

pub async fn confirm_email(conn: &mut AnyConnection, user_id: &str, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email = $1, email_confirmed = 1, pending_email = NULL WHERE id = $2")
        .bind(email)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn confirm_phone(conn: &mut AnyConnection, user_id: &str, phone: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET phone = $1, phone_confirmed = 1, pending_phone = NULL WHERE id = $2")
        .bind(phone)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn remove_email(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email = NULL, email_confirmed = 0, pending_email = NULL WHERE id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn remove_phone(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET phone = NULL, phone_confirmed = 0, pending_phone = NULL WHERE id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_password_hash(conn: &mut AnyConnection, user_id: &str, hash: &str) -> Result<(), sqlx::Error> {
    // A password the user chose ends any obligation to change an admin's.
    sqlx::query("UPDATE users SET password_hash = $1, must_change_password = 0 WHERE id = $2")
        .bind(hash)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every second factor of a user, for an admin reset: the authenticator,
/// recovery codes, confirmations of email and phone (they are factors), remembered
/// browsers, sessions and pending sign-ins.
pub async fn reset_second_factors(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    for sql in [
        "DELETE FROM authenticators WHERE user_id = $1",
        "DELETE FROM passkeys WHERE user_id = $1",
        "DELETE FROM webauthn_challenges WHERE user_id = $1",
        "DELETE FROM recovery_codes WHERE user_id = $1",
        "DELETE FROM remembered_browsers WHERE user_id = $1",
        "DELETE FROM sessions WHERE user_id = $1",
        "DELETE FROM sign_in_attempts WHERE user_id = $1",
        "DELETE FROM one_time_codes WHERE user_id = $1",
        "UPDATE users SET has_authenticator = 0, passkey_count = 0, email_confirmed = 0, phone_confirmed = 0, pending_email = NULL, \
         pending_phone = NULL, enrollment_required_since = NULL WHERE id = $1",
    ] {
        sqlx::query(sql).bind(user_id).execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn delete_sessions(conn: &mut AnyConnection, user_id: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(r.rows_affected())
}

/// Records that the session just proved itself again, and with what.
pub async fn mark_reauthenticated(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: i64,
    method: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET reauthenticated_at = $1, reauth_method = $2 WHERE token_hash = $3")
        .bind(now)
        .bind(method)
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records that the session proved the second factor `method` at `now`: what an
/// application's rule (strength, age) is checked against. Unlike
/// [`mark_reauthenticated`] it opens no sensitive account change.
pub async fn mark_second_factor(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: i64,
    method: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET second_factor_at = $1, second_factor_method = $2 WHERE token_hash = $3")
        .bind(now)
        .bind(method)
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}
