//! Write transactions on a SQLite file through SQLite's C API (rusqlite), run whole on
//! the writer's thread: the transactions on every sign-in's path.
//!
//! sqlx runs each SQLite connection on a thread of its own, so every statement of a
//! transaction is a message to that thread and an answer back, two thread wake-ups,
//! while the transaction holds the database's only write lock. On a busy server each
//! wake-up waits for a core, and the writes of every client queue behind those waits.
//! A [`DirectTx`] runs its statements on the calling thread, the writer's
//! ([`super::Db::on_writer`]), with no wake-up between them.
//!
//! The statements are the same SQL text on both paths, with their arguments built once
//! as [`Arg`]s; the functions that write take any [`Exec`]: a sqlx connection or
//! transaction (on PostgreSQL, on an in-memory SQLite database, and for the
//! transactions that stay on sqlx) or a direct one. Every write to a SQLite file, sqlx
//! and direct alike, first takes one lock ([`Writer::lock`]), so the two kinds never
//! meet inside SQLite, where one would wait for the other in its busy handler.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{AnyConnection, Arguments, AssertSqlSafe, FromRow};

use super::{Stamps, Touches, UserRow, WriteTx};

/// One argument of a statement, bound by its `$n` position on both paths.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    /// A NULL in an integer column (PostgreSQL types its parameters).
    NullInt,
    NullText,
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Arg::Bytes(v)
    }
}

impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Self {
        Arg::Bytes(v.to_vec())
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Arg::NullInt, Arg::Int)
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Arg::NullText, Arg::from)
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        v.map_or(Arg::NullText, Arg::Text)
    }
}

/// The arguments of a statement, `args![a, b, ...]`, each converted into an [`Arg`].
macro_rules! args {
    ($($arg:expr),* $(,)?) => { [$($crate::db::direct::Arg::from($arg)),*] };
}
pub(crate) use args;

/// A row a statement returns, read by either path.
pub trait ReturnedRow: for<'r> FromRow<'r, AnyRow> + Send + Unpin + Sized {
    fn direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

impl ReturnedRow for (i64, i64) {
    fn direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok((row.get(0)?, row.get(1)?))
    }
}

impl ReturnedRow for (String,) {
    fn direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok((row.get(0)?,))
    }
}

impl ReturnedRow for UserRow {
    fn direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        super::lookup::user_row(row)
    }
}

/// Where a write statement runs: a sqlx connection or transaction, or a [`DirectTx`].
pub trait Exec: Send {
    /// Runs a statement that returns no rows; the number of rows it changed.
    fn run<'a>(&'a mut self, sql: &'a str, args: &'a [Arg]) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Runs a statement that returns at most one row (`UPDATE ... RETURNING`).
    fn returning<'a, R: ReturnedRow>(
        &'a mut self,
        sql: &'a str,
        args: &'a [Arg],
    ) -> impl Future<Output = Result<Option<R>, sqlx::Error>> + Send;
}

