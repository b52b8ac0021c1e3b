//! Storage of passkeys and of WebAuthn ceremonies in progress.
//!
//! A ceremony is taken with one `DELETE ... RETURNING`: whichever request (on whichever
//! node) deletes the row goes on, every other one finds nothing. A passkey's signature
//! counter moves by compare-and-set on the value the check read, so two sign-ins that
//! read the same counter cannot both store theirs.

use sqlx::{AnyConnection, AnyPool, FromRow};

use super::b;

#[derive(Debug)]
pub struct NewChallenge<'a> {
    pub id: &'a str,
    pub purpose: &'a str,
    pub binding: &'a str,
    pub user_id: Option<&'a str>,
    pub state_enc: &'a str,
    pub name: Option<&'a str>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert_challenge(pool: &AnyPool, c: &NewChallenge<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webauthn_challenges (id, purpose, binding, user_id, state_enc, name, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(c.id)
    .bind(c.purpose)
    .bind(c.binding)
    .bind(c.user_id)
    .bind(c.state_enc)
    .bind(c.name)
    .bind(c.created_at)
    .bind(c.expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(Debug, FromRow)]
pub struct ChallengeRow {
    pub user_id: Option<String>,
    pub state_enc: String,
    pub name: Option<String>,
}

/// Deletes the live ceremony `id` of `purpose` bound to `binding` and returns it; `None`
/// when it is unknown, used, expired or bound elsewhere.
pub async fn take_challenge(
    pool: &AnyPool,
    id: &str,
    purpose: &str,
    binding: &str,
    now: i64,
) -> Result<Option<ChallengeRow>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM webauthn_challenges WHERE id = $1 AND purpose = $2 AND binding = $3 AND expires_at > $4 \
         RETURNING user_id, state_enc, name",
    )
    .bind(id)
    .bind(purpose)
    .bind(binding)
    .bind(now)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, FromRow)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    pub credential_id: String,
    pub passkey_enc: String,
    pub name: String,
    pub aaguid: String,
    pub sign_count: i64,
    pub backup_eligible: i64,
    pub backup_state: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str = "id, user_id, credential_id, passkey_enc, name, aaguid, sign_count, backup_eligible, \
     backup_state, created_at, last_used_at";

pub async fn list(pool: &AnyPool, user_id: &str) -> Result<Vec<PasskeyRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
    )))
    .bind(user_id)
    .fetch_all(pool)
    .await
}

pub async fn find_by_credential(pool: &AnyPool, credential_id: &str) -> Result<Option<PasskeyRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM passkeys WHERE credential_id = $1")))
        .bind(credential_id)
        .fetch_optional(pool)
        .await
}

#[derive(Debug)]
pub struct NewPasskey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub credential_id: &'a str,
    pub passkey_enc: &'a str,
    pub name: &'a str,
    pub aaguid: &'a str,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub created_at: i64,
}

/// Stores a passkey; false when its credential id is already registered (to anyone).
pub async fn insert(conn: &mut AnyConnection, p: &NewPasskey<'_>) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_id, passkey_enc, name, aaguid, sign_count, backup_eligible, \
         backup_state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (credential_id) DO NOTHING",
    )
    .bind(p.id)
    .bind(p.user_id)
    .bind(p.credential_id)
    .bind(p.passkey_enc)
    .bind(p.name)
    .bind(p.aaguid)
    .bind(p.sign_count)
    .bind(b(p.backup_eligible))
    .bind(b(p.backup_state))
    .bind(p.created_at)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    count(conn, p.user_id).await?;
    Ok(true)
}

/// Deletes one passkey of `user_id`; false when there is no such passkey of theirs.
pub async fn delete(conn: &mut AnyConnection, user_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    count(conn, user_id).await?;
    Ok(r.rows_affected() > 0)
}

/// Deletes every passkey of a user (an admin's reset of their factors).
pub async fn delete_all(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM passkeys WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    count(conn, user_id).await
}

pub async fn rename(conn: &mut AnyConnection, user_id: &str, id: &str, name: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE passkeys SET name = $1 WHERE id = $2 AND user_id = $3")
        .bind(name)
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Keeps `users.passkey_count` equal to the user's passkeys, in the caller's transaction.
async fn count(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET passkey_count = (SELECT COUNT(*) FROM passkeys WHERE user_id = $1) WHERE id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a use (`$1` the new counter, `$2` the state, `$3`/`$4` the backup flags, `$5`
/// now, `$6` the passkey, `$7` the counter the check read), only if the counter is
/// still the one the check read: changes no row when another sign-in moved it first.
pub const RECORD_USE_SQL: &str = "UPDATE passkeys SET sign_count = $1, passkey_enc = $2, backup_eligible = $3, \
     backup_state = $4, last_used_at = $5 WHERE id = $6 AND sign_count = $7";
