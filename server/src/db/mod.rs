//! Storage: one pool over SQLite (the embedded default) or PostgreSQL, the migrations
//! of each, and every query the server runs.
//!
//! Queries are written once in the SQL both databases accept and go through sqlx's Any
//! driver. Booleans travel as 0/1 and times as Unix milliseconds for that reason.
//! Functions that write take a connection so the caller decides the transaction; every
//! API write and its audit event commit together or not at all. On SQLite the hot write
//! transactions run whole on a thread of their own ([`Db::on_writer`]).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use stamps::{Stamps, Touches};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, FromRow};
use twofold_policy::{Behaviour, ProviderSet, ScopeSettings, Strength, TenantFeature};

/// The scope key of the host; tenants use their id.
pub const HOST_SCOPE: &str = "host";

const SUBJECT_VERSION_SQL: &str = "SELECT n FROM subject_version WHERE id = 1";

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Db {
    /// Reads, and on PostgreSQL writes too.
    pub pool: AnyPool,
    /// Where writes go. On SQLite one connection: SQLite lets one writer in at a time,
    /// and writers that race for its lock wait in its busy handler, which sleeps for
    /// milliseconds at a time (the p99 of every write under load). Queued in front of
    /// one connection they take turns in arrival order instead, without sleeping. On
    /// PostgreSQL the same pool as reads.
    writer: AnyPool,
    pub backend: Backend,
    /// Numbers committed writes with what they may have changed, so caches of rows
    /// writes change (sessions, users) can tell an entry read before a write that
    /// touched it from one read after ([`stamps`]).
    stamps: Arc<Stamps>,
    /// Counts committed changes to applications (OpenID clients), which are few, so the
    /// applications a stream of token exchanges names are not read again after each of
    /// the exchanges' own writes ([`Db::application_writes_seen`]).
    application_writes: Arc<AtomicU64>,
    /// Where [`Db::on_writer`] runs write transactions on SQLite; `None` on PostgreSQL.
    writer_thread: Option<WriterThread>,
    /// The hottest point reads on a SQLite file, without sqlx's connection threads;
    /// `None` on PostgreSQL and for an in-memory database.
    lookups: Option<Arc<lookup::Lookups>>,
    /// On a SQLite file, the lock every write takes and the connection of direct
    /// transactions ([`direct`]); `None` on PostgreSQL and for an in-memory database.
    direct: Option<Arc<direct::Writer>>,
    /// On PostgreSQL, the connections of the hottest single statements, given back
    /// without sqlx's ping ([`hot`]); `None` on SQLite.
    hot: Option<Arc<hot::Pool>>,
    /// On PostgreSQL, users' policy inputs read many at a time ([`batch`]); `None` on
    /// SQLite, whose reads are no round trip.
    subject_reads: Option<batch::SubjectReads>,
}

/// Runs `$statement` with `$conn` bound to a `&mut AnyConnection`: one of the hot pool on
/// PostgreSQL ([`hot`]), given back when the statement succeeded, or one of the main pool.
macro_rules! on_hot {
    ($db:expr, $conn:ident => $statement:expr) => {
        match &$db.hot {
            Some(hot) => {
                let mut lent = hot.get().await?;
                let $conn = lent.conn()?;
                let result = $statement.await;
                lent.settle(result)
            }
            None => {
                let mut pooled = $db.pool.acquire().await?;
                let $conn = &mut *pooled;
                $statement.await
            }
        }
    };
}

/// A thread of its own for the transactions that hold SQLite's one writer connection.
///
/// Each statement of a transaction is a message to the connection's thread and back.
/// Awaited on the server's runtime, every answer wakes a task that queues behind the
/// HTTP work of all other clients before it can send the next statement, while it holds
/// the database's only write lock. On this thread, which runs nothing else, the next
/// statement follows the answer at once.
#[derive(Debug, Clone)]
struct WriterThread {
    handle: tokio::runtime::Handle,
    /// Dropped with the last clone of the `Db` and the last job, which ends the thread.
    alive: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl WriterThread {
    fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (alive, ended) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("twofold-writer".into()).spawn(move || {
            // Every job holds `alive` too, so none is cut short.
            runtime.block_on(async {
                let _ = ended.await;
            });
        })?;
        Ok(Self { handle, alive: Arc::new(alive) })
    }
}

pub type Tx = WriteTx;

