//! Housekeeping: deletes what can never be used again (expired one-time codes, pending
//! sign-ins, sessions and remembered browsers) and, when `audit_retention_days` is set,
//! audit events older than that, so tables do not grow forever. Runs on a schedule
//! (`app::start`) in bounded batches; on PostgreSQL only one node at a time, under an
//! advisory lock. It never touches a row that is still usable: the cut-off is the app's
//! clock, the same one every expiry check reads.

use sqlx::Connection;

use crate::app::AppState;
use crate::db::Backend;
use crate::db::housekeeping::{self as store, Expiring};

const DAY_MS: i64 = 86_400_000;

/// Rows deleted by one run, per table, and the statements it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub one_time_codes: u64,
    pub sign_in_attempts: u64,
    pub sessions: u64,
    pub remembered_browsers: u64,
    pub audit_events: u64,
    /// OpenID Connect requests, codes, refresh tokens and token families together.
    pub oidc: u64,
    pub batches: u64,
}

impl Report {
    pub fn total(&self) -> u64 {
        self.one_time_codes
            + self.sign_in_attempts
            + self.sessions
            + self.remembered_browsers
            + self.audit_events
            + self.oidc
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ran(Report),
    /// Another node holds the lock and is doing the same work.
    Skipped,
}

/// One housekeeping run.
pub async fn run_once(state: &AppState) -> anyhow::Result<Outcome> {
    match state.db().backend {
        // One process owns a SQLite file; there is nobody to coordinate with.
        Backend::Sqlite => Ok(Outcome::Ran(purge_all(state).await?)),
        Backend::Postgres => {
            // Session-level advisory locks belong to a connection: taken out of the pool
            // so the lock cannot linger on a connection some request reuses later.
            let mut conn = state.db().pool.acquire().await?.detach();
            if !store::try_advisory_lock(&mut conn).await? {
                let _ = conn.close().await;
                return Ok(Outcome::Skipped);
            }
            let result = purge_all(state).await;
            // Closing the session releases the lock even if the unlock fails.
            if let Err(e) = store::advisory_unlock(&mut conn).await {
                tracing::debug!(error = %e, "releasing the housekeeping lock failed; closing its connection");
            }
            let _ = conn.close().await;
            Ok(Outcome::Ran(result?))
        }
    }
}

async fn purge_all(state: &AppState) -> anyhow::Result<Report> {
    let now = state.now();
    let batch = state.config().housekeeping_batch_size.max(1);
    let mut report = Report::default();
    for what in [
        Expiring::OneTimeCodes,
        Expiring::SignInAttempts,
        Expiring::WebauthnChallenges,
        Expiring::Sessions,
        Expiring::RememberedBrowsers,
        Expiring::OidcRequests,
        Expiring::OidcCodes,
        Expiring::OidcRefreshTokens,
        Expiring::OidcTokenFamilies,
    ] {
        let (deleted, batches) = purge(state, what, now, batch).await?;
        *count_of(&mut report, what) += deleted;
        report.batches += batches;
    }
    if let Some(days) = state.config().audit_retention_days {
        let cut_off = now.saturating_sub(i64::from(days).saturating_mul(DAY_MS));
        let (deleted, batches) = purge(state, Expiring::AuditEvents, cut_off, batch).await?;
        report.audit_events += deleted;
        report.batches += batches;
    }
    Ok(report)
}

/// Deletes batch after batch until one comes back short.
async fn purge(state: &AppState, what: Expiring, cut_off: i64, batch: u32) -> anyhow::Result<(u64, u64)> {
    let (mut deleted, mut batches) = (0, 0);
    loop {
        let n = state.db().write(move |w| async move { store::purge_batch(&w, what, cut_off, batch).await }).await?;
        deleted += n;
        batches += 1;
        if n < u64::from(batch) {
            return Ok((deleted, batches));
        }
        // Let sign-ins waiting for the database in between.
        tokio::task::yield_now().await;
    }
}

fn count_of(report: &mut Report, what: Expiring) -> &mut u64 {
    match what {
        Expiring::OneTimeCodes => &mut report.one_time_codes,
        // A ceremony is part of a sign-in (or of one about to start): counted with them.
        Expiring::SignInAttempts | Expiring::WebauthnChallenges => &mut report.sign_in_attempts,
        Expiring::Sessions => &mut report.sessions,
        Expiring::RememberedBrowsers => &mut report.remembered_browsers,
        Expiring::AuditEvents => &mut report.audit_events,
        Expiring::OidcRequests | Expiring::OidcCodes | Expiring::OidcRefreshTokens | Expiring::OidcTokenFamilies => {
            &mut report.oidc
        }
    }
}