pub(crate) fn sqlx_arguments(args: &[Arg]) -> Result<AnyArguments, sqlx::Error> {
    let mut out = AnyArguments::default();
    for arg in args {
        match arg {
            Arg::Int(v) => out.add(*v),
            Arg::Text(v) => out.add(v.clone()),
            Arg::Bytes(v) => out.add(v.clone()),
            Arg::NullInt => out.add(None::<i64>),
            Arg::NullText => out.add(None::<String>),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

impl Exec for AnyConnection {
    async fn run(&mut self, sql: &str, args: &[Arg]) -> Result<u64, sqlx::Error> {
        let arguments = sqlx_arguments(args)?;
        Ok(sqlx::query_with(AssertSqlSafe(sql), arguments).execute(self).await?.rows_affected())
    }

    async fn returning<R: ReturnedRow>(&mut self, sql: &str, args: &[Arg]) -> Result<Option<R>, sqlx::Error> {
        let arguments = sqlx_arguments(args)?;
        sqlx::query_as_with::<_, R, _>(AssertSqlSafe(sql), arguments).fetch_optional(self).await
    }
}

impl Exec for WriteTx {
    fn run<'a>(&'a mut self, sql: &'a str, args: &'a [Arg]) -> impl Future<Output = Result<u64, sqlx::Error>> + Send {
        (**self).run(sql, args)
    }

    fn returning<'a, R: ReturnedRow>(
        &'a mut self,
        sql: &'a str,
        args: &'a [Arg],
    ) -> impl Future<Output = Result<Option<R>, sqlx::Error>> + Send {
        (**self).returning(sql, args)
    }
}

/// The lock every write to a SQLite file takes, and the connection direct
/// transactions write through.
#[derive(Debug)]
pub struct Writer {
    conn: Arc<tokio::sync::Mutex<WriterConn>>,
    /// Jobs handed to the writer's thread ([`super::Db::on_writer`]) that have not
    /// started yet: while there are any, a finished transaction leaves its group open
    /// for them to join.
    queued: AtomicUsize,
    /// Direct transactions waiting for the lock (behind a sqlx write, say): each will
    /// take it and join or commit the group, so they count as queued too.
    waiting: AtomicUsize,
    /// [`RESTART_AFTER_FRAMES`], unless a test asks for less.
    restart_after: std::sync::atomic::AtomicI64,
    /// The WAL's file, whose size `/metrics` reports.
    wal: std::path::PathBuf,
}

/// Counts a direct transaction waiting for the lock; one given up before it got the
/// lock commits a group that was left open for it.
struct Waiting<'a>(&'a Writer);

impl<'a> Waiting<'a> {
    fn start(writer: &'a Writer) -> Self {
        writer.waiting.fetch_add(1, Ordering::AcqRel);
        Self(writer)
    }

    /// The lock was taken: the wait only stops counting. The group is the taker's to
    /// settle, so the check a wait given up makes (a `try_lock` bound to fail) is skipped.
    fn acquired(self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        std::mem::forget(self);
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.job_ended();
    }
}

/// The writer's connection and the group of transactions it has open.
#[derive(Debug)]
pub struct WriterConn {
    conn: Connection,
    group: Option<Group>,
    stamps: Arc<Stamps>,
    /// SQLite transactions committed, each holding one or more of ours.
    commits: u64,
}

/// Transactions that have ended, each in its savepoint, inside one SQLite transaction
/// still open: none of them is acknowledged before that transaction commits.
#[derive(Debug)]
struct Group {
    members: u64,
    /// What the members' statements may have changed among the rows caches keep.
    touched: Vec<Touches>,
    done: tokio::sync::watch::Sender<Option<Result<(), Failure>>>,
}

/// Why a group did not commit, for each of its members.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    extended_code: i32,
}

/// Held for as long as a write to the SQLite file runs.
pub type WriteLock = tokio::sync::OwnedMutexGuard<WriterConn>;

/// How long a transaction waits for SQLite's write lock held elsewhere (a rollback of
/// a sqlx transaction that sqlx has not sent yet, another process): the same as the
/// sqlx connections' busy timeout.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// At most this many transactions share one commit, so the first of them waits for
/// its acknowledgement no longer than this many others take to run.
const MAX_GROUP: u64 = 64;

