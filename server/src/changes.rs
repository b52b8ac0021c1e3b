//! Change notifications between nodes. Several `twofold` nodes over one PostgreSQL keep
//! their caches (scope settings, tenant features, role assignments) coherent: every
//! write publishes what it changed with `pg_notify` inside its transaction, so the
//! notice goes out exactly when the change commits, and each node listens and drops the
//! stale entries. If the listening connection breaks, notices may be lost, so the node
//! drops everything it cached and reloads roles before listening again; the caches'
//! short time-to-live bounds staleness even then. SQLite deployments are one node and
//! publish nothing.
//!
//! Changes to users' policy inputs (their 2FA switch, their groups and the groups'
//! rules) are announced by the database's own triggers rather than by the code that
//! writes them (migrations `postgres/0014` and `sqlite/0012`), so no statement can make
//! one unheard: on PostgreSQL as a `subjects` notice on the same channel, on SQLite as a
//! count that [`spawn_subject_poll`] reads.

use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;

use crate::app::AppState;
use crate::db::Backend;

const CHANNEL: &str = "twofold_changes";

/// What a write changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    Settings(&'a str),
    Feature(&'a str),
    Roles,
}

impl Change<'_> {
    /// The channel and payload of this change's notice, for a statement that sends it
    /// with its own writes (`pg_notify` inside a larger statement) instead of
    /// [`publish`].
    pub fn notice(&self) -> (&'static str, String) {
        (CHANNEL, self.payload())
    }

    fn payload(&self) -> String {
        match self {
            Change::Settings(scope) => format!("settings:{scope}"),
            Change::Feature(tenant) => format!("feature:{tenant}"),
            Change::Roles => "roles".to_owned(),
        }
    }
}

/// Publishes a change inside the caller's transaction (delivered on commit).
pub async fn publish(
    conn: &mut impl crate::db::direct::Exec,
    backend: Backend,
    change: Change<'_>,
) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        conn.run("SELECT pg_notify($1, $2)", &crate::db::direct::args![CHANNEL, change.payload()]).await?;
    }
    Ok(())
}

/// Applies a change to this node's caches.
pub async fn apply(state: &AppState, payload: &str) {
    if let Some(scope) = payload.strip_prefix("settings:") {
        state.cache().invalidate_settings(scope);
    } else if let Some(tenant) = payload.strip_prefix("feature:") {
        state.cache().invalidate_feature(tenant);
    } else if payload == "subjects" {
        state.cache().subjects_changed();
    } else if payload == "roles"
        && let Err(e) = state.reload_roles().await
    {
        tracing::warn!(error = %e, "reloading role assignments failed");
    }
}

/// Listens for changes made by other nodes, for as long as the process runs.
pub fn spawn_listener(state: AppState, url: String) {
    tokio::spawn(async move {
        loop {
            match listen(&state, &url).await {
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "change listener lost its connection; reconnecting"),
            }
            // Whatever was published while we were away is unknown: forget it all.
            state.cache().subject_feed_connected(false);
            state.cache().invalidate_all();
            if let Err(e) = state.reload_roles().await {
                tracing::warn!(error = %e, "reloading role assignments failed");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

async fn listen(state: &AppState, url: &str) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    // Anything cached before the listener was up may be stale.
    state.cache().invalidate_all();
    state.cache().subject_feed_connected(true);
    // From here on other nodes' changes reach this node again; operators (and the
    // multi-node test) need to see when that is, especially after an outage.
    tracing::info!("change listener connected");
    loop {
        // `try_recv` answers `None` when the connection dropped, which is when notices
        // can have been lost; return so the caller flushes the caches.
        match listener.try_recv().await? {
            Some(n) => apply(state, n.payload()).await,
            None => return Ok(()),
        }
    }
}

/// Reads SQLite's count of changes to users' policy inputs every
/// [`crate::cache::SUBJECT_POLL`], for as long as the process runs: a count that moved
/// means a change (by this process or another on the same file) that the subjects in
/// memory may not show. Each poll that answers vouches for every change committed before
/// it began; one that fails vouches for nothing, and subjects then answer for half a
/// second only, as they did before the feed was heard.
pub fn spawn_subject_poll(state: AppState) {
    tokio::spawn(async move {
        let mut seen: Option<i64> = None;
        let mut failing = false;
        let mut ticks = tokio::time::interval(crate::cache::SUBJECT_POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let polled = Instant::now();
            match state.db().subject_version().await {
                Ok(Some(n)) => {
                    // The first count read is a change too: subjects read before it
                    // were never vouched for.
                    if seen != Some(n) {
                        state.cache().subjects_changed();
                    }
                    seen = Some(n);
                    state.cache().subjects_heard_until(polled);
                    failing = false;
                }
                Ok(None) => return,
                Err(e) => {
                    // Once per outage, not ten times a second.
                    if !failing {
                        tracing::warn!(error = %e, "reading the count of policy input changes failed");
                    }
                    failing = true;
                }
            }
        }
    });
}