/// A write transaction. Committing it counts as a write for [`Db::stamps`], of anything
/// unless [`WriteTx::touches`] says less; on SQLite it holds the one writer connection
/// until it ends.
#[derive(Debug)]
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    stamps: Arc<Stamps>,
    touches: Touches,
    application_writes: Arc<AtomicU64>,
    /// Whether the transaction writes an application ([`WriteTx::changes_applications`]).
    changes_applications: bool,
    /// Held until the transaction ends, so no direct transaction runs meanwhile.
    _lock: Option<direct::WriteLock>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        // After the commit: a reader that loaded a row before it sees the counter move.
        self.stamps.committed([self.touches]);
        if self.changes_applications {
            self.application_writes.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Marks the transaction as one that changes or removes an application: its commit
    /// then counts for [`Db::application_writes_seen`] too. The statements that do
    /// ([`oidc::put_application`], [`oidc::delete_application`]) take a `WriteTx` for
    /// this; an insert needs no mark, since no cache keeps an application not found.
    pub fn changes_applications(&mut self) {
        self.changes_applications = true;
    }

    /// Says what the transaction's statements may change among the rows caches keep
    /// (anything, unless said).
    pub fn touches(&mut self, touches: Touches) {
        self.touches = touches;
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// How long a pooled PostgreSQL connection may have been idle and still be lent without
/// a ping first.
const PING_AFTER_IDLE: Duration = Duration::from_millis(500);

impl Db {
    /// Opens the pool; for SQLite, creates the file (and its folder) when absent and
    /// switches it to WAL so readers never wait for the writer.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let mut file = None;
        let url = match backend {
            Backend::Sqlite => {
                let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                if path != ":memory:" {
                    if let Some(parent) = std::path::Path::new(path).parent()
                        && !parent.as_os_str().is_empty()
                    {
                        std::fs::create_dir_all(parent)?;
                    }
                    file = Some(std::path::PathBuf::from(path));
                }
                format!("sqlite://{path}?mode=rwc")
            }
            Backend::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool =
            Self::pool_options(backend, max_connections, Duration::from_secs(5)).connect_with(options.clone()).await?;
        // An in-memory database exists once per connection, so it cannot be split.
        let writer = if backend == Backend::Sqlite && !url.contains(":memory:") {
            // The queue for the writer is where a burst of writes waits; give it as long
            // as the busy timeout below gave a second writer before.
            Self::pool_options(backend, 1, Duration::from_secs(10)).connect_with(options.clone()).await?
        } else {
            pool.clone()
        };
        let writer_thread = (backend == Backend::Sqlite).then(WriterThread::start).transpose()?;
        let keep = usize::try_from(max_connections).unwrap_or(usize::MAX);
        // After the pool: its first connection created the file and switched it to WAL.
        let stamps = Arc::new(Stamps::default());
        let direct = match (file.as_deref(), &writer_thread) {
            (Some(path), Some(thread)) => Some(direct::Writer::open(path, stamps.clone(), thread.handle.clone())?),
            _ => None,
        };
        let lookups = file.map(|path| Arc::new(lookup::Lookups::new(&path, keep)));
        let hot = (backend == Backend::Postgres)
            .then(|| Arc::new(hot::Pool::new(options, max_connections, Duration::from_secs(5), PING_AFTER_IDLE)));
        let subject_reads = hot.clone().map(batch::SubjectReads::start);
        let application_writes = Arc::new(AtomicU64::new(0));
        Ok(Self {
            pool,
            writer,
            backend,
            stamps,
            application_writes,
            writer_thread,
            lookups,
            direct,
            hot,
            subject_reads,
        })
    }

    fn pool_options(backend: Backend, max_connections: u32, acquire: Duration) -> AnyPoolOptions {
        AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire)
            // A ping before every checkout is a round trip: to the connection's thread on
            // SQLite, whose file does not drop connections the way a network does, and to
            // the server on PostgreSQL, where it doubled the round trips of every read.
            // PostgreSQL connections are pinged only after an idle spell (as HikariCP's
            // `aliveBypassWindowMs` does): one returned moments ago was alive then, and a
            // connection that died since fails its statement, which answers 503 like any
            // outage, and is dropped.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if backend == Backend::Postgres && meta.idle_for >= PING_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write; busy_timeout makes a
                        // second writer wait instead of failing at once; foreign keys are
                        // off by default in SQLite and must be enabled per connection.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                        // Each connection keeps its own page cache (2 MiB by default) and
                        // there are as many as the pool allows: 1 MiB each still holds
                        // the interior pages of the hot indexes at a million users, and
                        // the operating system caches the rest of the file once for all.
                        sqlx::query("PRAGMA cache_size = -1024").execute(&mut *conn).await?;
                        // Whichever connection's write starts the WAL again cuts it back.
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "PRAGMA journal_size_limit = {}",
                            direct::WAL_FILE_LIMIT
                        )))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once:
    /// a deferred transaction that reads first and writes later can fail with
    /// SQLITE_BUSY when another writer got in between, which a retry-less API would
    /// surface as an error.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        let lock = self.write_lock().await;
        let tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        };
        Ok(WriteTx {
            tx,
            stamps: self.stamps.clone(),
            touches: Touches::Anything,
            application_writes: self.application_writes.clone(),
            changes_applications: false,
            _lock: lock,
        })
    }

    /// Runs one statement that writes and returns at most one row, touching what
    /// `touches` says: on a SQLite file in a direct transaction of its own on the
    /// writer's thread, otherwise as [`Db::write_one_touching`] does.
    pub async fn write_returning<R: direct::ReturnedRow + 'static>(
        &self,
        touches: Touches,
        sql: &'static str,
        args: Vec<direct::Arg>,
    ) -> Result<Option<R>, sqlx::Error> {
        use direct::Exec;
        if self.direct.is_none() {
            return self
                .write_one_touching(touches, move |c| Box::pin(async move { c.returning(sql, &args).await }))
                .await;
        }
        let db = self.clone();
        self.on_writer(async move {
            let mut tx = db.begin().await?;
            tx.touches(touches);
            let row = tx.returning(sql, &args).await?;
            tx.commit().await?;
            Ok(row)
        })
        .await?
    }

    /// Runs one statement that writes, as [`Db::write_returning`]; the number of rows
    /// it changed.
    pub async fn write_statement(
        &self,
        touches: Touches,
        sql: &'static str,
        args: Vec<direct::Arg>,
    ) -> Result<u64, sqlx::Error> {
        use direct::Exec;
        if self.direct.is_none() {
            return self.write_one_touching(touches, move |c| Box::pin(async move { c.run(sql, &args).await })).await;
        }
        let db = self.clone();
        self.on_writer(async move {
            let mut tx = db.begin().await?;
            tx.touches(touches);
            let changed = tx.run(sql, &args).await?;
            tx.commit().await?;
            Ok(changed)
        })
        .await?
    }

    async fn write_lock(&self) -> Option<direct::WriteLock> {
        match &self.direct {
            Some(writer) => Some(writer.lock().await),
            None => None,
        }
    }

    /// Whether write transactions run direct on a SQLite file's writer thread
    /// ([`Db::begin`] then gives [`direct::DirectTx`]), where a job's statements cost no
    /// round trip and nothing runs between them.
    pub fn writes_direct(&self) -> bool {
        self.direct.is_some() && self.writer_thread.is_some()
    }

    /// Starts a write transaction for statements that take any [`direct::Exec`]: on a
    /// SQLite file a direct one, meant to run on the writer's thread
    /// ([`Db::on_writer`]); otherwise a sqlx one, as [`Db::begin_write`].
    pub async fn begin(&self) -> Result<direct::Transaction, sqlx::Error> {
        Ok(match &self.direct {
            Some(writer) => direct::Transaction::Direct(direct::DirectTx::begin(writer).await?),
            None => direct::Transaction::Sqlx(self.begin_write().await?),
        })
    }

    /// Runs `job`, a whole write transaction from `begin_write` to `commit`, where it
    /// holds the write lock for the shortest time: on SQLite on the writer's own thread
    /// ([`WriterThread`]), on PostgreSQL where it is. The job runs to its end even if the
    /// caller stops waiting, so a transaction is never cut between two statements by a
    /// client that went away. On a SQLite file the jobs waiting here are what a direct
    /// transaction's group waits for before it commits ([`direct::DirectTx`]).
    pub async fn on_writer<T: Send + 'static>(
        &self,
        job: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, sqlx::Error> {
        match &self.writer_thread {
            Some(thread) => {
                let alive = thread.alive.clone();
                // Task-locals stay with the task that set them; the audit events the job
                // writes record the address of the request it serves.
                let address = REQUEST_ADDRESS.try_with(|address| *address).ok();
                let writer = self.direct.clone();
                if let Some(writer) = &writer {
                    writer.job_queued();
                }
                let job = async move {
                    if let Some(writer) = &writer {
                        writer.job_started();
                    }
                    let done = match address {
                        Some(address) => REQUEST_ADDRESS.scope(address, job).await,
                        None => job.await,
                    };
                    if let Some(writer) = &writer {
                        writer.job_ended();
                    }
                    drop(alive);
                    done
                };
                thread.handle.spawn(job).await.map_err(|_| sqlx::Error::WorkerCrashed)
            }
            None => Ok(job.await),
        }
    }

    /// Runs one statement that writes outside a transaction, on the writer (and on its
    /// thread, see [`Db::on_writer`]), and counts it as a write like a committed
    /// transaction.
    pub async fn write<T, F, Fut>(&self, statement: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: FnOnce(AnyPool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    {
        self.write_touching(Touches::Anything, statement).await
    }

    async fn write_touching<T, F, Fut>(&self, touches: Touches, statement: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: FnOnce(AnyPool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    {
        let (writer, db) = (self.writer.clone(), self.clone());
        let done = self
            .on_writer(async move {
                let _lock = db.write_lock().await;
                statement(writer).await
            })
            .await?;
        self.stamps.committed([touches]);
        done
    }

    /// Runs `statement` on one connection outside a transaction, counted as a write like
    /// [`Db::write`]: for single statements (or a few, each whole by itself) on a request's
    /// path. On PostgreSQL the connection is one of the hot pool ([`hot`]), given back
    /// without the ping sqlx's pool sends after every statement; on SQLite it is the
    /// writer's, as in [`Db::write`].
    pub async fn write_one<T, F>(&self, statement: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> futures::future::BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        self.write_one_touching(Touches::Anything, statement).await
    }

    /// [`Db::write_one`] for statements that change no more than `touches` says.
    pub async fn write_one_touching<T, F>(&self, touches: Touches, statement: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> futures::future::BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        let Some(hot) = &self.hot else {
            return self
                .write_touching(touches, move |w| async move { statement(&mut *w.acquire().await?).await })
                .await;
        };
        let mut lent = hot.get().await?;
        let result = statement(lent.conn()?).await;
        self.stamps.committed([touches]);
        lent.settle(result)
    }

    /// Runs [`complete_sign_in`] alone, its own transaction, on a connection of the hot
    /// pool: on PostgreSQL, where it is all or nothing without one (`BEGIN` and `COMMIT`
    /// would be two round trips more). It changes only rows of its user.
    pub async fn complete_sign_in_alone(&self, c: &CompleteSignIn<'_>) -> Result<SignInWrite, sqlx::Error> {
        let written = on_hot!(self, conn => complete_sign_in(conn, c));
        self.stamps.committed([Touches::activity_of(c.user_id)]);
        written
    }

    /// Runs [`verify_opened`] alone on a connection of the hot pool, as
    /// [`Db::complete_sign_in_alone`] runs its statement. It changes only rows of its
    /// user, and only when it answers with them.
    pub async fn verify_opened_alone(&self, v: &VerifyOpened<'_>) -> Result<Option<Verified>, sqlx::Error> {
        let written = on_hot!(self, conn => verify_opened(conn, v))?;
        if written.is_some() {
            self.stamps.committed([Touches::activity_of(v.sign_in.user_id)]);
        }
        Ok(written)
    }

    /// What this process's committed writes touched, for caches of the rows they
    /// change ([`stamps`]).
    pub fn stamps(&self) -> &Stamps {
        &self.stamps
    }

    /// Counts a write made on the hot pool's connection by a caller outside this
    /// module, after it ended.
    pub(crate) fn committed(&self, touches: Touches) {
        self.stamps.committed([touches]);
    }

    /// How many writes to applications this process has committed, as
    /// [`Db::stamps`] number all writes.
    pub fn application_writes_seen(&self) -> u64 {
        self.application_writes.load(Ordering::Acquire)
    }

    /// The session of `token_hash` with its user ([`find_session`]).
    pub async fn session(&self, token_hash: &str) -> anyhow::Result<Option<SessionRow>> {
        match &self.lookups {
            Some(lookups) => lookups.session(token_hash),
            None => Ok(on_hot!(self, conn => find_session(conn, token_hash))?),
        }
    }

    /// A user's policy inputs ([`groups::subject`]).
    pub async fn subject(&self, user_id: &str) -> anyhow::Result<Option<groups::Subject>> {
        if let Some(lookups) = &self.lookups {
            return lookups.subject(user_id);
        }
        if let Some(reads) = &self.subject_reads
            && let Ok(answer) = reads.read(user_id).await
        {
            return answer;
        }
        on_hot!(self, conn => groups::subject(conn, user_id))
    }

    /// The count of changes to users' policy inputs that SQLite's triggers keep
    /// (migration 0012, `subject_version`); `None` on PostgreSQL, whose triggers send a
    /// notice instead ([`crate::changes`]).
    pub async fn subject_version(&self) -> anyhow::Result<Option<i64>> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let n = match &self.lookups {
            Some(lookups) => {
                lookups.run(|conn| conn.prepare_cached(SUBJECT_VERSION_SQL)?.query_row([], |r| r.get::<_, i64>(0)))?
            }
            None => sqlx::query_scalar(SUBJECT_VERSION_SQL).fetch_one(&self.pool).await?,
        };
        Ok(Some(n))
    }

    /// The pending sign-in of `token_hash` with its user and their group rules; `None`
    /// when either is missing ([`groups::pending_with_user`]).
    pub async fn pending(&self, token_hash: &str) -> anyhow::Result<Option<groups::PendingRows>> {
        match &self.lookups {
            Some(lookups) => {
                let Some(attempt) = lookups.attempt(token_hash)? else { return Ok(None) };
                let user = lookups.user_with_rules(&attempt.user_id)?;
                Ok(user.map(|(user, rules)| (attempt, user, rules)))
            }
            None => on_hot!(self, conn => groups::pending_with_user(conn, token_hash)),
        }
    }

    /// Records one audit event outside any transaction, on the writer like every other
    /// write: on SQLite in the writer's group, never in the busy handler behind it. An
    /// insert: no row a cache keeps.
    pub async fn insert_audit_alone(&self, e: &NewAudit<'_>) -> Result<(), sqlx::Error> {
        self.write_statement(Touches::NothingKept, INSERT_AUDIT_SQL.as_str(), Vec::from(audit_args(e))).await?;
        Ok(())
    }

    /// [`Db::pending`] that also counts a second-factor attempt, in one statement
    /// ([`groups::pending_reserving`]). PostgreSQL only: a SQLite file reads in process,
    /// where a second statement costs no round trip.
    pub async fn pending_reserving(
        &self,
        token_hash: &str,
        at: groups::ReserveAt<'_>,
    ) -> anyhow::Result<Option<(groups::PendingRows, Option<groups::Reserved>)>> {
        anyhow::ensure!(self.lookups.is_none(), "a pending sign-in's reservation is read at once on PostgreSQL only");
        let read = on_hot!(self, conn => groups::pending_reserving(conn, token_hash, at))?;
        if let Some(((_, user, _), Some(_))) = &read {
            // It changed that user's row alone, none of their policy inputs.
            self.committed(Touches::activity_of(&user.id));
        }
        Ok(read)
    }

    /// The authenticator of `user_id` ([`factors::get_authenticator`]).
    pub async fn authenticator(&self, user_id: &str) -> anyhow::Result<Option<factors::AuthenticatorRow>> {
        match &self.lookups {
            Some(lookups) => lookups.authenticator(user_id),
            None => Ok(on_hot!(self, conn => factors::get_authenticator(conn, user_id))?),
        }
    }

    /// A user's roles and the names of their tenant, as a signed-in user is described.
    /// One statement on PostgreSQL, where each is a round trip; SQLite reads both in
    /// process.
    pub async fn roles_and_tenant_names(&self, user_id: &str, tenant_id: Option<&str>) -> anyhow::Result<Description> {
        if let Some(lookups) = &self.lookups {
            let tenant = match tenant_id {
                Some(id) => lookups.tenant(id)?.map(|t| TenantNames { name: t.name, display_name: t.display_name }),
                None => None,
            };
            return Ok(Description { roles: lookups.roles(user_id)?, tenant });
        }
        let rows: Vec<RoleWithTenantRow> = on_hot!(self, conn => sqlx::query_as(ROLES_WITH_TENANT_SQL)
            .bind(user_id)
            .bind(tenant_id.map(str::to_owned))
            .fetch_all(conn))?;
        let tenant = rows.first().and_then(|r| {
            Some(TenantNames { name: r.tenant_name.clone()?, display_name: r.tenant_display_name.clone()? })
        });
        let roles = rows
            .into_iter()
            .filter_map(|r| Some(RoleRow { user_id: user_id.to_owned(), role: r.role?, scope_key: r.scope_key? }))
            .collect();
        Ok(Description { roles, tenant })
    }

    /// The tenant `id` ([`get_tenant`]).
    /// A scope's settings ([`load_settings`]): the defaults when it has stored none.
    pub async fn settings(&self, scope_key: &str) -> anyhow::Result<ScopeSettings> {
        match &self.lookups {
            Some(lookups) => SettingsRow::or_defaults(lookups.settings(scope_key)?),
            None => on_hot!(self, conn => load_settings(conn, scope_key)),
        }
    }

    pub async fn tenant(&self, id: &str) -> anyhow::Result<Option<TenantRow>> {
        match &self.lookups {
            Some(lookups) => lookups.tenant(id),
            None => Ok(on_hot!(self, conn => get_tenant(conn, id))?),
        }
    }

    /// The tenant named `name` ([`get_tenant_by_name`]).
    pub async fn tenant_by_name(&self, name: &str) -> anyhow::Result<Option<TenantRow>> {
        match &self.lookups {
            Some(lookups) => lookups.tenant_by_name(name),
            None => Ok(on_hot!(self, conn => get_tenant_by_name(conn, name))?),
        }
    }

    /// The user `id` ([`get_user`]): the token endpoint's read of a grant's user.
    pub async fn user(&self, id: &str) -> anyhow::Result<Option<UserRow>> {
        match &self.lookups {
            Some(lookups) => lookups.user(id),
            None => Ok(on_hot!(self, conn => get_user(conn, id))?),
        }
    }

    /// The user named `username_key` in `scope_key` ([`find_user`]): the password
    /// step's lookup.
    pub async fn user_by_name(&self, scope_key: &str, username_key: &str) -> anyhow::Result<Option<UserRow>> {
        match &self.lookups {
            Some(lookups) => lookups.user_by_name(scope_key, username_key),
            None => Ok(on_hot!(self, conn => find_user(conn, scope_key, username_key))?),
        }
    }

    /// The tenant named `tenant_name` (`None`: the host) and the user `username_key` in
    /// its scope, or in `unknown_scope` when no tenant has that name: the password
    /// step's two lookups. On PostgreSQL they are one statement (a round trip fewer
    /// for every password typed), which also reads the user's confirmed
    /// authenticator's secret as stored, for the tags a pending sign-in keeps
    /// (`signin::opened`); SQLite's direct reads are two calls into the same process,
    /// and its pending sign-ins keep no tags. Every input takes the same work either way.
    pub async fn named(
        &self,
        tenant_name: Option<&str>,
        unknown_scope: &str,
        username_key: &str,
    ) -> anyhow::Result<Named> {
        if self.backend == Backend::Sqlite {
            let tenant = match tenant_name {
                Some(name) => self.tenant_by_name(name).await?,
                None => None,
            };
            let scope = match (&tenant, tenant_name) {
                (Some(t), _) => t.id.as_str(),
                (None, Some(_)) => unknown_scope,
                (None, None) => HOST_SCOPE,
            };
            let user = self.user_by_name(scope, username_key).await?;
            return Ok(Named { tenant, user, authenticator: None, recovery_code: None, in_groups: None });
        }
        let scope = if tenant_name.is_some() { unknown_scope } else { HOST_SCOPE };
        Ok(on_hot!(self, conn => find_named(conn, tenant_name, scope, username_key))?)
    }

    /// Whether `user_id` has a recovery code left ([`factors::has_unused_recovery_code`]).
    pub async fn has_recovery_code(&self, user_id: &str) -> anyhow::Result<bool> {
        match &self.lookups {
            Some(lookups) => lookups.has_recovery_code(user_id),
            None => Ok(on_hot!(self, conn => factors::has_unused_recovery_code(conn, user_id))?),
        }
    }

    /// The application (OpenID client) `id` ([`oidc::get_application`]).
    pub async fn application(&self, id: &str) -> anyhow::Result<Option<oidc::ApplicationRow>> {
        match &self.lookups {
            Some(lookups) => lookups.application(id),
            None => Ok(on_hot!(self, conn => oidc::get_application(conn, id))?),
        }
    }

    /// `user_id`'s grant to `application_id` ([`oidc::find_grant`]).
    pub async fn grant(&self, user_id: &str, application_id: &str) -> Result<Option<oidc::GrantRow>, sqlx::Error> {
        on_hot!(self, conn => oidc::find_grant(conn, user_id, application_id))
    }

    /// Closes both pools: new requests for a connection fail, idle connections close.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(hot) = &self.hot {
            hot.close().await;
        }
    }

    /// The size of SQLite's WAL file; `None` on PostgreSQL and for an in-memory database.
    pub fn sqlite_wal_bytes(&self) -> Option<u64> {
        self.direct.as_ref().map(|w| w.wal_bytes())
    }

    /// The hot pool's connections, open and idle; `None` on SQLite, which has none.
    pub fn hot_counts(&self) -> Option<(usize, usize)> {
        self.hot.as_ref().map(|hot| hot.counts())
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await
    }
}

pub fn b(v: bool) -> i64 {
    i64::from(v)
}

// ---------------------------------------------------------------- settings

#[derive(Debug, FromRow)]
struct SettingsRow {
    behaviour: String,
    users_can_change: i64,
    remember_browser: i64,
    remember_browser_days: i64,
    enrollment_grace_days: i64,
    allow_authenticator: i64,
    allow_email: i64,
    allow_sms: i64,
    sms_country_codes: String,
    allow_passkey: i64,
    min_strength: String,
    passkey_aaguids: String,
}

fn parse_behaviour(s: &str) -> anyhow::Result<Behaviour> {
    Behaviour::parse(s).ok_or_else(|| anyhow::anyhow!("stored behaviour {s:?} is not known"))
}

impl SettingsRow {
    /// A scope's stored settings, or the defaults of a scope that never saved any.
    fn or_defaults(row: Option<Self>) -> anyhow::Result<ScopeSettings> {
        row.map_or_else(|| Ok(ScopeSettings::default()), Self::into_settings)
    }

    fn into_settings(self) -> anyhow::Result<ScopeSettings> {
        Ok(ScopeSettings {
            behaviour: parse_behaviour(&self.behaviour)?,
            users_can_change: self.users_can_change != 0,
            remember_browser: self.remember_browser != 0,
            remember_browser_days: u32::try_from(self.remember_browser_days)?,
            enrollment_grace_days: u32::try_from(self.enrollment_grace_days)?,
            allowed_providers: ProviderSet {
                authenticator: self.allow_authenticator != 0,
                email: self.allow_email != 0,
                sms: self.allow_sms != 0,
                passkey: self.allow_passkey != 0,
            },
            sms_allowed_country_codes: self
                .sms_country_codes
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            min_strength: Strength::parse(&self.min_strength)
                .ok_or_else(|| anyhow::anyhow!("stored min_strength {:?} is not known", self.min_strength))?,
            passkey_aaguids: self.passkey_aaguids.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect(),
        })
    }
}

const SETTINGS_COLUMNS: &str = "behaviour, users_can_change, remember_browser, remember_browser_days, \
     enrollment_grace_days, allow_authenticator, allow_email, allow_sms, sms_country_codes, allow_passkey, \
     min_strength, passkey_aaguids";

static SETTINGS_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {SETTINGS_COLUMNS} FROM scope_settings WHERE scope_key = $1"));

impl direct::ReturnedRow for SettingsRow {
    fn direct(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(SettingsRow {
            behaviour: r.get("behaviour")?,
            users_can_change: r.get("users_can_change")?,
            remember_browser: r.get("remember_browser")?,
            remember_browser_days: r.get("remember_browser_days")?,
            enrollment_grace_days: r.get("enrollment_grace_days")?,
            allow_authenticator: r.get("allow_authenticator")?,
            allow_email: r.get("allow_email")?,
            allow_sms: r.get("allow_sms")?,
            sms_country_codes: r.get("sms_country_codes")?,
            allow_passkey: r.get("allow_passkey")?,
            min_strength: r.get("min_strength")?,
            passkey_aaguids: r.get("passkey_aaguids")?,
        })
    }
}

/// The settings of a scope; a scope that never saved any has the defaults.
pub async fn load_settings<'e, E>(executor: E, scope_key: &str) -> anyhow::Result<ScopeSettings>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<SettingsRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(SETTINGS_SQL.as_str())).bind(scope_key).fetch_optional(executor).await?;
    SettingsRow::or_defaults(row)
}

