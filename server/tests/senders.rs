//! The outbound senders against real protocol peers on loopback: a real SMTP server
//! (Python's aiosmtpd, installed by scripts/setup) and an in-test HTTP server standing
//! in for Twilio.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use twofold_server::config::Config;
use twofold_server::senders::{
    Channel, EmailSender, LogSender, SendError, SenderKind, Senders, SmsSender, SmtpSecurity, SmtpSender,
    TwilioSmsSender,
};

// ---------------------------------------------------------------- SMTP (aiosmtpd)

#[path = "support/smtp.rs"]
mod smtp;

use smtp::{delivered, free_port, header_value, start_smtp_server};

#[tokio::test]
async fn smtp_sender_delivers_to_a_real_smtp_server() {
    let server = start_smtp_server();
    let url = SecretString::from(format!("smtp://127.0.0.1:{}?tls=none", server.port));
    let sender = SmtpSender::new(&url, "Twofold <codes@twofold.test>").unwrap();
    assert_eq!(sender.security(), SmtpSecurity::None);

    sender
        .send("alice@example.test", "Your sign-in code", "Your code is 482913. It expires in 5 minutes.")
        .await
        .unwrap();

    let messages = delivered(server.maildir.path());
    assert_eq!(messages.len(), 1, "expected exactly one delivered message");
    let message = messages[0].replace("\r\n", "\n");
    assert_eq!(header_value(&message, "To"), Some("alice@example.test"), "{message}");
    assert_eq!(header_value(&message, "From"), Some("Twofold <codes@twofold.test>"), "{message}");
    assert_eq!(header_value(&message, "Subject"), Some("Your sign-in code"), "{message}");
    assert!(header_value(&message, "Message-ID").is_some_and(|v| v.ends_with("@twofold.test>")), "{message}");
    assert!(
        header_value(&message, "Content-Type").is_some_and(|v| v.to_ascii_lowercase().starts_with("text/plain")),
        "{message}"
    );
    // aiosmtpd records the SMTP envelope, which is what actually routes the mail.
    assert_eq!(header_value(&message, "X-MailFrom"), Some("codes@twofold.test"), "{message}");
    assert_eq!(header_value(&message, "X-RcptTo"), Some("alice@example.test"), "{message}");
    let (_, body) = message.split_once("\n\n").unwrap();
    assert!(body.contains("Your code is 482913. It expires in 5 minutes."), "{message}");
}

#[tokio::test]
async fn smtp_sender_rejects_a_bad_recipient_without_connecting() {
    // Port 9 (discard) on loopback: nothing should ever be sent there.
    let url = SecretString::from("smtp://127.0.0.1:9?tls=none");
    let sender = SmtpSender::new(&url, "codes@twofold.test").unwrap();
    let err = sender.send("not an address", "Your sign-in code", "Your code is 482913").await.unwrap_err();
    assert!(matches!(err, SendError::InvalidRecipient { channel: Channel::Email }), "{err:?}");
    assert!(!err.to_string().contains("482913"));
}

