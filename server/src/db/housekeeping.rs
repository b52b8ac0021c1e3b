//! Storage side of housekeeping: deleting rows that can never be used again, a bounded
//! batch per statement, and the PostgreSQL advisory lock that lets one node at a time
//! do it. Nothing here decides when to run or what "expired" means beyond a cut-off
//! time it is given; `crate::housekeeping` does.

use sqlx::{AnyConnection, AnyPool};

/// A table whose rows expire, with the key a batch is chosen by and the time column
/// compared with the cut-off. Closed set: the names are spliced into SQL, so they must
/// never come from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiring {
    OneTimeCodes,
    SignInAttempts,
    /// WebAuthn ceremonies that were never finished.
    WebauthnChallenges,
    Sessions,
    RememberedBrowsers,
    AuditEvents,
    /// OpenID Connect: parked authorization requests, codes, refresh tokens, and token
    /// families (after their refresh tokens, which refer to them).
    OidcRequests,
    OidcCodes,
    OidcRefreshTokens,
    OidcTokenFamilies,
}

impl Expiring {
    fn table_key_and_time(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Expiring::OneTimeCodes => ("one_time_codes", "id", "expires_at"),
            Expiring::SignInAttempts => ("sign_in_attempts", "token_hash", "expires_at"),
            Expiring::WebauthnChallenges => ("webauthn_challenges", "id", "expires_at"),
            Expiring::Sessions => ("sessions", "token_hash", "expires_at"),
            Expiring::RememberedBrowsers => ("remembered_browsers", "id", "expires_at"),
            Expiring::AuditEvents => ("audit_events", "id", "at"),
            Expiring::OidcRequests => ("oidc_auth_requests", "handle_hash", "expires_at"),
            Expiring::OidcCodes => ("oidc_authorization_codes", "code_hash", "expires_at"),
            Expiring::OidcRefreshTokens => ("oidc_refresh_tokens", "token_hash", "expires_at"),
            Expiring::OidcTokenFamilies => ("oidc_token_families", "id", "expires_at"),
        }
    }
}

/// Deletes at most `limit` rows of `what` whose time is at or before `cut_off` (Unix
/// ms); returns how many went. One short statement per batch, so a large backlog never
/// holds SQLite's write lock or a PostgreSQL transaction for long. The subquery form
/// works on both databases (neither portable `DELETE ... LIMIT` exists).
pub async fn purge_batch(pool: &AnyPool, what: Expiring, cut_off: i64, limit: u32) -> Result<u64, sqlx::Error> {
    let (table, key, time) = what.table_key_and_time();
    let sql = format!("DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {time} <= $1 LIMIT $2)");
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cut_off).bind(i64::from(limit)).execute(pool).await?;
    Ok(r.rows_affected())
}

/// The key of the PostgreSQL advisory lock housekeeping runs under ("2fold hk" in
/// ASCII); any constant works as long as nothing else in the database uses it.
pub const ADVISORY_LOCK_KEY: i64 = 0x3266_6f6c_6420_686b;

/// Takes the housekeeping lock on this connection's session if no other session holds
/// it, without waiting. The lock lives as long as the session, so the caller keeps this
/// connection for the whole run and releases (or closes) it afterwards.
pub async fn try_advisory_lock(conn: &mut AnyConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(ADVISORY_LOCK_KEY).fetch_one(conn).await
}

pub async fn advisory_unlock(conn: &mut AnyConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_advisory_unlock($1)").bind(ADVISORY_LOCK_KEY).fetch_one(conn).await
}
