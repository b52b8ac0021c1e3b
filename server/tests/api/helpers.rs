//! The harness every API test stands on: `TestApp::spawn` starts the real application
//! in-process on port 0 over a fresh database (a SQLite file by default, a new
//! PostgreSQL database with `TEST_BACKEND=postgres`), and `Client` talks HTTP to it
//! through typed helpers, one cookie store per simulated person.
//!
//! Nothing here may set `TWOFOLD_*` variables in this process: configuration loading
//! rejects unknown `TWOFOLD_` keys, and tests run in parallel threads of one process.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use base64::Engine;
use reqwest::header::{CONTENT_TYPE, HeaderMap, SET_COOKIE};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::Connection;
use twofold_policy::wire::{Tenant, User};
use twofold_server::app::{self, Running};
use twofold_server::clock::{Clock, ManualClock, SystemClock};
use twofold_server::config::Config;

pub const ADMIN_USERNAME: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin password for tests";
/// A password every created user gets unless a test needs another.
pub const PASSWORD: &str = "a long enough password";

/// Where the app under test keeps its data, chosen by `TEST_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_env() -> Self {
        match std::env::var("TEST_BACKEND") {
            Err(std::env::VarError::NotPresent) => Backend::Sqlite,
            Ok(v) if v.is_empty() || v == "sqlite" => Backend::Sqlite,
            Ok(v) if v == "postgres" => Backend::Postgres,
            other => panic!("TEST_BACKEND must be `sqlite` or `postgres`, not {other:?}"),
        }
    }
}

/// A database nobody else uses, so tests can run in parallel and assume a known start.
async fn fresh_database_url(dir: &std::path::Path) -> String {
    match Backend::from_env() {
        Backend::Sqlite => format!("sqlite://{}", dir.join("twofold.db").display()),
        Backend::Postgres => {
            // A silently skipped backend would report green for code that was never run.
            let base = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
                panic!(
                    "TEST_BACKEND=postgres needs TEST_POSTGRES_URL, \
                     e.g. postgres://postgres@127.0.0.1:5433/postgres"
                )
            });
            sqlx::any::install_default_drivers();
            let name = format!("t_{}", uuid::Uuid::now_v7().simple());
            let mut conn = sqlx::AnyConnection::connect(&base)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to TEST_POSTGRES_URL: {e}"));
            // The name is generated here from hex digits only, so it cannot inject SQL.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
            let _ = conn.close().await;
            let mut url = reqwest::Url::parse(&base).expect("TEST_POSTGRES_URL is not a URL");
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
    }
}

/// How a test wants its app configured; the defaults suit most tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `Secure` cookies with the `__Host-` prefix (off by default: the tests speak plain
    /// HTTP on loopback).
    pub cookie_secure: bool,
    /// A clock the test moves by hand instead of the system clock.
    pub manual_clock: bool,
    /// Wrong passwords allowed per account name, and per client address, before the
    /// password step answers `rate_limited` (defaults: the server's).
    pub password_failures_per_account: Option<u32>,
    pub password_failures_per_address: Option<u32>,
    /// Wrong second factors before a lockout (default: the server's, 5).
    pub lockout_max_failures: Option<u32>,
    /// Port of an SMTP server on 127.0.0.1 (no TLS) that email codes go to; without
    /// it (and without `dev_senders`) email codes cannot be sent.
    pub smtp_port: Option<u16>,
    /// Address of a Twilio stand-in that SMS codes go to; see `apply_options`.
    pub sms_addr: Option<SocketAddr>,
    /// Request-rate limits and message caps (defaults: the server's); see `Limits`.
    pub limits: Limits,
    /// Reverse proxies whose `X-Forwarded-For` the app believes (default: none).
    pub trusted_proxies: &'static [&'static str],
    /// The development sender for channels without a real one, writing codes to the
    /// log (off by default, as in the server). For tests about what happens around a
    /// send rather than the message itself.
    pub dev_senders: bool,
}

/// Overrides of the server's request-rate limits (per minute) and message caps (per
/// hour); `None` keeps the server's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub sign_in_per_address: Option<u32>,
    pub sign_in_per_account: Option<u32>,
    pub send_code_per_address: Option<u32>,
    pub send_code_per_account: Option<u32>,
    pub verify_per_address: Option<u32>,
    pub verify_per_account: Option<u32>,
    pub account_per_address: Option<u32>,
    pub account_per_account: Option<u32>,
    pub sends_per_user: Option<u32>,
    pub sends_per_destination: Option<u32>,
    pub sms_per_tenant: Option<u32>,
    pub sms_overall: Option<u32>,
    pub email_per_tenant: Option<u32>,
    pub email_overall: Option<u32>,
}

