//! Building blocks for the two-factor journeys: tenants that force or offer 2FA, users
//! with and without factors, authenticator codes from an independent implementation
//! (Debian's `oathtool`, on the app's own clock), email codes read from a real SMTP
//! server's Maildir, SMS codes captured by a Twilio stand-in, and requests that carry
//! a hand-picked cookie so a captured pending sign-in can be replayed or raced.
//!
//! Every journey runs on a `ManualClock`: TOTP codes depend on the time, and the
//! server's time is exactly the clock's, so codes are computed for the time the server
//! will see, and time-based rules (expiry, lockout, grace) are tested without sleeping.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus, header};
use axum::routing::post;
use base64::Engine;
use reqwest::header::{COOKIE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use twofold_policy::wire::{Tenant, User};
use twofold_server::clock::Clock;

use crate::helpers::{
    Client, Options, PASSWORD, Resp, SMS_ACCOUNT_SID, SMS_AUTH_TOKEN, SMS_FROM, TestApp, cookie_value, settings_with,
};
use crate::smtp::{SmtpServer, header_value, mail_files, start_smtp_server};

/// Cookie names with `cookie_secure` off (the tests speak plain HTTP).
pub const PENDING_COOKIE: &str = "twofold_pending";
pub const SESSION_COOKIE: &str = "twofold_session";
pub const REMEMBER_COOKIE: &str = "twofold_remember";

// ---------------------------------------------------------------- apps

/// A fresh app on a manual clock with the host admin signed in on `app.client`.
pub async fn admin_app(options: Options) -> TestApp {
    let app = TestApp::spawn_with(Options { manual_clock: true, ..options }).await;
    app.sign_in_admin().await;
    app
}

/// `admin_app` whose email codes go to a real SMTP server.
pub async fn mail_app(options: Options) -> (TestApp, Mail) {
    let mail = Mail::start();
    let app = admin_app(Options { smtp_port: Some(mail.server.port), ..options }).await;
    (app, mail)
}

/// `admin_app` whose SMS codes go to the Twilio stand-in.
pub async fn sms_app(options: Options) -> (TestApp, Sms) {
    let sms = Sms::start().await;
    let app = admin_app(Options { sms_addr: Some(sms.addr), ..options }).await;
    (app, sms)
}

// ---------------------------------------------------------------- time

fn clock(app: &TestApp) -> &twofold_server::clock::ManualClock {
    app.clock.as_deref().expect("spawn with Options { manual_clock: true, .. }: codes depend on the time")
}

/// The server's current time in Unix milliseconds.
pub fn now_ms(app: &TestApp) -> i64 {
    clock(app).now_ms()
}

/// The server's current time in Unix seconds.
pub fn now_secs(app: &TestApp) -> u64 {
    u64::try_from(clock(app).now_ms() / 1000).expect("a positive time")
}

pub fn advance_seconds(app: &TestApp, seconds: i64) {
    clock(app).advance_ms(seconds * 1000);
}

pub fn advance_days(app: &TestApp, days: i64) {
    clock(app).advance_ms(days * 86_400_000);
}

// ---------------------------------------------------------------- authenticator codes

/// The TOTP code of `secret` (base32) at `unix`, computed by `oathtool`, an
/// implementation independent of the server's. Its absence fails the test rather than
/// skipping it, so no machine reports a silent pass.
pub fn oathtool(secret: &str, unix: u64) -> String {
    let output =
        Command::new("oathtool").args(["--totp", "-b", secret, "--now", &format!("@{unix}")]).output().unwrap_or_else(
            |e| panic!("cannot run oathtool ({e}); install it with scripts/setup (Debian package `oathtool`)"),
        );
    assert!(output.status.success(), "oathtool failed: {}", String::from_utf8_lossy(&output.stderr));
    let code = String::from_utf8(output.stdout).expect("oathtool prints ASCII").trim().to_owned();
    assert_eq!(code.len(), 6, "oathtool printed {code:?}");
    code
}

/// The code for the app's current time.
pub fn totp_now(app: &TestApp, secret: &str) -> String {
    oathtool(secret, now_secs(app))
}

/// Moves the clock to the next 30-second step and returns its code. Each time step
/// works once per user, so every use of the authenticator after the first needs this.
pub fn next_totp(app: &TestApp, secret: &str) -> String {
    advance_seconds(app, 30);
    totp_now(app, secret)
}

/// A code that is wrong now: none of the three steps the server accepts.
pub fn wrong_totp(app: &TestApp, secret: &str) -> String {
    let now = now_secs(app);
    let valid = [oathtool(secret, now - 30), oathtool(secret, now), oathtool(secret, now + 30)];
    (0..).map(|i| format!("{:06}", (123_456 + i * 7_919) % 1_000_000)).find(|c| !valid.contains(c)).expect("a code")
}

// ---------------------------------------------------------------- tenants and users

/// A tenant whose host ceiling forces 2FA. `app.client` must be the host admin.
pub async fn forced_tenant(app: &TestApp, name: &str) -> Tenant {
    let t = app.create_tenant(name).await;
    app.set_feature(&t.id, "forced").await;
    t
}

/// Replaces a tenant's settings with the defaults changed by `changes`.
pub async fn set_tenant_settings(app: &TestApp, tenant_id: &str, changes: Value) {
    let view = app
        .put_json(&format!("/api/tenants/{tenant_id}/settings"), &settings_with(changes.clone()))
        .await
        .assert_status(StatusCode::OK)
        .json();
    for (k, v) in changes.as_object().expect("an object of changes") {
        assert_eq!(&view["settings"][k], v, "{view}");
    }
}

/// A tenant user with `PASSWORD` and, when given, an email address on file (not yet
/// confirmed: only the user can confirm it).
pub async fn create_user(app: &TestApp, tenant_id: &str, username: &str, email: Option<&str>) -> User {
    let mut body = json!({ "username": username, "password": PASSWORD });
    if let Some(e) = email {
        body["email"] = json!(e);
    }
    app.post_json(&format!("/api/tenants/{tenant_id}/users"), &body).await.assert_status(StatusCode::CREATED).typed()
}

/// Drops the trigger that announces changes to users' 2FA switches, so that a change to
/// one in SQL reaches a policy read only through a read of the database: which switch the
/// read shows then says whether it came from memory.
pub async fn drop_switch_trigger(app: &TestApp) {
    let drop = match app.running.state.db().backend {
        twofold_server::db::Backend::Sqlite => "DROP TRIGGER users_subject_changed",
        twofold_server::db::Backend::Postgres => "DROP TRIGGER users_subject_changed ON users",
    };
    sqlx::query(drop).execute(&app.running.state.db().pool).await.expect("drop the switch's trigger");
}

// ---------------------------------------------------------------- sign-in steps

/// The password step with `PASSWORD`, which must answer 200 with `status`.
pub async fn password_step(client: &Client, tenant: &str, username: &str, status: &str) -> Value {
    let body = client.sign_in(Some(tenant), username, PASSWORD).await.assert_status(StatusCode::OK).json();
    assert_eq!(body["status"], status, "{body}");
    body
}

pub async fn verify(client: &Client, method: &str, code: &str, remember: bool) -> Resp {
    client
        .post_json("/api/auth/sign-in/verify", &json!({ "method": method, "code": code, "remember_browser": remember }))
        .await
}

pub async fn send_code(client: &Client, provider: &str) -> Resp {
    client.post_json("/api/auth/sign-in/send-code", &json!({ "method": provider })).await
}

/// Insists a step answered `signed_in` and set a session cookie (with or without the
/// `__Host-` prefix of `cookie_secure`); returns the body.
#[track_caller]
pub fn assert_signed_in(resp: &Resp) -> Value {
    assert_eq!(resp.status, StatusCode::OK, "body: {}", resp.text());
    let body = resp.json();
    assert_eq!(body["status"], "signed_in", "{body}");
    let line = resp
        .set_cookie(SESSION_COOKIE)
        .or_else(|| resp.set_cookie(&format!("__Host-{SESSION_COOKIE}")))
        .unwrap_or_else(|| panic!("no session cookie: {:?}", resp.set_cookies()));
    assert!(!cookie_value(&line).is_empty(), "{line}");
    body
}

/// The value of the pending sign-in cookie a password step set.
#[track_caller]
pub fn pending_cookie(resp: &Resp) -> String {
    let line = resp.set_cookie(PENDING_COOKIE).unwrap_or_else(|| panic!("no pending cookie: {:?}", resp.set_cookies()));
    cookie_value(&line)
}

/// The value of a cookie set by `resp`, if any.
pub fn cookie_set(resp: &Resp, name: &str) -> Option<String> {
    resp.set_cookie(name).map(|l| cookie_value(&l)).filter(|v| !v.is_empty())
}

/// Checks the API's error shape like `Resp::assert_error`, also admitting the fields
/// that second-factor and throttling errors add, and checks those fields: `locked_out`
/// and `rate_limited` carry `retry_after_seconds` equal to the `Retry-After` header,
/// `invalid_code` carries `attempts_left`. Returns the body.
#[track_caller]
pub fn assert_factor_error(resp: &Resp, status: StatusCode, code: &str) -> Value {
    assert_eq!(resp.status, status, "unexpected status; body: {}", resp.text());
    let body = resp.json();
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    for key in body.as_object().expect("an object").keys() {
        assert!(
            ["error", "message", "field", "retry_after_seconds", "attempts_left"].contains(&key.as_str()),
            "unexpected key {key} in {body}"
        );
    }
    if matches!(code, "locked_out" | "rate_limited") {
        let secs = body["retry_after_seconds"].as_u64().unwrap_or_else(|| panic!("no retry_after_seconds: {body}"));
        assert!(secs > 0, "{body}");
        let header = resp.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(header, secs.to_string(), "Retry-After header vs body {body}");
    }
    if code == "invalid_code" {
        assert!(body["attempts_left"].is_u64(), "no attempts_left: {body}");
    }
    body
}

/// `attempts_left` of an `invalid_code` answer.
#[track_caller]
pub fn attempts_left(resp: &Resp) -> u64 {
    assert_factor_error(resp, StatusCode::UNAUTHORIZED, "invalid_code")["attempts_left"].as_u64().expect("a number")
}

// ---------------------------------------------------------------- factors

/// An enrolled authenticator: its secret and the recovery codes issued with it.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub secret: String,
    pub recovery_codes: Vec<String>,
}