impl Writer {
    /// Opens the connection to the SQLite file at `path`, which exists and is in WAL
    /// mode (`Db::connect` opened the pool first). `stamps` numbers the transactions
    /// committed through it; `thread` runs the writer's jobs.
    pub fn open(path: &Path, stamps: Arc<Stamps>, thread: tokio::runtime::Handle) -> anyhow::Result<Arc<Self>> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // The same durability, keys and page cache as the pool's connections. No busy
        // timeout: SQLite's busy handler would sleep on the writer's thread, where the
        // sqlx transaction it waits for may need to run; `DirectTx::begin` waits without
        // blocking instead. No checkpoints on commit: [`checkpoints`] runs them. The
        // savepoints of a group keep their undo records in memory, not in a file.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -1024; \
             PRAGMA busy_timeout = 0; PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY;",
        )?;
        // When the WAL starts again its file is cut back to this size, so a burst does
        // not leave it large for good.
        conn.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT)?;
        let conn = WriterConn { conn, group: None, stamps, commits: 0 };
        let writer = Arc::new(Self {
            conn: Arc::new(tokio::sync::Mutex::new(conn)),
            queued: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            restart_after: std::sync::atomic::AtomicI64::new(RESTART_AFTER_FRAMES),
            wal: wal_path(path),
        });
        let (path, alive) = (path.to_owned(), Arc::downgrade(&writer));
        std::thread::Builder::new()
            .name("twofold-checkpoint".into())
            .spawn(move || checkpoints(&path, &alive, &thread))?;
        Ok(writer)
    }

    /// The size of the WAL's file in bytes (0 while it does not exist). Starting again
    /// reuses the file without shrinking it, so this is the longest the WAL has been
    /// since it was last cut back to [`WAL_FILE_LIMIT`]: a little over
    /// [`RESTART_AFTER_FRAMES`]' 256 MiB under writes that never pause, more after a
    /// burst until the WAL next starts again.
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal).map_or(0, |m| m.len())
    }

    /// The lock, for a write that does not go through the writer's connection (sqlx):
    /// the open group commits first, so that SQLite's own write lock is free.
    pub async fn lock(&self) -> WriteLock {
        let mut conn = self.conn.clone().lock_owned().await;
        conn.close_group();
        conn
    }

    /// A job was handed to the writer's thread.
    pub fn job_queued(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// A job handed to the writer's thread has started.
    pub fn job_started(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// A job on the writer's thread has ended. A job that wrote nothing does not settle
    /// a group (only a transaction's end does), so the last job to run commits a group
    /// that transactions before it left open.
    pub fn job_ended(&self) {
        if self.idle()
            && let Ok(mut conn) = self.conn.clone().try_lock_owned()
        {
            conn.close_group();
        }
    }

    /// Nothing is about to join an open group.
    fn idle(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0 && self.waiting.load(Ordering::Acquire) == 0
    }

    /// How many jobs wait on the writer's thread.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Starts the WAL again past `frames` instead of [`RESTART_AFTER_FRAMES`].
    #[cfg(test)]
    pub fn restart_after(&self, frames: i64) {
        self.restart_after.store(frames, Ordering::Relaxed);
    }

    /// Cuts the WAL back to `bytes` instead of [`WAL_FILE_LIMIT`] when it starts again.
    #[cfg(test)]
    pub async fn wal_file_limit(&self, bytes: i64) -> rusqlite::Result<()> {
        self.lock().await.conn.pragma_update(None, "journal_size_limit", bytes)
    }

    /// How many SQLite transactions the writer's connection has committed.
    #[cfg(test)]
    pub async fn commits(&self) -> u64 {
        self.lock().await.commits
    }
}

impl WriterConn {
    /// Commits the open group and tells its members how it went.
    fn close_group(&mut self) {
        self.drop_lapsed_group();
        let Some(group) = self.group.take() else { return };
        let outcome = match control(&self.conn, "COMMIT") {
            Ok(()) => {
                self.commits += 1;
                // After the commit, as `WriteTx::commit` counts it.
                // A group whose transactions all rolled back committed nothing.
                if group.members > 0 {
                    self.stamps.committed(group.touched);
                }
                crate::metrics::sqlite_commit(group.members);
                Ok(())
            }
            Err(e) => {
                // Leaves the connection ready for the next group whatever SQLite did.
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(Failure::of(&e))
            }
        };
        group.done.send_replace(Some(outcome));
    }

    /// Some errors (a full disk, an I/O error) make SQLite roll back the whole
    /// transaction, members of the group included: they learn that it failed.
    fn drop_lapsed_group(&mut self) {
        if self.conn.is_autocommit()
            && let Some(group) = self.group.take()
        {
            let failure = Failure {
                message: "SQLite rolled back the transaction this one was committed in".into(),
                extended_code: 1,
            };
            group.done.send_replace(Some(Err(failure)));
        }
    }
}

/// Runs a transaction-control statement from the connection's statement cache:
/// `execute_batch` would parse it again on every transaction.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(drop)
}

impl Failure {
    fn of(e: &rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(failure, message) => Self {
                message: message.clone().unwrap_or_else(|| failure.to_string()),
                extended_code: failure.extended_code,
            },
            other => Self { message: other.to_string(), extended_code: 1 },
        }
    }

    fn into_sqlx(self) -> sqlx::Error {
        sqlx::Error::Database(Box::new(DirectError { message: self.message, extended_code: self.extended_code }))
    }
}