/// A running app with a fresh database and a client for the first person.
#[derive(Debug)]
pub struct TestApp {
    pub running: Running,
    /// The first person's client; `TestApp` derefs to it so tests read `app.get(..)`.
    pub client: Client,
    pub clock: Option<Arc<ManualClock>>,
    // Holds the SQLite file; dropping it deletes the database with the test.
    dir: tempfile::TempDir,
}

impl Deref for TestApp {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl TestApp {
    /// The size of the SQLite database's WAL file, as the file system reports it.
    pub fn sqlite_wal_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.path().join("twofold.db-wal")).map_or(0, |m| m.len())
    }

    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    /// A fresh app with the bootstrap admin already signed in on `app.client`.
    pub async fn spawn_as_admin() -> Self {
        let app = Self::spawn().await;
        app.sign_in_admin().await;
        app
    }

    pub async fn spawn_with(options: Options) -> Self {
        Self::spawn_configured(options, |_| {}).await
    }

    /// Like `spawn_with`, then `configure` changes what `Options` does not cover.
    pub async fn spawn_configured(options: Options, configure: impl FnOnce(&mut Config)) -> Self {
        match Self::try_spawn_configured(options, configure).await {
            Ok(app) => app,
            Err(e) => panic!("the app failed to start: {e:#}"),
        }
    }

    /// Like `spawn_configured`, handing back a failure to start.
    pub async fn try_spawn_configured(options: Options, configure: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database_url(dir.path()).await;
        let mut config = Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            // Small pools: PostgreSQL runs many test databases at once.
            database_max_connections: Some(4),
            admin_username: Some(ADMIN_USERNAME.to_owned()),
            admin_password: Some(SecretString::from(ADMIN_PASSWORD)),
            cookie_secure: options.cookie_secure,
            // PostgreSQL refuses to start without a key (every node must share one);
            // SQLite gets one too so both backends run the same configuration.
            secret_key: Some(SecretString::from(
                base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
            )),
            ..Config::default()
        };
        apply_options(&options, &mut config);
        configure(&mut config);
        let manual = options.manual_clock.then(|| ManualClock::new(1_750_000_000_000));
        let clock: Arc<dyn Clock> = match &manual {
            Some(m) => m.clone(),
            None => Arc::new(SystemClock),
        };
        let running = app::start(config, clock).await?;
        let client = Client::new(running.addr);
        Ok(TestApp { running, client, clock: manual, dir })
    }

    /// Another person with their own cookie store.
    pub fn new_client(&self) -> Client {
        Client::new(self.running.addr)
    }

    pub fn advance_minutes(&self, minutes: i64) {
        self.clock
            .as_ref()
            .expect("spawn with Options { manual_clock: true, .. } to move time")
            .advance_ms(minutes * 60_000);
    }

    /// Gives a user a confirmed email address straight in storage: factor enrolment
    /// has no API yet, and the policy only asks whether a factor exists.
    pub async fn give_factor(&self, user_id: &str) {
        let done = sqlx::query("UPDATE users SET email_confirmed = 1 WHERE id = $1")
            .bind(user_id)
            .execute(&self.running.state.db().pool)
            .await
            .expect("update users");
        assert_eq!(done.rows_affected(), 1, "no user {user_id}");
    }

    /// A tenant with one user who is its admin, and that admin signed in on a new
    /// client. Needs `self` signed in as host admin.
    pub async fn tenant_with_admin(&self, tenant: &str, username: &str) -> (Tenant, User, Client) {
        let t = self.create_tenant(tenant).await;
        let u = self.create_tenant_user(&t.id, username, PASSWORD).await;
        self.make_tenant_admin(&t.id, &u.id).await;
        let c = self.new_client();
        c.sign_in_ok(Some(tenant), username, PASSWORD).await;
        (t, u, c)
    }
}

/// The host settings every scope starts with (DESIGN.md section 1).
pub fn default_settings() -> Value {
    json!({
        "behaviour": "optional",
        "users_can_change": true,
        "remember_browser": true,
        "remember_browser_days": 14,
        "enrollment_grace_days": 0,
        "allowed_providers": { "authenticator": true, "email": true, "sms": true, "passkey": true },
        "sms_allowed_country_codes": [],
        "min_strength": "out_of_band",
        "passkey_aaguids": []
    })
}

/// `default_settings` with some fields replaced.
pub fn settings_with(changes: Value) -> Value {
    let mut s = default_settings();
    for (k, v) in changes.as_object().expect("an object of changes") {
        s[k] = v.clone();
    }
    s
}