/// Takes a user whose sign-in requires enrolment through the password step and the
/// enrolment of an authenticator; `client` ends signed in.
pub async fn enrol_authenticator(app: &TestApp, client: &Client, tenant: &str, username: &str) -> Enrolled {
    password_step(client, tenant, username, "requires_enrollment").await;
    let started = client.post_json("/api/auth/enroll/authenticator", &json!({})).await.assert_status(StatusCode::OK);
    let secret = started.json()["secret"].as_str().expect("secret").to_owned();
    let resp =
        client.post_json("/api/auth/enroll/authenticator/confirm", &json!({ "code": totp_now(app, &secret) })).await;
    let body = assert_signed_in(&resp);
    Enrolled { secret, recovery_codes: recovery_codes(&body["recovery_codes"]) }
}

/// Takes a user whose sign-in requires enrolment through the password step and the
/// confirmation of the email on file; `client` ends signed in. Returns the recovery
/// codes issued with this first factor.
pub async fn enrol_email(client: &Client, mail: &mut Mail, tenant: &str, username: &str, email: &str) -> Vec<String> {
    password_step(client, tenant, username, "requires_enrollment").await;
    client.post_json("/api/auth/enroll/email", &json!({})).await.assert_status(StatusCode::OK);
    let code = mail.next_code(email).await;
    let resp = client.post_json("/api/auth/enroll/email/confirm", &json!({ "code": code })).await;
    recovery_codes(&assert_signed_in(&resp)["recovery_codes"])
}

