//! `twofold-load`: the load half of Twofold's benchmarks. It measures, in one run on one
//! machine, the ceilings (raw argon2id hashes per second on all cores, a bare axum
//! endpoint) and then a real `twofold` server on loopback: the password step, the
//! verify-code step (authenticator), the effective-policy read, an admin settings
//! write, and the OpenID provider apart: authorization requests with a valid session
//! (against the bare axum endpoint) and the token endpoint's code and refresh grants
//! for RS256 and ES256 applications (against bare axum, with the signing ceilings beside
//! them); and the
//! server's resident memory, and for each workload the processor time per request of
//! the server, the clients and the database (`cpu`). `scripts/bench` runs it at both
//! scales on both databases; BENCHMARKS.md records the figures.

mod cpu;
mod drive;
mod seed;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use clap::{Parser, Subcommand};
use drive::{Job, Limit, Stats};
use seed::World;
use twofold_policy::ScopeSettings;
use twofold_policy::wire::TokenAlg;
use twofold_server::db::Db;
use twofold_server::secrets::Keys;

#[derive(Debug, Parser)]
#[command(name = "twofold-load", about = "Load generator and ceilings for Twofold's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Seed a database, start `twofold` on it and measure every workload.
    Run(RunArgs),
    /// Serve the bare axum ceiling endpoint (started by `run`).
    Bare,
    /// Mixed load for a while with the server's memory sampled: errors and growth.
    Soak(SoakArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// `postgres://...` of an empty database; a temporary SQLite file when absent.
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 1_000)]
    users: u64,
    #[arg(long, default_value_t = 10)]
    tenants: u64,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds per timed workload (and per ceiling).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests of the verify-code workload: each spends one user's current time step,
    /// so it is at most the number of users.
    #[arg(long, default_value_t = 1_000)]
    verify_requests: usize,
    /// Open the verify-code workload's pending sign-ins through the password step, as
    /// browsers do (at the argon2id ceiling's pace: minutes for tens of thousands). By
    /// default they are written straight into the database, with the tokens and the
    /// tags the password step would have made.
    #[arg(long)]
    open_through_password: bool,
    /// The `twofold` binary; by default the one beside this program.
    #[arg(long)]
    server: Option<PathBuf>,
    /// Extra `KEY=VALUE` environment for the server, e.g. raised rate limits.
    #[arg(long = "server-env")]
    server_env: Vec<String>,
    /// A name for this run in the report.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(Debug, clap::Args)]
struct SoakArgs {
    #[command(flatten)]
    run: RunArgs,
    /// How long the mixed load lasts, in seconds.
    #[arg(long, default_value_t = 180)]
    soak_seconds: u64,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 10)]
    sample_seconds: u64,
}

/// The server's allocator, so that the bare axum ceiling is served as the server is.
#[global_allocator]
static ALLOCATOR: twofold_server::alloc::Allocator = twofold_server::alloc::Allocator {};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Cmd::Bare => rt.block_on(bare()),
        Cmd::Run(args) => rt.block_on(run(args)),
        Cmd::Soak(args) => rt.block_on(soak(args)),
    }
}