/// How often the WAL is copied back into the database file.
///
/// Often, so that the WAL stays short: under a stream of sign-ins each checkpoint copies
/// pages written moments before, holds a core for a shorter stretch, and the WAL
/// restarts from its beginning sooner. Every 200 ms the verify step did 12 % fewer
/// verifications a second (BENCHMARKS.md, "The checkpoint's pace"); a checkpoint thread
/// that ran only on idle cores, so that the WAL grew, cost 16 %.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// Frames in the WAL past which the checkpoint thread makes sure the WAL starts again
/// from its beginning (256 MiB of 4 KiB pages, a few seconds of sign-ins at full
/// speed): each time the writer stops for a moment, so seldom enough to stay out of
/// the 99th percentile of a write's wait (BENCHMARKS.md).
const RESTART_AFTER_FRAMES: i64 = 65_536;

/// How many times the catch-up checkpoint is tried while the writer waits, should a
/// reader that began before the last commit still hold some of the WAL.
const CATCH_UP_TRIES: u32 = 3;

/// The size the WAL file is cut back to when it starts again, should a burst (a bulk
/// import, say) have grown it past that.
pub(crate) const WAL_FILE_LIMIT: i64 = 512 * 1024 * 1024;

/// SQLite's WAL file for the database file at `path`: its name with `-wal` added.
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// Copies the WAL back into the database file, off the writer's thread, for as long as
/// the writer exists.
///
/// SQLite checkpoints on the connection that commits once the WAL passes 1,000 pages:
/// under a stream of sign-ins that is the writer, every few dozen transactions, and a
/// checkpoint writes and syncs both files while the write lock waits for it. A passive
/// checkpoint here never blocks a writer or a reader; durability does not depend on it
/// (a committed transaction is in the WAL, which survives a killed process), only how
/// long the WAL grows does.
///
/// A passive checkpoint copies back only what was committed when it began, and the
/// writer starts the WAL again only when all of it was copied back: under writes that
/// never pause that never happens, and the file grew by every commit for as long as the
/// load lasted (by about 170 MB a second in the load runs, each new page of it
/// allocated by the file system on the writer's thread). So once the WAL is long, the
/// writer's thread, between two groups, copies back the few frames committed since, and
/// its next transaction starts the WAL again (BENCHMARKS.md, "An AMD EPYC host, and the
/// WAL started again under load").
fn checkpoints(path: &Path, writer: &std::sync::Weak<Writer>, thread: &tokio::runtime::Handle) {
    let Ok(conn) =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
    else {
        tracing::warn!("the checkpoint connection did not open; the WAL is checkpointed by other connections");
        return;
    };
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(live) = writer.upgrade() else { return };
        match checkpoint(&conn) {
            Ok((frames, _)) if frames >= live.restart_after.load(Ordering::Relaxed) => {
                let (done, finished) = std::sync::mpsc::sync_channel(1);
                // On the writer's thread, behind the transactions already waiting: a
                // thread of its own holding the writer's lock would stop every write
                // for as long as the scheduler let it wait for a core.
                thread.spawn(async move {
                    catch_up(&live).await;
                    let _ = done.send(());
                });
                // One at a time; a writer's thread that has ended sends nothing.
                let _ = finished.recv_timeout(Duration::from_secs(1));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
        }
    }
}

/// A passive checkpoint: the frames in the WAL, and how many of them are now in the
/// database file.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get(1)?, row.get(2)?)))
}

/// Copies back, on the writer's connection with its open group committed, what was
/// committed since the checkpoint thread's last checkpoint, so that the whole WAL is in
/// the database file when the writer's next transaction begins.
async fn catch_up(writer: &Writer) {
    let mut held = writer.conn.lock().await;
    held.close_group();
    for _ in 0..CATCH_UP_TRIES {
        match checkpoint(&held.conn) {
            Ok((frames, copied)) if copied < frames => std::thread::yield_now(),
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed");
                return;
            }
        }
    }
}