/// Sets up an authenticator from the account page of a signed-in user.
pub async fn add_authenticator_in_account(app: &TestApp, client: &Client) -> Enrolled {
    let started = client.post_json("/api/account/authenticator", &json!({})).await.assert_status(StatusCode::OK);
    let secret = started.json()["secret"].as_str().expect("secret").to_owned();
    let body = client
        .post_json("/api/account/authenticator/confirm", &json!({ "code": next_totp(app, &secret) }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    Enrolled { secret, recovery_codes: recovery_codes(&body["recovery_codes"]) }
}

fn recovery_codes(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|c| c.as_str().expect("a code").to_owned()).collect()).unwrap_or_default()
}

/// Password, then a fresh authenticator code; returns the verify answer.
pub async fn sign_in_with_totp(
    app: &TestApp,
    client: &Client,
    tenant: &str,
    username: &str,
    secret: &str,
    remember: bool,
) -> Resp {
    password_step(client, tenant, username, "requires_two_factor").await;
    verify(client, "authenticator", &next_totp(app, secret), remember).await
}

/// Confirms password and authenticator so sensitive account changes are allowed.
pub async fn reauthenticate(app: &TestApp, client: &Client, secret: &str) {
    client
        .post_json(
            "/api/account/reauthenticate",
            &json!({ "password": PASSWORD, "method": "authenticator", "code": next_totp(app, secret) }),
        )
        .await
        .assert_status(StatusCode::NO_CONTENT);
}