/// The ceiling for a read: an axum handler that answers a JSON body of the same size
/// as an effective-policy view from memory, with nothing else in the way.
async fn bare() -> anyhow::Result<()> {
    use axum::routing::get;
    let body = serde_json::json!({
        "user_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "behaviour": "optional", "required": true,
        "users_can_change": true, "remember_browser_allowed": true, "remember_browser_days": 14,
        "enrollment_grace_days": 0, "allowed_providers": ["authenticator", "email", "sms"],
        "trace": [{"level": "host", "setting": "optional", "effect": "user chooses"}],
    });
    let app = axum::Router::new().route("/ping", get(move || std::future::ready(axum::Json(body.clone()))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Raw argon2id verifications per second at Twofold's parameters, one thread per core:
/// the most password steps this machine can do.
fn argon2_ceiling(seconds: u64) -> anyhow::Result<f64> {
    let phc = twofold_server::auth::hash_password_blocking(seed::PASSWORD)?;
    let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let count = count.clone();
            let phc = phc.as_str();
            s.spawn(move || {
                while Instant::now() < deadline {
                    std::hint::black_box(twofold_server::auth::verify_password_blocking(seed::PASSWORD, phc));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// [`argon2_ceiling`] on threads of its own while the runtime's go on.
async fn argon2_ceiling_off_runtime(seconds: u64) -> anyhow::Result<f64> {
    tokio::task::spawn_blocking(move || argon2_ceiling(seconds)).await?
}

/// Signatures per second with a key of `alg` (RSA 2048 or P-256) on one thread per
/// core, parsed once as the server keeps it: what the token endpoint spends most of its
/// work on (an ID token and an access token for each code).
fn signing_ceiling(alg: TokenAlg, seconds: u64) -> anyhow::Result<f64> {
    let der = twofold_server::oidc::keys::private_der(alg).map_err(|e| anyhow::anyhow!("{} key: {e}", alg.as_str()))?;
    let signer = twofold_server::oidc::keys::Signer::from_der("ceiling", alg, &der)
        .map_err(|e| anyhow::anyhow!("{} key: {e}", alg.as_str()))?;
    let claims = serde_json::json!({ "iss": "http://127.0.0.1:8080", "sub": World::user_id(0), "aud": "client",
        "iat": 1_800_000_000, "exp": 1_800_000_600, "auth_time": 1_800_000_000, "acr": "urn:twofold:acr:pwd" });
    let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (count, signer, claims) = (count.clone(), &signer, &claims);
            s.spawn(move || {
                while Instant::now() < deadline {
                    if std::hint::black_box(signer.sign("JWT", claims)).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// A child process killed when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn bare_ceiling(clients: usize, seconds: u64) -> anyhow::Result<Stats> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe).arg("bare").stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().context("bare server stdout")?;
    let guard = ChildGuard(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr: SocketAddr = line.trim().strip_prefix("listening ").context("bare server address")?.parse()?;
    let url = format!("http://{addr}/ping");
    let job: Job = Arc::new(move |http, _| {
        let url = url.clone();
        Box::pin(async move { drive::expect(http.get(url).send().await, 200).await })
    });
    drive::run("warm-up", clients, Limit::For(Duration::from_secs(1)), job.clone()).await?;
    let stats = drive::run("bare axum endpoint", clients, Limit::For(Duration::from_secs(seconds)), job).await?;
    drop(guard);
    Ok(stats)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident and peak resident memory of `pid`, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The size of the WAL's file at `path`, in MiB.
fn wal_mib(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

/// A seeded database and a `twofold` server running on it.
struct Target {
    db: Db,
    /// The server's keys, for pending sign-ins opened in the database.
    keys: Keys,
    world: World,
    base: String,
    admin_cookie: String,
    /// Session cookies of users of the first tenant ([`OIDC_USERS`]).
    sessions: Arc<Vec<String>>,
    pid: u32,
    seed_seconds: f64,
    /// SQLite's WAL file; `None` on PostgreSQL.
    wal: Option<std::path::PathBuf>,
    _server: ChildGuard,
    _dir: tempfile::TempDir,
}

async fn start_target(args: &RunArgs) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let url = match &args.database_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    let key = base64::engine::general_purpose::STANDARD.encode(rand_key());
    let keys = Keys::from_base64(&key)?;
    let world = World { users: args.users, tenants: args.tenants.max(1) };
    let db = Db::connect(&url, 4).await?;
    eprintln!("seeding {} users over {} tenants ...", world.users, world.tenants);
    let seed_seconds = seed::seed(&db, world, &keys, now_ms()).await?;
    eprintln!("seeded in {seed_seconds:.1} s");
    let signers = world.users_of_tenant(0, OIDC_USERS);
    let tokens = seed::open_sessions(&db, &signers, now_ms()).await?;
    let sessions = Arc::new(tokens.iter().map(|t| format!("twofold_session={t}")).collect());

    let server = match &args.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("twofold"),
    };
    let port = free_port()?;
    let mut cmd = Command::new(&server);
    cmd.arg("serve")
        .env("TWOFOLD_DATABASE_URL", &url)
        .env("TWOFOLD_SECRET_KEY", &key)
        .env("TWOFOLD_BIND", format!("127.0.0.1:{port}"))
        .env("TWOFOLD_COOKIE_SECURE", "false")
        .env("TWOFOLD_LOG", "warn")
        .stdout(Stdio::null());
    for kv in &args.server_env {
        let (k, v) = kv.split_once('=').context("--server-env takes KEY=VALUE")?;
        cmd.env(k, v);
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", server.display()))?;
    let pid = child.id();
    let guard = ChildGuard(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = drive::client()?;
    let ready = Instant::now();
    loop {
        if http.get(format!("{base}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(60), "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = http
        .post(format!("{base}/api/auth/sign-in"))
        .header("X-Requested-With", "twofold-load")
        .json(&serde_json::json!({ "username": seed::ADMIN, "password": seed::PASSWORD }))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "admin sign-in failed: {}", resp.status());
    let admin_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("twofold_session="))
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_owned();
    let wal = args.database_url.is_none().then(|| dir.path().join("bench.db-wal"));
    Ok(Target { db, keys, world, base, admin_cookie, sessions, pid, seed_seconds, wal, _server: guard, _dir: dir })
}

fn rand_key() -> [u8; 32] {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// Spreads consecutive request indexes over the whole user population.
fn spread(index: usize, n: u64) -> u64 {
    (index as u64).wrapping_mul(7_919) % n
}

fn password_job(t: &Target) -> Job {
    let base = t.base.clone();
    let world = t.world;
    Arc::new(move |http, index| {
        let i = spread(index, world.users);
        let url = format!("{base}/api/auth/sign-in");
        let body = serde_json::json!({
            "tenant": World::tenant_name(world.tenant_of(i)), "username": World::username(i), "password": seed::PASSWORD,
        });
        Box::pin(async move {
            let resp = http.post(url).header("X-Requested-With", "twofold-load").json(&body).send().await;
            drive::expect(resp, 200).await
        })
    })
}

fn verify_job(t: &Target, users: Arc<Vec<u64>>, tokens: Arc<Vec<String>>) -> Job {
    let base = t.base.clone();
    Arc::new(move |http, index| {
        let url = format!("{base}/api/auth/sign-in/verify");
        let (Some(&i), Some(token)) = (users.get(index), tokens.get(index)) else {
            return Box::pin(async { Err("no such job".to_owned()) });
        };
        let cookie = format!("twofold_pending={token}");
        let code = twofold_server::totp::code_at(&World::totp_secret(i), now_secs());
        let body = serde_json::json!({ "method": "authenticator", "code": code, "remember_browser": false });
        Box::pin(async move {
            let resp = http
                .post(url)
                .header("X-Requested-With", "twofold-load")
                .header("Cookie", cookie)
                .json(&body)
                .send()
                .await;
            drive::expect(resp, 200).await
        })
    })
}

/// Opens a pending sign-in for each of `users` through the password step, `clients` at
/// a time; returns their tokens in the same order.
async fn open_through_password(t: &Target, users: &[u64], clients: usize) -> anyhow::Result<Vec<String>> {
    use futures::{StreamExt, TryStreamExt};
    eprintln!("opening {} sign-ins through the password step ...", users.len());
    let started = Instant::now();
    let http = drive::client()?;
    let url = format!("{}/api/auth/sign-in", t.base);
    let world = t.world;
    let tokens: Vec<String> = futures::stream::iter(users.iter().copied())
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            let body = serde_json::json!({
                "tenant": World::tenant_name(world.tenant_of(i)), "username": World::username(i),
                "password": seed::PASSWORD,
            });
            async move {
                let resp = http.post(url).header("X-Requested-With", "twofold-load").json(&body).send().await?;
                anyhow::ensure!(resp.status().is_success(), "password step of user {i}: {}", resp.status());
                resp.headers()
                    .get_all("set-cookie")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(|v| v.strip_prefix("twofold_pending="))
                    .and_then(|v| v.split(';').next())
                    .map(str::to_owned)
                    .context("no pending sign-in cookie")
            }
        })
        .buffered(clients)
        .try_collect()
        .await?;
    eprintln!("opened in {:.1} s", started.elapsed().as_secs_f64());
    Ok(tokens)
}

fn policy_job(t: &Target) -> Job {
    let base = t.base.clone();
    let cookie = t.admin_cookie.clone();
    let users = t.world.users;
    Arc::new(move |http, index| {
        let url = format!("{base}/api/users/{}/policy", World::user_id(spread(index, users)));
        let cookie = cookie.clone();
        Box::pin(async move { drive::expect(http.get(url).header("Cookie", cookie).send().await, 200).await })
    })
}

fn settings_job(t: &Target) -> Job {
    let base = t.base.clone();
    let cookie = t.admin_cookie.clone();
    let tenants = t.world.tenants;
    Arc::new(move |http, index| {
        let url = format!("{base}/api/tenants/{}/settings", World::tenant_id(spread(index, tenants)));
        let settings = ScopeSettings { remember_browser_days: 1 + (index % 300) as u32, ..ScopeSettings::default() };
        let cookie = cookie.clone();
        Box::pin(async move {
            let resp = http
                .put(url)
                .header("X-Requested-With", "twofold-load")
                .header("Cookie", cookie)
                .json(&settings)
                .send()
                .await;
            drive::expect(resp, 200).await
        })
    })
}

/// Where the benchmark's application says it lives; nothing listens there, the load
/// generator reads the code from the redirect itself.
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// How many users of the first tenant sign in to its applications: each has a grant of
/// their own, as the users of one application do, rather than one user's grant taking
/// every exchange.
const OIDC_USERS: usize = 256;

/// An application registered for the OpenID Connect workloads.
#[derive(Clone)]
struct Application {
    client_id: String,
    secret: String,
    issuer: String,
}

/// A first-party, confidential application of the first tenant with no 2FA rule whose
/// tokens are signed with `alg`: the sessions of its users ([`Target::sessions`]) meet
/// it, so each authorization request answers a code at once.
async fn register_application(t: &Target, alg: TokenAlg) -> anyhow::Result<Application> {
    let resp = drive::client()?
        .post(format!("{}/api/tenants/{}/applications", t.base, World::tenant_id(0)))
        .header("X-Requested-With", "twofold-load")
        .header("Cookie", &t.admin_cookie)
        .json(&serde_json::json!({ "name": format!("Load {}", alg.as_str()), "client_type": "confidential",
            "redirect_uris": [REDIRECT], "allowed_scopes": ["openid", "offline_access"], "first_party": true,
            "token_alg": alg.as_str() }))
        .send()
        .await?;
    anyhow::ensure!(resp.status().as_u16() == 201, "registering the application: {}", resp.status());
    let body: serde_json::Value = resp.json().await?;
    let field = |v: &serde_json::Value, name: &str| v.as_str().map(str::to_owned).context(name.to_owned());
    Ok(Application {
        client_id: field(&body["application"]["client_id"], "client_id")?,
        secret: field(&body["client_secret"], "client_secret")?,
        issuer: field(&body["application"]["issuer"], "issuer")?,
    })
}

/// An authorization request with the session of one of the application's users, in
/// turn: the session meets the rule, so the answer is a 303 to the application with a
/// code, which is kept for the token workload.
fn authorize_job(t: &Target, app: &Application, codes: Arc<Mutex<Vec<String>>>) -> Job {
    let authorize = authorize_url(app);
    let sessions = t.sessions.clone();
    Arc::new(move |http, index| {
        let (authorize, sessions, codes) = (format!("{authorize}&state={index}"), sessions.clone(), codes.clone());
        Box::pin(async move {
            let cookie = session_in_turn(&sessions, index)?;
            let code = authorize_once(&http, authorize, cookie).await?;
            codes.lock().map_err(|_| "code list poisoned".to_owned())?.push(code);
            Ok(())
        })
    })
}

/// The session cookie of the `index`th request: the users take turns.
fn session_in_turn(sessions: &[String], index: usize) -> Result<&str, String> {
    sessions.get(index % sessions.len().max(1)).map(String::as_str).ok_or_else(|| "no session".to_owned())
}

fn authorize_url(app: &Application) -> String {
    authorize_url_for(app, "openid")
}

fn authorize_url_for(app: &Application, scope: &str) -> String {
    format!(
        "{}/oauth2/authorize?response_type=code&scope={}&client_id={}&redirect_uri={}",
        app.issuer,
        form_encoded(scope),
        app.client_id,
        form_encoded(REDIRECT)
    )
}

fn token_url(app: &Application) -> String {
    format!("{}/oauth2/token", app.issuer)
}

fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One authorization request; the code of the redirect it answers.
async fn authorize_once(http: &reqwest::Client, url: String, cookie: &str) -> Result<String, String> {
    let resp = http.get(url).header("Cookie", cookie).send().await.map_err(|e| e.to_string())?;
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
    url::Url::parse(location)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()))
        .ok_or_else(|| format!("authorize answered {} without a code", resp.status()))
}

/// The token endpoint: each code of `codes` for tokens once (`client_secret_basic`),
/// which signs an ID token and an access token.
fn token_job(app: &Application, codes: Arc<Vec<String>>) -> Job {
    let (token, app) = (token_url(app), app.clone());
    Arc::new(move |http, index| {
        let (token, app, codes) = (token.clone(), app.clone(), codes.clone());
        Box::pin(async move {
            let code = codes.get(index).ok_or("no code left")?;
            exchange_once(&http, token, &app.client_id, &app.secret, code).await
        })
    })
}

/// One code for tokens.
async fn exchange_once(
    http: &reqwest::Client,
    url: String,
    client_id: &str,
    secret: &str,
    code: &str,
) -> drive::Outcome {
    drive::expect(post_token(http, url, client_id, secret, code_grant(code)).await, 200).await
}

/// The token endpoint's form for `code`.
fn code_grant(code: &str) -> String {
    format!("grant_type=authorization_code&code={}&redirect_uri={}", form_encoded(code), form_encoded(REDIRECT))
}

/// `form` posted to the token endpoint `url` as the client (`client_secret_basic`).
async fn post_token(
    http: &reqwest::Client,
    url: String,
    client_id: &str,
    secret: &str,
    form: String,
) -> Result<reqwest::Response, reqwest::Error> {
    http.post(url)
        .basic_auth(client_id, Some(secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
}

/// A refresh token for each of the application's users ([`Target::sessions`]): a code
/// asked with `offline_access`, exchanged. Not measured: the refresh workload's start.
async fn refresh_tokens(t: &Target, clients: usize, app: &Application) -> anyhow::Result<Vec<String>> {
    let authorize = authorize_url_for(app, "openid offline_access");
    let (token, sessions, app) = (token_url(app), t.sessions.clone(), app.clone());
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let kept = tokens.clone();
    let job: Job = Arc::new(move |http, index| {
        let authorize = format!("{authorize}&state={index}");
        let (token, sessions, app, kept) = (token.clone(), sessions.clone(), app.clone(), kept.clone());
        Box::pin(async move {
            let cookie = sessions.get(index).ok_or("no session")?;
            let code = authorize_once(&http, authorize, cookie).await?;
            let form = code_grant(&code);
            let resp = post_token(&http, token, &app.client_id, &app.secret, form).await.map_err(|e| e.to_string())?;
            let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
            let refresh = body["refresh_token"].as_str().ok_or_else(|| format!("no refresh token in {body}"))?;
            kept.lock().map_err(|_| "token list poisoned".to_owned())?.push(refresh.to_owned());
            Ok(())
        })
    });
    let opened = drive::run("refresh tokens", clients, Limit::Jobs(t.sessions.len()), job).await?;
    anyhow::ensure!(opened.errors == 0, "{} of the refresh tokens were not given", opened.errors);
    let tokens = std::mem::take(&mut *tokens.lock().map_err(|_| anyhow::anyhow!("token list poisoned"))?);
    // Each client holds one token while its request is out.
    anyhow::ensure!(tokens.len() >= clients, "{} users' refresh tokens for {clients} clients", tokens.len());
    Ok(tokens)
}

/// The token endpoint's refresh grant: a client takes a refresh token from `tokens`,
/// exchanges it for new tokens (an ID token and an access token, signed, and the next
/// refresh token: each is used once) and puts the new one back, as each relying party
/// keeps the last it was given.
fn refresh_job(app: &Application, tokens: Arc<Mutex<Vec<String>>>) -> Job {
    let (token, app) = (token_url(app), app.clone());
    Arc::new(move |http, _| {
        let (token, app, tokens) = (token.clone(), app.clone(), tokens.clone());
        Box::pin(async move {
            let refresh = tokens.lock().map_err(|_| "token list poisoned".to_owned())?.pop().ok_or("no token left")?;
            let form = format!("grant_type=refresh_token&refresh_token={}", form_encoded(&refresh));
            let resp = post_token(&http, token, &app.client_id, &app.secret, form)
                .await
                .map_err(|e| format!("transport: {e}"))?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.map_err(|e| format!("{status}: {e}"))?;
            let next = body["refresh_token"].as_str().ok_or_else(|| format!("{status}: {body}"))?;
            tokens.lock().map_err(|_| "token list poisoned".to_owned())?.push(next.to_owned());
            Ok(())
        })
    })
}

/// An application's whole code flow, as a relying party signs a user in through
/// Twofold: an authorization request with one of its users' sessions, then its code for
/// tokens. The soak runs it beside the other workloads.
fn code_flow_job(t: &Target, app: &Application) -> Job {
    let (authorize, token, app) = (authorize_url(app), token_url(app), app.clone());
    let sessions = t.sessions.clone();
    Arc::new(move |http, index| {
        let authorize = format!("{authorize}&state={index}");
        let (token, sessions, app) = (token.clone(), sessions.clone(), app.clone());
        Box::pin(async move {
            let cookie = session_in_turn(&sessions, index)?;
            let code = authorize_once(&http, authorize, cookie).await?;
            exchange_once(&http, token, &app.client_id, &app.secret, &code).await
        })
    })
}

/// The OpenID Connect workloads for an application signing with `alg`: authorization
/// requests with a valid session for `d`, then the codes they gave for tokens, each
/// once, for at most `d` too: codes live 60 s, and a slow signature (RS256) would still
/// be exchanging the last of them after that.
async fn oidc_runs(t: &Target, clients: usize, d: Duration, alg: TokenAlg) -> anyhow::Result<[Measured; 3]> {
    let app = register_application(t, alg).await?;
    let codes = Arc::new(Mutex::new(Vec::new()));
    let name = format!("authorization request with a session ({} application)", alg.as_str());
    let authorize = measured(t, &name, clients, Limit::For(d), authorize_job(t, &app, codes.clone())).await?;
    let codes: Vec<String> = std::mem::take(&mut *codes.lock().map_err(|_| anyhow::anyhow!("code list poisoned"))?);
    let n = codes.len();
    // The line `scripts/bench profile token-rs256|token-es256` waits for.
    eprintln!("token endpoint ({}) ...", alg.as_str());
    let name = format!("token endpoint, code for tokens ({})", alg.as_str());
    let token = measured(t, &name, clients, Limit::JobsFor(n, d), token_job(&app, Arc::new(codes))).await?;
    let tokens = Arc::new(Mutex::new(refresh_tokens(t, clients, &app).await?));
    // The line `scripts/bench profile refresh-rs256|refresh-es256` waits for.
    eprintln!("refresh grant ({}) ...", alg.as_str());
    let name = format!("token endpoint, refresh grant ({})", alg.as_str());
    let refresh = measured(t, &name, clients, Limit::For(d), refresh_job(&app, tokens)).await?;
    Ok([authorize, token, refresh])
}

/// Distinct users for the verify-code workload, evenly spread over the population.
fn verify_users(world: World, n: usize) -> Vec<u64> {
    let n = (n as u64).min(world.users).max(1);
    let stride = (world.users / n).max(1);
    (0..n).map(|k| k * stride).collect()
}

fn row(s: &Stats, ratio: Option<(f64, &str)>) -> String {
    let ratio = ratio.map(|(r, of)| format!("{:.0} % of {of}", r * 100.0)).unwrap_or_default();
    format!(
        "| {} | {:.0} | {:.2} | {:.2} | {} / {} | {} |",
        s.name,
        s.rate(),
        s.p50_ms,
        s.p99_ms,
        s.errors,
        s.requests,
        ratio
    )
}

/// A workload's figures and the processor time it cost.
struct Measured {
    stats: Stats,
    cpu: cpu::Usage,
}

/// [`drive::run`] with the machine's processor time read before and after.
async fn measured(t: &Target, name: &str, clients: usize, limit: Limit, job: Job) -> anyhow::Result<Measured> {
    let before = cpu::snapshot(t.pid);
    let stats = drive::run(name, clients, limit, job).await?;
    let after = cpu::snapshot(t.pid);
    let cpu = cpu::usage(&before, &after, stats.requests);
    Ok(Measured { stats, cpu })
}

/// A row of the processor-time table: microseconds of one core per request by part,
/// the idle share, and the highest rate these costs allow.
fn cpu_row(m: &Measured, cores: usize, database: bool) -> String {
    let u = &m.cpu;
    let database_part = if database { format!(" {:.0} |", u.database_us) } else { String::new() };
    let database_ceiling =
        if database { format!(" {:.0} |", u.database_ceiling(cores).min(1e9)) } else { String::new() };
    format!(
        "| {} | {:.0} | {:.0} |{database_part} {:.0} | {:.0} % | {:.0} |{database_ceiling}",
        m.stats.name,
        u.server_us,
        u.clients_us,
        u.other_us,
        u.idle * 100.0,
        u.machine_ceiling(cores).min(1e9),
    )
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let d = Duration::from_secs(args.seconds);
    eprintln!("ceilings ...");
    let rs256 = signing_ceiling(TokenAlg::RS256, args.seconds)?;
    let es256 = signing_ceiling(TokenAlg::ES256, args.seconds)?;
    let bare = bare_ceiling(args.clients, args.seconds).await?;

    let t = start_target(&args).await?;
    let (idle_rss, _) = memory_mib(t.pid);
    let c = args.clients;
    // The argon2id ceiling right before and right after the password step, with the
    // server started and idle: this host's speed at a memory-bound hash moves by a tenth
    // within minutes, and seeding a million users takes minutes, so a ceiling taken at
    // the start measured another moment than the step's.
    eprintln!("argon2id ceiling ...");
    let argon2_before = argon2_ceiling_off_runtime(args.seconds).await?;
    // `scripts/bench profile` starts sampling the step when it reads this.
    eprintln!("password step ...");
    let password = measured(&t, "password step", c, Limit::For(d), password_job(&t)).await?;
    eprintln!("argon2id ceiling again ...");
    let argon2_after = argon2_ceiling_off_runtime(args.seconds).await?;
    let argon2 = (argon2_before + argon2_after) / 2.0;
    let users = verify_users(t.world, args.verify_requests);
    let tokens = if args.open_through_password {
        open_through_password(&t, &users, c).await?
    } else {
        seed::open_attempts(&t.db, &t.keys, &users, now_ms()).await?
    };
    // After the opening: `scripts/bench profile` starts sampling when it reads this.
    eprintln!("verify-code step ...");
    let n = users.len();
    let verify =
        measured(&t, "verify-code step", c, Limit::Jobs(n), verify_job(&t, Arc::new(users), Arc::new(tokens))).await?;
    eprintln!("effective-policy read ...");
    drive::run("warm-up", c, Limit::For(Duration::from_secs(1)), policy_job(&t)).await?;
    let policy = measured(&t, "effective-policy read", c, Limit::For(d), policy_job(&t)).await?;
    eprintln!("settings write ...");
    let settings = measured(&t, "admin settings write", c, Limit::For(d), settings_job(&t)).await?;
    eprintln!("OpenID Connect: authorization requests, then the token endpoint's two grants (RS256, then ES256) ...");
    let [authorize_rs, token_rs, refresh_rs] = oidc_runs(&t, c, d, TokenAlg::RS256).await?;
    let [authorize_es, token_es, refresh_es] = oidc_runs(&t, c, d, TokenAlg::ES256).await?;
    let (rss, peak) = memory_mib(t.pid);

    let backend = if args.database_url.is_some() { "PostgreSQL" } else { "SQLite" };
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    println!(
        "\n### {}: {} users over {} tenants on {backend}, {} clients, {} cores\n",
        args.label, t.world.users, t.world.tenants, c, cores
    );
    println!("| workload | requests/s | p50 ms | p99 ms | errors / requests | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    println!(
        "| argon2id verifications, {cores} threads (ceiling: the mean of {argon2_before:.1} before the password \
         step and {argon2_after:.1} after it) | {argon2:.1} | | | | |"
    );
    println!("{}", row(&bare, None));
    println!("{}", row(&password.stats, Some((password.stats.rate() / argon2, "argon2id ceiling"))));
    println!("{}", row(&verify.stats, None));
    println!("{}", row(&policy.stats, Some((policy.stats.rate() / bare.rate(), "bare axum"))));
    println!("{}", row(&settings.stats, None));
    let of_bare = |s: &Stats| Some((s.rate() / bare.rate(), "bare axum"));
    println!("{}", row(&authorize_rs.stats, of_bare(&authorize_rs.stats)));
    println!("{}", row(&authorize_es.stats, of_bare(&authorize_es.stats)));
    println!("| RS256 signatures, {cores} threads (ceiling) | {rs256:.1} | | | | |");
    println!("{}", row(&token_rs.stats, of_bare(&token_rs.stats)));
    println!("{}", row(&refresh_rs.stats, of_bare(&refresh_rs.stats)));
    println!("| ES256 signatures, {cores} threads (ceiling) | {es256:.1} | | | | |");
    println!("{}", row(&token_es.stats, of_bare(&token_es.stats)));
    println!("{}", row(&refresh_es.stats, of_bare(&refresh_es.stats)));
    println!(
        "\nThe token endpoint signs two tokens per code or refresh token: codes {:.0} % of the RS256 ceiling / 2, \
         {:.0} % of the ES256 ceiling / 2; refresh tokens {:.0} % and {:.0} %.",
        token_rs.stats.rate() / (rs256 / 2.0) * 100.0,
        token_es.stats.rate() / (es256 / 2.0) * 100.0,
        refresh_rs.stats.rate() / (rs256 / 2.0) * 100.0,
        refresh_es.stats.rate() / (es256 / 2.0) * 100.0
    );
    println!(
        "\nSeeding took {:.1} s. Server resident memory: {idle_rss:.1} MiB after start, {rss:.1} MiB after the \
         workloads, peak {peak:.1} MiB.",
        t.seed_seconds
    );
    if let Some(wal) = &t.wal {
        println!("SQLite's WAL file after the workloads: {:.0} MiB.", wal_mib(wal));
    }
    let database = args.database_url.is_some();
    println!(
        "\nProcessor time per request, in microseconds of one core (other: the kernel's interrupt work such as \
         loopback networking, and any other process); \"at most\" is the rate at which these costs would keep all \
         {cores} cores busy{}.\n",
        if database { ", and \"database alone\" the rate at which PostgreSQL's part alone would" } else { "" }
    );
    if database {
        println!("| workload | server | clients | PostgreSQL | other | idle | at most /s | database alone /s |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    } else {
        println!("| workload | server | clients | other | idle | at most /s |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    }
    let workloads = [
        &password,
        &verify,
        &policy,
        &settings,
        &authorize_rs,
        &token_rs,
        &refresh_rs,
        &authorize_es,
        &token_es,
        &refresh_es,
    ];
    for m in workloads {
        println!("{}", cpu_row(m, cores, database));
    }
    let all: Vec<&Stats> = std::iter::once(&bare).chain(workloads.iter().map(|m| &m.stats)).collect();
    for s in &all {
        for e in &s.error_samples {
            println!("- {} error: {e}", s.name);
        }
    }
    let errors: usize = all.iter().map(|s| s.errors).sum();
    anyhow::ensure!(errors == 0, "{errors} requests failed");
    Ok(())
}

/// Mixed load for `soak_seconds`: policy reads, settings writes, password and
/// verify-code steps and an application's code flow at once, each with a quarter of the
/// clients, with the server's memory sampled as it goes.
async fn soak(args: SoakArgs) -> anyhow::Result<()> {
    let t = start_target(&args.run).await?;
    let c = (args.run.clients / 4).max(1);
    let d = Duration::from_secs(args.soak_seconds);
    let users = verify_users(t.world, args.run.verify_requests);
    let tokens = if args.run.open_through_password {
        open_through_password(&t, &users, c).await?
    } else {
        seed::open_attempts(&t.db, &t.keys, &users, now_ms()).await?
    };
    let n = users.len();
    let (users, tokens) = (Arc::new(users), Arc::new(tokens));
    let (pid, wal) = (t.pid, t.wal.clone());
    let sample_every = Duration::from_secs(args.sample_seconds.max(1));
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let started = Instant::now();
        let sample = |started: Instant| (started.elapsed().as_secs(), memory_mib(pid).0, wal.as_deref().map(wal_mib));
        while started.elapsed() < d {
            samples.push(sample(started));
            tokio::time::sleep(sample_every.min(d.saturating_sub(started.elapsed()))).await;
        }
        samples.push(sample(started));
        samples
    });
    let app = register_application(&t, TokenAlg::ES256).await?;
    let (policy, settings, password, verify, flow) = tokio::try_join!(
        drive::run("effective-policy read", c, Limit::For(d), policy_job(&t)),
        drive::run("admin settings write", c, Limit::For(d), settings_job(&t)),
        drive::run("password step", c, Limit::For(d), password_job(&t)),
        // Each user verifies once: this workload ends early when the users run out.
        drive::run("verify-code step", c, Limit::JobsFor(n, d), verify_job(&t, users, tokens)),
        drive::run("OpenID Connect code flow (ES256)", c, Limit::For(d), code_flow_job(&t, &app)),
    )?;
    let samples = sampler.await?;
    let (_, peak) = memory_mib(pid);
    let backend = if args.run.database_url.is_some() { "PostgreSQL" } else { "SQLite" };
    println!(
        "\n### soak: {} s, {} users over {} tenants on {backend}\n",
        args.soak_seconds, t.world.users, t.world.tenants
    );
    println!("| workload | requests/s | p50 ms | p99 ms | errors / requests | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    let workloads = [&policy, &settings, &password, &verify, &flow];
    for s in workloads {
        println!("{}", row(s, None));
    }
    // Each pending sign-in is verified once, so this workload can end before the others.
    println!(
        "\nThe verify-code workload verified {} of its {n} pending sign-ins in {:.1} s of the {} s.",
        verify.requests, verify.seconds, args.soak_seconds
    );
    let line: Vec<String> = samples.iter().map(|(s, m, _)| format!("{s} s: {m:.1}")).collect();
    println!("\nResident memory (MiB) over time: {}; peak {peak:.1} MiB.", line.join(", "));
    let wal: Vec<String> = samples.iter().filter_map(|(s, _, w)| w.map(|w| format!("{s} s: {w:.0}"))).collect();
    if !wal.is_empty() {
        println!("\nSQLite's WAL file (MiB) over time: {}.", wal.join(", "));
    }
    for s in workloads {
        for e in &s.error_samples {
            println!("- {} error: {e}", s.name);
        }
    }
    let errors: usize = workloads.iter().map(|s| s.errors).sum();
    anyhow::ensure!(errors == 0, "{errors} requests failed");
    Ok(())
}