#[tokio::test]
async fn smtp_failure_is_an_error_naming_the_channel_not_the_body() {
    let port = free_port(); // nothing listens there any more
    let url = SecretString::from(format!("smtp://127.0.0.1:{port}?tls=none"));
    let sender = SmtpSender::new(&url, "codes@twofold.test").unwrap();
    let err = sender.send("alice@example.test", "Your sign-in code", "Your code is 482913").await.unwrap_err();
    assert_eq!(err.channel(), Channel::Email);
    assert!(matches!(err, SendError::Transport { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.starts_with("email"), "{shown}");
    assert!(!shown.contains("482913"), "{shown}");
}

#[test]
fn smtp_urls_are_understood_and_checked() {
    let build = |url: &str| SmtpSender::new(&SecretString::from(url), "codes@twofold.test");
    assert_eq!(build("smtp://user:pa%40ss@mail.example.test:587").unwrap().security(), SmtpSecurity::StartTls);
    assert_eq!(build("smtp://user:pass@mail.example.test?tls=required").unwrap().security(), SmtpSecurity::StartTls);
    assert_eq!(build("smtps://user:pass@mail.example.test").unwrap().security(), SmtpSecurity::ImplicitTls);
    assert_eq!(build("smtp://relay.internal:25?tls=none").unwrap().security(), SmtpSecurity::None);
    for bad in [
        "http://mail.example.test",
        "smtp://user:s3cret-pw@mail.example.test?tls=none",
        "smtp://mail.example.test?tls=opportunistic",
        "smtps://user:s3cret-pw@mail.example.test?tls=none",
        "smtp://user@mail.example.test",
        "smtp://:s3cret-pw@mail.example.test",
        "smtp://mail.example.test?tls=none&x=1",
        "not a url s3cret-pw",
    ] {
        let err = build(bad).unwrap_err().to_string();
        assert!(!err.contains("s3cret-pw"), "{bad}: {err}");
    }
    assert!(SmtpSender::new(&SecretString::from("smtp://h?tls=none"), "not a mailbox").is_err());
    let debug = format!("{:?}", build("smtps://user:s3cret-pw@mail.example.test").unwrap());
    assert!(!debug.contains("s3cret-pw"), "{debug}");
    assert!(debug.contains("mail.example.test"), "{debug}");
}

// ---------------------------------------------------------------- SMS (Twilio stand-in)

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    account: String,
    authorization: Option<String>,
    content_type: Option<String>,
    form: HashMap<String, String>,
}

#[derive(Clone)]
struct FakeTwilio {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: (StatusCode, &'static str),
}

async fn messages(
    State(fake): State<FakeTwilio>,
    method: Method,
    UrlPath(account): UrlPath<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> impl IntoResponse {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    fake.seen.lock().unwrap().push(Seen {
        method,
        account,
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        form,
    });
    (fake.answer.0, [(header::CONTENT_TYPE, "application/json")], fake.answer.1)
}

/// Serves the Twilio Messages endpoint on 127.0.0.1:0 and returns its base URL.
async fn fake_twilio(answer: (StatusCode, &'static str)) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/2010-04-01/Accounts/{account}/Messages.json", any(messages))
        .with_state(FakeTwilio { seen: seen.clone(), answer });
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "tw-auth-token-do-not-print";

#[tokio::test]
async fn twilio_sender_posts_the_form_with_basic_auth() {
    let (base, seen) = fake_twilio((StatusCode::CREATED, r#"{"sid":"SM0123","status":"queued"}"#)).await;
    // A trailing slash on the base URL must not produce `//` in the path.
    let sender = TwilioSmsSender::new(&format!("{base}/"), SID, SecretString::from(TOKEN), "+15005550006").unwrap();

    sender.send("+15551234567", "Your Twofold code is 482913").await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.account, SID);
    let expected = format!("Basic {}", STANDARD.encode(format!("{SID}:{TOKEN}")));
    assert_eq!(request.authorization.as_deref(), Some(expected.as_str()));
    assert_eq!(request.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    let field = |name: &str| request.form.get(name).map(String::as_str);
    assert_eq!(field("To"), Some("+15551234567"));
    assert_eq!(field("From"), Some("+15005550006"));
    assert_eq!(field("Body"), Some("Your Twofold code is 482913"));
    assert_eq!(request.form.len(), 3, "{:?}", request.form);
}

#[tokio::test]
async fn twilio_refusal_reports_status_and_code_but_not_the_body() {
    let (base, seen) = fake_twilio((
        StatusCode::BAD_REQUEST,
        r#"{"code":21211,"message":"The 'To' number is not valid.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
    ))
    .await;
    let sender = TwilioSmsSender::new(&base, SID, SecretString::from(TOKEN), "+15005550006").unwrap();

    let err = sender.send("+15005550001", "Your Twofold code is 482913").await.unwrap_err();

    assert_eq!(seen.lock().unwrap().len(), 1);
    match &err {
        SendError::Rejected { channel, status, code, message } => {
            assert_eq!(*channel, Channel::Sms);
            assert_eq!(*status, 400);
            assert_eq!(code.as_deref(), Some("21211"));
            assert_eq!(message.as_deref(), Some("The 'To' number is not valid."));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains("400"), "{shown}");
    assert!(shown.contains("21211"), "{shown}");
    assert!(shown.contains("The 'To' number is not valid."), "{shown}");
    let everything = format!("{err} {err:?}");
    assert!(!everything.contains("482913"), "{everything}");
    assert!(!everything.contains("Your Twofold code"), "{everything}");
    assert!(!everything.contains(TOKEN), "{everything}");
}

#[tokio::test]
async fn twilio_refusal_that_quotes_the_body_is_not_repeated() {
    let (base, _seen) =
        fake_twilio((StatusCode::BAD_REQUEST, r#"{"code":30003,"message":"Refused: Your Twofold code is 482913"}"#))
            .await;
    let sender = TwilioSmsSender::new(&base, SID, SecretString::from(TOKEN), "+15005550006").unwrap();
    let err = sender.send("+15551234567", "Your Twofold code is 482913").await.unwrap_err();
    let everything = format!("{err} {err:?}");
    assert!(everything.contains("30003"), "{everything}");
    assert!(!everything.contains("482913"), "{everything}");
}

#[tokio::test]
async fn twilio_unreachable_is_a_transport_error() {
    let base = format!("http://127.0.0.1:{}", free_port());
    let sender = TwilioSmsSender::new(&base, SID, SecretString::from(TOKEN), "+15005550006").unwrap();
    let err = sender.send("+15551234567", "Your Twofold code is 482913").await.unwrap_err();
    assert!(matches!(err, SendError::Transport { channel: Channel::Sms, .. }), "{err:?}");
    let everything = format!("{err} {err:?}");
    assert!(!everything.contains("482913"), "{everything}");
    assert!(!everything.contains(TOKEN), "{everything}");
}

#[test]
fn twilio_settings_are_checked() {
    let token = || SecretString::from(TOKEN);
    assert!(TwilioSmsSender::new("ftp://api.example.test", SID, token(), "+1").is_err());
    assert!(TwilioSmsSender::new("https://u:p@api.example.test", SID, token(), "+1").is_err());
    assert!(TwilioSmsSender::new("https://api.example.test", "AC/../x", token(), "+1").is_err());
    let sender = TwilioSmsSender::new("https://api.example.test", SID, token(), "+1").unwrap();
    let debug = format!("{sender:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains(SID), "{debug}");
}

// ---------------------------------------------------------------- from_config

#[test]
fn nothing_configured_means_no_sender_at_all() {
    // Not the log: by default no code may reach it.
    let senders = Senders::from_config(&Config::default()).unwrap();
    assert_eq!(senders.is_development(), (false, false));
    assert!(senders.email().is_none());
    assert!(senders.sms().is_none());
    assert!(!senders.can_send(Channel::Email));
    assert!(!senders.can_send(Channel::Sms));
    assert_eq!(senders.kind(Channel::Email), SenderKind::None);
}

#[test]
fn dev_senders_stand_in_only_for_channels_without_a_real_sender() {
    let senders = Senders::from_config(&Config { dev_senders: true, ..Config::default() }).unwrap();
    assert_eq!(senders.is_development(), (true, true));
    assert!(senders.email().is_some_and(|s| s.is_development()));
    assert!(senders.sms().is_some_and(|s| s.is_development()));

    let config = Config {
        dev_senders: true,
        smtp_url: Some(SecretString::from("smtp://mail.example.test:25?tls=none")),
        ..Config::default()
    };
    let senders = Senders::from_config(&config).unwrap();
    assert_eq!(senders.kind(Channel::Email), SenderKind::Real);
    assert_eq!(senders.kind(Channel::Sms), SenderKind::Development);
}

#[test]
fn smtp_url_selects_the_smtp_sender() {
    let config = Config {
        smtp_url: Some(SecretString::from("smtp://mailer:smtp-pass-do-not-print@mail.example.test:587")),
        smtp_from: "Twofold <codes@twofold.test>".to_owned(),
        ..Config::default()
    };
    let senders = Senders::from_config(&config).unwrap();
    assert_eq!(senders.kind(Channel::Email), SenderKind::Real);
    assert_eq!(senders.kind(Channel::Sms), SenderKind::None);
    let debug = format!("{senders:?}");
    assert!(debug.contains("SmtpSender"), "{debug}");
    assert!(!debug.contains("smtp-pass-do-not-print"), "{debug}");
}

#[test]
fn complete_sms_settings_select_twilio() {
    let config = Config {
        sms_base_url: Some("https://api.twilio.com".to_owned()),
        sms_account_sid: Some(SID.to_owned()),
        sms_auth_token: Some(SecretString::from(TOKEN)),
        sms_from: Some("+15005550006".to_owned()),
        smtp_url: Some(SecretString::from("smtps://mailer:smtp-pass-do-not-print@mail.example.test")),
        ..Config::default()
    };
    let senders = Senders::from_config(&config).unwrap();
    assert_eq!(senders.is_development(), (false, false));
    let debug = format!("{senders:?} {:?}", senders.clone());
    assert!(debug.contains("TwilioSmsSender"), "{debug}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(!debug.contains("smtp-pass-do-not-print"), "{debug}");
}

#[test]
fn partial_sms_settings_are_an_error() {
    let complete = Config {
        sms_base_url: Some("https://api.twilio.com".to_owned()),
        sms_account_sid: Some(SID.to_owned()),
        sms_auth_token: Some(SecretString::from(TOKEN)),
        sms_from: Some("+15005550006".to_owned()),
        ..Config::default()
    };
    let without_token = Config { sms_auth_token: None, ..complete.clone() };
    let err = Senders::from_config(&without_token).unwrap_err().to_string();
    assert!(err.contains("sms_auth_token"), "{err}");

    let without_from = Config { sms_from: Some(String::new()), ..complete.clone() };
    let err = Senders::from_config(&without_from).unwrap_err().to_string();
    assert!(err.contains("sms_from"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");

    // Credentials without a base URL would silently log codes an operator expects
    // to be texted.
    let without_base = Config { sms_base_url: None, ..complete };
    assert!(Senders::from_config(&without_base).is_err());
}

#[test]
fn a_bad_smtp_url_is_an_error_that_hides_the_password() {
    let config = Config {
        smtp_url: Some(SecretString::from("smtp://mailer:smtp-pass-do-not-print@mail.example.test?tls=none")),
        ..Config::default()
    };
    let err = format!("{:?}", Senders::from_config(&config).unwrap_err());
    assert!(!err.contains("smtp-pass-do-not-print"), "{err}");
}

// ---------------------------------------------------------------- the development sender

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn log_sender_writes_the_code_with_a_development_marker() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    EmailSender::send(&LogSender, "alice@example.test", "Your sign-in code", "code 482913").await.unwrap();
    SmsSender::send(&LogSender, "+15551234567", "code 775533").await.unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("development sender"), "{log}");
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("482913") && log.contains("alice@example.test"), "{log}");
    assert!(log.contains("775533") && log.contains("+15551234567"), "{log}");
}
