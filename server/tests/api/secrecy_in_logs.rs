//! Secrets never reach the log. The real `twofold` binary runs as a child process at
//! its most talkative (`TWOFOLD_LOG=debug`, JSON lines) with a real SMTP server, so the
//! development sender, the one place allowed to print codes, is off for email. A whole
//! journey runs over HTTP (tenant, user, forced 2FA, authenticator enrolment, email
//! confirmation, sign-ins with an emailed code, an authenticator code and a recovery
//! code, a wrong password and a wrong code, a password change, reauthentication, new
//! recovery codes), and every secret that crossed the wire is then looked for in
//! everything the process wrote.
//!
//! Configuration goes only into the child's environment: `TWOFOLD_*` variables in this
//! process would reach every other test, and configuration loading rejects unknown ones.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flows::{Mail, oathtool};
use crate::helpers::{Client, Resp, cookie_value};

const ADMIN_PASSWORD: &str = "admin secret never to be logged 1";
const PASSWORD: &str = "first user password never logged";
const NEW_PASSWORD: &str = "second user password never logged";
const WRONG_PASSWORD: &str = "mistyped password never logged";

/// The server process; killed on drop so a failing assertion leaves nothing behind.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `extra` is more configuration, as `TWOFOLD_*` variables.
    fn start(smtp_url: Option<&str>, secret_key: &str, extra: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_twofold"));
        // A clean slate: nothing of the developer's shell configures the child.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TWOFOLD_") {
                cmd.env_remove(key);
            }
        }
        if let Some(url) = smtp_url {
            cmd.env("TWOFOLD_SMTP_URL", url);
        }
        cmd.envs(extra.iter().copied());
        let mut child = cmd
            .arg("serve")
            .current_dir(dir.path())
            .env("TWOFOLD_BIND", "127.0.0.1:0")
            .env("TWOFOLD_DATABASE_URL", format!("sqlite://{}", dir.path().join("twofold.db").display()))
            .env("TWOFOLD_COOKIE_SECURE", "false")
            .env("TWOFOLD_LOG", "debug")
            .env("TWOFOLD_LOG_FORMAT", "json")
            .env("TWOFOLD_SECRET_KEY", secret_key)
            .env("TWOFOLD_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Both streams feed one channel from reader threads, so waiting can time out
        // and everything written is collected once the process is gone.
        let (tx, lines) = mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut server =
            Server { child, lines, seen: Vec::new(), addr: SocketAddr::from(([0, 0, 0, 0], 0)), _dir: dir };
        loop {
            // Generous: this bounds a hang, it does not measure speed.
            let Ok(line) = server.lines.recv_timeout(Duration::from_secs(120)) else {
                panic!("the server never said where it listens; output:\n{}", server.seen.join("\n"));
            };
            server.seen.push(line.clone());
            let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if let Some(addr) = event["fields"]["addr"].as_str() {
                server.addr = addr.parse().unwrap();
                return server;
            }
        }
    }

    /// Stops the server and returns every line it wrote.
    fn finish(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader threads end at EOF, dropping their senders.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }
}

/// Everything secret that crossed the wire, with what it is, for the report.
#[derive(Default)]
struct Secrets {
    long: Vec<(String, String)>,
    codes: Vec<(String, String)>,
}

impl Secrets {
    fn long(&mut self, what: &str, value: &str) {
        assert!(value.len() >= 8, "{what} is too short to look for: {value:?}");
        self.long.push((what.to_owned(), value.to_owned()));
    }

    fn code(&mut self, what: &str, value: &str) {
        self.codes.push((what.to_owned(), value.to_owned()));
    }

    /// Every cookie value the response set: sessions and pending sign-ins.
    fn cookies(&mut self, resp: &Resp) {
        for line in resp.set_cookies() {
            let value = cookie_value(&line);
            if !value.is_empty() {
                self.long(&format!("cookie {}", line.split('=').next().unwrap_or("")), &value);
            }
        }
    }

