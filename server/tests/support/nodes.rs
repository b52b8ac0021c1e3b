//! Real `twofold` processes for tests that need more than one server or must kill and
//! restart one: a throwaway PostgreSQL cluster of the test's own, `twofold serve`
//! children configured only through their own environment, and an HTTP client that
//! keeps each browser's cookies.
//!
//! Shared by the test binaries `multinode` and `faults` through `#[path]` includes (next
//! to `smtp.rs`, which must be included as `smtp`); each binary uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::smtp::free_port;

pub const ADMIN_PASSWORD: &str = "admin password for the process tests";
pub const PASSWORD: &str = "a long enough password";

// ---------------------------------------------------------------- PostgreSQL

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
pub fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb): this test needs a \
             cluster of its own; run scripts/setup"
        )
    })
}

/// A throwaway cluster on loopback that trusts local connections; stopped and deleted
/// on drop. It can be stopped and started again on the same port to simulate an outage.
pub struct Cluster {
    pub bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub as_postgres: bool,
    /// Whether it listens on loopback TCP; it always has a Unix socket in `dir`.
    pub tcp: bool,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_listening(true)
    }

    /// A cluster that listens on no TCP address, only on its Unix socket: what connects
    /// to it can only have used the socket.
    pub fn start_socket_only() -> Cluster {
        Cluster::start_listening(false)
    }

    fn start_listening(tcp: bool) -> Cluster {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new().prefix("twofold-test-pg.").tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            // initdb refuses to run as root; the `postgres` user needs the folder.
            run(Command::new("chown").arg("postgres").arg(dir.path()), "chown postgres");
        }
        let cluster = Cluster { bin, dir, port: free_port(), as_postgres, tcp };
        run(
            cluster.pg("initdb").arg("-D").arg(cluster.data()).args(["-U", "postgres", "--auth=trust", "--no-sync"]),
            "initdb",
        );
        cluster.start_server();
        cluster
    }

    /// A PostgreSQL program, run as `postgres` when this test runs as root.
    pub fn pg(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Its URL: over loopback TCP, or for a socket-only cluster in the form README
    /// "Configuration" gives for a Unix socket (`host` names the socket's folder).
    pub fn url(&self) -> String {
        if self.tcp {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
        } else {
            format!("postgres://postgres@localhost/postgres?host={}&port={}", self.dir.path().display(), self.port)
        }
    }

    /// Starts the server and waits until it accepts connections (`pg_ctl -w`).
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses={} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display(),
            if self.tcp { "127.0.0.1" } else { "''" }
        );
        run(
            self.pg("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-w")
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-o", &options, "start"]),
            "pg_ctl start",
        );
    }

    /// A fast shutdown, as an operator's restart or a failover does it: sessions are
    /// terminated (in-flight transactions roll back), then the server is gone. Returns
    /// once it is down.
    pub fn stop_server(&self) {
        run(self.pg("pg_ctl").arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]), "pg_ctl stop");
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- PostgreSQL log (tail)\n{}", self.log_tail());
        }
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what} could not be started ({e}); run scripts/setup"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- nodes

/// Everything a child wrote, one line per entry, with a signal for waiters.
#[derive(Default)]
pub struct Log {
    pub lines: Mutex<Vec<String>>,
    pub grew: Condvar,
}

impl Log {
    pub fn pump(self: &Arc<Self>, pipe: impl Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                log.lines.lock().unwrap().push(line);
                log.grew.notify_all();
            }
        });
    }
}

/// The `message` of a JSON log line (`TWOFOLD_LOG_FORMAT=json`).
pub fn log_message(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    v["fields"]["message"].as_str().map(str::to_owned)
}

/// One `twofold serve` child process; killed on drop.
pub struct Node {
    pub name: &'static str,
    pub child: Child,
    pub base: String,
    pub log: Arc<Log>,
    pub _workdir: tempfile::TempDir,
}