/// Confirms the email on file (or `email`) from the account page, reading the code
/// from the mail it sends.
pub async fn confirm_email_in_account(client: &Client, mail: &mut Mail, email: &str) {
    client.put_json("/api/account/email", &json!({ "email": email })).await.assert_status(StatusCode::OK);
    let code = mail.next_code(email).await;
    client.post_json("/api/account/email/confirm", &json!({ "code": code })).await.assert_status(StatusCode::OK);
}

/// Adds and confirms a phone from the account page, reading the code from the SMS.
pub async fn confirm_phone_in_account(client: &Client, sms: &Sms, phone: &str) {
    client.put_json("/api/account/phone", &json!({ "phone": phone })).await.assert_status(StatusCode::OK);
    let code = sms.last_code_to(phone);
    client.post_json("/api/account/phone/confirm", &json!({ "code": code })).await.assert_status(StatusCode::OK);
}

// ---------------------------------------------------------------- hand-picked cookies

/// A request that carries exactly `cookie` (a `name=value` pair) and nothing from any
/// cookie store: for replaying a captured pending sign-in or racing one from several
/// connections.
pub async fn post_with_cookie(addr: SocketAddr, path: &str, cookie: &str, body: &Value) -> Resp {
    let http = reqwest::Client::new();
    let resp = http
        .request(Method::POST, format!("http://{addr}{path}"))
        .header("X-Requested-With", "test")
        .header(COOKIE, cookie)
        .json(body)
        .send()
        .await
        .expect("the request failed");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("reading the body").to_vec();
    Resp { status, headers, body }
}

/// A GET with exactly `cookie`.
pub async fn get_with_cookie(addr: SocketAddr, path: &str, cookie: &str) -> Resp {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("the request failed");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("reading the body").to_vec();
    Resp { status, headers, body }
}

// ---------------------------------------------------------------- email

/// A real SMTP server (aiosmtpd) and the messages of it already read.
#[derive(Debug)]
pub struct Mail {
    pub server: SmtpServer,
    seen: HashSet<PathBuf>,
    /// Security notices received so far, kept apart from the messages with codes.
    pub notices: Vec<String>,
}

/// The subject of the security notices the server sends after sensitive changes.
pub const NOTICE_SUBJECT: &str = "Security notice from Twofold";

impl Mail {
    pub fn start() -> Self {
        Mail { server: start_smtp_server(), seen: HashSet::new(), notices: Vec::new() }
    }

