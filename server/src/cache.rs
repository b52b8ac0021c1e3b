//! Cached policy inputs: scope settings and tenant features, which every effective
//! policy read needs and which change rarely. Every write through this node
//! invalidates the entry it changed before answering, so the next request sees it; the
//! time-to-live bounds staleness for changes made elsewhere.
//!
//! Also the rows every authenticated request reads (its session with its user, and for
//! policy reads the target user and their group rules; for an authorization request
//! the application and the user's grant to it), kept for at most
//! [`RECENT_TTL`]. Too many writes change those rows to invalidate them one by one, so
//! an entry is used only while this process has committed no write since it was read
//! ([`Db::writes_seen`]): on this node every change is seen by the next request. A write
//! on another node (or by another process on the same SQLite file) is seen within
//! [`RECENT_TTL`], which bounds how long a session revoked there still works here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use twofold_policy::{GroupRule, ScopeSettings, TenantFeature};

use crate::db::oidc::{self as odb, ApplicationRow, GrantRow};
use crate::db::{Db, SessionRow, UserRow};
use crate::error::{AppError, AppResult};

/// How long a session, user or group-rule row read from the database may answer for
/// it: the longest a change made on another node goes unseen here.
pub const RECENT_TTL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct PolicyCache {
    settings: Cache<String, ScopeSettings>,
    features: Cache<String, TenantFeature>,
    sessions: Recent<Arc<SessionRow>>,
    subjects: Recent<Arc<(UserRow, Vec<GroupRule>)>>,
    applications: Recent<Arc<ApplicationRow>>,
    grants: Recent<Arc<GrantRow>>,
}

/// Rows read recently, each with the count of this process's writes when it was read.
///
/// On quick_cache rather than moka, whose expiry and admission bookkeeping took an
/// eighth of the server's time in the effective-policy read, where nearly every entry is
/// read once, expires, and is replaced (BENCHMARKS.md, "Flamegraphs, before and after").
/// An entry is used only while it is younger than [`RECENT_TTL`]; an expired one stays
/// until a newer one takes its place or the capacity evicts it, so the capacity bounds
/// the memory.
#[derive(Clone)]
struct Recent<V: Clone> {
    entries: Arc<quick_cache::sync::Cache<String, (u64, Instant, V)>>,
}

impl<V: Clone> std::fmt::Debug for Recent<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recent").field("entries", &self.entries.len()).finish()
    }
}

impl<V: Clone> Recent<V> {
    fn new(capacity: usize) -> Self {
        Self { entries: Arc::new(quick_cache::sync::Cache::new(capacity)) }
    }

    /// The row of `key`: from memory while no write has happened since it was read and
    /// for at most [`RECENT_TTL`], otherwise from `load` (and remembered, unless a write
    /// happened meanwhile).
    async fn get<F, E>(&self, db: &Db, key: &str, load: F) -> Result<Option<V>, E>
    where
        F: Future<Output = Result<Option<V>, E>>,
    {
        let seen = db.writes_seen();
        let started = Instant::now();
        if let Some((at, read_at, value)) = self.entries.get(key)
            && at == seen
            && started.saturating_duration_since(read_at) < RECENT_TTL
        {
            return Ok(Some(value));
        }
        let loaded = load.await?;
        if let Some(value) = &loaded {
            // Stamped with the count and the time from before the read: if a write
            // committed while it ran, the entry is already out of date and the next
            // request reloads.
            self.entries.insert(key.to_owned(), (seen, started, value.clone()));
        }
        Ok(loaded)
    }

    fn forget(&self, key: &str) {
        self.entries.remove(key);
    }

    fn clear(&self) {
        self.entries.clear();
    }
}

impl PolicyCache {
    pub fn new(ttl: Duration) -> Self {
        // One entry per tenant is small (tens of bytes); 100k entries bounds memory to a
        // few megabytes even with very many tenants.
        Self {
            settings: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            features: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            // An entry answers for half a second: these hold the sessions and users of
            // the last few thousand requests, a few megabytes at most (a session or a
            // user row is about 1 KiB), which is all that half a second of requests
            // reads again at the rates this node reaches.
            sessions: Recent::new(4_096),
            subjects: Recent::new(4_096),
            applications: Recent::new(1_024),
            grants: Recent::new(4_096),
        }
    }

    /// The session with `token_hash` and its user, as [`Db::session`] reads them.
    pub async fn session(&self, db: &Db, token_hash: &str) -> AppResult<Option<Arc<SessionRow>>> {
        Ok(self
            .sessions
            .get(db, token_hash, async { Ok::<_, anyhow::Error>(db.session(token_hash).await?.map(Arc::new)) })
            .await?)
    }

    /// Drops a session read from memory that looked ended, so the caller decides on the
    /// stored row.
    pub fn forget_session(&self, token_hash: &str) {
        self.sessions.forget(token_hash);
    }

    /// A user with their group rules, for requests that only read them.
    pub async fn user_with_rules(&self, db: &Db, user_id: &str) -> AppResult<Option<Arc<(UserRow, Vec<GroupRule>)>>> {
        let load = async { Ok::<_, anyhow::Error>(db.user_with_rules(user_id).await?.map(Arc::new)) };
        Ok(self.subjects.get(db, user_id, load).await?)
    }

    /// The application (OpenID client) `id`.
    pub async fn application(&self, db: &Db, id: &str) -> AppResult<Option<Arc<ApplicationRow>>> {
        let load = async { Ok::<_, sqlx::Error>(odb::get_application(&db.pool, id).await?.map(Arc::new)) };
        Ok(self.applications.get(db, id, load).await?)
    }

    /// `user_id`'s grant to the application `application_id`.
    pub async fn grant(&self, db: &Db, user_id: &str, application_id: &str) -> AppResult<Option<Arc<GrantRow>>> {
        let load = async {
            let mut conn = db.pool.acquire().await?;
            Ok::<_, sqlx::Error>(odb::find_grant(&mut *conn, user_id, application_id).await?.map(Arc::new))
        };
        Ok(self.grants.get(db, &format!("{user_id} {application_id}"), load).await?)
    }

    pub async fn settings(&self, db: &Db, scope_key: &str) -> AppResult<ScopeSettings> {
        let cached = self.settings.get(scope_key);
        crate::metrics::cache_read("settings", cached.is_some());
        if let Some(s) = cached {
            return Ok(s);
        }
        let s = db.settings(scope_key).await?;
        self.settings.insert(scope_key.to_owned(), s.clone());
        Ok(s)
    }

    pub async fn feature(&self, db: &Db, tenant_id: &str) -> AppResult<TenantFeature> {
        let cached = self.features.get(tenant_id);
        crate::metrics::cache_read("features", cached.is_some());
        if let Some(f) = cached {
            return Ok(f);
        }
        let tenant = db.tenant(tenant_id).await?.ok_or(AppError::NotFound("tenant"))?;
        let f = tenant.feature()?;
        self.features.insert(tenant_id.to_owned(), f);
        Ok(f)
    }

    pub fn get_settings_cached(&self, scope_key: &str) -> Option<ScopeSettings> {
        self.settings.get(scope_key)
    }

    pub fn invalidate_settings(&self, scope_key: &str) {
        self.settings.invalidate(scope_key);
    }

    pub fn invalidate_feature(&self, tenant_id: &str) {
        self.features.invalidate(tenant_id);
    }

    pub fn invalidate_all(&self) {
        self.settings.invalidate_all();
        self.features.invalidate_all();
        self.sessions.clear();
        self.subjects.clear();
        self.applications.clear();
        self.grants.clear();
    }
}