impl Node {
    pub fn start(name: &'static str, env: &[(&str, String)]) -> Node {
        let workdir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_twofold"));
        cmd.arg("serve");
        // Only the configuration below: a stray TWOFOLD_* of whoever runs the tests (say a
        // TWOFOLD_CONFIG file) must not change what is tested.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TWOFOLD_") {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(workdir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start the twofold binary");
        let log = Arc::new(Log::default());
        log.pump(child.stdout.take().unwrap());
        log.pump(child.stderr.take().unwrap());
        let mut node = Node { name, child, base: String::new(), log, _workdir: workdir };
        let line = node.wait_for_log("twofold listening", 1, Duration::from_secs(60));
        let v: Value = serde_json::from_str(&line).unwrap();
        let addr = v["fields"]["addr"].as_str().unwrap_or_else(|| panic!("no addr in {line}"));
        node.base = format!("http://{addr}");
        node
    }

    /// Blocks until `message` has been logged `n` times; returns that line. Fails at
    /// once if the process exits.
    pub fn wait_for_log(&mut self, message: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().filter(|l| log_message(l).as_deref() == Some(message)).nth(n - 1).cloned()
            {
                return line;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                drop(lines);
                panic!("node {} exited ({status}) before logging {message:?}", self.name);
            }
            assert!(Instant::now() < deadline, "node {} did not log {message:?} {n} time(s) in {timeout:?}", self.name);
            lines = self.log.grew.wait_timeout(lines, Duration::from_millis(100)).unwrap().0;
        }
    }

    pub fn count_log(&self, message: &str) -> usize {
        self.log.lines.lock().unwrap().iter().filter(|l| log_message(l).as_deref() == Some(message)).count()
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub fn assert_running(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "node {} exited", self.name);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let lines = self.log.lines.lock().unwrap();
            eprintln!("---- node {} log (tail)", self.name);
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

// ---------------------------------------------------------------- HTTP

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub elapsed: Duration,
}

impl Resp {
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        self.body
    }

    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        self.body
    }

    /// The error code of an error body, or the sign-in status of a success.
    pub fn outcome(&self) -> String {
        self.body["error"].as_str().or_else(|| self.body["status"].as_str()).unwrap_or("").to_owned()
    }

    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!((self.status, self.outcome().as_str()), (status, code), "body: {}", self.body);
    }
}

pub fn http() -> reqwest::Client {
    // Longer than any answer may take (the acquire timeout), so a hang fails the test
    // instead of stalling it.
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// One request with an explicit `Cookie` header (or none).
pub async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    cookies: &str,
) -> Resp {
    try_send(http, base, method, path, body, cookies).await.unwrap_or_else(|e| panic!("{path} on {base}: {e}"))
}

