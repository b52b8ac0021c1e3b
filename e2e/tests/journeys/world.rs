//! The fixtures every journey needs: a real SMTP server (aiosmtpd writing a Maildir), a
//! real `twofold` server on port 0 serving the built web app, and headless Chromium
//! driven through chromedriver. Everything is started fresh per journey and stopped on
//! drop, even when the journey panics. A missing browser, driver or SMTP server fails
//! the suite with the command that installs it; nothing is skipped.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use secrecy::SecretString;
use std::sync::Arc;

use twofold_server::app::{self, Running};
use twofold_server::clock::{Clock, ManualClock, SystemClock};
use twofold_server::config::Config;

pub const ADMIN_PASSWORD: &str = "e2e-admin-password";

fn free_port() -> u16 {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start ({status}); run scripts/setup");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on port {port} within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process in its own process group, killed with its whole group on drop, so
/// no Chromium outlives a failed journey.
pub struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // The group id is the child's pid (it was started with `process_group(0)`); a
        // negative pid makes kill(1) signal the whole group, browser children included.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_group(cmd: &mut Command) -> std::io::Result<Child> {
    cmd.process_group(0).spawn()
}

/// aiosmtpd storing every message in a Maildir.
pub struct Smtp {
    _proc: Group,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Smtp {
    fn start() -> Self {
        let python = ["python3", "/usr/bin/python3"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .args(["-c", "import aiosmtpd"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .unwrap_or_else(|| panic!("aiosmtpd is missing: run scripts/setup (python3-aiosmtpd)"));
        let Ok(dir) = tempfile::tempdir() else { panic!("tempdir") };
        let port = free_port();
        let child = spawn_group(
            Command::new(python)
                .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
                .arg(dir.path().join("Maildir"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap_or_else(|e| panic!("cannot start aiosmtpd: {e}; run scripts/setup"));
        let mut proc = Group(child);
        wait_for_port(port, "aiosmtpd", &mut proc.0);
        Self { _proc: proc, port, dir }
    }

    /// The newest six-digit code mailed to `to`, waiting for it to arrive.
    pub async fn wait_for_code(&self, to: &str, seen: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mails = self.mails_to(to);
            if mails.len() > seen
                && let Some(code) = mails.last().and_then(|m| six_digits(m))
            {
                return code;
            }
            if Instant::now() >= deadline {
                let all = std::fs::read_dir(self.dir.path().join("Maildir").join("new"))
                    .map(|d| d.filter_map(|e| e.ok().map(|e| e.path().display().to_string())).collect::<Vec<_>>())
                    .unwrap_or_default();
                panic!("no new mail to {to} within 15 s; the mailbox holds {all:?}");
            }
            // An async sleep: the server runs on this same runtime and must keep serving.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn mails_to(&self, to: &str) -> Vec<String> {
        let new = self.dir.path().join("Maildir").join("new");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&new).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        files.sort_by_key(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok());
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .filter(|m| m.lines().any(|l| l.starts_with("To:") && l.contains(to)))
            .collect()
    }
}

fn six_digits(mail: &str) -> Option<String> {
    let mail = mail.replace("\r\n", "\n");
    let body = mail.split("\n\n").skip(1).collect::<Vec<_>>().join("\n");
    body.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).map(str::to_owned)
}

/// The link in the newest mail to `to` that starts with `prefix`, quoted-printable
/// undone, waiting for it to arrive.
impl Smtp {
    pub async fn wait_for_link(&self, to: &str, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(mail) = self.mails_to(to).last() {
                let text = mail.replace("\r\n", "\n").replace("=\n", "").replace("=3D", "=");
                if let Some((_, rest)) = text.split_once(prefix) {
                    let tail: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                    return format!("{prefix}{tail}");
                }
            }
            assert!(Instant::now() < deadline, "no mail to {to} with a link to {prefix} within 15 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A journey's world: servers, browser and the screenshots folder.
pub struct World {
    pub base: String,
    pub server: Running,
    pub smtp: Smtp,
    pub browser: Client,
    /// The server's clock: journeys move it instead of waiting for a new TOTP step.
    pub clock: Arc<ManualClock>,
    _driver: Group,
    _driver_home: tempfile::TempDir,
    _data: tempfile::TempDir,
    shots: PathBuf,
    shot_no: usize,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl World {
    pub async fn start(journey: &str) -> Self {
        let root = workspace_root();
        let web_dir = root.join("web").join("dist");
        // The build names its files by content hash; index.html names them.
        let built = std::fs::read_to_string(web_dir.join("index.html")).unwrap_or_default();
        assert!(built.contains("/app_bg-"), "the web app is not built: run scripts/build-web (scripts/test does)");
        // Both ring and aws-lc reach rustls through the dependency tree, so rustls cannot
        // pick a provider by itself; the WebDriver client only speaks plain HTTP anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let smtp = Smtp::start();
        let Ok(data) = tempfile::tempdir() else { panic!("tempdir") };
        // A port known before the start, so links in emails (password reset) can name it.
        let port = free_port();
        let config = Config {
            bind: std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            public_url: Some(format!("http://localhost:{port}")),
            database_url: format!("sqlite://{}", data.path().join("e2e.db").display()),
            admin_username: Some("admin".to_owned()),
            admin_password: Some(SecretString::from(ADMIN_PASSWORD)),
            cookie_secure: false,
            smtp_url: Some(SecretString::from(format!("smtp://127.0.0.1:{}?tls=none", smtp.port))),
            smtp_from: "Twofold <codes@twofold.test>".to_owned(),
            web_dir,
            ..Config::default()
        };
        let clock = ManualClock::new(SystemClock.now_ms());
        let server = match app::start(config, clock.clone()).await {
            Ok(s) => s,
            Err(e) => panic!("twofold did not start: {e:#}"),
        };
        // WebAuthn-style origin rules and cookies behave best on a host name.
        let base = format!("http://localhost:{}", server.addr.port());

        let driver_port = free_port();
        let Ok(home) = tempfile::tempdir() else { panic!("tempdir") };
        let driver = spawn_group(
            Command::new("chromedriver")
                .arg(format!("--port={driver_port}"))
                .env("HOME", home.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap_or_else(|e| panic!("cannot start chromedriver ({e}): run scripts/setup (chromium chromium-driver)"));
        let mut driver = Group(driver);
        wait_for_port(driver_port, "chromedriver", &mut driver.0);
        let profile = data.path().join("chrome-profile");
        let mut caps = serde_json::Map::new();
        // Console entries, CSP violations among them, become readable through the driver.
        caps.insert("goog:loggingPrefs".to_owned(), serde_json::json!({ "browser": "ALL" }));
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": "/usr/lib/chromium/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        let browser = match ClientBuilder::rustls() {
            Ok(mut b) => match b.capabilities(caps).connect(&format!("http://127.0.0.1:{driver_port}")).await {
                Ok(c) => c,
                Err(e) => panic!("no WebDriver session: {e}"),
            },
            Err(e) => panic!("WebDriver client: {e}"),
        };
        let shots = root.join("target").join("e2e-screenshots").join(journey);
        let _ = std::fs::remove_dir_all(&shots);
        if let Err(e) = std::fs::create_dir_all(&shots) {
            panic!("cannot create {}: {e}", shots.display());
        }
        World {
            base,
            server,
            smtp,
            browser,
            clock,
            _driver: driver,
            _driver_home: home,
            _data: data,
            shots,
            shot_no: 0,
        }
    }

    pub async fn goto(&mut self, path: &str) {
        if let Err(e) = self.browser.goto(&format!("{}{path}", self.base)).await {
            panic!("goto {path}: {e}");
        }
    }

    /// Saves a screenshot of the current screen, numbered in journey order, after
    /// checking that nothing on the way to it broke the Content-Security-Policy.
    pub async fn shot(&mut self, name: &str) {
        self.assert_no_csp_violations(name).await;
        self.shot_no += 1;
        let png = match self.browser.screenshot().await {
            Ok(p) => p,
            Err(e) => panic!("screenshot {name}: {e}"),
        };
        let path = self.shots.join(format!("{:02}-{name}.png", self.shot_no));
        if let Err(e) = std::fs::write(&path, png) {
            panic!("cannot write {}: {e}", path.display());
        }
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("element {css} did not appear: {e}"),
        }
    }

    pub async fn by_id(&self, id: &str) -> fantoccini::elements::Element {
        self.find(&format!("#{id}")).await
    }

    pub async fn by_test(&self, value: &str) -> fantoccini::elements::Element {
        self.find(&format!("[data-test=\"{value}\"]")).await
    }

    pub async fn absent(&self, css: &str) -> bool {
        self.browser.find(Locator::Css(css)).await.is_err()
    }

    pub async fn fill(&self, id: &str, text: &str) {
        let el = self.by_id(id).await;
        if let Err(e) = el.clear().await {
            panic!("clear #{id}: {e}");
        }
        if let Err(e) = el.send_keys(text).await {
            panic!("type into #{id}: {e}");
        }
    }

    pub async fn click(&self, id: &str) {
        if let Err(e) = self.by_id(id).await.click().await {
            panic!("click #{id}: {e}");
        }
    }

    pub async fn text_of(&self, id: &str) -> String {
        match self.by_id(id).await.text().await {
            Ok(t) => t,
            Err(e) => panic!("text of #{id}: {e}"),
        }
    }

    pub async fn text_of_css(&self, css: &str) -> String {
        match self.find(css).await.text().await {
            Ok(t) => t,
            Err(e) => panic!("text of {css}: {e}"),
        }
    }

    /// Waits until the element's text contains `needle`, returning the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(el) = self.browser.find(Locator::Css(css)).await
                && let Ok(t) = el.text().await
            {
                if t.contains(needle) {
                    return t;
                }
                assert!(Instant::now() < deadline, "{css} says {t:?}, never {needle:?}");
            }
            assert!(Instant::now() < deadline, "{css} never showed {needle:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the document title is `want` (the app sets it after each route change).
    pub async fn wait_title(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let title = self.browser.title().await.unwrap_or_default();
            if title == want {
                return;
            }
            assert!(Instant::now() < deadline, "the title is {title:?}, never {want:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn close(self) {
        self.assert_no_csp_violations("the end of the journey").await;
        let _ = self.browser.close().await;
    }

    /// The browser's console entries since the last call (reading drains them).
    pub async fn console(&self) -> Vec<LogEntry> {
        let value = match self.browser.issue_cmd(BrowserLog).await {
            Ok(v) => v,
            Err(e) => panic!("reading the browser log: {e}"),
        };
        match serde_json::from_value(value) {
            Ok(entries) => entries,
            Err(e) => panic!("unexpected browser log shape: {e}"),
        }
    }

    /// Chromium reports every blocked script, style, image or connection as a console
    /// entry from its "security" source: the only record of a violation that happened
    /// before any script of the test could have listened for it.
    pub async fn csp_violations(&self) -> Vec<String> {
        self.console()
            .await
            .into_iter()
            .filter(|e| e.source == "security" || e.message.contains("Content Security Policy"))
            .map(|e| e.message)
            .collect()
    }

    pub async fn assert_no_csp_violations(&self, when: &str) {
        let violations = self.csp_violations().await;
        assert!(violations.is_empty(), "Content-Security-Policy violations before {when}:\n{}", violations.join("\n"));
    }
}

/// One entry of Chromium's console log.
#[derive(Debug, serde::Deserialize)]
pub struct LogEntry {
    #[serde(default)]
    pub source: String,
    pub message: String,
}

/// ChromeDriver's log endpoint, which W3C WebDriver lacks and fantoccini has no call for.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

impl World {
    /// The authenticator code for `secret` at the server's current time, from Debian's
    /// oathtool: an implementation independent of Twofold's.
    pub fn totp(&self, secret: &str) -> String {
        let secs = self.clock.now_ms() / 1000;
        let out = Command::new("oathtool")
            .args(["--totp", "-b", secret, "--now", &format!("@{secs}")])
            .output()
            .unwrap_or_else(|e| panic!("cannot run oathtool ({e}): run scripts/setup"));
        assert!(out.status.success(), "oathtool failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Moves the server past the current TOTP step, so the next code is a new one.
    pub fn next_step(&self) {
        self.clock.advance_ms(31_000);
    }

    /// An API client for setting the scene quickly (cookies kept, CSRF header sent).
    pub fn api(&self) -> Api {
        let http = match reqwest::Client::builder().cookie_store(true).build() {
            Ok(c) => c,
            Err(e) => panic!("http client: {e}"),
        };
        Api { http, base: format!("http://127.0.0.1:{}", self.server.addr.port()) }
    }
}

/// Scene-setting over the HTTP API.
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("X-Requested-With", "e2e");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => panic!("{path}: {e}"),
        };
        let status = resp.status().as_u16();
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// A GET's body as text (for exports that are not JSON).
    pub async fn text(&self, path: &str) -> String {
        match self.http.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let (status, json) = self.call(method, path, body).await;
        assert!((200..300).contains(&status), "{path} answered {status}: {json}");
        json
    }

    pub async fn sign_in_admin(&self) {
        self.ok(
            reqwest::Method::POST,
            "/api/auth/sign-in",
            Some(serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await;
    }

    /// Creates a tenant and returns its id.
    pub async fn tenant(&self, name: &str) -> String {
        let t = self.ok(reqwest::Method::POST, "/api/tenants", Some(serde_json::json!({"name": name}))).await;
        t["id"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn user(&self, tenant_id: &str, username: &str, password: &str, email: Option<&str>) -> String {
        let u = self
            .ok(
                reqwest::Method::POST,
                &format!("/api/tenants/{tenant_id}/users"),
                Some(serde_json::json!({"username": username, "password": password, "email": email})),
            )
            .await;
        u["id"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn feature(&self, tenant_id: &str, behaviour: &str) {
        self.ok(
            reqwest::Method::PUT,
            &format!("/api/tenants/{tenant_id}/feature"),
            Some(serde_json::json!({"behaviour": behaviour})),
        )
        .await;
    }

    pub async fn tenant_settings(&self, tenant_id: &str, settings: serde_json::Value) {
        self.ok(reqwest::Method::PUT, &format!("/api/tenants/{tenant_id}/settings"), Some(settings)).await;
    }
}

/// Tenant settings with the defaults, changed where `changes` says.
pub fn settings(changes: serde_json::Value) -> serde_json::Value {
    let mut s = serde_json::json!({
        "behaviour": "optional", "users_can_change": true, "remember_browser": true,
        "remember_browser_days": 14, "enrollment_grace_days": 0,
        "allowed_providers": {"authenticator": true, "email": true, "sms": true}
    });
    if let (Some(map), Some(extra)) = (s.as_object_mut(), changes.as_object()) {
        for (k, v) in extra {
            map.insert(k.clone(), v.clone());
        }
    }
    s
}