/// A write transaction on the writer's connection, its statements run on the calling
/// thread: a savepoint inside a SQLite transaction that the transactions right behind
/// it share (group commit). Committing it waits until that SQLite transaction has
/// committed; dropping it uncommitted undoes its own statements and no others.
///
/// Sharing a commit writes each page that several transactions change (the tail of a
/// table, an index's upper levels) to the WAL once instead of once per transaction,
/// and takes SQLite's locks once. The group stays open only while more jobs wait on
/// the writer's thread, so a lone transaction commits at once.
#[derive(Debug)]
pub struct DirectTx {
    conn: WriteLock,
    writer: Arc<Writer>,
    /// Its savepoint is open.
    open: bool,
    /// Its end is accounted for in the group.
    settled: bool,
    /// What its statements may change among the rows caches keep.
    touches: Touches,
}

impl DirectTx {
    pub(super) async fn begin(writer: &Arc<Writer>) -> Result<Self, sqlx::Error> {
        let mut conn = {
            let waiting = Waiting::start(writer);
            let conn = writer.conn.clone().lock_owned().await;
            waiting.acquired();
            conn
        };
        conn.drop_lapsed_group();
        if conn.group.is_none() {
            let deadline = Instant::now() + BUSY_WAIT;
            loop {
                match control(&conn.conn, "BEGIN IMMEDIATE") {
                    Ok(()) => break,
                    Err(e) if is_busy(&e) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => return Err(to_sqlx(e)),
                }
            }
            conn.group = Some(Group { members: 0, touched: Vec::new(), done: tokio::sync::watch::Sender::new(None) });
        }
        let mut tx = Self { conn, writer: writer.clone(), open: false, settled: false, touches: Touches::Anything };
        control(&tx.conn.conn, "SAVEPOINT job").map_err(to_sqlx)?;
        tx.open = true;
        Ok(tx)
    }

    /// Ends the transaction and returns once the SQLite transaction holding it has
    /// committed.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        control(&self.conn.conn, "RELEASE job").map_err(to_sqlx)?;
        self.open = false;
        let done = self.settle(true);
        // Gives the lock to the transactions that join the group.
        drop(self);
        let Some(mut done) = done else {
            return Err(
                Failure { message: "the transaction was lost before its commit".into(), extended_code: 1 }.into_sqlx()
            );
        };
        let outcome = match done.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(failure)) => Err(failure.into_sqlx()),
            None => Err(sqlx::Error::WorkerCrashed),
        }
    }

    /// Accounts for the transaction's end in its group, a member when `joined`, and
    /// commits the group unless more jobs are about to join it. The receiver tells a
    /// member how the group's commit went.
    fn settle(&mut self, joined: bool) -> Option<tokio::sync::watch::Receiver<Option<Result<(), Failure>>>> {
        self.settled = true;
        self.conn.drop_lapsed_group();
        let group = self.conn.group.as_mut()?;
        let done = joined.then(|| {
            group.members += 1;
            if !group.touched.contains(&self.touches) {
                group.touched.push(self.touches);
            }
            group.done.subscribe()
        });
        if group.members >= MAX_GROUP || self.writer.idle() {
            self.conn.close_group();
        }
        done
    }

    /// Says what the transaction's statements may change among the rows caches keep
    /// (anything, unless said).
    pub fn touches(&mut self, touches: Touches) {
        self.touches = touches;
    }

    fn run_now(&self, sql: &str, args: &[Arg]) -> rusqlite::Result<u64> {
        let mut statement = self.conn.conn.prepare_cached(sql)?;
        bind(&mut statement, args)?;
        Ok(u64::try_from(statement.raw_execute()?).unwrap_or(u64::MAX))
    }

    fn returning_now<R: ReturnedRow>(&self, sql: &str, args: &[Arg]) -> rusqlite::Result<Option<R>> {
        let mut statement = self.conn.conn.prepare_cached(sql)?;
        bind(&mut statement, args)?;
        let mut rows = statement.raw_query();
        let row = match rows.next()? {
            Some(row) => Some(R::direct(row)?),
            None => None,
        };
        // An `UPDATE ... RETURNING` writes every row it matches as it steps through
        // them; step to the end so none is left unwritten.
        while rows.next()?.is_some() {}
        Ok(row)
    }
}

