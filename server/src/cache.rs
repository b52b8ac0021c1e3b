//! Cached policy inputs: scope settings and tenant features, which every effective
//! policy read needs and which change rarely. Every write through this node
//! invalidates the entry it changed before answering, so the next request sees it; the
//! time-to-live bounds staleness for changes made elsewhere.
//!
//! Also the rows every authenticated request reads (its session with its user; for an
//! authorization request the application and the user's grant to it; for a request to
//! a tenant's issuer, the tenant it names), kept for at most
//! [`RECENT_TTL`]. Too many writes change those rows to invalidate them one by one, so
//! an entry is used only while this process has committed no write since it was read
//! that could have changed it ([`crate::db::stamps`]: a write of anything, which every
//! write is unless its code says less, or of the entry's own user): on this node every
//! change is seen by the next request. A write
//! on another node (or by another process on the same SQLite file) is seen within
//! [`RECENT_TTL`], which bounds how long a session revoked there still works here.
//! Applications are counted apart: two statements change or remove one (a new one
//! replaces nothing kept, since only rows found are kept), and the transactions that
//! run those count their commits ([`Db::application_writes_seen`]), so the application
//! a stream of token exchanges names stays in memory through the exchanges' own writes.
//!
//! A user's policy inputs (their scope, their 2FA switch and their groups' rules: a
//! [`Subject`]) follow the same rule on this node, but changes made elsewhere reach
//! them through the database itself: its triggers count every change to those columns
//! and tables (SQLite, polled every [`SUBJECT_POLL`]) or announce it on the change feed
//! (PostgreSQL). While that feed is known to be current a subject answers for as long as
//! a pending sign-in lives (or settings, if they are kept longer); whenever it is not
//! (the listener lost its connection, the poll failed or fell behind), for
//! [`RECENT_TTL`] again. At 20,000 users and more, reads come back to a user less often
//! than every half second, so without this nearly every read was a round trip to the
//! database (BENCHMARKS.md, "Users' policy inputs kept while the database says they
//! hold"); and the inputs a password step read still answer when its code arrives,
//! seconds to minutes later, since the sign-in's own writes do not touch them
//! ([`crate::db::Touches::activity_of`]; BENCHMARKS.md, "Policy inputs kept for a
//! sign-in's life").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use twofold_policy::{ScopeSettings, TenantFeature};

pub use crate::db::groups::Subject;
use crate::db::oidc::{ApplicationRow, GrantRow};
use crate::db::stamps::{user_stamp, uuid_stamp};
use crate::db::{Db, SessionRow, Stamps, TenantRow};
use crate::error::{AppError, AppResult};

/// How long a session (with its user), an application or a grant read from the
/// database may answer for it, and a user's policy inputs while changes made elsewhere
/// are not known to be heard: the longest a change made on another node goes unseen
/// here.
pub const RECENT_TTL: Duration = Duration::from_millis(500);

/// How often a server on SQLite reads the count of changes to users' policy inputs.
pub const SUBJECT_POLL: Duration = Duration::from_millis(100);

/// Whether changes to users' policy inputs made elsewhere are being heard, and a count
/// that moves with each one heard.
#[derive(Debug)]
struct SubjectFeed {
    /// Moves whenever a change is heard (or may have been missed): an entry read under
    /// another value is not used.
    generation: AtomicU64,
    /// Until when, in milliseconds after `base`, every change made elsewhere is known to
    /// have been heard within [`RECENT_TTL`]: 0 while nothing is listening, `u64::MAX`
    /// while PostgreSQL's listener is connected, a poll's start plus [`RECENT_TTL`] on
    /// SQLite.
    live_until: AtomicU64,
    base: Instant,
}

impl SubjectFeed {
    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    fn live_at(&self, now: Instant) -> bool {
        self.millis(now) < self.live_until.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone)]
pub struct PolicyCache {
    settings: Expiring<ScopeSettings>,
    features: Expiring<TenantFeature>,
    sessions: Recent<Arc<SessionRow>>,
    subjects: Subjects,
    subject_feed: Arc<SubjectFeed>,
    applications: Recent<Arc<ApplicationRow>>,
    grants: Recent<Arc<GrantRow>>,
    tenants_by_name: Recent<Arc<TenantRow>>,
}

