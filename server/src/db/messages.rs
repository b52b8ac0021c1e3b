//! Counts of emails and texts per scope, channel and clock hour: the caps that bound
//! what the users of one tenant, and of the whole deployment, can make the mail relay
//! and the SMS provider send.

use sqlx::{AnyConnection, AnyPool};

/// The scope key of the row that counts every scope together. Tenant ids are UUIDs and
/// the host is `host`, so no scope has this key.
pub const ALL_SCOPES: &str = "*";

pub const HOUR_MS: i64 = 3_600_000;

/// The start of the clock hour (UTC) that `now` falls in.
pub fn hour_start(now: i64) -> i64 {
    now - now.rem_euclid(HOUR_MS)
}

/// Counts one message of `channel` for `scope_key` in the hour starting at
/// `hour_start`, unless the count has reached `cap` (0: no cap). Returns whether it was
/// counted. One statement, so concurrent senders on any node cannot both take the last
/// place; on PostgreSQL the row stays locked until the caller's transaction ends.
pub async fn count(
    conn: &mut AnyConnection,
    scope_key: &str,
    channel: &str,
    hour_start: i64,
    cap: u32,
) -> Result<bool, sqlx::Error> {
    let counted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO message_counts (scope_key, channel, hour_start, sent) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (scope_key, channel, hour_start) DO UPDATE SET sent = message_counts.sent + 1 \
         WHERE $4 = 0 OR message_counts.sent < $4 \
         RETURNING sent",
    )
    .bind(scope_key)
    .bind(channel)
    .bind(hour_start)
    .bind(i64::from(cap))
    .fetch_optional(conn)
    .await?;
    Ok(counted.is_some())
}

/// Messages of `channel` counted for `scope_key` in the hour starting at `hour_start`.
pub async fn sent(pool: &AnyPool, scope_key: &str, channel: &str, hour_start: i64) -> Result<u64, sqlx::Error> {
    let n: Option<i64> =
        sqlx::query_scalar("SELECT sent FROM message_counts WHERE scope_key = $1 AND channel = $2 AND hour_start = $3")
            .bind(scope_key)
            .bind(channel)
            .bind(hour_start)
            .fetch_optional(pool)
            .await?;
    Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
}

/// Forgets the counts of hours that started before `before`.
pub async fn purge(pool: &AnyPool, before: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM message_counts WHERE hour_start < $1").bind(before).execute(pool).await?;
    Ok(r.rows_affected())
}