impl Drop for DirectTx {
    fn drop(&mut self) {
        if self.open {
            // Nothing to report to: the caller already returned the error that left
            // the transaction uncommitted. If the savepoint is gone, SQLite rolled back
            // the whole transaction, which `settle` reports to the group.
            let _ = self.conn.conn.execute_batch("ROLLBACK TO job; RELEASE job");
        }
        if !self.settled {
            self.settle(false);
        }
    }
}

impl Exec for DirectTx {
    fn run<'a>(&'a mut self, sql: &'a str, args: &'a [Arg]) -> impl Future<Output = Result<u64, sqlx::Error>> + Send {
        std::future::ready(self.run_now(sql, args).map_err(to_sqlx))
    }

    fn returning<'a, R: ReturnedRow>(
        &'a mut self,
        sql: &'a str,
        args: &'a [Arg],
    ) -> impl Future<Output = Result<Option<R>, sqlx::Error>> + Send {
        std::future::ready(self.returning_now(sql, args).map_err(to_sqlx))
    }
}

/// A write transaction of either kind: direct on a SQLite file, sqlx otherwise.
#[derive(Debug)]
pub enum Transaction {
    Sqlx(WriteTx),
    Direct(DirectTx),
}

impl Transaction {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Transaction::Sqlx(tx) => tx.commit().await,
            Transaction::Direct(tx) => tx.commit().await,
        }
    }

    /// Says what the transaction's statements may change among the rows caches keep
    /// (anything, unless said): [`super::stamps`].
    pub fn touches(&mut self, touches: Touches) {
        match self {
            Transaction::Sqlx(tx) => tx.touches(touches),
            Transaction::Direct(tx) => tx.touches(touches),
        }
    }

    /// The sqlx connection, for statements that have no direct version. A caller that
    /// needs one starts its transaction with `Db::begin_write` instead.
    pub fn sqlx(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        match self {
            Transaction::Sqlx(tx) => Ok(&mut **tx),
            Transaction::Direct(_) => {
                Err(sqlx::Error::Protocol("a statement without a direct version in a direct transaction".into()))
            }
        }
    }
}

impl Exec for Transaction {
    async fn run(&mut self, sql: &str, args: &[Arg]) -> Result<u64, sqlx::Error> {
        match self {
            Transaction::Sqlx(tx) => tx.run(sql, args).await,
            Transaction::Direct(tx) => tx.run(sql, args).await,
        }
    }

    async fn returning<R: ReturnedRow>(&mut self, sql: &str, args: &[Arg]) -> Result<Option<R>, sqlx::Error> {
        match self {
            Transaction::Sqlx(tx) => tx.returning(sql, args).await,
            Transaction::Direct(tx) => tx.returning(sql, args).await,
        }
    }
}

/// Binds `args` by the number of each `$n` in the statement, as sqlx does: a number may
/// appear more than once and out of order, and SQLite numbers the parameters in the
/// order they first appear.
fn bind(statement: &mut rusqlite::CachedStatement<'_>, args: &[Arg]) -> rusqlite::Result<()> {
    for index in 1..=statement.parameter_count() {
        let arg = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| args.get(n.checked_sub(1)?))
            .ok_or(rusqlite::Error::InvalidParameterCount(index, args.len()))?;
        match arg {
            Arg::Int(v) => statement.raw_bind_parameter(index, v)?,
            Arg::Text(v) => statement.raw_bind_parameter(index, v.as_str())?,
            Arg::Bytes(v) => statement.raw_bind_parameter(index, v.as_slice())?,
            Arg::NullInt | Arg::NullText => statement.raw_bind_parameter(index, rusqlite::types::Null)?,
        }
    }
    Ok(())
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// A SQLite error from a direct statement, as a sqlx database error, so that callers
/// tell a unique violation from other failures the same way on both paths.
#[derive(Debug)]
struct DirectError {
    message: String,
    extended_code: i32,
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLite code {})", self.message, self.extended_code)
    }
}

impl std::error::Error for DirectError {}

impl DatabaseError for DirectError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.extended_code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        // SQLite's extended result codes for constraint failures.
        match self.extended_code {
            2067 | 1555 => ErrorKind::UniqueViolation,
            787 => ErrorKind::ForeignKeyViolation,
            1299 => ErrorKind::NotNullViolation,
            275 => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn to_sqlx(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(..) => Failure::of(&e).into_sqlx(),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
