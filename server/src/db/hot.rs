//! The connections of PostgreSQL's hottest statements, lent without sqlx's pool.
//!
//! sqlx's pool pings every connection given back to it, unconditionally, before another
//! request may have it: a `Sync` message and its `ReadyForQuery`, one more round trip to
//! PostgreSQL after a statement that took one. During a verification those pings were
//! half of PostgreSQL's round trips (BENCHMARKS.md). Here a connection goes back as it
//! is when its statement ran to its end, and is closed otherwise: a statement that failed
//! or was cut off by a client that went away may have left the protocol between two
//! messages, and a new connection costs less than finding out. As in the main pool, a
//! connection idle for a while is pinged before it is lent, so one that PostgreSQL closed
//! meanwhile (a restart) is replaced instead of failing a request.
//!
//! Only single statements run here, each in a transaction of its own (a verification's
//! read, reservation and completing statement, the session and effective-policy reads,
//! and the writes of a request's path that need no transaction, `Db::write_one`): a
//! connection goes back with no transaction open.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::AnyConnection;
use sqlx::any::AnyConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A connection idle this long is closed instead of lent: each one is a PostgreSQL
/// process, and a burst should not hold them for the rest of the day (sqlx's default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Pool {
    options: AnyConnectOptions,
    permits: Semaphore,
    max: usize,
    idle: Mutex<Vec<Idle>>,
    acquire_timeout: Duration,
    ping_after_idle: Duration,
}

struct Idle {
    conn: AnyConnection,
    since: Instant,
}

/// A connection lent until [`Lent::settle`] gives it back; dropped unsettled, it is
/// closed.
pub struct Lent<'p> {
    pool: &'p Pool,
    conn: Option<AnyConnection>,
    reusable: bool,
    _permit: SemaphorePermit<'p>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (open, idle) = self.counts();
        f.debug_struct("hot::Pool").field("open", &open).field("idle", &idle).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Lent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("hot::Lent").field("reusable", &self.reusable).finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(options: AnyConnectOptions, max: u32, acquire_timeout: Duration, ping_after_idle: Duration) -> Self {
        let max = usize::try_from(max).unwrap_or(usize::MAX).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            options,
            permits: Semaphore::new(max),
            max,
            idle: Mutex::new(Vec::new()),
            acquire_timeout,
            ping_after_idle,
        }
    }

    /// A connection: an idle one, or a new one while fewer than the maximum are lent.
    /// Waits as long as the main pool does, then fails with `PoolTimedOut`, which
    /// answers 503 like any outage.
    pub async fn get(&self) -> Result<Lent<'_>, sqlx::Error> {
        tokio::time::timeout(self.acquire_timeout, self.lend()).await.map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn lend(&self) -> Result<Lent<'_>, sqlx::Error> {
        let permit = self.permits.acquire().await.map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let Some(Idle { mut conn, since }) = self.idle_list().pop() else { break };
            let idle_for = since.elapsed();
            if idle_for < self.ping_after_idle || (idle_for < IDLE_TIMEOUT && conn.ping().await.is_ok()) {
                return Ok(Lent { pool: self, conn: Some(conn), reusable: false, _permit: permit });
            }
        }
        let conn = self.options.connect().await?;
        Ok(Lent { pool: self, conn: Some(conn), reusable: false, _permit: permit })
    }

    /// Lends nothing more and closes the idle connections; those lent are closed when
    /// they come back.
    pub async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle_list());
        for Idle { conn, .. } in idle {
            let _ = conn.close().await;
        }
    }

    /// Connections open (lent or idle), and idle.
    pub fn counts(&self) -> (usize, usize) {
        let idle = self.idle_list().len();
        // A connection lent (or being opened) holds a permit; an idle one does not.
        let lent = self.max.saturating_sub(self.permits.available_permits());
        (lent + idle, idle)
    }

    fn idle_list(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Lent<'_> {
    /// The connection lent.
    pub fn conn(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        // `None` only once dropped; `PoolClosed` keeps this path free of a panic.
        self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// Gives the connection back after its statement, when that ran to its end.
    pub fn settle<T, E>(mut self, result: Result<T, E>) -> Result<T, E> {
        self.reusable = result.is_ok();
        result
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.reusable || self.pool.permits.is_closed() {
            // Not closed politely: it may be mid-message, and `close` would wait on it.
            return;
        }
        let mut idle = self.pool.idle_list();
        let stale = idle.first().is_some_and(|oldest| oldest.since.elapsed() >= IDLE_TIMEOUT);
        let oldest = stale.then(|| idle.remove(0));
        idle.push(Idle { conn, since: Instant::now() });
        drop(idle);
        if let Some(Idle { conn, .. }) = oldest
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = conn.close().await;
            });
        }
    }
}