/// Entries that answer for a fixed time after they were read from the database, on
/// quick_cache rather than moka: moka's expiry and admission bookkeeping took an eighth
/// of the server's time in the effective-policy read, where nearly every entry of the
/// recent rows is read once, expires, and is replaced, and at 10,000 tenants the
/// settings and features churn too (BENCHMARKS.md, "Flamegraphs, before and after").
/// An expired entry is never used; it stays until a newer one takes its place or the
/// capacity evicts it, so the capacity bounds the memory.
#[derive(Clone)]
struct Expiring<V: Clone> {
    entries: Arc<quick_cache::sync::Cache<String, (Instant, V)>>,
    ttl: Duration,
}

impl<V: Clone> std::fmt::Debug for Expiring<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expiring").field("entries", &self.entries.len()).field("ttl", &self.ttl).finish()
    }
}

impl<V: Clone> Expiring<V> {
    fn new(capacity: usize, ttl: Duration) -> Self {
        Self { entries: Arc::new(quick_cache::sync::Cache::new(capacity)), ttl }
    }

    /// The entry of `key`, unless it was read `ttl` or longer before `now`.
    fn get(&self, key: &str, now: Instant) -> Option<V> {
        let (read_at, value) = self.entries.get(key)?;
        (now.saturating_duration_since(read_at) < self.ttl).then_some(value)
    }

    /// Remembers `value`, read from the database at `read_at`.
    fn insert(&self, key: &str, read_at: Instant, value: V) {
        self.entries.insert(key.to_owned(), (read_at, value));
    }

    fn forget(&self, key: &str) {
        self.entries.remove(key);
    }

    fn clear(&self) {
        self.entries.clear();
    }
}

/// Users' policy inputs in memory. At a million users nearly every entry is read once
/// and evicted, and the entries count against the memory target there, so each is kept
/// small: keyed by the user id's 128 bits rather than its text, holding the subject
/// itself rather than a pointer to it, and sharing one string per tenant (BENCHMARKS.md,
/// "Users' policy inputs kept while the database says they hold").
#[derive(Clone)]
struct Subjects {
    entries: Arc<quick_cache::sync::Cache<u128, SubjectEntry>>,
    tenants: Arc<quick_cache::sync::Cache<Arc<str>, Arc<str>>>,
    ttl: Duration,
}

impl std::fmt::Debug for Subjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subjects").field("entries", &self.entries.len()).field("ttl", &self.ttl).finish()
    }
}

impl Subjects {
    /// 32,768 subjects hold every user of a deployment of 20,000 in 4 to 5 MiB. The
    /// cache also remembers the keys of recently evicted entries, to admit a key seen
    /// again as hot; by default it keeps half as many of those as entries, each in a
    /// slot as large as an entry's, which took another 3 MiB at a million users, where
    /// nearly every key is seen once. A twentieth is kept instead.
    fn new(ttl: Duration) -> Self {
        let entries = match Self::options() {
            Some(options) => quick_cache::sync::Cache::with_options(
                options,
                Default::default(),
                Default::default(),
                Default::default(),
            ),
            // Only if the options were inconsistent, which a test would show.
            None => quick_cache::sync::Cache::new(Self::CAPACITY),
        };
        Self { entries: Arc::new(entries), tenants: Arc::new(quick_cache::sync::Cache::new(100_000)), ttl }
    }

    const CAPACITY: usize = 32_768;

    fn options() -> Option<quick_cache::Options> {
        quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(Self::CAPACITY)
            .weight_capacity(Self::CAPACITY as u64)
            .ghost_allocation(0.05)
            .build()
            .ok()
    }

    /// The one shared string of `tenant`.
    fn tenant(&self, tenant: Arc<str>) -> Arc<str> {
        if let Some(shared) = self.tenants.get(&*tenant) {
            return shared;
        }
        self.tenants.insert(tenant.clone(), tenant.clone());
        tenant
    }
}