/// The settings of a scope, locked until the end of the caller's write transaction, so
/// that reading them, checking the change against them, writing the change and auditing
/// "before" cannot interleave with another writer of the same scope. On SQLite the write
/// transaction (`Db::begin_write`) already holds the database's write lock. On
/// PostgreSQL, under READ COMMITTED, a plain read would not wait for a concurrent writer,
/// so two writers would both audit the same "before"; the row is locked instead, and
/// created with the defaults when the scope never saved any (there is nothing to lock
/// otherwise, and a row of defaults means the same as no row).
pub async fn lock_settings(
    conn: &mut impl direct::Exec,
    backend: Backend,
    scope_key: &str,
    now: i64,
) -> anyhow::Result<ScopeSettings> {
    if backend == Backend::Sqlite {
        let row: Option<SettingsRow> = conn.returning(&SETTINGS_SQL, &direct::args![scope_key]).await?;
        return SettingsRow::or_defaults(row);
    }
    static LOCK_SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{} FOR UPDATE", SETTINGS_SQL.as_str()));
    // Nearly every scope has its row (a tenant is created with one): lock it in one
    // round trip, and create the defaults only when there is none.
    if let Some(row) = conn.returning::<SettingsRow>(&LOCK_SQL, &direct::args![scope_key]).await? {
        return row.into_settings();
    }
    let defaults = settings_args(scope_key, &ScopeSettings::default(), now);
    conn.run(&settings_sql("ON CONFLICT (scope_key) DO NOTHING"), &defaults).await?;
    let row: Option<SettingsRow> = conn.returning(&LOCK_SQL, &direct::args![scope_key]).await?;
    row.ok_or(sqlx::Error::RowNotFound)?.into_settings()
}

pub async fn store_settings(
    conn: &mut impl direct::Exec,
    scope_key: &str,
    s: &ScopeSettings,
    now: i64,
) -> Result<(), sqlx::Error> {
    conn.run(&STORE_SETTINGS_SQL, &settings_args(scope_key, s, now)).await?;
    Ok(())
}

/// A scope's changed settings stored, audited and announced to the other nodes
/// (`notice`: channel and payload, PostgreSQL only), inside the caller's transaction.
/// On PostgreSQL that is one statement instead of three, each a round trip; SQLite runs
/// in this process and has no notices.
pub async fn save_settings_change(
    conn: &mut impl direct::Exec,
    backend: Backend,
    scope_key: &str,
    s: &ScopeSettings,
    now: i64,
    audit: &NewAudit<'_>,
    notice: (&str, String),
) -> Result<(), sqlx::Error> {
    if backend == Backend::Sqlite {
        store_settings(conn, scope_key, s, now).await?;
        return insert_audit(conn, audit).await;
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let audit_from = 1 + SETTINGS_INSERT_COLUMNS.split(',').count();
        let notice_from = audit_from + AUDIT_COLUMNS.split(',').count();
        format!(
            "WITH saved AS ({}), audited AS (INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES ({})) \
             SELECT pg_notify(${notice_from}, ${})",
            STORE_SETTINGS_SQL.as_str(),
            placeholders(audit_from, AUDIT_COLUMNS),
            notice_from + 1,
        )
    });
    let mut args = Vec::from(settings_args(scope_key, s, now));
    args.extend(audit_args(audit));
    let (channel, payload) = notice;
    args.extend(direct::args![channel, payload]);
    conn.run(&SQL, &args).await?;
    Ok(())
}

/// The columns a scope's settings are written with, in the order of [`settings_args`].
const SETTINGS_INSERT_COLUMNS: &str = "scope_key, behaviour, users_can_change, remember_browser, \
     remember_browser_days, enrollment_grace_days, allow_authenticator, allow_email, allow_sms, \
     sms_country_codes, updated_at, allow_passkey, min_strength, passkey_aaguids";

static STORE_SETTINGS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    settings_sql(
        "ON CONFLICT (scope_key) DO UPDATE SET behaviour = excluded.behaviour, \
         users_can_change = excluded.users_can_change, remember_browser = excluded.remember_browser, \
         remember_browser_days = excluded.remember_browser_days, \
         enrollment_grace_days = excluded.enrollment_grace_days, \
         allow_authenticator = excluded.allow_authenticator, allow_email = excluded.allow_email, \
         allow_sms = excluded.allow_sms, sms_country_codes = excluded.sms_country_codes, \
         allow_passkey = excluded.allow_passkey, min_strength = excluded.min_strength, \
         passkey_aaguids = excluded.passkey_aaguids, updated_at = excluded.updated_at",
    )
});

fn settings_sql(on_conflict: &str) -> String {
    format!(
        "INSERT INTO scope_settings ({SETTINGS_INSERT_COLUMNS}) VALUES ({}) {on_conflict}",
        placeholders(1, SETTINGS_INSERT_COLUMNS)
    )
}

/// The values of [`SETTINGS_INSERT_COLUMNS`].
fn settings_args(scope_key: &str, s: &ScopeSettings, now: i64) -> [direct::Arg; 14] {
    direct::args![
        scope_key,
        s.behaviour.as_str(),
        s.users_can_change,
        s.remember_browser,
        i64::from(s.remember_browser_days),
        i64::from(s.enrollment_grace_days),
        s.allowed_providers.authenticator,
        s.allowed_providers.email,
        s.allowed_providers.sms,
        // Validated codes are digits only, so a comma cannot occur inside one.
        s.sms_allowed_country_codes.join(","),
        now,
        s.allowed_providers.passkey,
        s.min_strength.as_str(),
        // Validated AAGUIDs are hex and hyphens only.
        s.passkey_aaguids.join(","),
    ]
}

// ---------------------------------------------------------------- tenants

#[derive(Debug, Clone, FromRow)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub feature_behaviour: String,
    pub created_at: i64,
    /// While set, none of the tenant's users can sign in or use a session.
    pub suspended_at: Option<i64>,
}

impl TenantRow {
    pub fn feature(&self) -> anyhow::Result<TenantFeature> {
        Ok(TenantFeature { behaviour: parse_behaviour(&self.feature_behaviour)? })
    }
}

const TENANT_COLUMNS: &str = "id, name, display_name, feature_behaviour, created_at, suspended_at";

pub(super) static TENANT_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"));

pub async fn get_tenant<'e, E>(executor: E, id: &str) -> Result<Option<TenantRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(sqlx::AssertSqlSafe(TENANT_SQL.as_str())).bind(id).fetch_optional(executor).await
}

/// A tenant, locked until the end of the caller's write transaction (see
/// [`lock_settings`] for why PostgreSQL needs this and SQLite does not).
pub async fn lock_tenant(
    conn: &mut AnyConnection,
    backend: Backend,
    id: &str,
) -> Result<Option<TenantRow>, sqlx::Error> {
    let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1{lock}")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub(super) static TENANT_BY_NAME_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"));

pub async fn get_tenant_by_name<'e, E>(executor: E, name: &str) -> Result<Option<TenantRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(sqlx::AssertSqlSafe(TENANT_BY_NAME_SQL.as_str())).bind(name).fetch_optional(executor).await
}

/// Escapes a user's search text for a LIKE pattern (with `ESCAPE '\'`).
pub fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

pub async fn list_tenants(
    pool: &AnyPool,
    q: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<TenantRow>, i64), sqlx::Error> {
    let pattern = like_pattern(&q.to_lowercase());
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM tenants \
         WHERE name LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\' \
         ORDER BY name LIMIT $2 OFFSET $3"
    )))
    .bind(&pattern)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM tenants WHERE name LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\'",
    )
    .bind(&pattern)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

pub async fn insert_tenant(conn: &mut AnyConnection, t: &TenantRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenants (id, name, display_name, feature_behaviour, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&t.id)
    .bind(&t.name)
    .bind(&t.display_name)
    .bind(&t.feature_behaviour)
    .bind(t.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_tenant_feature(conn: &mut AnyConnection, id: &str, feature: Behaviour) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET feature_behaviour = $1 WHERE id = $2")
        .bind(feature.as_str())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- users

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub scope_key: String,
    pub tenant_id: Option<String>,
    pub username: String,
    pub email: Option<String>,
    pub email_confirmed: i64,
    pub phone_confirmed: i64,
    pub has_authenticator: i64,
    pub password_hash: String,
    pub two_factor_enabled: i64,
    pub security_stamp: String,
    pub created_at: i64,
    pub phone: Option<String>,
    pub second_factor_failures: i64,
    pub locked_until: Option<i64>,
    pub enrollment_required_since: Option<i64>,
    pub pending_email: Option<String>,
    pub pending_phone: Option<String>,
    pub lockouts: i64,
    pub consecutive_failures: i64,
    /// When a session was last made for the user, and how (`pwd+authenticator`, ...).
    pub last_sign_in_at: Option<i64>,
    pub last_sign_in_methods: Option<String>,
    /// While set, the user cannot sign in and no session of theirs works.
    pub deactivated_at: Option<i64>,
    /// 1 while the password is one an admin set (or generated): sessions can only
    /// change it.
    pub must_change_password: i64,
    /// How many passkeys the user holds.
    pub passkey_count: i64,
}

impl UserRow {
    /// Whether the user has at least one usable second factor.
    pub fn has_factor(&self) -> bool {
        self.email_confirmed != 0 || self.phone_confirmed != 0 || self.has_authenticator != 0 || self.passkey_count > 0
    }

    /// The strength of the user's strongest factor; `None` without any.
    pub fn strongest_factor(&self) -> Option<twofold_policy::Strength> {
        use twofold_policy::Strength;
        if self.passkey_count > 0 {
            Some(Strength::PhishingResistant)
        } else if self.has_authenticator != 0 {
            Some(Strength::App)
        } else if self.has_factor() {
            Some(Strength::OutOfBand)
        } else {
            None
        }
    }

    /// The user's confirmed factors among those a scope allows.
    pub fn usable_providers(&self, allowed: &twofold_policy::ProviderSet) -> Vec<twofold_policy::Provider> {
        use twofold_policy::Provider;
        let mut out = Vec::with_capacity(4);
        if self.passkey_count > 0 && allowed.passkey {
            out.push(Provider::Passkey);
        }
        if self.has_authenticator != 0 && allowed.authenticator {
            out.push(Provider::Authenticator);
        }
        if self.email_confirmed != 0 && allowed.email {
            out.push(Provider::Email);
        }
        if self.phone_confirmed != 0 && allowed.sms {
            out.push(Provider::Sms);
        }
        out
    }
}

pub(crate) const USER_COLUMNS: &str = "id, scope_key, tenant_id, username, email, email_confirmed, phone_confirmed, \
     has_authenticator, password_hash, two_factor_enabled, security_stamp, created_at, phone, \
     second_factor_failures, locked_until, enrollment_required_since, pending_email, pending_phone, lockouts, \
     consecutive_failures, last_sign_in_at, last_sign_in_methods, deactivated_at, must_change_password, passkey_count";

pub async fn get_user<'e, E>(executor: E, id: &str) -> Result<Option<UserRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(sqlx::AssertSqlSafe(USER_SQL.as_str())).bind(id).fetch_optional(executor).await
}

pub(super) static USER_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));

pub(super) static USER_BY_NAME_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {USER_COLUMNS} FROM users WHERE scope_key = $1 AND username_key = $2"));

pub async fn find_user<'e, E>(executor: E, scope_key: &str, username_key: &str) -> Result<Option<UserRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(sqlx::AssertSqlSafe(USER_BY_NAME_SQL.as_str()))
        .bind(scope_key)
        .bind(username_key)
        .fetch_optional(executor)
        .await
}

/// Whether the user whose id is the SQL expression `user_id` is in any group
/// (PostgreSQL): for a user in none, every input of their policy is on their row.
fn in_a_group(user_id: &str) -> String {
    format!("EXISTS (SELECT 1 FROM user_group_members gm WHERE gm.user_id = {user_id})")
}

/// What [`Db::named`] found.
#[derive(Debug)]
pub struct Named {
    pub tenant: Option<TenantRow>,
    pub user: Option<UserRow>,
    /// The user's confirmed authenticator's secret, as stored (PostgreSQL only).
    pub authenticator: Option<String>,
    /// Whether the user has a recovery code not yet used (PostgreSQL only; SQLite's
    /// [`Db::has_recovery_code`] is a call into this process, not a round trip).
    pub recovery_code: Option<bool>,
    /// Whether the user is in any group (PostgreSQL only): for a user in none, every
    /// input of their policy is on the row read.
    pub in_groups: Option<bool>,
}

/// [`Db::named`]'s statement: the tenant by name (none when `tenant_name` is `None`),
/// the user by name in that tenant's scope, or in `scope_key` when there is no such
/// tenant, the user's confirmed authenticator's secret, whether they have a recovery
/// code left ([`factors::HAS_RECOVERY_CODE_SQL`]'s question) and whether they are in any
/// group: what the password step would otherwise ask in statements of their own.
async fn find_named(
    conn: &mut sqlx::AnyConnection,
    tenant_name: Option<&str>,
    scope_key: &str,
    username_key: &str,
) -> Result<Named, sqlx::Error> {
    use sqlx::Row;
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let tenant: Vec<String> =
            TENANT_COLUMNS.split(',').map(|c| format!("t.{c} AS named_tenant_{c}", c = c.trim())).collect();
        let user: Vec<String> = USER_COLUMNS.split(',').map(|c| format!("u.{}", c.trim())).collect();
        format!(
            "SELECT {}, {}, au.secret_enc AS named_secret_enc, {} AS named_recovery_codes, \
             CASE WHEN {} THEN 1 ELSE 0 END::bigint AS named_groups FROM (SELECT 1) AS one \
             LEFT JOIN tenants t ON t.name = $1 \
             LEFT JOIN users u ON u.scope_key = COALESCE(t.id, $2) AND u.username_key = $3 \
             LEFT JOIN authenticators au ON au.user_id = u.id AND au.confirmed = 1",
            tenant.join(", "),
            user.join(", "),
            factors::unused_recovery_code("u.id"),
            in_a_group("u.id"),
        )
    });
    // The tenant's columns under names of their own: the user's row has a `tenant_id`
    // too, which is null for a user not found.
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(tenant_name)
        .bind(scope_key)
        .bind(username_key)
        .fetch_one(conn)
        .await?;
    let tenant = match row.try_get::<Option<String>, _>("named_tenant_id")? {
        None => None,
        Some(id) => Some(TenantRow {
            id,
            name: row.try_get("named_tenant_name")?,
            display_name: row.try_get("named_tenant_display_name")?,
            feature_behaviour: row.try_get("named_tenant_feature_behaviour")?,
            created_at: row.try_get("named_tenant_created_at")?,
            suspended_at: row.try_get("named_tenant_suspended_at")?,
        }),
    };
    let user = match row.try_get::<Option<String>, _>("id")? {
        None => None,
        Some(_) => Some(<UserRow as sqlx::FromRow<_>>::from_row(&row)?),
    };
    let recovery_code = Some(row.try_get::<i64, _>("named_recovery_codes")? > 0);
    let in_groups = Some(row.try_get::<i64, _>("named_groups")? > 0);
    Ok(Named { tenant, user, authenticator: row.try_get("named_secret_enc")?, recovery_code, in_groups })
}