    fn recovery(&mut self, codes: &Value) -> Vec<String> {
        let codes: Vec<String> = codes.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        assert_eq!(codes.len(), 10);
        for c in &codes {
            self.long("recovery code", c);
            self.long("recovery code as typed without the dash", &c.replace('-', ""));
        }
        codes
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Whether `code` appears in `text` as a number of its own (not inside a longer run of
/// letters and digits, such as an id or another number).
fn contains_token(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[tokio::test]
async fn no_secret_reaches_the_log() {
    let mut mail = Mail::start();
    let secret_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let server = Server::start(Some(&mail.server.url()), &secret_key, &[]);
    let mut s = Secrets::default();
    for (what, value) in [
        ("secret key", secret_key.as_str()),
        ("admin password", ADMIN_PASSWORD),
        ("password", PASSWORD),
        ("new password", NEW_PASSWORD),
        ("wrong password", WRONG_PASSWORD),
    ] {
        s.long(what, value);
    }

    // The host admin sets up a tenant that forces 2FA, and a user with an email.
    let admin = Client::new(server.addr);
    let resp = admin.sign_in(None, "admin", ADMIN_PASSWORD).await.assert_status(StatusCode::OK);
    s.cookies(&resp);
    let tenant = admin.create_tenant("acme").await;
    admin
        .post_json(
            &format!("/api/tenants/{}/users", tenant.id),
            &json!({ "username": "alice", "password": PASSWORD, "email": "alice@example.test" }),
        )
        .await
        .assert_status(StatusCode::CREATED);
    admin.set_feature(&tenant.id, "forced").await;

    // Alice mistypes her password, then enrols an authenticator.
    let alice = Client::new(server.addr);
    alice.sign_in(Some("acme"), "alice", WRONG_PASSWORD).await.assert_status(StatusCode::UNAUTHORIZED);
    let resp = alice.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["status"], "requires_enrollment");
    s.cookies(&resp);
    let started = alice.post_json("/api/auth/enroll/authenticator", &json!({})).await.assert_status(StatusCode::OK);
    let started = started.json();
    let secret = started["secret"].as_str().unwrap().to_owned();
    s.long("authenticator secret", &secret);
    s.long("authenticator secret in lower case", &secret.to_lowercase());
    s.long("otpauth URI", started["otpauth_uri"].as_str().unwrap());
    let enrolled_at = unix_now();
    let code = oathtool(&secret, enrolled_at);
    s.code("enrolment authenticator code", &code);
    let resp = alice.post_json("/api/auth/enroll/authenticator/confirm", &json!({ "code": code })).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    s.cookies(&resp);
    let recovery = s.recovery(&resp.json()["recovery_codes"]);

    // She confirms her email from the account page.
    alice.put_json("/api/account/email", &json!({})).await.assert_status(StatusCode::OK);
    let code = mail.next_code("alice@example.test").await;
    s.code("email confirmation code", &code);
    alice.post_json("/api/account/email/confirm", &json!({ "code": code })).await.assert_status(StatusCode::OK);

    // Signs in with an emailed code, after typing a wrong one.
    alice.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let resp = alice.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    s.cookies(&resp);
    alice.post_json("/api/auth/sign-in/send-code", &json!({ "method": "email" })).await.assert_status(StatusCode::OK);
    let code = mail.next_code("alice@example.test").await;
    s.code("email sign-in code", &code);
    let wrong = if code == "481516" { "234223" } else { "481516" };
    s.code("wrong code typed", wrong);
    let verify = |method: &str, code: &str| json!({ "method": method, "code": code });
    alice.post_json("/api/auth/sign-in/verify", &verify("email", wrong)).await.assert_status(StatusCode::UNAUTHORIZED);
    let resp = alice.post_json("/api/auth/sign-in/verify", &verify("email", &code)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    s.cookies(&resp);

    // Signs in with the authenticator: the step after the one the enrolment used,
    // which the server accepts as the next step within its one-step tolerance.
    alice.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let resp = alice.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    s.cookies(&resp);
    let code = oathtool(&secret, (enrolled_at / 30 + 1) * 30);
    s.code("authenticator sign-in code", &code);
    let resp = alice.post_json("/api/auth/sign-in/verify", &verify("authenticator", &code)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    s.cookies(&resp);

    // Changes her password, reauthenticates with a recovery code, gets new codes.
    alice
        .put_json("/api/account/password", &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    alice
        .post_json(
            "/api/account/reauthenticate",
            &json!({ "password": NEW_PASSWORD, "method": "recovery_code", "code": recovery[0] }),
        )
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let fresh = alice.post_json("/api/account/recovery-codes", &json!({})).await.assert_status(StatusCode::OK);
    let fresh = s.recovery(&fresh.json()["recovery_codes"]);

    // And signs in once more with one of the new recovery codes.
    alice.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let resp = alice.sign_in(Some("acme"), "alice", NEW_PASSWORD).await.assert_status(StatusCode::OK);
    s.cookies(&resp);
    let resp = alice.post_json("/api/auth/sign-in/verify", &verify("recovery_code", &fresh[0])).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    s.cookies(&resp);

    let lines = server.finish();
    let log = lines.join("\n");

    // The log is really at debug level and saw the requests, so silence would not pass.
    assert!(log.contains("\"level\":\"DEBUG\""), "no debug lines in:\n{log}");
    assert!(log.contains("/api/auth/sign-in/verify"), "requests were not logged:\n{log}");
    // The development sender stayed off: mail went through SMTP, nothing was "sent" to
    // the log.
    assert!(!log.contains("development_sender"), "the development sender ran:\n{log}");

    let mut leaks = Vec::new();
    for (what, value) in &s.long {
        if log.contains(value.as_str()) {
            leaks.push(format!("{what}: {value}"));
        }
    }
    // Six digits can occur by chance in a timestamp's fraction of a second, so codes are
    // looked for as numbers of their own, outside the timestamp field.
    let without_timestamps: Vec<String> = lines
        .iter()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("timestamp");
                }
                v.to_string()
            }
            Err(_) => line.clone(),
        })
        .collect();
    for (what, code) in &s.codes {
        for line in &without_timestamps {
            if contains_token(line, code) {
                leaks.push(format!("{what} {code} in: {line}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets in the log:\n{}", leaks.join("\n"));
}

#[test]
fn codes_are_found_as_tokens_only() {
    assert!(contains_token("code 123456.", "123456"));
    assert!(contains_token("\"123456\"", "123456"));
    assert!(!contains_token("1234567", "123456"));
    assert!(!contains_token("a123456", "123456"));
    assert!(!contains_token("x0123456", "123456"));
}

/// Without an SMTP server, an emailed code could only go to the log, where whoever reads
/// it completes the second factor. By default nothing is sent and nothing is logged;
/// only `TWOFOLD_DEV_SENDERS=true` brings the development sender (and the code in the
/// log) back, which also shows this test would see a code there.
#[tokio::test]
async fn without_a_sender_no_code_reaches_the_log_unless_switched_on() {
    for dev_senders in [false, true] {
        let secret_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let extra: &[(&str, &str)] = if dev_senders { &[("TWOFOLD_DEV_SENDERS", "true")] } else { &[] };
        let server = Server::start(None, &secret_key, extra);
        let admin = Client::new(server.addr);
        admin.sign_in(None, "admin", ADMIN_PASSWORD).await.assert_status(StatusCode::OK);
        let tenant = admin.create_tenant("acme").await;
        admin
            .post_json(
                &format!("/api/tenants/{}/users", tenant.id),
                &json!({ "username": "alice", "password": PASSWORD, "email": "alice@example.test" }),
            )
            .await
            .assert_status(StatusCode::CREATED);
        admin.set_feature(&tenant.id, "forced").await;

        let alice = Client::new(server.addr);
        let resp = alice.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
        let enrollable = resp.json()["enrollable"].clone();
        let sent = alice.post_json("/api/auth/enroll/email", &json!({})).await;
        let log = server.finish().join("\n");

        let logged_code =
            log.split("Your Twofold code is ").nth(1).map(|rest| rest.chars().take(6).collect::<String>());
        if dev_senders {
            assert_eq!(enrollable, json!(["authenticator", "email", "sms"]));
            sent.assert_status(StatusCode::OK);
            assert!(log.contains("development_sender"), "{log}");
            assert!(logged_code.is_some_and(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())), "{log}");
        } else {
            assert_eq!(enrollable, json!(["authenticator"]));
            sent.assert_error(StatusCode::BAD_REQUEST, "sender_not_configured");
            assert!(!log.contains("development_sender"), "the development sender ran:\n{log}");
            assert_eq!(logged_code, None, "{log}");
            // The operator is told why email is missing.
            assert!(log.contains("smtp_url is not set: email codes cannot be sent"), "{log}");
        }
    }
}
