//! Prometheus metrics: one named function per thing worth counting, so the code that
//! counts reads as one line, and the `/metrics` listener that serves them.
//!
//! The recorder is process-wide (the `metrics` facade has one global recorder) and is
//! installed only when `metrics_bind` is set: without it every function here is a
//! no-op. `/metrics` is served on its own listener, never on the public one, so a
//! deployment exposes it only where it chooses. Labels are drawn from fixed sets
//! (route templates, error codes, factor names), never from user input, so the number
//! of series stays bounded.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::error::AppError;

const REQUEST_SECONDS: &str = "twofold_http_request_duration_seconds";
const SQLITE_COMMIT_TRANSACTIONS: &str = "twofold_sqlite_commit_transactions";
const POSTGRES_SUBJECT_STATEMENT_READS: &str = "twofold_postgres_subject_statement_reads";

/// From a cached read to a password hash under load.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// How many of the server's transactions one commit holds, or how many reads one
/// statement answers.
const GROUP_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How often the latency samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process's recorder, installed on first use.
fn recorder() -> anyhow::Result<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.to_owned()), &LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(SQLITE_COMMIT_TRANSACTIONS.to_owned()), &GROUP_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(POSTGRES_SUBJECT_STATEMENT_READS.to_owned()), &GROUP_BUCKETS)
                })
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))
}

/// A step of a sign-in (the password, a second factor, an enrolment, a postponed
/// enrolment) and where it led: `signed_in`, `second_factor_required`,
/// `enrollment_required`, or the error code it was refused with.
pub fn sign_in(factor: &'static str, outcome: &'static str) {
    counter!("twofold_sign_ins_total", "factor" => factor, "outcome" => outcome).increment(1);
}

/// An authenticator code verified in one statement (`signin::opened`), right or wrong:
/// the rest of the sign-ins' verifications took the general way.
pub fn verified_in_one_statement() {
    counter!("twofold_one_statement_verifications_total").increment(1);
}

/// A wrong second factor, counted against the lockout.
pub fn second_factor_failed(factor: &'static str) {
    counter!("twofold_second_factor_failures_total", "factor" => factor).increment(1);
}

/// A user locked out of second-factor sign-in: for a while, or until an admin unlocks.
pub fn locked_out(until_unlocked: bool) {
    let kind = if until_unlocked { "until_unlocked" } else { "timed" };
    counter!("twofold_lockouts_total", "kind" => kind).increment(1);
}

/// An emailed or texted code handed to its sender.
pub fn code_sent(channel: &'static str, delivered: bool) {
    let result = if delivered { "sent" } else { "failed" };
    counter!("twofold_code_sends_total", "channel" => channel, "result" => result).increment(1);
}

/// A request refused by a rate limit or a message cap.
pub fn rate_limited(class: &'static str) {
    counter!("twofold_rate_limited_total", "class" => class).increment(1);
}

/// A read of one of the policy caches.
pub fn cache_read(cache: &'static str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    counter!("twofold_cache_requests_total", "cache" => cache, "result" => result).increment(1);
}

/// A commit of SQLite's writer connection, holding `transactions` of the server's
/// transactions (group commit). One histogram rather than a counter of commits and one
/// of transactions: a scrape reads its count and sum from the same samples, where two
/// counters read while a commit counts itself could show more commits than
/// transactions.
pub fn sqlite_commit(transactions: u64) {
    histogram!(SQLITE_COMMIT_TRANSACTIONS).record(transactions as f64);
}

/// A statement of PostgreSQL's shared policy-input reads (`db::batch`), answering
/// `reads` reads. A histogram for the same reason as [`sqlite_commit`].
pub fn postgres_subject_statement(reads: u64) {
    histogram!(POSTGRES_SUBJECT_STATEMENT_READS).record(reads as f64);
}

/// Password hashes and verifications waiting for a hashing thread.
static ARGON2_QUEUED: AtomicI64 = AtomicI64::new(0);

pub fn argon2_queued() {
    ARGON2_QUEUED.fetch_add(1, Ordering::Relaxed);
}

pub fn argon2_started() {
    ARGON2_QUEUED.fetch_sub(1, Ordering::Relaxed);
}

/// The outcome label of a finished sign-in step.
pub fn outcome_of<T>(result: &Result<T, AppError>, ok: impl FnOnce(&T) -> &'static str) -> &'static str {
    match result {
        Ok(value) => ok(value),
        Err(e) => e.code(),
    }
}

/// Times every request under its route template (`/api/users/{user_id}`), never the
/// raw path, which would make a series per id.
pub async fn track_latency(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    histogram!(REQUEST_SECONDS, "route" => route, "method" => method, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

#[derive(Debug, Clone)]
struct Scrape {
    handle: PrometheusHandle,
    state: AppState,
    process: metrics_process::Collector,
}

/// The text exposition, with the gauges that are read rather than counted set first.
async fn scrape(State(scrape): State<Scrape>) -> Response {
    let pool = &scrape.state.db().pool;
    gauge!("twofold_db_pool_connections", "state" => "open").set(f64::from(pool.size()));
    gauge!("twofold_db_pool_connections", "state" => "idle").set(pool.num_idle() as f64);
    gauge!("twofold_db_pool_max_connections").set(f64::from(scrape.state.config().pool_size()));
    if let Some((open, idle)) = scrape.state.db().hot_counts() {
        gauge!("twofold_db_hot_connections", "state" => "open").set(open as f64);
        gauge!("twofold_db_hot_connections", "state" => "idle").set(idle as f64);
    }
    if let Some(bytes) = scrape.state.db().sqlite_wal_bytes() {
        gauge!("twofold_sqlite_wal_bytes").set(bytes as f64);
    }
    gauge!("twofold_argon2_queue_depth").set(ARGON2_QUEUED.load(Ordering::Relaxed).max(0) as f64);
    // Read from the system at the scrape (`/proc/self` on Linux): the resident memory a
    // deployment watches against its limit, processor time, threads and open files.
    scrape.process.collect();
    scrape.handle.run_upkeep();
    let body = scrape.handle.render();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], body)
        .into_response()
}

/// Binds `metrics_bind` and serves `/metrics` there until `stop` resolves; returns
/// the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let handle = recorder()?;
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    // The recorder keeps every latency sample until an upkeep folds it into its
    // histogram's buckets. A scrape runs one, but a listener scraped rarely, or no
    // longer, would otherwise hold every request's sample: 10 to 25 MiB more in two
    // minutes of the soak (BENCHMARKS.md, "Soak").
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let process = metrics_process::Collector::default();
    process.describe();
    let app = Router::new().route("/metrics", get(scrape)).with_state(Scrape { handle, state, process });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    });
    Ok(bound)
}
