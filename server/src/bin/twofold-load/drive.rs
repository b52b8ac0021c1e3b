//! Closed-loop load: N clients, each with its own keep-alive connection, send one
//! request after another and record every latency. Requests/s is completed requests
//! over wall time; latencies are exact percentiles of all recorded samples.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// When a workload stops.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Run for this long.
    For(Duration),
    /// Send exactly this many requests (each job index once).
    Jobs(usize),
    /// Send at most this many requests (each job index once), for at most this long.
    JobsFor(usize, Duration),
}

/// What one workload measured.
#[derive(Debug, Clone)]
pub struct Stats {
    pub name: String,
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The first few distinct failures, for the operator.
    pub error_samples: Vec<String>,
}

impl Stats {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 { self.requests as f64 / self.seconds } else { 0.0 }
    }
}

pub type Outcome = Result<(), String>;
pub type Job = Arc<dyn Fn(reqwest::Client, usize) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Runs `job` from `clients` concurrent clients until `limit`.
pub async fn run(name: &str, clients: usize, limit: Limit, job: Job) -> anyhow::Result<Stats> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = match limit {
        Limit::For(d) | Limit::JobsFor(_, d) => Some(started + d),
        Limit::Jobs(_) => None,
    };
    let max_jobs = match limit {
        Limit::For(_) => usize::MAX,
        Limit::Jobs(n) | Limit::JobsFor(n, _) => n,
    };
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let http = client()?;
        let next = next.clone();
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(4096);
            let mut errors = Vec::new();
            let mut error_count = 0usize;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= max_jobs {
                    break;
                }
                let t0 = Instant::now();
                let outcome = job(http.clone(), index).await;
                let micros = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                latencies.push(micros);
                if let Err(e) = outcome {
                    error_count += 1;
                    if errors.len() < 3 {
                        errors.push(e);
                    }
                }
            }
            (latencies, error_count, errors, Instant::now())
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut samples: Vec<String> = Vec::new();
    let mut finished = started;
    for task in tasks {
        let (latencies, error_count, errs, done) = task.await?;
        all.extend(latencies);
        errors += error_count;
        for e in errs {
            if samples.len() < 5 && !samples.contains(&e) {
                samples.push(e);
            }
        }
        finished = finished.max(done);
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * all.len() as f64).ceil() as usize;
        f64::from(all[rank.clamp(1, all.len()) - 1]) / 1000.0
    };
    Ok(Stats {
        name: name.to_owned(),
        requests: all.len(),
        errors,
        seconds: (finished - started).as_secs_f64(),
        p50_ms: pct(50.0),
        p99_ms: pct(99.0),
        error_samples: samples,
    })
}

/// Turns a response into an outcome: `expected` status, anything else is an error
/// described by its status and the start of its body.
pub async fn expect(resp: Result<reqwest::Response, reqwest::Error>, expected: u16) -> Outcome {
    match resp {
        Ok(r) if r.status().as_u16() == expected => {
            // Read the body: a real client does, and the server's work includes it.
            r.bytes().await.map(|_| ()).map_err(|e| format!("body: {e}"))
        }
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Err(format!("{status}: {}", body.chars().take(160).collect::<String>()))
        }
        Err(e) => Err(format!("transport: {e}")),
    }
}