/// A subject with what held when it was read: the time, the stamp of this process's
/// writes and the feed's generation.
#[derive(Debug, Clone)]
struct SubjectEntry {
    read_at: Instant,
    seen: u64,
    generation: u64,
    subject: Subject,
}

/// The key of `user_id` among the subjects: its 128 bits, when it is a UUID written as
/// this server writes them (lower case, hyphenated); any other spelling is not cached,
/// since the database would not find the same row for it.
fn subject_key(user_id: &str) -> Option<u128> {
    let id = uuid::Uuid::try_parse(user_id).ok()?;
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (id.hyphenated().encode_lower(&mut text) == user_id).then(|| id.as_u128())
}

/// Rows read recently, each with the count of this process's writes when it was read,
/// used for at most [`RECENT_TTL`].
#[derive(Debug, Clone)]
struct Recent<V: Clone> {
    /// Each row with the stamp from before its read and its user's stamp.
    entries: Expiring<(u64, usize, V)>,
}

impl<V: Clone> Recent<V> {
    fn new(capacity: usize) -> Self {
        Self { entries: Expiring::new(capacity, RECENT_TTL) }
    }

    /// The row of `key` of `user`: from memory while no write that could change it has
    /// committed since it was read ([`Stamps::current`]) and for at most [`RECENT_TTL`],
    /// otherwise from `load` (and remembered, stamped as of before the read).
    async fn get<F, E>(&self, db: &Db, key: &str, user: impl Fn(&V) -> &str, load: F) -> Result<Option<V>, E>
    where
        F: Future<Output = Result<Option<V>, E>>,
    {
        let stamps = db.stamps();
        let current = |seen, stamp| stamps.current_at(seen, Some(stamp));
        self.get_as_of(stamps.seen(), key, |value| user_stamp(user(value)), current, load).await
    }

    /// [`Recent::get`] with the stamp of the writes that can change these rows, `seen`,
    /// read before anything else; `stamp`, which finds a row's user stamp once, when it
    /// is kept; and `current`, which says whether an entry stamped so is still current.
    async fn get_as_of<F, E>(
        &self,
        seen: u64,
        key: &str,
        stamp: impl Fn(&V) -> usize,
        current: impl Fn(u64, usize) -> bool,
        load: F,
    ) -> Result<Option<V>, E>
    where
        F: Future<Output = Result<Option<V>, E>>,
    {
        let started = Instant::now();
        if let Some((at, user, value)) = self.entries.get(key, started)
            && current(at, user)
        {
            return Ok(Some(value));
        }
        let loaded = load.await?;
        if let Some(value) = &loaded {
            // Stamped with the count and the time from before the read: if a write
            // committed while it ran, the entry is already out of date and the next
            // request reloads.
            self.entries.insert(key, started, (seen, stamp(value), value.clone()));
        }
        Ok(loaded)
    }

    fn forget(&self, key: &str) {
        self.entries.forget(key);
    }

    fn clear(&self) {
        self.entries.clear();
    }
}

impl PolicyCache {
    /// Settings and features answer for `ttl`; users' policy inputs, while the feed of
    /// changes vouches for them, for `inputs_ttl` or `ttl`, whichever is longer.
    pub fn new(ttl: Duration, inputs_ttl: Duration) -> Self {
        // One entry per tenant is small (tens of bytes); 100k entries bounds memory to a
        // few megabytes even with very many tenants.
        Self {
            settings: Expiring::new(100_000, ttl),
            features: Expiring::new(100_000, ttl),
            // An entry answers for half a second: these hold the sessions of the last
            // few thousand requests, a few megabytes at most (a session or a
            // user row is about 1 KiB), which is all that half a second of requests
            // reads again at the rates this node reaches.
            sessions: Recent::new(4_096),
            subjects: Subjects::new(ttl.max(inputs_ttl).max(RECENT_TTL)),
            subject_feed: Arc::new(SubjectFeed {
                generation: AtomicU64::new(0),
                live_until: AtomicU64::new(0),
                base: Instant::now(),
            }),
            applications: Recent::new(1_024),
            grants: Recent::new(4_096),
            tenants_by_name: Recent::new(4_096),
        }
    }