    /// Every message with a code not read before, as raw text. Security notices go to
    /// `notices` instead: they arrive in the background, in no fixed order.
    pub async fn next_messages(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for (path, text) in mail_files(self.server.maildir.path()) {
            if self.seen.insert(path) {
                let text = text.replace("\r\n", "\n");
                if header_value(&text, "Subject") == Some(NOTICE_SUBJECT) {
                    self.notices.push(text);
                } else {
                    out.push(text);
                }
            }
        }
        out
    }

    /// Waits until a notice to `to` containing `sentence` has arrived.
    pub async fn wait_for_notice(&mut self, to: &str, sentence: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = self.next_messages().await;
            if let Some(n) = self.notices.iter().find(|n| header_value(n, "To") == Some(to) && n.contains(sentence)) {
                return n.clone();
            }
            assert!(Instant::now() < deadline, "no notice to {to} saying {sentence:?}; got {:#?}", self.notices);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the next unread message and returns the code in it, checking it went
    /// to `to`. The server answers a send only after the SMTP server accepted the
    /// message, so the wait is short; the bound only keeps a broken setup from hanging.
    pub async fn next_code(&mut self, to: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut fresh = self.next_messages().await;
            if !fresh.is_empty() {
                assert_eq!(fresh.len(), 1, "expected one new message, got {fresh:#?}");
                let message = fresh.remove(0);
                assert_eq!(header_value(&message, "To"), Some(to), "{message}");
                return code_in(&message);
            }
            assert!(Instant::now() < deadline, "no message reached the SMTP server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The six digits after "code is " in a message text.
pub fn code_in(text: &str) -> String {
    let (_, rest) = text.split_once("code is ").unwrap_or_else(|| panic!("no code in {text}"));
    let code: String = rest.chars().take(6).collect();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "no code in {text}");
    code
}

// ---------------------------------------------------------------- SMS

/// One message the Twilio stand-in accepted.
#[derive(Debug, Clone)]
pub struct SentSms {
    pub to: String,
    pub from: String,
    pub body: String,
}

/// An HTTP server on 127.0.0.1 speaking Twilio's Messages API, keeping what it got.
#[derive(Debug, Clone)]
pub struct Sms {
    pub addr: SocketAddr,
    pub sent: Arc<Mutex<Vec<SentSms>>>,
}

async fn twilio_messages(
    State(sent): State<Arc<Mutex<Vec<SentSms>>>>,
    UrlPath(account): UrlPath<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (AxumStatus, [(header::HeaderName, &'static str); 1], String) {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SMS_ACCOUNT_SID}:{SMS_AUTH_TOKEN}"))
    );
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // Refusing what a real provider would refuse makes a wrong setup fail loudly.
    if account != SMS_ACCOUNT_SID || auth != Some(expected.as_str()) {
        return (AxumStatus::UNAUTHORIZED, [(header::CONTENT_TYPE, "application/json")], "{\"code\":20003}".into());
    }
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    sent.lock().expect("lock").push(SentSms { to: field("To"), from: field("From"), body: field("Body") });
    (AxumStatus::CREATED, [(header::CONTENT_TYPE, "application/json")], r#"{"sid":"SM0","status":"queued"}"#.into())
}

impl Sms {
    pub async fn start() -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account}/Messages.json", post(twilio_messages))
            .with_state(sent.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the SMS stand-in failed") });
        Sms { addr, sent }
    }

    pub fn all(&self) -> Vec<SentSms> {
        self.sent.lock().expect("lock").clone()
    }

    /// The code in the last message to `to`, checking it came from the configured number.
    #[track_caller]
    pub fn last_code_to(&self, to: &str) -> String {
        let all = self.all();
        let last = all.iter().rev().find(|m| m.to == to).unwrap_or_else(|| panic!("no SMS to {to}: {all:?}"));
        assert_eq!(last.from, SMS_FROM);
        code_in(&last.body)
    }
}