/// A response read to the end, so assertions can look at it more than once.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn typed<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not a {} ({e}): {}", std::any::type_name::<T>(), self.text()))
    }

    /// Panics, showing the body, unless the status is `expected`.
    #[track_caller]
    pub fn assert_status(self, expected: StatusCode) -> Self {
        assert_eq!(self.status, expected, "unexpected status; body: {}", self.text());
        self
    }

    /// Checks the API's one error shape: `{"error", "message"[, "field"]}` with the given
    /// status and code. Returns the body for further checks.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text());
        let ct = self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(ct.starts_with("application/json"), "content-type {ct:?}");
        let body = self.json();
        let obj = body.as_object().expect("an error body is an object");
        assert_eq!(body["error"], code, "body: {body}");
        let message = body["message"].as_str().expect("message is a string");
        assert!(!message.is_empty(), "empty message: {body}");
        for key in obj.keys() {
            assert!(["error", "message", "field"].contains(&key.as_str()), "unexpected key {key} in {body}");
        }
        body
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().expect("ASCII cookie").to_owned()).collect()
    }

    /// The `Set-Cookie` line that sets cookie `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.set_cookies().into_iter().find(|c| c.starts_with(&prefix))
    }
}

/// The value of a `Set-Cookie` line.
pub fn cookie_value(line: &str) -> String {
    let pair = line.split(';').next().unwrap_or("");
    pair.split_once('=').map(|(_, v)| v.to_owned()).unwrap_or_default()
}

/// The attributes of a `Set-Cookie` line, trimmed and lowercased (`httponly`,
/// `samesite=strict`, `path=/`, ...).
pub fn cookie_attributes(line: &str) -> Vec<String> {
    line.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect()
}

