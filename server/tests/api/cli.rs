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
    for sub in ["serve", "migrate", "check-config", "admin", "rotate-secrets"] {
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

/// The fields of the first JSON log line that has `field`, waiting for it.
fn wait_for_event(rx: &mpsc::Receiver<String>, field: &str) -> Value {
    let mut lines = Vec::new();
    loop {
        // Generous: this bounds a hang, it does not measure speed.
        let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) else {
            panic!("no log line with {field}; output:\n{}", lines.join("\n"));
        };
        if let Ok(event) = serde_json::from_str::<Value>(&line)
            && event["fields"].get(field).is_some()
        {
            return event["fields"].clone();
        }
        lines.push(line);
    }
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
    // A password that went through the log must be replaced before anything else.
    assert_eq!(client.me().await.assert_status(StatusCode::OK).json()["must_change_password"], true);
    client.get("/api/host/settings").await.assert_error(StatusCode::FORBIDDEN, "password_change_required");
    // The printed password is the only one that works.
    client
        .sign_in(None, "admin", &format!("{password}x"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    client
        .put_json(
            "/api/account/password",
            &serde_json::json!({ "current_password": password, "new_password": "the admin's own password" }),
        )
        .await
        .assert_status(StatusCode::NO_CONTENT);
    client.get("/api/host/settings").await.assert_status(StatusCode::OK);
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

/// Sends SIGTERM to the child, as a service manager stops it.
fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_within_the_grace_period() {
    const GRACE_SECONDS: u64 = 3;
    const PASSWORD: &str = "a password for the shutdown test";
    let dir = tempfile::tempdir().unwrap();
    let mut child = twofold(dir.path())
        .arg("serve")
        .env("TWOFOLD_BIND", "127.0.0.1:0")
        .env("TWOFOLD_COOKIE_SECURE", "false")
        .env("TWOFOLD_ADMIN_PASSWORD", PASSWORD)
        .env("TWOFOLD_SHUTDOWN_GRACE_SECONDS", GRACE_SECONDS.to_string())
        .env("TWOFOLD_METRICS_BIND", "127.0.0.1:0")
        .env("TWOFOLD_LOG_FORMAT", "json")
        .env("TWOFOLD_LOG", "info")
        .env("TWOFOLD_DATABASE_URL", sqlite_url(&dir.path().join("stop.db")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = log_lines(&mut child);
    let mut child = KillOnDrop(child);
    let listening = wait_for_event(&rx, "addr");
    let addr: std::net::SocketAddr = listening["addr"].as_str().unwrap().parse().expect("a socket address");
    // Metrics on their own listener, set through the environment, and not on `bind`.
    let metrics = listening["metrics_addr"].as_str().expect("metrics_addr in the start log");
    let scraped = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped.text().await.unwrap().contains("twofold_db_pool_connections"));
    assert_eq!(reqwest::get(format!("http://{addr}/metrics")).await.unwrap().status(), StatusCode::NOT_FOUND);

    // Connections opened before the signal (a request each, so they are accepted).
    let clients: Vec<Client> = (0..12).map(|_| Client::new(addr)).collect();
    for c in &clients {
        c.get("/health").await.assert_status(StatusCode::OK);
    }
    // A client that sent its headers and never sends the rest of its body: its request
    // is in flight for good, so only the grace period can end the wait for it.
    use tokio::io::AsyncWriteExt;
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(
            b"POST /api/auth/sign-in HTTP/1.1\r\nHost: twofold\r\nContent-Type: application/json\r\n\
              X-Requested-With: test\r\nContent-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
    // Password sign-ins take argon2 time: a dozen of them keep the server busy for a while.
    let in_flight: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            tokio::spawn(async move {
                let password = if i % 3 == 0 { format!("{PASSWORD}x") } else { PASSWORD.to_owned() };
                c.sign_in(None, "admin", &password).await.status
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let signalled = std::time::Instant::now();
    sigterm(&child.0);

    // New connections are refused while the server is still finishing.
    let refused = loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break true;
        }
        if signalled.elapsed() > Duration::from_secs(2) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused, "still accepting connections 2 s after SIGTERM");
    assert!(child.0.try_wait().unwrap().is_none(), "exited before the stuck request's grace period ran out");

    // Every request that was in flight got its answer, not a broken connection.
    for (i, task) in in_flight.into_iter().enumerate() {
        let status = task.await.unwrap_or_else(|e| panic!("sign-in {i} in flight at SIGTERM failed: {e}"));
        let expected = if i % 3 == 0 { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
        assert_eq!(status, expected, "sign-in {i}");
    }

    // The stuck request holds the exit until the grace period ends, and no longer.
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(GRACE_SECONDS + 10),
            "still running {} s after SIGTERM",
            GRACE_SECONDS + 10
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    assert!(signalled.elapsed() >= Duration::from_secs(GRACE_SECONDS - 1), "did not wait for the request in flight");
    drop(stuck);
}

/// Runs `twofold admin …` over the SQLite file `db`, the new password (if any) piped
/// on stdin.
fn admin(dir: &Path, db: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = twofold(dir)
        .arg("admin")
        .args(args)
        .env("TWOFOLD_DATABASE_URL", sqlite_url(db))
        .env_remove("ADMIN_NEW_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn admin_commands_let_an_operator_back_in_through_the_api_rules() {
    use crate::helpers::{Options, TestApp};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ops.db");
    const ROOT_PASSWORD: &str = "an operator's new password";

    // The password rules of the API apply, and nothing is created when they fail.
    let out = admin(dir.path(), &db, &["create", "root"], Some("short\n"));
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr_of(&out).contains("password"), "{}", stderr_of(&out));
    // An empty stdin is no password.
    let out = admin(dir.path(), &db, &["create", "root"], None);
    assert!(!out.status.success(), "{out:?}");
    let out = admin(dir.path(), &db, &["create", "root"], Some(&format!("{ROOT_PASSWORD}\n")));
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created host admin root"), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(ROOT_PASSWORD));
    let out = admin(dir.path(), &db, &["create", "ROOT"], Some(&format!("{ROOT_PASSWORD}\n")));
    assert!(!out.status.success(), "a second root was created: {out:?}");

    // The server over that database: the operator's admin signs in with full powers.
    let db_url = sqlite_url(&db);
    let app = TestApp::spawn_configured(Options::default(), |c| c.database_url = db_url).await;
    let body = app.sign_in_ok(None, "root", ROOT_PASSWORD).await;
    assert_eq!(body["status"], "signed_in", "{body}");
    let tenant = app.create_tenant("acme").await;
    let alice = app.create_tenant_user(&tenant.id, "alice", crate::helpers::PASSWORD).await;
    let alice_client = app.new_client();
    alice_client.sign_in_ok(Some("acme"), "alice", crate::helpers::PASSWORD).await;
    alice_client.me().await.assert_status(StatusCode::OK);

    // Locked until unlocked, with every count set: `unlock` clears them all.
    let pool = &app.running.state.db().pool;
    sqlx::query(
        "UPDATE users SET second_factor_failures = 5, consecutive_failures = 100, lockouts = 4, \
         locked_until = $1 WHERE id = $2",
    )
    .bind(i64::MAX / 2)
    .bind(&alice.id)
    .execute(pool)
    .await
    .unwrap();
    let out = admin(dir.path(), &db, &["unlock", "alice"], None);
    assert!(!out.status.success(), "alice is no host user: {out:?}");
    assert!(stderr_of(&out).contains("no user"), "{}", stderr_of(&out));
    let out = admin(dir.path(), &db, &["unlock", "alice", "--tenant", "acme"], None);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (failures, consecutive, lockouts, until): (i64, i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT second_factor_failures, consecutive_failures, lockouts, locked_until FROM users WHERE id = $1",
    )
    .bind(&alice.id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((failures, consecutive, lockouts, until), (0, 0, 0, None));

    // A new password from the variable; alice's session ends with the old stamp.
    let new_password = "alice's password from the operator";
    let out = twofold(dir.path())
        .args(["admin", "reset-password", "alice", "--tenant", "acme"])
        .env("TWOFOLD_DATABASE_URL", sqlite_url(&db))
        .env("ADMIN_NEW_PASSWORD", new_password)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Another process wrote: the server sees it within its cache's bound (under a
    // second), not necessarily on the very next request.
    let started = std::time::Instant::now();
    while alice_client.me().await.status == StatusCode::OK {
        assert!(started.elapsed() < std::time::Duration::from_millis(1500), "the old session still works");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    alice_client.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.new_client()
        .sign_in(Some("acme"), "alice", crate::helpers::PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    app.new_client().sign_in_ok(Some("acme"), "alice", new_password).await;
    let out = admin(dir.path(), &db, &["reset-password", "alice", "--tenant", "acme"], Some("short\n"));
    assert!(!out.status.success(), "{out:?}");

    // Every command is in the audit trail, by the operator.
    let audit = app.get("/api/audit?limit=200").await.assert_status(StatusCode::OK).json();
    let by_operator: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor_user_id"] == "operator")
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["target"].as_str().unwrap().to_owned()))
        .collect();
    let alice_target = format!("user:{}", alice.id);
    for (action, target) in [("user.unlocked", &alice_target), ("user.password_reset", &alice_target)] {
        assert!(by_operator.iter().any(|(a, t)| a == action && t == target), "{action} missing: {by_operator:?}");
    }
    assert!(by_operator.iter().any(|(a, _)| a == "user.created"), "{by_operator:?}");
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("twofold.toml");
    let secrets = [
        "db-password-4711",
        "smtp-password-4711",
        "sms-token-4711",
        "admin-password-4711",
        "c2VjcmV0LWtleS1vZi10aGlydHktdHdvLWJ5dGVzLi4=",
        "b2xkLXNlY3JldC1rZXktb2YtdGhpcnR5LXR3by1ieXQ=",
    ];
    std::fs::write(
        &file,
        format!(
            "bind = \"127.0.0.1:9\"\n\
             database_url = \"postgres://twofold:{}@db.internal:5432/twofold\"\n\
             smtp_url = \"smtp://mailer:{}@mail.internal:587\"\n\
             sms_base_url = \"https://api.twilio.com\"\nsms_account_sid = \"AC123\"\n\
             sms_auth_token = \"{}\"\nsms_from = \"+15005550006\"\n\
             admin_password = \"{}\"\nsecret_key = \"{}\"\nprevious_secret_keys = [\"{}\"]\n",
            secrets[0], secrets[1], secrets[2], secrets[3], secrets[4], secrets[5]
        ),
    )
    .unwrap();
    let out = twofold(dir.path()).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let everything = format!("{stdout}{}", stderr_of(&out));
    for secret in secrets {
        assert!(!everything.contains(secret), "{secret} printed:\n{everything}");
    }
    for line in [
        "bind = \"127.0.0.1:9\"",
        "database_url = \"postgres://twofold:REDACTED@db.internal:5432/twofold\"",
        "smtp_url = \"<redacted>\"",
        "sms_auth_token = \"<redacted>\"",
        "secret_key = \"<redacted>\"",
        "previous_secret_keys = [\"<redacted>\"]",
        "admin_password = \"<redacted>\"",
        "sms_account_sid = \"AC123\"",
        "shutdown_grace_seconds = 10",
        "lockout_max_failures = 5",
        "# tls_cert_path is not set",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} missing from:\n{stdout}");
    }

    // An invalid configuration: a non-zero exit that says what is wrong.
    let out = twofold(dir.path()).arg("check-config").env("TWOFOLD_LOCKOUT_MINUTES", "0").output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr_of(&out).contains("lockout_minutes"), "{}", stderr_of(&out));
    let out = twofold(dir.path()).arg("check-config").env("TWOFOLD_SECRET_KEY", "not base64!").output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr_of(&out).contains("secret_key"), "{}", stderr_of(&out));
}

/// The schema itself refuses a flag other than 0 or 1 on either database (PostgreSQL
/// checks the user flags through a domain since migration 0013) and keeps the row as it
/// was; the flags read back as integers.
#[tokio::test]
async fn the_schema_refuses_a_user_flag_other_than_zero_or_one() {
    use crate::helpers::TestApp;
    let app = TestApp::spawn().await;
    let pool = &app.running.state.db().pool;
    for flag in
        ["email_confirmed", "phone_confirmed", "has_authenticator", "two_factor_enabled", "must_change_password"]
    {
        let read = || async {
            let values: Vec<i64> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {flag} FROM users ORDER BY id")))
                    .fetch_all(pool)
                    .await
                    .unwrap();
            values
        };
        let before = read().await;
        let refused = sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE users SET {flag} = 2"))).execute(pool).await;
        assert!(refused.is_err(), "{flag} = 2 was stored");
        assert_eq!(read().await, before, "{flag} changed by a refused update");
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE users SET {flag} = 1"))).execute(pool).await.unwrap();
        let values = read().await;
        assert!(!values.is_empty() && values.iter().all(|v| *v == 1), "{flag}: {values:?}");
    }
}