    /// The session with `token_hash` and its user, as [`Db::session`] reads them.
    pub async fn session(&self, db: &Db, token_hash: &str) -> AppResult<Option<Arc<SessionRow>>> {
        let mut hit = true;
        let load = async {
            hit = false;
            Ok::<_, anyhow::Error>(db.session(token_hash).await?.map(Arc::new))
        };
        let session = self.sessions.get(db, token_hash, |s| &s.user_id, load).await?;
        crate::metrics::cache_read("sessions", hit);
        Ok(session)
    }

    /// Drops a session read from memory that looked ended, so the caller decides on the
    /// stored row.
    pub fn forget_session(&self, token_hash: &str) {
        self.sessions.forget(token_hash);
    }

    /// A user's policy inputs, for requests that only read them: from memory unless this
    /// process wrote them, or a change was heard, since they were read, and for as long
    /// as a pending sign-in lives while the feed of changes is current (otherwise for
    /// [`RECENT_TTL`]).
    pub async fn subject(&self, db: &Db, user_id: &str) -> AppResult<Option<Subject>> {
        let Some(key) = subject_key(user_id) else {
            // Not an id as this server writes them (the database would compare the text
            // as given): read it as asked and keep nothing.
            return Ok(db.subject(user_id).await?);
        };
        let seen = db.stamps().seen();
        let generation = self.subject_feed.generation.load(Ordering::Acquire);
        let started = Instant::now();
        let cached = self.cached_subject(db.stamps(), key, generation, started);
        crate::metrics::cache_read("subjects", cached.is_some());
        if let Some(subject) = cached {
            return Ok(Some(subject));
        }
        // Nothing but the subject is kept, so nothing of the user row that changes
        // without a trigger's notice (the sign-in counters, the password, the security
        // stamp) can be read stale from here.
        let mut loaded = db.subject(user_id).await?;
        if let Some(subject) = &mut loaded {
            subject.tenant_id = subject.tenant_id.take().map(|t| self.subjects.tenant(t));
            // Stamped with what held before the read: if a write committed or a change
            // was heard while it ran, the entry is already out of date and the next
            // request reads again.
            let entry = SubjectEntry { read_at: started, seen, generation, subject: subject.clone() };
            self.subjects.entries.insert(key, entry);
        }
        Ok(loaded)
    }

    /// A user's policy inputs if [`Self::subject`] would answer them from memory now;
    /// `None` where it would read them, which this never does. Counted as a hit only:
    /// a caller that gets `None` has another way to them.
    pub fn kept_subject(&self, db: &Db, user_id: &str) -> Option<Subject> {
        let key = subject_key(user_id)?;
        let generation = self.subject_feed.generation.load(Ordering::Acquire);
        let kept = self.cached_subject(db.stamps(), key, generation, Instant::now())?;
        crate::metrics::cache_read("subjects", true);
        Some(kept)
    }

    fn cached_subject(&self, stamps: &Stamps, key: u128, generation: u64, now: Instant) -> Option<Subject> {
        let entry = self.subjects.entries.get(&key)?;
        let age = now.saturating_duration_since(entry.read_at);
        let fresh = age < RECENT_TTL || (age < self.subjects.ttl && self.subject_feed.live_at(now));
        (fresh && stamps.inputs_current_at(entry.seen, uuid_stamp(key)) && entry.generation == generation)
            .then_some(entry.subject)
    }