/// One request; an error when no complete answer arrived (refused, reset, timed out),
/// which is what a client sees of a server killed mid-request.
pub async fn try_send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    cookies: &str,
) -> Result<Resp, reqwest::Error> {
    let mut req = http.request(method, format!("{base}{path}")).header("X-Requested-With", "twofold-tests");
    if !cookies.is_empty() {
        req = req.header(COOKIE, cookies);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let started = Instant::now();
    let resp = req.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Ok(Resp { status, headers, body, elapsed: started.elapsed() })
}

/// One browser: its own cookies, sent explicitly to whichever node it talks to. Cookies
/// are not per port in browsers either, so "the same cookie on node B" is just this.
#[derive(Debug, Clone)]
pub struct Person {
    pub http: reqwest::Client,
    pub jar: Arc<Mutex<HashMap<String, String>>>,
}

impl Person {
    pub fn new() -> Person {
        Person { http: http(), jar: Arc::default() }
    }

    pub fn cookies(&self) -> String {
        self.jar.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn has_cookie(&self, name: &str) -> bool {
        self.jar.lock().unwrap().contains_key(name)
    }

    pub async fn call(&self, node: &str, method: Method, path: &str, body: Option<&Value>) -> Resp {
        self.try_call(node, method, path, body).await.unwrap_or_else(|e| panic!("{path} on {node}: {e}"))
    }

    /// A request that may get no answer; cookies change only with an answer.
    pub async fn try_call(
        &self,
        node: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Resp, reqwest::Error> {
        let resp = try_send(&self.http, node, method, path, body, &self.cookies()).await?;
        let mut jar = self.jar.lock().unwrap();
        for line in resp.headers.get_all(SET_COOKIE) {
            let line = line.to_str().unwrap();
            let (pair, attrs) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let removed = value.is_empty() || attrs.to_ascii_lowercase().contains("max-age=0");
            if removed {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        drop(jar);
        Ok(resp)
    }

    pub async fn get(&self, node: &str, path: &str) -> Resp {
        self.call(node, Method::GET, path, None).await
    }

    pub async fn post(&self, node: &str, path: &str, body: Value) -> Resp {
        self.call(node, Method::POST, path, Some(&body)).await
    }

    pub async fn put(&self, node: &str, path: &str, body: Value) -> Resp {
        self.call(node, Method::PUT, path, Some(&body)).await
    }

    pub async fn delete(&self, node: &str, path: &str) -> Resp {
        self.call(node, Method::DELETE, path, None).await
    }

    pub async fn sign_in(&self, node: &str, tenant: Option<&str>, username: &str, password: &str) -> Resp {
        let mut body = json!({ "username": username, "password": password });
        if let Some(t) = tenant {
            body["tenant"] = json!(t);
        }
        self.post(node, "/api/auth/sign-in", body).await
    }

    /// The password step, insisting on the given outcome (`signed_in`,
    /// `requires_two_factor`, `requires_enrollment`).
    pub async fn sign_in_as(&self, node: &str, tenant: Option<&str>, username: &str, status: &str) -> Value {
        let resp = self.sign_in(node, tenant, username, PASSWORD).await;
        assert_eq!((resp.status, resp.outcome().as_str()), (StatusCode::OK, status), "body: {}", resp.body);
        resp.body
    }

    pub async fn sign_in_admin(&self, node: &str) {
        let body = self.sign_in(node, None, "admin", ADMIN_PASSWORD).await.ok();
        assert_eq!(body["status"], "signed_in", "{body}");
    }

    pub async fn create_tenant(&self, node: &str, name: &str) -> String {
        let t = self.post(node, "/api/tenants", json!({ "name": name })).await.expect(StatusCode::CREATED);
        t["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_user(&self, node: &str, tenant_id: Option<&str>, username: &str) -> String {
        let path = match tenant_id {
            Some(t) => format!("/api/tenants/{t}/users"),
            None => "/api/host/users".to_owned(),
        };
        let u = self.post(node, &path, json!({ "username": username, "password": PASSWORD })).await;
        u.expect(StatusCode::CREATED)["id"].as_str().unwrap().to_owned()
    }

    pub async fn set_feature(&self, node: &str, tenant_id: &str, behaviour: &str) {
        self.put(node, &format!("/api/tenants/{tenant_id}/feature"), json!({ "behaviour": behaviour })).await.ok();
    }

    /// Enrols an authenticator in a sign-in that requires enrolment and finishes it.
    /// Returns the base32 secret. Uses the current time step.
    pub async fn enrol_authenticator(&self, node: &str) -> String {
        let secret = self.post(node, "/api/auth/enroll/authenticator", json!({})).await.ok()["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        let code = totp(&secret, 0);
        let done = self.post(node, "/api/auth/enroll/authenticator/confirm", json!({ "code": code })).await.ok();
        assert_eq!(done["status"], "signed_in", "{done}");
        secret
    }

    pub async fn verify(&self, node: &str, method: &str, code: &str, remember: bool) -> Resp {
        let body = json!({ "method": method, "code": code, "remember_browser": remember });
        self.post(node, "/api/auth/sign-in/verify", body).await
    }
}

pub fn settings(behaviour: &str, remember_browser_days: u32) -> Value {
    json!({
        "behaviour": behaviour,
        "users_can_change": true,
        "remember_browser": true,
        "remember_browser_days": remember_browser_days,
        "enrollment_grace_days": 0,
        "allowed_providers": { "authenticator": true, "email": true, "sms": true }
    })
}

// ---------------------------------------------------------------- second factors

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The authenticator code `steps_ahead` 30-second steps from now, by Debian's
/// `oathtool`, an implementation independent of Twofold's. The server accepts one step
/// either side and each step once per user, so a second code for the same user right
/// after enrolment is taken one step ahead instead of waiting half a minute.
pub fn totp(secret: &str, steps_ahead: u64) -> String {
    let at = unix_now() + 30 * steps_ahead;
    let out = Command::new("oathtool")
        .args(["--totp", "-b", secret, "--now", &format!("@{at}")])
        .output()
        .unwrap_or_else(|e| panic!("cannot run oathtool ({e}); run scripts/setup (Debian package oathtool)"));
    assert!(out.status.success(), "oathtool failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