pub async fn list_users(
    pool: &AnyPool,
    scope_key: &str,
    q: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<UserRow>, i64), sqlx::Error> {
    let pattern = like_pattern(&q.to_lowercase());
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE scope_key = $1 \
         AND (username_key LIKE $2 ESCAPE '\\' OR LOWER(COALESCE(email, '')) LIKE $2 ESCAPE '\\') \
         ORDER BY username_key LIMIT $3 OFFSET $4"
    )))
    .bind(scope_key)
    .bind(&pattern)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE scope_key = $1 \
         AND (username_key LIKE $2 ESCAPE '\\' OR LOWER(COALESCE(email, '')) LIKE $2 ESCAPE '\\')",
    )
    .bind(scope_key)
    .bind(&pattern)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

#[derive(Debug)]
pub struct NewUser<'a> {
    pub id: &'a str,
    pub scope_key: &'a str,
    pub tenant_id: Option<&'a str>,
    pub username: &'a str,
    pub username_key: &'a str,
    pub email: Option<&'a str>,
    /// Unconfirmed until the user confirms it with a texted code.
    pub phone: Option<&'a str>,
    pub password_hash: &'a str,
    pub security_stamp: &'a str,
    pub created_at: i64,
}

pub async fn insert_user(conn: &mut AnyConnection, u: &NewUser<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, scope_key, tenant_id, username, username_key, email, phone, password_hash, \
         security_stamp, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(u.id)
    .bind(u.scope_key)
    .bind(u.tenant_id)
    .bind(u.username)
    .bind(u.username_key)
    .bind(u.email)
    .bind(u.phone)
    .bind(u.password_hash)
    .bind(u.security_stamp)
    .bind(u.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts a host user who holds the host-admin role, in the caller's transaction: the
/// first admin at start-up and `twofold admin create` both make one this way.
pub async fn insert_host_admin(
    conn: &mut AnyConnection,
    id: &str,
    username: &twofold_policy::names::Username,
    password_hash: &str,
    security_stamp: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    insert_user(
        &mut *conn,
        &NewUser {
            id,
            scope_key: HOST_SCOPE,
            tenant_id: None,
            username: username.as_str(),
            username_key: username.key(),
            email: None,
            phone: None,
            password_hash,
            security_stamp,
            created_at: now,
        },
    )
    .await?;
    grant_role(conn, id, twofold_policy::authz::Role::HostAdmin.as_str(), HOST_SCOPE, now).await?;
    Ok(())
}

/// Every user of a scope, by name: the adoption view and the impact preview resolve
/// each of them.
pub async fn scope_users(pool: &AnyPool, scope_key: &str) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE scope_key = $1 ORDER BY username_key"
    )))
    .bind(scope_key)
    .fetch_all(pool)
    .await
}

/// Records a sign-in on the user row, in the transaction that makes its session.
/// Records a sign-in and returns the user as stored after it; after a proven second
/// factor it also resets the failure counts and any lock, as `factors::reset_failures`
/// does. One statement: this is on every sign-in's path, and the session needs the
/// current security stamp.
pub async fn record_sign_in(
    conn: &mut impl direct::Exec,
    user_id: &str,
    now: i64,
    methods: &str,
    factor_proven: bool,
) -> Result<Option<UserRow>, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "UPDATE users SET last_sign_in_at = $1, last_sign_in_methods = $2, \
         second_factor_failures = CASE WHEN $4 = 1 THEN 0 ELSE second_factor_failures END, \
         consecutive_failures = CASE WHEN $4 = 1 THEN 0 ELSE consecutive_failures END, \
         lockouts = CASE WHEN $4 = 1 THEN 0 ELSE lockouts END, \
         locked_until = CASE WHEN $4 = 1 THEN NULL ELSE locked_until END \
         WHERE id = $3 RETURNING {USER_COLUMNS}"
        )
    });
    conn.returning(&SQL, &direct::args![now, methods, user_id, factor_proven]).await
}

/// A sign-in that proved a second factor, as [`complete_sign_in`] writes it.
#[derive(Debug)]
pub struct CompleteSignIn<'a> {
    pub attempt_id: &'a str,
    pub user_id: &'a str,
    pub now: i64,
    /// What the session records as its way in, e.g. `pwd+authenticator`.
    pub methods: &'a str,
    /// The factor proven: the session's second factor, and what made it fresh.
    pub method: &'a str,
    /// The factor's consuming statement (`factors::Spend::statement`).
    pub consume: (&'a str, &'a [direct::Arg]),
    pub token_hash: &'a str,
    pub sid: &'a str,
    pub expires_at: i64,
    pub user_agent: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    /// A browser to remember with the sign-in, when the user asked and the policy allows.
    pub browser: Option<BrowserToRemember<'a>>,
}

/// A browser remembered by the statement that signs its user in, as
/// `factors::insert_browser` writes one: the user's row gives its user and security
/// stamp, the sign-in its time and user agent.
#[derive(Debug, Clone, Copy)]
pub struct BrowserToRemember<'a> {
    pub id: &'a str,
    pub token_hash: &'a str,
    pub expires_at: i64,
    /// The strength of the factor it was remembered with.
    pub strength: &'a str,
}

/// How [`complete_sign_in`] ended.
#[derive(Debug)]
pub enum SignInWrite {
    /// The session exists; the user as stored after the sign-in, with their roles and
    /// tenant's names for the answer.
    Minted(Box<UserRow>, Description),
    /// Another request completed the attempt first.
    AttemptTaken,
    /// Another request consumed the factor first.
    FactorTaken,
    /// The user is gone.
    UserGone,
}

/// The parameters [`COMPLETE_SIGN_IN_SQL`] takes before the consuming statement's.
const COMPLETE_SIGN_IN_PARAMS: usize = 17;

/// The statements that consume a factor ([`factors::USE_STEP_SQL`] and its kin), each
/// spliced into [`complete_sign_in_sql`] as `UPDATE ... WHERE ...` followed by
/// `AND EXISTS (...)`.
const CONSUMING_STATEMENTS: [&str; 4] =
    [factors::USE_STEP_SQL, factors::USE_CODE_SQL, factors::USE_RECOVERY_CODE_SQL, passkeys::RECORD_USE_SQL];

/// [`complete_sign_in`]'s statement around each of [`CONSUMING_STATEMENTS`], built once.
static COMPLETE_SIGN_IN_SQL: std::sync::LazyLock<std::collections::HashMap<&'static str, String>> =
    std::sync::LazyLock::new(|| CONSUMING_STATEMENTS.into_iter().map(|c| (c, complete_sign_in_sql(c))).collect());

/// What [`complete_sign_in`]'s statement raises (`twofold_refuse`, migration 0012) when
/// a step found its row taken, with the step as the message.
const REFUSED: &str = "TF001";
const ATTEMPT_TAKEN: &str = "attempt_taken";
const FACTOR_TAKEN: &str = "factor_taken";
const USER_GONE: &str = "user_gone";

/// [`complete_sign_in`]'s statement around `consume` (its parameters numbered after
/// these): each step runs only when the one before it changed its row, and the last
/// line raises [`REFUSED`] with the step that refused, which undoes the steps before it:
/// the statement writes everything or nothing, inside a transaction or not.
fn complete_sign_in_sql(consume: &str) -> String {
    let consume = shift_parameters(consume, COMPLETE_SIGN_IN_PARAMS);
    let tail = sign_in_tail(
        "TRUE",
        &format!(
            "CASE WHEN (SELECT COUNT(*) FROM attempt) = 0 THEN '{ATTEMPT_TAKEN}' \
             WHEN (SELECT COUNT(*) FROM spent) = 0 THEN '{FACTOR_TAKEN}' ELSE '{USER_GONE}' END"
        ),
        "",
    );
    format!(
        "WITH attempt AS (UPDATE sign_in_attempts SET completed_at = $1 WHERE id = $2 AND completed_at IS NULL \
         RETURNING id), \
         spent AS ({consume} AND EXISTS (SELECT 1 FROM attempt) RETURNING 1), \
         signed AS (UPDATE users SET last_sign_in_at = $1, last_sign_in_methods = $3, second_factor_failures = 0, \
         consecutive_failures = 0, lockouts = 0, locked_until = NULL \
         WHERE id = $4 AND EXISTS (SELECT 1 FROM spent) RETURNING {USER_COLUMNS}), {tail}"
    )
}

/// The end of a statement that signs a user in, after a `WITH` part `signed` (the
/// user's row as the sign-in left it, or none when a step refused): where `mint` holds,
/// the session and its audit event are inserted for it, and the statement answers with
/// the user, their roles and their tenant's names, or raises [`REFUSED`] with `refusal`
/// (an expression giving the step that refused), which undoes every write before it.
/// A browser to remember (`$14`, null for none) is inserted with the session: on
/// PostgreSQL that saves the transaction two statements would need, three round trips.
/// `extra_columns` (each after a comma) follow the user's in the answer.
/// Its parameters are [`COMPLETE_SIGN_IN_SQL`]'s first seventeen.
fn sign_in_tail(mint: &str, refusal: &str, extra_columns: &str) -> String {
    format!(
        "browser AS (INSERT INTO remembered_browsers (id, token_hash, user_id, security_stamp, created_at, \
         last_used_at, expires_at, user_agent, strength) \
         SELECT $14, $15, id, security_stamp, $1, $1, $16, $7, $17 FROM signed WHERE {mint} \
         AND $14::text IS NOT NULL), \
         session AS (INSERT INTO sessions (token_hash, user_id, security_stamp, auth_methods, created_at, \
         last_seen_at, expires_at, user_agent, client_ip, reauthenticated_at, reauth_method, second_factor_at, \
         second_factor_method, sid) \
         SELECT $5, id, security_stamp, $3, $1, $1, $6, $7, $8, $1, $9, $1, $9, $10 FROM signed WHERE {mint}), \
         audit AS (INSERT INTO audit_events ({AUDIT_COLUMNS}) \
         SELECT $11, $1, id, scope_key, 'sign_in.succeeded', 'user:' || id, NULL, $12, $13 FROM signed WHERE {mint}) \
         SELECT CASE WHEN (SELECT COUNT(*) FROM signed) = 1 THEN 0 ELSE twofold_refuse({refusal}) END AS refused, \
         signed.*{extra_columns}, \
         (SELECT json_agg(json_build_array(r.role, r.scope_key) ORDER BY r.role, r.scope_key)::text \
         FROM role_assignments r WHERE r.user_id = $4) AS roles_json, \
         t.name AS described_tenant_name, t.display_name AS described_tenant_display_name \
         FROM (SELECT 1 AS one) AS one LEFT JOIN signed ON TRUE LEFT JOIN tenants t ON t.id = signed.tenant_id"
    )
}

/// What [`verify_opened`]'s statement raises when it counted nothing.
const NOT_COUNTED: &str = "not_counted";

/// How many time steps a verification sends tags for: the current one and
/// [`crate::totp::SKEW_STEPS`] on each side, as [`crate::totp::verify`] tries them.
pub const TAGGED_STEPS: i64 = 2 * crate::totp::SKEW_STEPS as i64 + 1;

/// [`verify_opened`]'s statement. Its parameters are [`complete_sign_in`]'s first
/// seventeen (`$2` the pending sign-in's token hash instead of its id), then the first
/// of the [`TAGGED_STEPS`] time steps the typed code is tried at (`$18`), the code's
/// tags at each of them in that order (`$19`, [`crate::secrets::Keys::step_tag`]), the
/// id of the key they were made under (`$20`), and the lockout's limits (`$21`, `$22`,
/// as `factors::reserve_attempt` takes them).
///
/// With a claim of the user's policy inputs (`$23` their 2FA switch, null for none, and
/// `$24` their tenant), the user must still have them and be in no group.
///
/// - `open`: the pending sign-in still open at the second factor, of the user's current
///   security stamp, the user neither locked nor at the limit, holding the claim, tags
///   stored under the same key for every step tried, and the authenticator the one
///   they were computed from. A snapshot read, to refuse early; the user's row is
///   checked again below under its lock.
/// - `matched`: the latest step tried whose stored tag is the typed code's, or none for
///   a wrong code. Tags are compared as the database compares text: without the key
///   nobody can make a tag, so the time a comparison takes tells nothing.
/// - `attempt`, `spent` (right codes only): the attempt completed and the time step
///   consumed (only past the stored one), in the order of [`complete_sign_in_sql`], so
///   that both statements take the rows' locks in the same order.
/// - `signed`: the user's row, updated once (PostgreSQL applies only one of two
///   changes that one statement's parts make to a row): the attempt counted
///   (`factors::reserve_counts`) for a wrong code, the counts reset and the sign-in
///   recorded for a right one, under the reservation's conditions, which PostgreSQL
///   checks again on the row as it is once any other writer of it has committed.
/// - A wrong code's count does not wait for the write-ahead log's sync, as
///   `groups::PENDING_RESERVING_SQL`'s does not; a right code's sign-in does.
///
/// The answer adds `minted` (1 for a right code's sign-in) and the attempt's id.
static VERIFY_OPENED_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let reserve_allowed = "(u.locked_until IS NULL OR u.locked_until <= $1) AND u.second_factor_failures < $21 \
         AND u.consecutive_failures < $22 \
         AND ($23::bigint IS NULL OR (u.two_factor_enabled = $23::bigint AND u.tenant_id IS NOT DISTINCT FROM $24::text))";
    let groupless = format!("($23::bigint IS NULL OR NOT {})", in_a_group("u.id"));
    let right = "(SELECT step FROM matched) IS NOT NULL";
    let digest = "sha256(convert_to(au.secret_enc, 'UTF8'))";
    let width = crate::secrets::STEP_TAG_BYTES;
    let tail = sign_in_tail(
        right,
        &format!("'{NOT_COUNTED}'"),
        &format!(", CASE WHEN {right} THEN 1 ELSE 0 END AS minted, (SELECT id FROM open) AS opened_attempt"),
    );
    let last = TAGGED_STEPS - 1;
    format!(
        "WITH open AS MATERIALIZED (SELECT a.id, a.security_stamp, a.code_tags, a.code_tags_from, a.code_secret \
         FROM sign_in_attempts a JOIN users u ON u.id = a.user_id \
         WHERE a.token_hash = $2 AND a.user_id = $4 AND a.stage = 'second_factor' AND a.completed_at IS NULL \
         AND a.expires_at > $1 AND a.security_stamp = u.security_stamp AND {reserve_allowed} AND {groupless} \
         AND a.code_tags_key = $20 AND $18::bigint >= a.code_tags_from \
         AND $18::bigint + {last} < a.code_tags_from + length(a.code_tags) / {width} \
         AND EXISTS (SELECT 1 FROM authenticators au WHERE au.user_id = u.id AND au.confirmed = 1 \
         AND {digest} = a.code_secret)), \
         matched AS MATERIALIZED (SELECT max($18::bigint + k) AS step FROM open, generate_series(0, {last}) AS k \
         WHERE substr(open.code_tags, (($18::bigint + k - open.code_tags_from) * {width} + 1)::int, {width}) \
         = substr($19::bytea, (k * {width} + 1)::int, {width})), \
         unsynced AS MATERIALIZED (SELECT set_config('synchronous_commit', \
         CASE WHEN {right} THEN current_setting('synchronous_commit') ELSE 'off' END, true) AS setting), \
         attempt AS (UPDATE sign_in_attempts SET completed_at = $1 WHERE {right} \
         AND id = (SELECT id FROM open) AND completed_at IS NULL RETURNING id), \
         spent AS (UPDATE authenticators au SET last_used_step = (SELECT step FROM matched) WHERE au.user_id = $4 \
         AND au.confirmed = 1 AND {digest} = (SELECT code_secret FROM open) \
         AND au.last_used_step < (SELECT step FROM matched) AND EXISTS (SELECT 1 FROM attempt) RETURNING 1), \
         signed AS (UPDATE users u SET \
         second_factor_failures = CASE WHEN m.step IS NULL THEN u.second_factor_failures + 1 ELSE 0 END, \
         consecutive_failures = CASE WHEN m.step IS NULL THEN u.consecutive_failures + 1 ELSE 0 END, \
         lockouts = CASE WHEN m.step IS NULL THEN u.lockouts ELSE 0 END, \
         locked_until = CASE WHEN m.step IS NULL THEN u.locked_until ELSE NULL END, \
         last_sign_in_at = CASE WHEN m.step IS NULL THEN u.last_sign_in_at ELSE $1 END, \
         last_sign_in_methods = CASE WHEN m.step IS NULL THEN u.last_sign_in_methods ELSE $3 END \
         FROM open, matched m, unsynced WHERE unsynced.setting IS NOT NULL AND u.id = $4 \
         AND u.security_stamp = open.security_stamp AND {reserve_allowed} \
         AND (m.step IS NULL OR EXISTS (SELECT 1 FROM spent)) RETURNING {}), {tail}",
        USER_COLUMNS.split(',').map(|c| format!("u.{}", c.trim())).collect::<Vec<_>>().join(", ")
    )
});