    /// A change to some user's policy inputs was heard (or may have been missed): every
    /// subject read before now is out of date.
    pub fn subjects_changed(&self) {
        self.subject_feed.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Every change made elsewhere up to `polled` (when a poll of SQLite's count began)
    /// has been heard: subjects may answer beyond [`RECENT_TTL`] until `polled` plus
    /// [`RECENT_TTL`].
    pub fn subjects_heard_until(&self, polled: Instant) {
        let until = self.subject_feed.millis(polled + RECENT_TTL);
        self.subject_feed.live_until.store(until, Ordering::Release);
    }

    /// PostgreSQL's listener is connected (`true`: every change is heard as it
    /// commits) or not (`false`: subjects answer for [`RECENT_TTL`] only).
    pub fn subject_feed_connected(&self, connected: bool) {
        let until = if connected { u64::MAX } else { 0 };
        self.subject_feed.live_until.store(until, Ordering::Release);
    }

    /// The application (OpenID client) `id`.
    pub async fn application(&self, db: &Db, id: &str) -> AppResult<Option<Arc<ApplicationRow>>> {
        let load = async { Ok::<_, anyhow::Error>(db.application(id).await?.map(Arc::new)) };
        // Stamped with the writes to applications alone: every token exchange writes,
        // and would otherwise send the next one back to the database for its client.
        let seen = db.application_writes_seen();
        // No user's stamp: applications belong to none.
        Ok(self.applications.get_as_of(seen, id, |_| 0, |at, _| at == seen, load).await?)
    }

    /// `user_id`'s grant to the application `application_id`.
    pub async fn grant(&self, db: &Db, user_id: &str, application_id: &str) -> AppResult<Option<Arc<GrantRow>>> {
        let load = async { Ok::<_, sqlx::Error>(db.grant(user_id, application_id).await?.map(Arc::new)) };
        Ok(self.grants.get(db, &format!("{user_id} {application_id}"), |g| &g.user_id, load).await?)
    }

    /// The tenant named `name`, as an issuer under `/t/{tenant}` finds it: every request
    /// to a tenant's OpenID endpoints names its tenant so, and on PostgreSQL each read is
    /// a round trip (BENCHMARKS.md, "Foreign keys that lock a shared row").
    pub async fn tenant_by_name(&self, db: &Db, name: &str) -> AppResult<Option<Arc<TenantRow>>> {
        let load = async { Ok::<_, anyhow::Error>(db.tenant_by_name(name).await?.map(Arc::new)) };
        let stamps = db.stamps();
        // No user's stamp: tenants belong to none.
        let current = |seen, _| stamps.current_at(seen, None);
        Ok(self.tenants_by_name.get_as_of(stamps.seen(), name, |_| 0, current, load).await?)
    }

    pub async fn settings(&self, db: &Db, scope_key: &str) -> AppResult<ScopeSettings> {
        let now = Instant::now();
        let cached = self.settings.get(scope_key, now);
        crate::metrics::cache_read("settings", cached.is_some());
        if let Some(s) = cached {
            return Ok(s);
        }
        let s = db.settings(scope_key).await?;
        self.settings.insert(scope_key, now, s.clone());
        Ok(s)
    }

    pub async fn feature(&self, db: &Db, tenant_id: &str) -> AppResult<TenantFeature> {
        let now = Instant::now();
        let cached = self.features.get(tenant_id, now);
        crate::metrics::cache_read("features", cached.is_some());
        if let Some(f) = cached {
            return Ok(f);
        }
        let tenant = db.tenant(tenant_id).await?.ok_or(AppError::NotFound("tenant"))?;
        let f = tenant.feature()?;
        self.features.insert(tenant_id, now, f);
        Ok(f)
    }

    pub fn get_settings_cached(&self, scope_key: &str) -> Option<ScopeSettings> {
        self.settings.get(scope_key, Instant::now())
    }

    pub fn invalidate_settings(&self, scope_key: &str) {
        self.settings.forget(scope_key);
    }

    pub fn invalidate_feature(&self, tenant_id: &str) {
        self.features.forget(tenant_id);
    }

    pub fn invalidate_all(&self) {
        self.settings.clear();
        self.features.clear();
        self.sessions.clear();
        self.subjects_changed();
        self.subjects.entries.clear();
        self.applications.clear();
        self.grants.clear();
        self.tenants_by_name.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_answers_until_its_time_to_live_has_passed_since_it_was_read() {
        let cache = Expiring::new(16, Duration::from_secs(10));
        let read_at = Instant::now();
        cache.insert("host", read_at, 7);
        assert_eq!(cache.get("host", read_at), Some(7));
        assert_eq!(cache.get("host", read_at + Duration::from_millis(9_999)), Some(7));
        assert_eq!(cache.get("host", read_at + Duration::from_secs(10)), None);
        assert_eq!(cache.get("tenant", read_at), None);
        // A clock that reads earlier than the entry (another thread's `now`) still finds it.
        assert_eq!(cache.get("host", read_at.checked_sub(Duration::from_millis(1)).unwrap_or(read_at)), Some(7));
    }

    #[test]
    fn a_subject_answers_beyond_half_a_second_only_while_the_feed_vouches_for_it() {
        let cache = PolicyCache::new(Duration::from_secs(10), Duration::from_secs(600));
        let stamps = Stamps::default();
        let (user, other) = ("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2c");
        let key = subject_key(user).unwrap_or_default();
        let read_at = Instant::now();
        let subject = Subject { tenant_id: None, two_factor_enabled: true, groups: Vec::new() };
        let entry = |generation| SubjectEntry { read_at, seen: stamps.seen(), generation, subject: subject.clone() };
        cache.subjects.entries.insert(key, entry(0));
        let at = |ms| read_at + Duration::from_millis(ms);
        // Nothing heard yet: the recent rows' half second.
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(499)), Some(subject.clone()));
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(500)), None);
        // A poll that began 300 ms after the read vouches until 800 ms.
        cache.subjects_heard_until(at(300));
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(799)), Some(subject.clone()));
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(800)), None);
        // A connected listener vouches until it is not, beyond the settings' ten seconds
        // for as long as a pending sign-in lives; that time still ends it.
        cache.subject_feed_connected(true);
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(10_000)), Some(subject.clone()));
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(599_999)), Some(subject.clone()));
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(600_000)), None);
        // A write of another user's rows, or of none kept, or this user's sign-in, leaves
        // it; one of this user's rows, or of anything, ends it.
        stamps.committed([
            crate::db::Touches::user(other),
            crate::db::Touches::NothingKept,
            crate::db::Touches::activity_of(user),
        ]);
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(1)), Some(subject.clone()));
        stamps.committed([crate::db::Touches::user(user)]);
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(1)), None);
        cache.subjects.entries.insert(key, entry(0));
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(1)), Some(subject.clone()));
        stamps.committed([crate::db::Touches::Anything]);
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(1)), None);
        // Another count of changes heard is another state.
        cache.subjects.entries.insert(key, entry(0));
        cache.subjects_changed();
        assert_eq!(cache.cached_subject(&stamps, key, 0, at(1)), Some(subject.clone()), "the caller's stamp decides");
        assert_eq!(cache.cached_subject(&stamps, key, 1, at(1)), None);
        cache.subject_feed_connected(false);
        cache.subjects.entries.insert(key, entry(1));
        assert_eq!(cache.cached_subject(&stamps, key, 1, at(600)), None);
        assert_eq!(cache.subject_feed.generation.load(Ordering::Acquire), 1);
        assert_eq!(subject.scope_key(), crate::db::HOST_SCOPE);
    }

    #[test]
    fn only_an_id_spelled_as_the_server_writes_it_is_a_key() {
        let id = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b";
        assert_eq!(subject_key(id), Some(0x0190a1b2_c3d4_7e5f_8a6b_7c8d9e0f1a2b));
        for other in ["0190A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B", "0190a1b2c3d47e5f8a6b7c8d9e0f1a2b", "u-full", ""] {
            assert_eq!(subject_key(other), None, "{other}");
        }
    }

    #[test]
    fn the_subjects_options_are_consistent() {
        assert!(Subjects::options().is_some());
    }

    #[test]
    fn a_tenant_is_one_shared_string() {
        let cache = PolicyCache::new(Duration::from_secs(10), Duration::from_secs(600));
        let first = cache.subjects.tenant(Arc::from("t1"));
        let second = cache.subjects.tenant(Arc::from("t1"));
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!Arc::ptr_eq(&first, &cache.subjects.tenant(Arc::from("t2"))));
    }

    #[test]
    fn a_forgotten_or_cleared_entry_is_read_again() {
        let cache = Expiring::new(16, Duration::from_secs(10));
        let now = Instant::now();
        cache.insert("a", now, 1);
        cache.insert("b", now, 2);
        cache.forget("a");
        assert_eq!(cache.get("a", now), None);
        assert_eq!(cache.get("b", now), Some(2));
        cache.clear();
        assert_eq!(cache.get("b", now), None);
    }
}
