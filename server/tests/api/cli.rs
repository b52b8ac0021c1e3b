//! The `twofold` binary as an operator meets it: `--help`, `migrate`, refusal of a
//! misspelt setting, and a first `serve` that prints a generated admin password one can
//! actually sign in with.
//!
//! Configuration goes only into the child's environment: setting `TWOFOLD_*` in this
//! process would leak into every other test running in parallel.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::Client;

/// The binary with a clean slate: no `TWOFOLD_*` variable of the developer's shell
/// reaches it, and it runs in `dir` so nothing lands in the source tree.
fn twofold(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twofold"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TWOFOLD_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir);
    cmd
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

#[test]
fn help_lists_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let out = twofold(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["serve", "migrate"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(sub)), "{sub} missing from:\n{help}");
    }
}

#[tokio::test]
async fn migrate_creates_the_schema_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let out = twofold(dir.path()).arg("migrate").env("TWOFOLD_DATABASE_URL", sqlite_url(&db)).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(db.exists(), "migrate did not create {}", db.display());

    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&sqlite_url(&db)).await.unwrap();
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").fetch_one(&mut conn).await.unwrap();
    assert!(applied >= 1, "no migration recorded");
    // Migrating is not starting: no first admin was created.
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut conn).await.unwrap();
    assert_eq!(users, 0);
}

#[test]
fn an_unknown_setting_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = twofold(dir.path())
        .arg("migrate")
        .env("TWOFOLD_BNID", "1")
        .env("TWOFOLD_DATABASE_URL", sqlite_url(&dir.path().join("never.db")))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bnid"), "stderr: {stderr}");
    // Refused before touching anything.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Kills the server even when an assertion fails, so no test leaves a process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's output lines, read on threads so a wait can give up instead of hanging.
fn log_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    rx
}

/// The first value of the JSON log field `field`, waiting for the line that has it.
fn wait_for_field(rx: &mpsc::Receiver<String>, field: &str) -> String {
    let mut lines = Vec::new();
    loop {
        // Generous: this bounds a hang, it does not measure speed.
        let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) else {
            panic!("no log line with {field}; output:\n{}", lines.join("\n"));
        };
        if let Ok(event) = serde_json::from_str::<Value>(&line)
            && let Some(v) = event["fields"][field].as_str()
        {
            return v.to_owned();
        }
        lines.push(line);
    }
}

/// What the first start of `serve` told its operator.
#[derive(Debug, Default)]
struct StartLog {
    password: Option<String>,
    addr: Option<String>,
}

#[tokio::test]
async fn first_serve_prints_a_password_that_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = twofold(dir.path())
        .arg("serve")
        .env("TWOFOLD_BIND", "127.0.0.1:0")
        .env("TWOFOLD_COOKIE_SECURE", "false")
        .env("TWOFOLD_LOG_FORMAT", "json")
        .env("TWOFOLD_LOG", "info")
        .env("TWOFOLD_DATABASE_URL", sqlite_url(&dir.path().join("serve.db")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = log_lines(&mut child);
    let child = KillOnDrop(child);

    let mut log = StartLog::default();
    let mut lines = Vec::new();
    while log.password.is_none() || log.addr.is_none() {
        // Generous: this bounds a hang, it does not measure speed.
        let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) else {
            panic!("the server never said where it listens; output:\n{}", lines.join("\n"));
        };
        lines.push(line.clone());
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("TWOFOLD_LOG_FORMAT=json, yet a line is not JSON ({e}): {line}"));
        let fields = &event["fields"];
        if let Some(p) = fields["password"].as_str() {
            assert_eq!(fields["username"], "admin", "{line}");
            log.password = Some(p.to_owned());
        }
        if let Some(a) = fields["addr"].as_str() {
            log.addr = Some(a.to_owned());
        }
    }
    let (Some(password), Some(addr)) = (log.password, log.addr) else {
        unreachable!("the loop above only ends with both");
    };

    let client = Client::new(addr.parse().expect("a socket address"));
    let body = client.sign_in(None, "admin", &password).await.assert_status(StatusCode::OK).json();
    assert_eq!(body["status"], "signed_in", "{body}");
    client.me().await.assert_status(StatusCode::OK);
    // The printed password is the only one that works.
    client
        .sign_in(None, "admin", &format!("{password}x"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    drop(child);
}

#[tokio::test]
async fn serve_over_https_then_stop_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), signing_key.serialize_pem()).unwrap();
    let mut child = twofold(dir.path())
        .arg("serve")
        .env("TWOFOLD_BIND", "127.0.0.1:0")
        .env("TWOFOLD_TLS_CERT_PATH", dir.path().join("cert.pem"))
        .env("TWOFOLD_TLS_KEY_PATH", dir.path().join("key.pem"))
        .env("TWOFOLD_ADMIN_PASSWORD", "a password for the tls test")
        .env("TWOFOLD_LOG_FORMAT", "json")
        .env("TWOFOLD_LOG", "info")
        .env("TWOFOLD_DATABASE_URL", sqlite_url(&dir.path().join("tls.db")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = log_lines(&mut child);
    let mut child = KillOnDrop(child);
    let addr = wait_for_field(&rx, "addr");

    // Default settings: Secure `__Host-` cookies, which only work over HTTPS.
    let client = Client::https(addr.parse().expect("a socket address"), &cert.pem());
    let resp = client.sign_in(None, "admin", "a password for the tls test").await.assert_status(StatusCode::OK);
    assert_eq!(resp.headers["strict-transport-security"], "max-age=31536000; includeSubDomains");
    client.me().await.assert_status(StatusCode::OK);

    // SIGTERM, as a service manager stops it: the server must finish and exit cleanly
    // (with a keep-alive connection of the client still open), not be killed.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "still running 30 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    drop(client);
}