/// A verification of an authenticator code in one statement, as [`verify_opened`]
/// writes it: [`CompleteSignIn`] with the pending sign-in named by its token hash
/// (`attempt_id`), and the typed code's tags.
#[derive(Debug)]
pub struct VerifyOpened<'a> {
    pub sign_in: CompleteSignIn<'a>,
    /// The first of the [`TAGGED_STEPS`] time steps the code is tried at.
    pub first_step: i64,
    /// The code's tags at each of those steps, in order.
    pub tags: &'a [u8],
    /// The id of the key the tags were made under.
    pub key: &'a str,
    pub max_failures: i64,
    pub permanent_after: i64,
    /// The user's tenant and 2FA switch as the pending sign-in's token claims them
    /// (`signin::opened::Claim`), which the policy was resolved from: the statement
    /// writes nothing unless the user's row still has them and the user is in no group.
    pub claim: Option<(Option<&'a str>, bool)>,
}

/// What [`verify_opened`] wrote.
#[derive(Debug)]
pub struct Verified {
    /// The user as the statement left them, with their roles and tenant's names.
    pub user: UserRow,
    pub described: Description,
    /// Whether the code was right and the sign-in completed; otherwise it was counted.
    pub signed_in: bool,
    /// The pending sign-in's id.
    pub attempt_id: String,
}

/// The one statement of a verification of an authenticator code (PostgreSQL only;
/// `signin::opened`): for a right code the attempt counted and the sign-in completed
/// as [`complete_sign_in`] completes it, for a wrong code the attempt counted
/// (`factors::reserve_attempt`), each only where the reservation would count one and
/// the pending sign-in's tags were computed from the authenticator as it is. `None`
/// when it wrote nothing, for the general way to answer.
pub async fn verify_opened(conn: &mut AnyConnection, v: &VerifyOpened<'_>) -> Result<Option<Verified>, sqlx::Error> {
    use sqlx::Row;
    let (claimed_tenant, claimed_switch) = match v.claim {
        Some((tenant, switch)) => (tenant, Some(i64::from(switch))),
        None => (None, None),
    };
    let tail =
        direct::args![v.first_step, v.tags, v.key, v.max_failures, v.permanent_after, claimed_switch, claimed_tenant];
    let Ok((user, described, row)) = signing_in(conn, VERIFY_OPENED_SQL.as_str(), &v.sign_in, &tail).await? else {
        return Ok(None);
    };
    let minted: i64 = row.try_get("minted")?;
    let attempt_id: Option<String> = row.try_get("opened_attempt")?;
    Ok(Some(Verified { user, described, signed_in: minted == 1, attempt_id: attempt_id.unwrap_or_default() }))
}

/// Runs a statement that ends in [`sign_in_tail`] with `c`'s parameters, then `more`:
/// the user with their description and the row they were read from, or the step the
/// statement named when it refused.
async fn signing_in(
    conn: &mut AnyConnection,
    sql: &str,
    c: &CompleteSignIn<'_>,
    more: &[direct::Arg],
) -> Result<Result<(UserRow, Description, sqlx::any::AnyRow), String>, sqlx::Error> {
    use sqlx::Row;
    let after = serde_json::json!({ "methods": c.methods }).to_string();
    let address = REQUEST_ADDRESS.try_with(ToString::to_string).ok();
    let mut args = Vec::from(direct::args![
        c.now,
        c.attempt_id,
        c.methods,
        c.user_id,
        c.token_hash,
        c.expires_at,
        c.user_agent,
        c.client_ip,
        c.method,
        c.sid,
        uuid::Uuid::now_v7().to_string(),
        after,
        address,
        c.browser.map(|b| b.id),
        c.browser.map(|b| b.token_hash),
        c.browser.map(|b| b.expires_at),
        c.browser.map(|b| b.strength),
    ]);
    args.extend_from_slice(more);
    let row = match sqlx::query_with(sqlx::AssertSqlSafe(sql), direct::sqlx_arguments(&args)?).fetch_one(conn).await {
        Ok(row) => row,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(REFUSED) => {
            return Ok(Err(e.message().to_owned()));
        }
        Err(e) => return Err(e),
    };
    let user = UserRow::from_row(&row)?;
    let roles_json: Option<String> = row.try_get("roles_json")?;
    let pairs: Vec<(String, String)> = match roles_json {
        Some(json) => serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        None => Vec::new(),
    };
    let roles =
        pairs.into_iter().map(|(role, scope_key)| RoleRow { user_id: user.id.clone(), role, scope_key }).collect();
    let tenant = match (row.try_get("described_tenant_name")?, row.try_get("described_tenant_display_name")?) {
        (Some(name), Some(display_name)) => Some(TenantNames { name, display_name }),
        _ => None,
    };
    Ok(Ok((user, Description { roles, tenant }, row)))
}