/// One person talking to the app: an HTTP client with its own cookie store.
#[derive(Debug, Clone)]
pub struct Client {
    pub http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        let http = reqwest::Client::builder().cookie_store(true).build().expect("reqwest client");
        Client { http, base: format!("http://{addr}") }
    }

    /// A browser whose redirects are shown rather than followed (an application's
    /// authorization request answers with one to the application).
    pub fn without_redirects(addr: SocketAddr) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        Client { http, base: format!("http://{addr}") }
    }

    /// A client that speaks HTTPS to `addr` as `localhost`, trusting only the PEM
    /// certificate `ca_pem`.
    pub fn https(addr: SocketAddr, ca_pem: &str) -> Self {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("a PEM certificate");
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .https_only(true)
            .resolve("localhost", addr)
            .build()
            .expect("reqwest client");
        Client { http, base: format!("https://localhost:{}", addr.port()) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with nothing added, for tests about headers and bodies themselves.
    pub fn raw(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub async fn send(&self, request: RequestBuilder) -> Resp {
        let resp = request.send().await.expect("the request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("reading the body").to_vec();
        Resp { status, headers, body }
    }

    /// A state-changing request as the web app sends it, with the anti-CSRF header.
    fn write(&self, method: Method, path: &str) -> RequestBuilder {
        self.raw(method, path).header("X-Requested-With", "test")
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.raw(Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send(self.write(Method::POST, path).json(body)).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Resp {
        self.send(self.write(Method::PUT, path).json(body)).await
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> Resp {
        self.send(self.write(Method::PATCH, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.write(Method::DELETE, path)).await
    }

    /// The password step; `tenant` is `None` for host users.
    pub async fn sign_in(&self, tenant: Option<&str>, username: &str, password: &str) -> Resp {
        let mut body = json!({ "username": username, "password": password });
        if let Some(t) = tenant {
            body["tenant"] = json!(t);
        }
        self.post_json("/api/auth/sign-in", &body).await
    }

    /// Signs in and insists a session was granted.
    pub async fn sign_in_ok(&self, tenant: Option<&str>, username: &str, password: &str) -> Value {
        let body = self.sign_in(tenant, username, password).await.assert_status(StatusCode::OK).json();
        assert_eq!(body["status"], "signed_in", "{body}");
        body
    }

    pub async fn sign_in_admin(&self) -> Value {
        self.sign_in_ok(None, ADMIN_USERNAME, ADMIN_PASSWORD).await
    }

    pub async fn me(&self) -> Resp {
        self.get("/api/auth/me").await
    }

    pub async fn create_tenant(&self, name: &str) -> Tenant {
        self.post_json("/api/tenants", &json!({ "name": name })).await.assert_status(StatusCode::CREATED).typed()
    }

    pub async fn create_tenant_user(&self, tenant_id: &str, username: &str, password: &str) -> User {
        self.post_json(
            &format!("/api/tenants/{tenant_id}/users"),
            &json!({ "username": username, "password": password }),
        )
        .await
        .assert_status(StatusCode::CREATED)
        .typed()
    }

    pub async fn create_host_user(&self, username: &str, password: &str) -> User {
        self.post_json("/api/host/users", &json!({ "username": username, "password": password }))
            .await
            .assert_status(StatusCode::CREATED)
            .typed()
    }

    pub async fn make_tenant_admin(&self, tenant_id: &str, user_id: &str) -> User {
        self.post_json(&format!("/api/tenants/{tenant_id}/admins"), &json!({ "user_id": user_id }))
            .await
            .assert_status(StatusCode::OK)
            .typed()
    }

    pub async fn set_feature(&self, tenant_id: &str, behaviour: &str) {
        let body = self
            .put_json(&format!("/api/tenants/{tenant_id}/feature"), &json!({ "behaviour": behaviour }))
            .await
            .assert_status(StatusCode::OK)
            .json();
        assert_eq!(body["behaviour"], behaviour);
    }

    pub async fn feature(&self, tenant_id: &str) -> Value {
        self.get(&format!("/api/tenants/{tenant_id}/feature")).await.assert_status(StatusCode::OK).json()
    }

    /// The host's stored settings (the `settings` of the settings view).
    pub async fn host_settings(&self) -> Value {
        self.get("/api/host/settings").await.assert_status(StatusCode::OK).json()["settings"].take()
    }

    pub async fn put_host_settings(&self, settings: &Value) {
        let saved = self.put_json("/api/host/settings", settings).await.assert_status(StatusCode::OK).json();
        assert_eq!(&saved["settings"], settings);
        assert!(saved.get("feature").is_none(), "the host's settings have no ceiling: {saved}");
    }

    /// The tenant settings view: settings, feature and `behaviour_fixed_by_host`.
    pub async fn tenant_settings(&self, tenant_id: &str) -> Value {
        self.get(&format!("/api/tenants/{tenant_id}/settings")).await.assert_status(StatusCode::OK).json()
    }

    pub async fn policy(&self, user_id: &str) -> Value {
        self.get(&format!("/api/users/{user_id}/policy")).await.assert_status(StatusCode::OK).json()
    }

    pub async fn set_two_factor(&self, user_id: &str, enabled: bool) -> Resp {
        self.put_json(&format!("/api/users/{user_id}/two-factor"), &json!({ "enabled": enabled })).await
    }

    /// Every audit event visible to this client, newest first, in one page.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let page = self.get(&format!("/api/audit?limit=200{query}")).await.assert_status(StatusCode::OK).json();
        page["items"].as_array().expect("items").clone()
    }
}

/// The account SID, token and sender number the app is given with `Options::sms_addr`.
pub const SMS_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const SMS_AUTH_TOKEN: &str = "sms-auth-token-for-tests";
pub const SMS_FROM: &str = "+15005550006";

/// The optional settings of `Options`, laid over the test configuration.
fn apply_options(options: &Options, config: &mut Config) {
    if let Some(n) = options.password_failures_per_account {
        config.password_failures_per_account = n;
    }
    if let Some(n) = options.password_failures_per_address {
        config.password_failures_per_address = n;
    }
    if let Some(n) = options.lockout_max_failures {
        config.lockout_max_failures = n;
    }
    let l = &options.limits;
    for (value, key) in [
        (l.sign_in_per_address, &mut config.sign_in_per_address_per_minute),
        (l.sign_in_per_account, &mut config.sign_in_per_account_per_minute),
        (l.send_code_per_address, &mut config.send_code_per_address_per_minute),
        (l.send_code_per_account, &mut config.send_code_per_account_per_minute),
        (l.verify_per_address, &mut config.verify_per_address_per_minute),
        (l.verify_per_account, &mut config.verify_per_account_per_minute),
        (l.account_per_address, &mut config.account_per_address_per_minute),
        (l.account_per_account, &mut config.account_per_account_per_minute),
        (l.sends_per_user, &mut config.code_sends_per_user_per_hour),
        (l.sends_per_destination, &mut config.code_sends_per_destination_per_hour),
        (l.sms_per_tenant, &mut config.sms_per_tenant_per_hour),
        (l.sms_overall, &mut config.sms_per_hour),
        (l.email_per_tenant, &mut config.email_per_tenant_per_hour),
        (l.email_overall, &mut config.email_per_hour),
    ] {
        if let Some(v) = value {
            *key = v;
        }
    }
    config.trusted_proxies = options.trusted_proxies.iter().map(|p| (*p).to_owned()).collect();
    config.dev_senders = options.dev_senders;
    if let Some(port) = options.smtp_port {
        config.smtp_url = Some(SecretString::from(format!("smtp://127.0.0.1:{port}?tls=none")));
        config.smtp_from = "Twofold <codes@twofold.test>".to_owned();
    }
    if let Some(addr) = options.sms_addr {
        config.sms_base_url = Some(format!("http://{addr}"));
        config.sms_account_sid = Some(SMS_ACCOUNT_SID.to_owned());
        config.sms_auth_token = Some(SecretString::from(SMS_AUTH_TOKEN));
        config.sms_from = Some(SMS_FROM.to_owned());
    }
}