/// `sql` with each parameter `$n` renumbered `$(n + by)`.
fn shift_parameters(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// The completing writes of a sign-in that proved a second factor, on PostgreSQL, as
/// one statement: the attempt completed, the factor consumed, the sign-in recorded on
/// the user (failure counts and lock reset), the session, its audit event and a
/// browser to remember inserted. The same writes as `complete_attempt`,
/// `Spend::consume`, [`record_sign_in`], [`insert_session`], `factors::insert_browser`
/// and [`insert_audit`] one after another, which take eight round trips with the
/// transaction's own. It also reads the user's roles and tenant's names, which the
/// answer names, saving the read after the commit. A refusal writes nothing, so the
/// statement needs no transaction.
pub async fn complete_sign_in(conn: &mut AnyConnection, c: &CompleteSignIn<'_>) -> Result<SignInWrite, sqlx::Error> {
    let (consume, consume_args) = c.consume;
    let sql = match COMPLETE_SIGN_IN_SQL.get(consume) {
        Some(sql) => std::borrow::Cow::Borrowed(sql.as_str()),
        None => std::borrow::Cow::Owned(complete_sign_in_sql(consume)),
    };
    Ok(match signing_in(conn, &sql, c, consume_args).await? {
        Ok((user, described, _)) => SignInWrite::Minted(Box::new(user), described),
        Err(refused) => match refused.as_str() {
            ATTEMPT_TAKEN => SignInWrite::AttemptTaken,
            FACTOR_TAKEN => SignInWrite::FactorTaken,
            _ => SignInWrite::UserGone,
        },
    })
}

pub async fn count_users(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await
}

// ---------------------------------------------------------------- roles

#[derive(Debug, Clone, FromRow)]
pub struct RoleRow {
    pub user_id: String,
    pub role: String,
    pub scope_key: String,
}

pub async fn all_roles(pool: &AnyPool) -> Result<Vec<RoleRow>, sqlx::Error> {
    sqlx::query_as("SELECT user_id, role, scope_key FROM role_assignments").fetch_all(pool).await
}

pub(super) const ROLES_SQL: &str =
    "SELECT user_id, role, scope_key FROM role_assignments WHERE user_id = $1 ORDER BY role, scope_key";

/// A tenant's name and display name.
#[derive(Debug, Clone)]
pub struct TenantNames {
    pub name: String,
    pub display_name: String,
}

/// What an answer that describes a user names beside the user row: their roles and
/// their tenant's names ([`Db::roles_and_tenant_names`]).
#[derive(Debug)]
pub struct Description {
    pub roles: Vec<RoleRow>,
    pub tenant: Option<TenantNames>,
}

/// One row of [`ROLES_WITH_TENANT_SQL`]: a role (or nulls without any) beside the
/// tenant's names (or nulls without a tenant).
#[derive(Debug, FromRow)]
struct RoleWithTenantRow {
    role: Option<String>,
    scope_key: Option<String>,
    tenant_name: Option<String>,
    tenant_display_name: Option<String>,
}

/// [`ROLES_SQL`] and the tenant's names in one statement: always at least one row.
const ROLES_WITH_TENANT_SQL: &str = "SELECT r.role, r.scope_key, t.name AS tenant_name, \
     t.display_name AS tenant_display_name FROM (SELECT 1 AS one) AS one \
     LEFT JOIN tenants t ON t.id = $2 LEFT JOIN role_assignments r ON r.user_id = $1 \
     ORDER BY r.role, r.scope_key";

pub async fn roles_of(pool: &AnyPool, user_id: &str) -> Result<Vec<RoleRow>, sqlx::Error> {
    sqlx::query_as(ROLES_SQL).bind(user_id).fetch_all(pool).await
}

/// Returns whether the assignment is new.
pub async fn grant_role(
    conn: &mut AnyConnection,
    user_id: &str,
    role: &str,
    scope_key: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO role_assignments (user_id, role, scope_key, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(role)
    .bind(scope_key)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn revoke_role(
    conn: &mut AnyConnection,
    user_id: &str,
    role: &str,
    scope_key: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM role_assignments WHERE user_id = $1 AND role = $2 AND scope_key = $3")
        .bind(user_id)
        .bind(role)
        .bind(scope_key)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

// ---------------------------------------------------------------- sessions

#[derive(Debug)]
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub user_id: &'a str,
    pub security_stamp: &'a str,
    pub auth_methods: &'a str,
    pub now: i64,
    pub expires_at: i64,
    pub user_agent: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub reauthenticated_at: Option<i64>,
    pub reauth_method: Option<&'a str>,
    /// The second factor this sign-in proved, if any (its time is `now`).
    pub second_factor_method: Option<&'a str>,
    /// The session's public id (the `sid` of ID tokens).
    pub sid: &'a str,
}

pub async fn insert_session(conn: &mut impl direct::Exec, s: &NewSession<'_>) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO sessions (token_hash, user_id, security_stamp, auth_methods, created_at, \
               last_seen_at, expires_at, user_agent, client_ip, reauthenticated_at, reauth_method, \
               second_factor_at, second_factor_method, sid) \
               VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    let args = direct::args![
        s.token_hash,
        s.user_id,
        s.security_stamp,
        s.auth_methods,
        s.now,
        s.expires_at,
        s.user_agent,
        s.client_ip,
        s.reauthenticated_at,
        s.reauth_method,
        s.second_factor_method.map(|_| s.now),
        s.second_factor_method,
        s.sid,
    ];
    conn.run(sql, &args).await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub user_id: String,
    #[sqlx(rename = "session_stamp")]
    pub security_stamp: String,
    pub auth_methods: String,
    #[sqlx(rename = "session_created_at")]
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub reauthenticated_at: Option<i64>,
    pub reauth_method: Option<String>,
    pub second_factor_at: Option<i64>,
    pub second_factor_method: Option<String>,
    /// The public id: the `sid` of ID tokens, and what the session lists show.
    pub sid: Option<String>,
    /// The session's user as stored now, so the caller can refuse sessions made under an
    /// old security profile without a second query.
    #[sqlx(flatten)]
    pub user: UserRow,
}

/// The statement of [`find_session`].
pub(crate) const SESSION_SQL: &str = "SELECT s.user_id, s.security_stamp AS session_stamp, s.auth_methods, s.created_at AS session_created_at, \
         s.last_seen_at, s.expires_at, s.reauthenticated_at, u.id, u.scope_key, u.tenant_id, u.username, u.email, \
         u.email_confirmed, u.phone_confirmed, u.has_authenticator, u.password_hash, u.two_factor_enabled, \
         u.security_stamp, u.created_at, u.phone, u.second_factor_failures, u.locked_until, \
         u.enrollment_required_since, u.pending_email, u.pending_phone, u.lockouts, u.consecutive_failures, \
         u.last_sign_in_at, u.last_sign_in_methods, u.deactivated_at, u.must_change_password, u.passkey_count, s.reauth_method, \
         s.second_factor_at, s.second_factor_method, s.sid \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND u.deactivated_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = u.tenant_id AND t.suspended_at IS NOT NULL)";

/// The session with its user, in one indexed join: every authenticated request runs it.
pub async fn find_session<'e, E>(executor: E, token_hash: &str) -> Result<Option<SessionRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(SESSION_SQL).bind(token_hash).fetch_optional(executor).await
}

pub async fn touch_session(conn: &mut AnyConnection, token_hash: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
        .bind(now)
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives a session from before public session ids its `sid`, once.
pub async fn ensure_session_sid(conn: &mut AnyConnection, token_hash: &str, sid: &str) -> Result<String, sqlx::Error> {
    sqlx::query("UPDATE sessions SET sid = $1 WHERE token_hash = $2 AND sid IS NULL")
        .bind(sid)
        .bind(token_hash)
        .execute(&mut *conn)
        .await?;
    let stored: Option<(Option<String>,)> =
        sqlx::query_as("SELECT sid FROM sessions WHERE token_hash = $1").bind(token_hash).fetch_optional(conn).await?;
    Ok(stored.and_then(|(s,)| s).unwrap_or_else(|| sid.to_owned()))
}

/// Ends the session whose public id is `sid`; whether there was one.
pub async fn delete_session_by_sid(conn: &mut AnyConnection, sid: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE sid = $1").bind(sid).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

pub async fn delete_session(conn: &mut AnyConnection, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(conn).await?;
    Ok(())
}

/// A session as its owner and admins see it listed.
#[derive(Debug, Clone, FromRow)]
pub struct SessionListRow {
    pub id: String,
    pub security_stamp: String,
    pub auth_methods: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
}

/// A user's unexpired sessions, most recently used first.
pub async fn list_sessions(pool: &AnyPool, user_id: &str, now: i64) -> Result<Vec<SessionListRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sid AS id, security_stamp, auth_methods, created_at, last_seen_at, expires_at, user_agent, client_ip \
         FROM sessions \
         WHERE user_id = $1 AND expires_at > $2 AND sid IS NOT NULL ORDER BY last_seen_at DESC, sid",
    )
    .bind(user_id)
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Ends one session of `user_id`; false when the user has no session with that id.
pub async fn delete_session_by_id(conn: &mut AnyConnection, user_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND sid = $2")
        .bind(user_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Ends every session of `user_id` except the one with id `keep`; returns how many.
pub async fn delete_other_sessions(conn: &mut AnyConnection, user_id: &str, keep: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND (sid IS NULL OR sid <> $2)")
        .bind(user_id)
        .bind(keep)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

// ---------------------------------------------------------------- lifecycle

/// Deactivates (`at` = Some) or reactivates (None) a user; false when nothing changed.
pub async fn set_user_deactivated(conn: &mut AnyConnection, id: &str, at: Option<i64>) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE users SET deactivated_at = $1 WHERE id = $2 AND ((deactivated_at IS NULL) <> ($1 IS NULL))",
    )
    .bind(at)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Suspends (`at` = Some) or resumes (None) a tenant; false when nothing changed.
pub async fn set_tenant_suspended(conn: &mut AnyConnection, id: &str, at: Option<i64>) -> Result<bool, sqlx::Error> {
    let r =
        sqlx::query("UPDATE tenants SET suspended_at = $1 WHERE id = $2 AND ((suspended_at IS NULL) <> ($1 IS NULL))")
            .bind(at)
            .bind(id)
            .execute(conn)
            .await?;
    Ok(r.rows_affected() > 0)
}

/// Ends every session and pending sign-in of the tenant's users.
pub async fn end_tenant_sessions(conn: &mut AnyConnection, tenant_id: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE tenant_id = $1)")
        .bind(tenant_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM sign_in_attempts WHERE user_id IN (SELECT id FROM users WHERE tenant_id = $1)")
        .bind(tenant_id)
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected())
}

/// The condition of the index on users' audit targets (migrations `sqlite/0013`,
/// `postgres/0016`), which a statement must repeat word for word for either database to
/// read that index.
const USER_TARGET: &str = "substr(target, 1, 5) = 'user:'";

/// The condition of the index on audit events' actors (migrations `sqlite/0014`,
/// `postgres/0018`): events about their actor themselves (a sign-in, a change of one's
/// own account: most of the trail) are left out, since the index on users' targets
/// holds them; each such event costs one index entry fewer.
const ACTOR_INDEXED: &str = "target <> 'user:' || actor_user_id";

/// Audit fields that hold personal data; erased from the trail when their user is
/// deleted. Ids stay: a user id is random and means nothing once the user is gone.
const PERSONAL_AUDIT_FIELDS: &[&str] = &["username", "email", "phone", "sent_to", "user_agent", "client_ip"];

/// Erases personal data from every audit event about the users selected by
/// `user_filter` (a subquery over `users` taking `$1`), keeping the events.
async fn erase_personal_audit_data(
    conn: &mut AnyConnection,
    user_filter: &str,
    bind: &str,
) -> Result<u64, sqlx::Error> {
    let rows: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(personal_audit_sql(user_filter))).bind(bind).fetch_all(&mut *conn).await?;
    let mut changed = 0;
    for (id, before, after) in rows {
        let (before_clean, b) = erase_fields(before.as_deref());
        let (after_clean, a) = erase_fields(after.as_deref());
        if b || a {
            sqlx::query("UPDATE audit_events SET before_json = $1, after_json = $2 WHERE id = $3")
                .bind(before_clean)
                .bind(after_clean)
                .bind(&id)
                .execute(&mut *conn)
                .await?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// The events about the users `user_filter` selects, through the index on users' targets.
fn personal_audit_sql(user_filter: &str) -> String {
    format!(
        "SELECT id, before_json, after_json FROM audit_events WHERE {USER_TARGET} AND target IN \
         (SELECT 'user:' || id FROM users WHERE {user_filter})"
    )
}

/// The JSON with personal fields replaced by `"erased"`, and whether any was.
fn erase_fields(raw: Option<&str>) -> (Option<String>, bool) {
    let Some(raw) = raw else { return (None, false) };
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(raw) else {
        return (Some(raw.to_owned()), false);
    };
    let mut erased = false;
    for field in PERSONAL_AUDIT_FIELDS {
        if let Some(v) = map.get_mut(*field)
            && !v.is_null()
        {
            *v = serde_json::Value::String("erased".to_owned());
            erased = true;
        }
    }
    (Some(serde_json::Value::Object(map).to_string()), erased)
}

/// Deletes a user and everything that is theirs (factors, sessions, browsers, roles
/// follow by cascade), erasing personal data from the audit trail in the same
/// transaction.
pub async fn delete_user(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    erase_personal_audit_data(conn, "id = $1", id).await?;
    let r = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *conn).await?;
    Ok(r.rows_affected() > 0)
}

/// Deletes a tenant with its users (and all that is theirs), settings, role
/// assignments, in the caller's transaction. Its audit events stay,
/// with personal data erased, so the host keeps the record.
pub async fn delete_tenant(conn: &mut AnyConnection, id: &str) -> Result<u64, sqlx::Error> {
    erase_personal_audit_data(conn, "tenant_id = $1", id).await?;
    let users = sqlx::query("DELETE FROM users WHERE tenant_id = $1").bind(id).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM role_assignments WHERE scope_key = $1").bind(id).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM scope_settings WHERE scope_key = $1").bind(id).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM tenants WHERE id = $1").bind(id).execute(&mut *conn).await?;
    Ok(users.rows_affected())
}

// ---------------------------------------------------------------- password resets

/// Stores a reset link's token hash, voiding the user's earlier links.
pub async fn insert_password_reset(
    conn: &mut AnyConnection,
    token_hash: &str,
    user_id: &str,
    issued_by: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM password_resets WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO password_resets (token_hash, user_id, issued_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(issued_by)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Uses a reset link once: the user it was issued for, when it was unused and unexpired.
/// One conditional statement, so two requests racing with one link cannot both win.
pub async fn use_password_reset(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let user: Option<String> = sqlx::query_scalar(
        "UPDATE password_resets SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id",
    )
    .bind(now)
    .bind(token_hash)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = &user {
        sqlx::query("DELETE FROM password_resets WHERE user_id = $1 AND token_hash <> $2")
            .bind(id)
            .bind(token_hash)
            .execute(conn)
            .await?;
    }
    Ok(user)
}

/// Sets a password an admin chose for the user, which they must change at sign-in.
pub async fn set_temporary_password(conn: &mut AnyConnection, user_id: &str, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $1, must_change_password = 1 WHERE id = $2")
        .bind(hash)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- audit

#[derive(Debug)]
pub struct NewAudit<'a> {
    pub at: i64,
    pub actor_user_id: Option<&'a str>,
    pub scope_key: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

tokio::task_local! {
    /// The client address of the request being served, set once per request by the
    /// router (see `app::client_address_scope`), so that every audit event a request
    /// writes records it without each call site passing it along.
    pub static REQUEST_ADDRESS: std::net::IpAddr;
}

static INSERT_AUDIT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES ({})", placeholders(1, AUDIT_COLUMNS))
});

pub async fn insert_audit(conn: &mut impl direct::Exec, e: &NewAudit<'_>) -> Result<(), sqlx::Error> {
    conn.run(&INSERT_AUDIT_SQL, &audit_args(e)).await?;
    Ok(())
}

/// The columns an audit event is inserted with, in the order of [`audit_args`].
pub(crate) const AUDIT_COLUMNS: &str =
    "id, at, actor_user_id, scope_key, action, target, before_json, after_json, client_ip";

/// The values of a new audit event for [`AUDIT_COLUMNS`]: a new id, and the address
/// of the request being served.
pub(crate) fn audit_args(e: &NewAudit<'_>) -> [direct::Arg; 9] {
    direct::args![
        uuid::Uuid::now_v7().to_string(),
        e.at,
        e.actor_user_id,
        e.scope_key,
        e.action,
        e.target,
        e.before.as_ref().map(|v| v.to_string()),
        e.after.as_ref().map(|v| v.to_string()),
        REQUEST_ADDRESS.try_with(ToString::to_string).ok(),
    ]
}

/// `$first, $first+1, ...`, one for each of the comma-separated `columns`.
pub(crate) fn placeholders(first: usize, columns: &str) -> String {
    let n = columns.split(',').count();
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: String,
    pub at: i64,
    pub actor_user_id: Option<String>,
    pub scope_key: String,
    pub action: String,
    pub target: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub client_ip: Option<String>,
}

/// What to select from the audit trail; `None` leaves a field unfiltered.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub scope_key: Option<&'a str>,
    /// The id of the last event of the previous page.
    pub before: Option<&'a str>,
    /// An exact action (`user.created`), or a family ending in a dot (`user.`).
    pub action: Option<&'a str>,
    pub actor: Option<&'a str>,
    /// A user the events are about (`target = user:<id>`).
    pub target: Option<&'a str>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub client_ip: Option<&'a str>,
}

/// Newest first.
pub async fn list_audit(pool: &AnyPool, f: &AuditFilter<'_>, limit: i64) -> Result<Vec<AuditRow>, sqlx::Error> {
    let (sql, args) = audit_query(f, limit);
    sqlx::query_as_with(sqlx::AssertSqlSafe(sql), direct::sqlx_arguments(&args)?).fetch_all(pool).await
}

/// [`list_audit`]'s statement, with a condition only for each filter given: a catch-all
/// `($n IS NULL OR column = $n)` is planned before its value is known, so neither
/// database could use the scope, actor or target indexes for it, and a search for a
/// rare actor read the whole trail newest first.
fn audit_query(f: &AuditFilter<'_>, limit: i64) -> (String, Vec<direct::Arg>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut args: Vec<direct::Arg> = Vec::new();
    let mut add = |condition: &str, arg: direct::Arg| {
        args.push(arg);
        // A condition names its parameter `$?` (once or more), numbered here in order.
        conditions.push(condition.replace("$?", &format!("${}", args.len())));
    };
    if let Some(scope) = f.scope_key {
        add("scope_key = $?", scope.into());
    }
    if let Some(before) = f.before {
        add("id < $?", before.into());
    }
    match f.action {
        // A family is matched by comparing the prefix, not with LIKE, in which the '_'
        // of action names would be a wildcard.
        Some(family) if family.ends_with('.') => add("substr(action, 1, length($?)) = $?", family.into()),
        Some(exact) => add("action = $?", exact.into()),
        None => {}
    }
    if let Some(actor) = f.actor {
        // The actor's index leaves out events about the actors themselves (see
        // ACTOR_INDEXED), which the index on users' targets holds.
        add(
            &format!(
                "((actor_user_id = $? AND {ACTOR_INDEXED}) \
                 OR (target = 'user:' || $? AND {USER_TARGET} AND actor_user_id = $?))"
            ),
            actor.into(),
        );
    }
    if let Some(target) = f.target {
        add(&format!("target = $? AND {USER_TARGET}"), format!("user:{target}").into());
    }
    if let Some(from) = f.from_ms {
        add("at >= $?", from.into());
    }
    if let Some(to) = f.to_ms {
        add("at < $?", to.into());
    }
    if let Some(ip) = f.client_ip {
        add("client_ip = $?", ip.into());
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    args.push(limit.into());
    let sql = format!(
        "SELECT id, at, actor_user_id, scope_key, action, target, before_json, after_json, client_ip \
         FROM audit_events{filter} ORDER BY id DESC LIMIT ${}",
        args.len()
    );
    (sql, args)
}

/// The names (and scopes) of the users with these ids, for showing an audit page.
pub async fn user_names(pool: &AnyPool, ids: &[String]) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let mut out = Vec::with_capacity(ids.len());
    // Pages are at most a few hundred events; chunks keep the statement small.
    for chunk in ids.chunks(100) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT id, username, scope_key FROM users WHERE id IN ({})", marks.join(", "));
        let mut q = sqlx::query_as::<_, (String, String, String)>(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id);
        }
        out.extend(q.fetch_all(pool).await?);
    }
    Ok(out)
}

mod batch;
pub mod direct;
pub mod factors;
pub mod groups;
pub mod hot;
pub mod housekeeping;
mod lookup;
pub mod messages;
pub mod oidc;
pub mod passkeys;
pub mod stamps;

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn parameters_are_renumbered_wherever_they_stand() {
        assert_eq!(
            shift_parameters("UPDATE t SET a = $1 WHERE b = $2 AND c < $1 AND d = $12", 13),
            "UPDATE t SET a = $14 WHERE b = $15 AND c < $14 AND d = $25"
        );
        assert_eq!(shift_parameters("SELECT 1", 13), "SELECT 1");
    }

    #[test]
    fn every_consuming_statement_fits_the_one_statement_sign_in() {
        for sql in CONSUMING_STATEMENTS {
            assert!(sql.starts_with("UPDATE ") && sql.contains(" WHERE "), "{sql}");
            assert!(!sql.contains(" RETURNING ") && !sql.contains(" ORDER BY "), "{sql}");
        }
    }

    async fn sqlite_file() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, 2).await.expect("connect");
        db.migrate().await.expect("migrate");
        (dir, db)
    }

    #[tokio::test]
    async fn an_audit_search_by_scope_actor_or_target_reads_its_index() {
        let (_dir, db) = sqlite_file().await;
        let plan_of = |sql: String, args: Vec<direct::Arg>| {
            let pool = db.pool.clone();
            async move {
                let args = direct::sqlx_arguments(&args).expect("arguments");
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as_with(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")), args)
                        .fetch_all(&pool)
                        .await
                        .expect("plan");
                rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
            }
        };
        let plan = |f: AuditFilter<'static>| {
            let (sql, args) = audit_query(&f, 50);
            plan_of(sql, args)
        };
        // By actor: events about someone else on the actor's index, events about the
        // actor themselves on the users' targets'.
        let by_actor = plan(AuditFilter { actor: Some("u1"), before: Some("z"), ..Default::default() }).await;
        assert!(by_actor.contains("INDEX audit_events_actor"), "{by_actor}");
        assert!(by_actor.contains("INDEX audit_events_user_target"), "{by_actor}");
        let by_target = plan(AuditFilter { target: Some("u1"), action: Some("user."), ..Default::default() }).await;
        assert!(by_target.contains("INDEX audit_events_user_target"), "{by_target}");
        let by_scope = plan(AuditFilter { scope_key: Some("t1"), ..Default::default() }).await;
        assert!(by_scope.contains("INDEX audit_scope_id"), "{by_scope}");
        // Erasing a deleted tenant's users' personal data finds their events the same way.
        let erased = plan_of(personal_audit_sql("tenant_id = $1"), vec!["t1".into()]).await;
        assert!(erased.contains("INDEX audit_events_user_target"), "{erased}");

        // Each filter, alone and combined, still selects what it selected before.
        for (id, actor, action, target) in [
            ("01", "u1", "user.created", "user:u1"),
            ("02", "u2", "user.updated", "user:u1"),
            ("03", "u1", "sign_in.succeeded", "user:u1"),
            ("04", "u1", "group.member_added", "user:u2"),
        ] {
            sqlx::query("INSERT INTO audit_events (id, at, actor_user_id, scope_key, action, target) VALUES ($1, 1, $2, 'host', $3, $4)")
                .bind(id)
                .bind(actor)
                .bind(action)
                .bind(target)
                .execute(&db.pool)
                .await
                .expect("insert");
        }
        let ids = |rows: Vec<AuditRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        // Both halves of the actor's events: about themselves (01, 03), about another (04).
        let f = AuditFilter { actor: Some("u1"), ..Default::default() };
        assert_eq!(ids(list_audit(&db.pool, &f, 10).await.expect("list")), ["04", "03", "01"]);
        let f = AuditFilter { actor: Some("u2"), ..Default::default() };
        assert_eq!(ids(list_audit(&db.pool, &f, 10).await.expect("list")), ["02"]);
        let f = AuditFilter { action: Some("user."), target: Some("u1"), before: Some("02"), ..Default::default() };
        assert_eq!(ids(list_audit(&db.pool, &f, 10).await.expect("list")), ["01"]);
        let f = AuditFilter { action: Some("user.updated"), scope_key: Some("host"), ..Default::default() };
        assert_eq!(ids(list_audit(&db.pool, &f, 10).await.expect("list")), ["02"]);
        assert_eq!(ids(list_audit(&db.pool, &AuditFilter::default(), 2).await.expect("list")), ["04", "03"]);
    }

    #[tokio::test]
    async fn a_sqlite_write_job_runs_on_the_writer_thread() {
        let (_dir, db) = sqlite_file().await;
        let name = db.on_writer(async { std::thread::current().name().map(str::to_owned) }).await.expect("job");
        assert_eq!(name.as_deref(), Some("twofold-writer"));
    }

    #[tokio::test]
    async fn a_write_job_whose_caller_stopped_waiting_still_commits() {
        let (_dir, db) = sqlite_file().await;
        let store = db.clone();
        let job = async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut tx = store.begin_write().await?;
            sqlx::query(
                "INSERT INTO audit_events (id, at, scope_key, action, target) VALUES ('a', 1, 'host', 'abandoned', 't')",
            )
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        };
        // The caller gives up long before the job is done, as a client that went away.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), db.on_writer(job)).await;
        assert!(gave_up.is_err(), "the job should still have been running");
        let mut found = 0;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            found = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM audit_events WHERE action = 'abandoned'")
                .fetch_one(&db.pool)
                .await
                .expect("count");
            if found == 1 {
                break;
            }
        }
        assert_eq!(found, 1, "the transaction was cut short with its caller");
    }

    /// The rusqlite reads fill the same rows as their sqlx versions, every column
    /// included, set or null; and miss where those miss.
    #[tokio::test]
    async fn the_sqlite_lookups_read_what_sqlx_reads() {
        let (_dir, db) = sqlite_file().await;
        assert!(db.lookups.is_some(), "a SQLite file should get the direct reads");
        let mut conn = db.pool.acquire().await.expect("connection");
        for (id, full) in [("u-full", true), ("u-bare", false)] {
            insert_user(
                &mut conn,
                &NewUser {
                    id,
                    scope_key: HOST_SCOPE,
                    tenant_id: None,
                    username: id,
                    username_key: id,
                    email: full.then_some("a@example.com"),
                    phone: full.then_some("+4915112345678"),
                    password_hash: "hash",
                    security_stamp: "stamp",
                    created_at: 7,
                },
            )
            .await
            .expect("user");
        }
        sqlx::query(
            "UPDATE users SET email_confirmed = 1, locked_until = 9, enrollment_required_since = 10, \
             pending_email = 'b@example.com', pending_phone = '+4915100000000', lockouts = 2, \
             consecutive_failures = 3, last_sign_in_at = 11, last_sign_in_methods = 'pwd', deactivated_at = NULL, \
             must_change_password = 1, passkey_count = 4, second_factor_failures = 5 WHERE id = 'u-full'",
        )
        .execute(&mut *conn)
        .await
        .expect("columns");
        for (id, name, require, strength) in
            [("g1", "Admins", true, Some(Strength::PhishingResistant)), ("g2", "Plain", false, None)]
        {
            let rule = twofold_policy::Rule { require_two_factor: require, min_strength: strength };
            let group = groups::NewGroup { id, scope_key: HOST_SCOPE, name, name_key: name, rule, now: 1 };
            groups::insert_group(&mut conn, &group).await.expect("group");
            groups::add_member(&mut conn, id, "u-full", HOST_SCOPE, 1).await.expect("member");
        }
        for (token, user, sid) in [("t-full", "u-full", "s1"), ("t-bare", "u-bare", "s2")] {
            let session = NewSession {
                token_hash: token,
                user_id: user,
                security_stamp: "stamp",
                auth_methods: "pwd+authenticator",
                now: 20,
                expires_at: 30,
                user_agent: None,
                client_ip: None,
                reauthenticated_at: (user == "u-full").then_some(21),
                reauth_method: (user == "u-full").then_some("password"),
                second_factor_method: (user == "u-full").then_some("authenticator"),
                sid,
            };
            insert_session(&mut *conn, &session).await.expect("session");
        }
        let attempt = factors::NewAttempt {
            token_hash: "a-hash",
            id: "a1",
            user_id: "u-full",
            stage: "second_factor",
            security_stamp: "stamp",
            created_at: 1,
            expires_at: 2,
        };
        factors::insert_attempt(&mut db.pool.acquire().await.expect("connection"), &attempt).await.expect("attempt");
        drop(conn);
        let Some(lookups) = db.lookups.clone() else { return };
        for token in ["t-full", "t-bare", "t-none"] {
            let direct = format!("{:?}", lookups.session(token).expect("direct"));
            let sqlx = format!("{:?}", find_session(&db.pool, token).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "session {token}");
        }
        for user in ["u-full", "u-bare", "u-none"] {
            let direct = format!("{:?}", lookups.user_with_rules(user).expect("direct"));
            let sqlx = format!("{:?}", groups::user_with_rules(&db.pool, user).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "user {user}");
        }
        for user in ["u-full", "u-bare", "u-none"] {
            let direct = lookups.subject(user).expect("direct");
            let sqlx = groups::subject(&db.pool, user).await.expect("sqlx");
            assert_eq!(direct, sqlx, "subject {user}");
            let whole = lookups.user_with_rules(user).expect("direct").map(|(u, groups)| groups::Subject {
                tenant_id: u.tenant_id.map(Into::into),
                two_factor_enabled: u.two_factor_enabled != 0,
                groups,
            });
            assert_eq!(direct, whole, "subject {user} against the whole user");
        }
        let full = lookups.user_with_rules("u-full").expect("direct").expect("found");
        assert_eq!(full.1.len(), 1, "only the group with a rule counts");
        assert_eq!(full.0.passkey_count, 4);
        for token in ["a-hash", "a-none"] {
            let direct = format!("{:?}", lookups.attempt(token).expect("direct"));
            let sqlx = format!("{:?}", factors::find_attempt(&db.pool, token).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "attempt {token}");
        }
        sqlx::query("INSERT INTO authenticators (user_id, secret_enc, confirmed, last_used_step, created_at) VALUES ('u-full', 'enc', 1, 42, 1)")
            .execute(&db.pool)
            .await
            .expect("authenticator");
        for user in ["u-full", "u-bare"] {
            let direct = format!("{:?}", lookups.authenticator(user).expect("direct"));
            let sqlx = format!("{:?}", factors::get_authenticator(&db.pool, user).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "authenticator {user}");
        }
        let mut conn = db.pool.acquire().await.expect("connection");
        for (role, scope) in [("tenant_admin", "t1"), ("host_admin", HOST_SCOPE)] {
            grant_role(&mut conn, "u-full", role, scope, 1).await.expect("role");
        }
        let tenant = TenantRow {
            id: "t1".into(),
            name: "acme".into(),
            display_name: "Acme".into(),
            feature_behaviour: "optional".into(),
            created_at: 3,
            suspended_at: None,
        };
        insert_tenant(&mut conn, &tenant).await.expect("tenant");
        sqlx::query("UPDATE tenants SET suspended_at = 4").execute(&mut *conn).await.expect("suspend");
        drop(conn);
        for user in ["u-full", "u-bare"] {
            let direct = format!("{:?}", lookups.roles(user).expect("direct"));
            let sqlx = format!("{:?}", roles_of(&db.pool, user).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "roles {user}");
        }
        assert_eq!(lookups.roles("u-full").expect("direct").len(), 2);
        for id in ["t1", "t-none"] {
            let direct = format!("{:?}", lookups.tenant(id).expect("direct"));
            let sqlx = format!("{:?}", get_tenant(&db.pool, id).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "tenant {id}");
        }
        assert_eq!(lookups.tenant("t1").expect("direct").and_then(|t| t.suspended_at), Some(4));
        for name in ["acme", "nobody"] {
            let direct = format!("{:?}", lookups.tenant_by_name(name).expect("direct"));
            let sqlx = format!("{:?}", get_tenant_by_name(&db.pool, name).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "tenant named {name}");
        }
        assert!(lookups.tenant_by_name("acme").expect("direct").is_some());
        for (scope, name) in [(HOST_SCOPE, "u-full"), (HOST_SCOPE, "u-bare"), ("t1", "u-full"), (HOST_SCOPE, "u-none")]
        {
            let direct = format!("{:?}", lookups.user_by_name(scope, name).expect("direct"));
            let sqlx = format!("{:?}", find_user(&db.pool, scope, name).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "user {scope}/{name}");
        }
        assert!(lookups.user_by_name(HOST_SCOPE, "u-full").expect("direct").is_some());
        for id in ["u-full", "u-bare", "u-none"] {
            let direct = format!("{:?}", lookups.user(id).expect("direct"));
            let sqlx = format!("{:?}", get_user(&db.pool, id).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "user {id}");
        }
        assert_eq!(lookups.user("u-full").expect("direct").map(|u| u.lockouts), Some(2));
        let mut conn = db.pool.acquire().await.expect("connection");
        for (id, secret, strength, max_age) in
            [("app-full", Some("secret-hash"), Some("phishing_resistant"), Some(300)), ("app-bare", None, None, None)]
        {
            let app = oidc::ApplicationRow {
                id: id.into(),
                scope_key: "t1".into(),
                name: id.into(),
                client_type: if secret.is_some() { "confidential" } else { "public" }.into(),
                secret_hash: secret.map(Into::into),
                redirect_uris: r#"["https://app.example/cb"]"#.into(),
                post_logout_redirect_uris: "[]".into(),
                allowed_scopes: "openid profile".into(),
                first_party: 1,
                require_two_factor: i64::from(secret.is_some()),
                min_strength: strength.map(Into::into),
                max_age_seconds: max_age,
                token_alg: "ES256".into(),
                created_at: 8,
                updated_at: 9,
            };
            oidc::insert_application(&mut conn, &app).await.expect("application");
        }
        drop(conn);
        for id in ["app-full", "app-bare", "app-none"] {
            let direct = format!("{:?}", lookups.application(id).expect("direct"));
            let sqlx = format!("{:?}", oidc::get_application(&db.pool, id).await.expect("sqlx"));
            assert_eq!(direct, sqlx, "application {id}");
        }
        assert_eq!(lookups.application("app-full").expect("direct").and_then(|a| a.max_age_seconds), Some(300));
        factors::replace_recovery_codes(
            &mut db.pool.acquire().await.expect("connection"),
            "u-full",
            &["h1".to_owned(), "h2".to_owned()],
            5,
        )
        .await
        .expect("recovery codes");
        sqlx::query("UPDATE recovery_codes SET used_at = 6 WHERE code_hash = 'h1'")
            .execute(&db.pool)
            .await
            .expect("use");
        for (user, left) in [("u-full", true), ("u-bare", false)] {
            assert_eq!(lookups.has_recovery_code(user).expect("direct"), left, "recovery code of {user}");
            assert_eq!(factors::has_unused_recovery_code(&db.pool, user).await.expect("sqlx"), left, "{user}");
        }
        sqlx::query("UPDATE recovery_codes SET used_at = 7").execute(&db.pool).await.expect("use all");
        assert!(!lookups.has_recovery_code("u-full").expect("direct"), "every code used");
        // The direct connections only read.
        let write = lookups.run(|c| c.execute("DELETE FROM users", []));
        assert!(write.is_err(), "a lookup connection wrote");
    }

    async fn user(db: &Db, id: &str) {
        let mut conn = db.pool.acquire().await.expect("connection");
        let new = NewUser {
            id,
            scope_key: HOST_SCOPE,
            tenant_id: None,
            username: id,
            username_key: id,
            email: None,
            phone: None,
            password_hash: "hash",
            security_stamp: "stamp",
            created_at: 7,
        };
        insert_user(&mut conn, &new).await.expect("user");
    }

    /// A direct transaction binds `$n` by number, as sqlx does, also where numbers
    /// appear out of order (`record_sign_in` has `$4` before `$3`), and reads the
    /// returned row as sqlx reads it.
    #[tokio::test]
    async fn a_direct_transaction_writes_and_returns_what_sqlx_does() {
        let (_dir, db) = sqlite_file().await;
        user(&db, "u1").await;
        sqlx::query("UPDATE users SET second_factor_failures = 3, consecutive_failures = 4, locked_until = 5")
            .execute(&db.pool)
            .await
            .expect("failures");
        let mut tx = db.begin().await.expect("begin");
        assert!(matches!(tx, direct::Transaction::Direct(_)), "a SQLite file should get direct transactions");
        let returned = record_sign_in(&mut tx, "u1", 99, "pwd+authenticator", true).await.expect("sign-in");
        assert!(record_sign_in(&mut tx, "nobody", 99, "pwd", true).await.expect("no one").is_none());
        tx.commit().await.expect("commit");
        let returned = returned.expect("returned row");
        let stored = get_user(&db.pool, "u1").await.expect("read").expect("stored");
        assert_eq!(format!("{returned:?}"), format!("{stored:?}"));
        assert_eq!(
            (stored.last_sign_in_at, stored.last_sign_in_methods.as_deref(), stored.second_factor_failures),
            (Some(99), Some("pwd+authenticator"), 0)
        );
        assert_eq!((stored.consecutive_failures, stored.locked_until), (0, None));
        // And the same statement through sqlx, for the other path.
        let mut tx = db.begin_write().await.expect("begin");
        let again = record_sign_in(&mut tx, "u1", 100, "pwd", false).await.expect("sign-in").expect("row");
        tx.commit().await.expect("commit");
        assert_eq!((again.last_sign_in_at, again.last_sign_in_methods.as_deref()), (Some(100), Some("pwd")));
    }

    #[tokio::test]
    async fn a_direct_transaction_rolls_back_when_dropped_and_names_unique_violations() {
        use direct::Exec;
        let (_dir, db) = sqlite_file().await;
        let seen = db.stamps().seen();
        let insert = "INSERT INTO audit_events (id, at, scope_key, action, target) VALUES ($1, 1, 'host', $2, 't')";
        {
            let mut tx = db.begin().await.expect("begin");
            assert_eq!(tx.run(insert, &direct::args!["a", "dropped"]).await.expect("insert"), 1);
            let twice = tx.run(insert, &direct::args!["a", "dropped"]).await.expect_err("a second row with one id");
            assert!(
                twice.as_database_error().is_some_and(|e| e.is_unique_violation()),
                "not reported as a unique violation: {twice:?}"
            );
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'dropped'")
            .fetch_one(&db.pool)
            .await
            .expect("count");
        assert_eq!(rows, 0, "an uncommitted direct transaction left rows");
        assert_eq!(db.stamps().seen(), seen, "a rolled back transaction counted as a write");
        let mut tx = db.begin().await.expect("the lock was given back");
        tx.run(insert, &direct::args!["b", "kept"]).await.expect("insert");
        tx.commit().await.expect("commit");
        assert_eq!(db.stamps().seen(), seen + 1);
    }

    /// sqlx and direct transactions share one lock; a sqlx transaction dropped without
    /// a commit still holds SQLite's lock until sqlx sends its rollback, which a direct
    /// transaction started right after waits for instead of failing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlx_and_direct_transactions_take_turns() {
        use direct::Exec;
        let (_dir, db) = sqlite_file().await;
        let insert = "INSERT INTO audit_events (id, at, scope_key, action, target) VALUES ($1, 1, 'host', $2, 't')";
        let mut jobs = Vec::new();
        for i in 0..40 {
            let db = db.clone();
            jobs.push(tokio::spawn(async move {
                let id = format!("e{i}");
                if i % 2 == 0 {
                    let mut tx = db.begin_write().await?;
                    tx.run(insert, &direct::args![id, "sqlx"]).await?;
                    if i % 4 == 0 {
                        return tx.commit().await;
                    }
                    // Dropped: rolled back.
                    Ok(())
                } else {
                    let writer = db.clone();
                    let job = async move {
                        let mut tx = db.begin().await?;
                        tx.run(insert, &direct::args![id, "direct"]).await?;
                        tx.commit().await
                    };
                    writer.on_writer(job).await?
                }
            }));
        }
        for job in jobs {
            job.await.expect("task").expect("every transaction should get its turn");
        }
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT action, COUNT(*) FROM audit_events GROUP BY action ORDER BY action")
                .fetch_all(&db.pool)
                .await
                .expect("count");
        assert_eq!(rows, [("direct".to_owned(), 20), ("sqlx".to_owned(), 10)]);
        // A direct transaction right behind a dropped sqlx one, before sqlx's thread
        // has run the rollback.
        for i in 0..50 {
            let mut tx = db.begin_write().await.expect("begin");
            tx.run(insert, &direct::args![format!("r{i}"), "rolled back"]).await.expect("insert");
            drop(tx);
            let mut tx = db.begin().await.expect("the direct transaction should wait for the rollback");
            tx.run(insert, &direct::args![format!("k{i}"), "kept"]).await.expect("insert");
            tx.commit().await.expect("commit");
        }
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'kept'")
            .fetch_one(&db.pool)
            .await
            .expect("count");
        assert_eq!(kept, 50);
    }

    /// Keeps the writer's thread busy until the sender is used, so that jobs queue up;
    /// returns once the thread is held.
    async fn hold_writer(db: &Db) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<Result<(), sqlx::Error>>) {
        let (held, release) = std::sync::mpsc::channel::<()>();
        let (started, on_thread) = tokio::sync::oneshot::channel::<()>();
        let holder = db.clone();
        let blocker = tokio::spawn(async move {
            holder
                .on_writer(async move {
                    let _ = started.send(());
                    let _ = release.recv_timeout(Duration::from_secs(30));
                })
                .await
        });
        on_thread.await.expect("the holding job started");
        (held, blocker)
    }

    /// Waits until `n` jobs wait on the writer's thread.
    async fn until_queued(db: &Db, n: usize) {
        let Some(writer) = db.direct.clone() else { panic!("a SQLite file should get the direct writer") };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while writer.queued() < n {
            assert!(std::time::Instant::now() < deadline, "only {} of {n} jobs queued", writer.queued());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Direct jobs queued on the writer's thread together share SQLite commits, and
    /// none is acknowledged before the commit holding it: the moment a job returns,
    /// another connection sees what it wrote. A job that fails undoes only its own
    /// statements; a sqlx write behind an open group commits the group first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_direct_jobs_share_commits_and_are_acknowledged_after_them() {
        use direct::Exec;
        let (_dir, db) = sqlite_file().await;
        let Some(writer) = db.direct.clone() else { panic!("a SQLite file should get the direct writer") };
        let insert = "INSERT INTO audit_events (id, at, scope_key, action, target) VALUES ($1, 1, 'host', $2, 't')";
        let commits_before = writer.commits().await;
        // Holds the writer's thread so that the jobs below queue up behind it.
        let (held, blocker) = hold_writer(&db).await;
        let mut jobs = Vec::new();
        for i in 0..60 {
            let db = db.clone();
            jobs.push(tokio::spawn(async move {
                let id = format!("g{i}");
                let outcome = if i % 10 == 7 {
                    // A sqlx write between the direct jobs.
                    let mut tx = db.begin_write().await?;
                    tx.run(insert, &direct::args![id.as_str(), "sqlx"]).await?;
                    tx.commit().await
                } else {
                    let (writer, db) = (db.clone(), db.clone());
                    let job = async move {
                        let mut tx = db.begin().await?;
                        tx.run(insert, &direct::args![id.as_str(), "direct"]).await?;
                        if i % 10 == 3 {
                            // Fails on a unique key: this job's row is undone, no other.
                            tx.run(insert, &direct::args![id.as_str(), "direct"]).await?;
                        }
                        tx.commit().await
                    };
                    writer.on_writer(job).await?
                };
                // Acknowledged: visible to every other connection at once.
                let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE id = $1")
                    .bind(format!("g{i}"))
                    .fetch_one(&db.pool)
                    .await?;
                Ok::<_, sqlx::Error>((outcome.is_ok(), seen))
            }));
        }
        // Every direct job waits behind the held thread (the sqlx writes do not queue).
        until_queued(&db, 54).await;
        held.send(()).expect("the blocking job is waiting");
        blocker.await.expect("task").expect("job");
        for (i, job) in jobs.into_iter().enumerate() {
            let (committed, seen) = tokio::time::timeout(Duration::from_secs(20), job)
                .await
                .expect("every job should be acknowledged")
                .expect("task")
                .expect("read");
            assert_eq!(committed, i % 10 != 3, "job {i}");
            assert_eq!(seen, i64::from(committed), "job {i} was acknowledged before its commit or left its row");
        }
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT action, COUNT(*) FROM audit_events GROUP BY action ORDER BY action")
                .fetch_all(&db.pool)
                .await
                .expect("count");
        assert_eq!(rows, [("direct".to_owned(), 48), ("sqlx".to_owned(), 6)]);
        let commits = writer.commits().await - commits_before;
        assert!(commits < 30, "{commits} SQLite commits for 48 direct transactions queued together");
    }

    /// When SQLite rolls back the transaction a group shares (as it does on a full
    /// disk or an I/O error), the members that had already ended are told that their
    /// transaction failed, never that it committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_members_of_a_group_that_sqlite_rolled_back_are_told_so() {
        use direct::Exec;
        let (_dir, db) = sqlite_file().await;
        let insert = "INSERT INTO audit_events (id, at, scope_key, action, target) VALUES ($1, 1, 'host', 'lost', 't')";
        let (held, blocker) = hold_writer(&db).await;
        let mut jobs = Vec::new();
        for i in 0..6 {
            let (writer, store) = (db.clone(), db.clone());
            jobs.push(tokio::spawn(async move {
                let job = async move {
                    let mut tx = store.begin().await?;
                    tx.run(insert, &direct::args![format!("l{i}")]).await?;
                    if i == 3 {
                        // What SQLite does to the whole transaction on an I/O error.
                        tx.run("ROLLBACK", &[]).await?;
                    }
                    tx.commit().await
                };
                writer.on_writer(job).await?
            }));
            // In this order on the writer's thread.
            until_queued(&db, i + 1).await;
        }
        held.send(()).expect("the blocking job is waiting");
        blocker.await.expect("task").expect("job");
        let mut outcomes = Vec::new();
        for job in jobs {
            outcomes.push(job.await.expect("task").is_ok());
        }
        let stored: Vec<String> = sqlx::query_scalar("SELECT id FROM audit_events WHERE action = 'lost' ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .expect("rows");
        // The jobs before the rollback shared its transaction; the ones after start anew.
        assert_eq!(outcomes, [false, false, false, false, true, true]);
        assert_eq!(stored, ["l4", "l5"]);
    }

    /// An audit event with a payload of its own, to fill the WAL with.
    const BULK_AUDIT_INSERT: &str = "INSERT INTO audit_events (id, at, scope_key, action, target, after_json) \
                                     VALUES ($1, 1, 'host', 'bulk', 't', $2)";

    /// The writer never checkpoints on commit; the checkpoint thread copies the WAL
    /// back, so the WAL is reused from its start instead of growing with every write.
    #[tokio::test]
    async fn the_wal_is_checkpointed_off_the_writers_thread() {
        use direct::Exec;
        let (dir, db) = sqlite_file().await;
        let row = "x".repeat(8 * 1024);
        let wal_size = || std::fs::metadata(dir.path().join("t.db-wal")).expect("the WAL").len();
        let mut first = 0;
        for round in 0..10 {
            for i in 0..50 {
                let mut tx = db.begin().await.expect("begin");
                tx.run(BULK_AUDIT_INSERT, &direct::args![format!("{round}-{i}"), row.as_str()]).await.expect("insert");
                tx.commit().await.expect("commit");
            }
            if round == 0 {
                first = wal_size();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Without checkpoints it would be about ten rounds long.
        let wal = wal_size();
        assert!(wal < 2 * first, "the WAL grew to {wal} bytes, from {first} after the first round");
    }

    /// Under writes that never pause, with reads beside them, the WAL still starts
    /// again from its beginning: otherwise every commit appends to a file that grows for
    /// as long as the load lasts (a checkpoint can copy back only what was committed
    /// before it began, and the writer reuses the WAL only once all of it was copied).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_again_under_writes_that_never_pause() {
        use direct::Exec;
        let (dir, db) = sqlite_file().await;
        // A shorter WAL than in service, so that it starts again often.
        db.direct.as_ref().expect("the writer").restart_after(1024);
        let wal = dir.path().join("t.db-wal");
        // Bytes 12 to 15 of the WAL's header count the times it started again.
        let restarts = move || {
            let header = std::fs::read(&wal).ok()?;
            Some(u32::from_be_bytes(header.get(12..16)?.try_into().ok()?))
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for writer in 0..8 {
            let (db, stop) = (db.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let row = "x".repeat(2 * 1024);
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut tx = db.begin().await.expect("begin");
                    tx.run(BULK_AUDIT_INSERT, &direct::args![format!("{writer}-{i}"), row.as_str()])
                        .await
                        .expect("insert");
                    tx.commit().await.expect("commit");
                    i += 1;
                }
                i
            }));
        }
        let mut readers = Vec::new();
        for _ in 0..2 {
            let (db, stop) = (db.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A read of one row by its key, as the server's reads are: a scan
                    // of the whole growing table would hold a snapshot for as long as
                    // the scan, and the WAL rightly never starts again under readers
                    // that never let go of it.
                    let _: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE id = '0-0'")
                        .fetch_one(&db.pool)
                        .await
                        .expect("read");
                    reads += 1;
                }
                reads
            }));
        }
        // Until the WAL has started again five times, however long a slow machine takes;
        // the half minute is only there to end a run that fails.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut seen = std::collections::BTreeSet::new();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while seen.len() < 6 && std::time::Instant::now() < until {
            seen.extend(restarts());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in writers {
            assert!(task.await.expect("writer") > 0, "every writer committed");
        }
        for task in readers {
            assert!(task.await.expect("reader") > 0, "the readers ran beside the writes");
        }
        assert!(seen.len() >= 6, "the WAL started again {} times: {seen:?}", seen.len().saturating_sub(1));
    }

    /// The pool's connections cut the WAL back too, should a write through sqlx be the
    /// one that starts it again.
    #[tokio::test]
    async fn the_pools_connections_cut_the_wal_back_as_the_writer_does() {
        let (_dir, db) = sqlite_file().await;
        let (limit,): (i64,) = sqlx::query_as("PRAGMA journal_size_limit").fetch_one(&db.pool).await.expect("pragma");
        assert_eq!(limit, direct::WAL_FILE_LIMIT);
    }

    /// A WAL that a burst grew past the size limit is cut back to it when it starts
    /// again, instead of keeping its largest size on disk for good.
    #[tokio::test]
    async fn a_wal_grown_by_a_burst_is_cut_back_when_it_starts_again() {
        use direct::Exec;
        const LIMIT: u64 = 256 * 1024;
        let (dir, db) = sqlite_file().await;
        db.direct.as_ref().expect("the writer").wal_file_limit(LIMIT as i64).await.expect("limit");
        let wal_size = || std::fs::metadata(dir.path().join("t.db-wal")).expect("the WAL").len();
        let row = "x".repeat(8 * 1024);
        let mut tx = db.begin().await.expect("begin");
        for i in 0..400 {
            tx.run(BULK_AUDIT_INSERT, &direct::args![format!("burst-{i}"), row.as_str()]).await.expect("insert");
        }
        tx.commit().await.expect("commit");
        let burst = wal_size();
        assert!(burst > 8 * LIMIT, "the burst grew the WAL to {burst} bytes");
        // Copied back (the checkpoint thread would do it too, in its own time).
        let (_, frames, copied): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&db.pool).await.expect("checkpoint");
        assert_eq!(frames, copied, "the whole WAL was copied back");
        let mut tx = db.begin().await.expect("begin");
        tx.run(BULK_AUDIT_INSERT, &direct::args!["after", "y"]).await.expect("insert");
        tx.commit().await.expect("commit");
        let after = wal_size();
        assert!(after <= LIMIT, "the WAL's file is {after} bytes after it started again, from {burst}");
    }
}
