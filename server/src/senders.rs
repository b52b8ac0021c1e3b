//! Outbound channels for one-time codes: email over SMTP and text messages through a
//! Twilio-compatible REST API. Both sit behind small object-safe traits so the sign-in
//! pipeline holds one [`Senders`] and tests can put their own doubles in it.
//!
//! What this module must never do:
//! - write a message body anywhere but to its recipient: bodies carry codes, so no
//!   error, `Debug` string or log line may contain one. The single exception is
//!   [`LogSender`], the development stand-in, which exists to print codes;
//! - use [`LogSender`] unless the operator switched it on (`dev_senders`), nor for a
//!   channel whose real sender is configured, not even as a fallback when that sender
//!   fails (a failure must reach the caller, not the log);
//! - print a secret: the SMTP password and the SMS auth token stay out of `Debug`
//!   output, errors and logs.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use url::{Host, Url};

use crate::config::Config;

/// A code is worthless after a few minutes and the caller is a person waiting on a
/// page, so a provider that has not answered by then is treated as down.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a provider's error answer that is read. Error answers are small; the
/// bound keeps a misbehaving endpoint from making us buffer without limit.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Provider messages end up in logs; a bound keeps one answer from flooding them.
const MAX_PROVIDER_MESSAGE: usize = 300;

/// Which outbound channel a [`SendError`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::Email => "email",
            Channel::Sms => "SMS",
        })
    }
}

/// Why a message was not handed over. It names the channel and the cause, and by
/// construction never carries the message body (nor, therefore, the code).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{channel}: the recipient address is not valid")]
    InvalidRecipient { channel: Channel },
    #[error("{channel}: the message could not be built: {reason}")]
    Build { channel: Channel, reason: String },
    #[error("{channel}: delivery failed: {reason}")]
    Transport { channel: Channel, reason: String },
    #[error(
        "{channel}: the provider refused the message with status {status}{}",
        provider_detail(.code.as_deref(), .message.as_deref())
    )]
    Rejected {
        channel: Channel,
        status: u16,
        /// The provider's own error code (Twilio's `code`), when it sent one.
        code: Option<String>,
        /// The provider's explanation (Twilio's `message`), when it sent one.
        message: Option<String>,
    },
}

impl SendError {
    pub fn channel(&self) -> Channel {
        match self {
            SendError::InvalidRecipient { channel }
            | SendError::Build { channel, .. }
            | SendError::Transport { channel, .. }
            | SendError::Rejected { channel, .. } => *channel,
        }
    }
}

fn provider_detail(code: Option<&str>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" (code {c}: {m})"),
        (Some(c), None) => format!(" (code {c})"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

/// Sends plain-text email.
#[async_trait]
pub trait EmailSender: fmt::Debug + Send + Sync {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), SendError>;

    /// True only for [`LogSender`], so start-up and health reporting can tell.
    fn is_development(&self) -> bool {
        false
    }
}

/// Sends text messages.
#[async_trait]
pub trait SmsSender: fmt::Debug + Send + Sync {
    async fn send(&self, to: &str, body: &str) -> Result<(), SendError>;

    /// True only for [`LogSender`], so start-up and health reporting can tell.
    fn is_development(&self) -> bool {
        false
    }
}

/// The two outbound channels, cheap to clone into the application state. A channel
/// without a sender cannot carry codes: its factor is neither offered nor enrollable.
#[derive(Debug, Clone)]
pub struct Senders {
    email: Option<Arc<dyn EmailSender>>,
    sms: Option<Arc<dyn SmsSender>>,
}

impl Senders {
    /// For tests and embedders that bring their own senders; `None` leaves a channel
    /// without one.
    pub fn new(email: Option<Arc<dyn EmailSender>>, sms: Option<Arc<dyn SmsSender>>) -> Self {
        Self { email, sms }
    }

    /// Builds the real sender for every configured channel. A channel without one gets
    /// the [`LogSender`] only when `dev_senders` is on, and none otherwise, so that by
    /// default no code can reach the log. A channel that is half configured is an error
    /// rather than a quiet fall back: an operator who set some of the settings expects
    /// messages to leave the machine.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let email: Option<Arc<dyn EmailSender>> = match &config.smtp_url {
            Some(url) => Some(Arc::new(SmtpSender::new(url, &config.smtp_from)?)),
            None if config.dev_senders => {
                tracing::warn!(
                    "smtp_url is not set and dev_senders is on: email codes are NOT sent; the development \
                     sender writes them to the log instead. Never run like this in production"
                );
                Some(Arc::new(LogSender))
            }
            None => {
                tracing::warn!(
                    "smtp_url is not set: email codes cannot be sent, so email is neither offered nor \
                     enrollable as a second factor"
                );
                None
            }
        };
        let sms: Option<Arc<dyn SmsSender>> = match twilio_from_config(config)? {
            Some(sender) => Some(Arc::new(sender)),
            None if config.dev_senders => {
                tracing::warn!(
                    "sms_base_url is not set and dev_senders is on: SMS codes are NOT sent; the development \
                     sender writes them to the log instead. Never run like this in production"
                );
                Some(Arc::new(LogSender))
            }
            None => {
                tracing::warn!(
                    "sms_base_url is not set: SMS codes cannot be sent, so SMS is neither offered nor \
                     enrollable as a second factor"
                );
                None
            }
        };
        Ok(Self { email, sms })
    }

    pub fn email(&self) -> Option<&dyn EmailSender> {
        self.email.as_deref()
    }

    pub fn sms(&self) -> Option<&dyn SmsSender> {
        self.sms.as_deref()
    }

    /// Whether `channel` has a sender, real or the development one.
    pub fn can_send(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email.is_some(),
            Channel::Sms => self.sms.is_some(),
        }
    }

    /// What stands behind `channel`.
    pub fn kind(&self, channel: Channel) -> SenderKind {
        let development = match channel {
            Channel::Email => self.email.as_ref().map(|s| s.is_development()),
            Channel::Sms => self.sms.as_ref().map(|s| s.is_development()),
        };
        match development {
            None => SenderKind::None,
            Some(true) => SenderKind::Development,
            Some(false) => SenderKind::Real,
        }
    }

    /// Which channels use the development [`LogSender`]: `(email, sms)`.
    pub fn is_development(&self) -> (bool, bool) {
        (self.kind(Channel::Email) == SenderKind::Development, self.kind(Channel::Sms) == SenderKind::Development)
    }
}

/// What delivers a channel's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderKind {
    /// An SMTP relay or an SMS provider.
    Real,
    /// The [`LogSender`], switched on with `dev_senders`.
    Development,
    /// Nothing: the channel cannot carry codes.
    None,
}

fn twilio_from_config(config: &Config) -> anyhow::Result<Option<TwilioSmsSender>> {
    let sid = config.sms_account_sid.as_deref().filter(|s| !s.is_empty());
    let token = config.sms_auth_token.as_ref().filter(|t| !t.expose_secret().is_empty());
    let from = config.sms_from.as_deref().filter(|s| !s.is_empty());
    let Some(base_url) = &config.sms_base_url else {
        if sid.is_some() || token.is_some() || from.is_some() {
            anyhow::bail!(
                "sms_account_sid, sms_auth_token and sms_from are set but sms_base_url is not; \
                 set it (for Twilio: https://api.twilio.com) or remove the others"
            );
        }
        return Ok(None);
    };
    let missing: Vec<&str> =
        [("sms_account_sid", sid.is_none()), ("sms_auth_token", token.is_none()), ("sms_from", from.is_none())]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
    match (sid, token, from) {
        (Some(sid), Some(token), Some(from)) => Ok(Some(TwilioSmsSender::new(base_url, sid, token.clone(), from)?)),
        _ => anyhow::bail!(
            "sms_base_url is set but {} missing: sms_base_url, sms_account_sid, sms_auth_token \
             and sms_from are needed together",
            missing.join(", ")
        ),
    }
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://...?tls=none`: plain text, for a relay on the same host or network.
    None,
    /// `smtp://...`: STARTTLS, and the send fails if the server does not offer it.
    StartTls,
    /// `smtps://...`: TLS from the first byte.
    ImplicitTls,
}

/// Email over SMTP. `smtp_url` forms:
/// - `smtp://user:pass@host:port` — STARTTLS required (port 587 by default);
/// - `smtps://user:pass@host:port` — implicit TLS (port 465 by default);
/// - `smtp://host:port?tls=none` — plain, without credentials (port 25 by default).
///
/// User and password are percent-decoded; a path (`smtp://host/mail.example.org`)
/// names this host in EHLO.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
    port: u16,
    security: SmtpSecurity,
    authenticated: bool,
}

impl fmt::Debug for SmtpSender {
    // By hand: the transport holds the credentials, and what is shown here is all an
    // operator needs to recognise the relay.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSender")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("authenticated", &self.authenticated)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// Checks the URL and the sender address; no connection is made until the first
    /// send. Errors never quote the URL, which may hold the password.
    pub fn new(smtp_url: &SecretString, from: &str) -> anyhow::Result<Self> {
        let from: Mailbox =
            from.parse().map_err(|e| anyhow::anyhow!("smtp_from {from:?} is not a valid mailbox: {e}"))?;
        let url =
            Url::parse(smtp_url.expose_secret()).map_err(|e| anyhow::anyhow!("smtp_url is not a valid URL: {e}"))?;

        let mut tls_param: Option<String> = None;
        for (key, value) in url.query_pairs() {
            if key != "tls" || tls_param.is_some() {
                anyhow::bail!("smtp_url: the only query parameter understood is one `tls`");
            }
            tls_param = Some(value.into_owned());
        }
        let security = match (url.scheme(), tls_param.as_deref()) {
            ("smtp", None | Some("required")) => SmtpSecurity::StartTls,
            ("smtp", Some("none")) => SmtpSecurity::None,
            ("smtps", None) => SmtpSecurity::ImplicitTls,
            ("smtp", Some(_)) => anyhow::bail!("smtp_url: `tls` must be `none` or `required`"),
            ("smtps", Some(_)) => {
                anyhow::bail!("smtp_url: smtps:// always uses TLS and takes no `tls` parameter")
            }
            _ => anyhow::bail!("smtp_url must start with smtp:// or smtps://"),
        };
        if url.fragment().is_some() {
            anyhow::bail!("smtp_url must not have a #fragment");
        }
        let host = match url.host() {
            Some(Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(Host::Ipv4(a)) => a.to_string(),
            Some(Host::Ipv6(a)) => a.to_string(),
            _ => anyhow::bail!("smtp_url has no host"),
        };
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::None => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::ImplicitTls => 465,
        });

        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            ("", Some(_)) => anyhow::bail!("smtp_url has a password but no user name"),
            (_, None) => anyhow::bail!("smtp_url has a user name but no password"),
            (user, Some(password)) => {
                let user = percent_decode(user, "user name")?;
                let password = percent_decode(password, "password")?;
                Some(Credentials::new(user.into_owned(), password.into_owned()))
            }
        };
        if credentials.is_some() && security == SmtpSecurity::None {
            // The password would cross the network in the clear.
            anyhow::bail!("smtp_url: credentials need TLS; `?tls=none` is for unauthenticated relays only");
        }
        let hello = url.path().trim_matches('/');

        // `builder_dangerous` only means "no TLS unless told"; TLS is set just below.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .timeout(Some(SEND_TIMEOUT));
        builder = match security {
            SmtpSecurity::None => builder.tls(Tls::None),
            SmtpSecurity::StartTls => builder.tls(Tls::Required(TlsParameters::new(host.clone())?)),
            SmtpSecurity::ImplicitTls => builder.tls(Tls::Wrapper(TlsParameters::new(host.clone())?)),
        };
        let authenticated = credentials.is_some();
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        if !hello.is_empty() {
            builder = builder.hello_name(ClientId::Domain(hello.to_owned()));
        }
        Ok(Self { transport: builder.build(), from, host, port, security, authenticated })
    }

    pub fn security(&self) -> SmtpSecurity {
        self.security
    }
}

fn percent_decode<'a>(raw: &'a str, what: &str) -> anyhow::Result<Cow<'a, str>> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| anyhow::anyhow!("smtp_url: the {what} is not valid UTF-8 once decoded"))
}

#[async_trait]
impl EmailSender for SmtpSender {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), SendError> {
        let channel = Channel::Email;
        let to: Mailbox = to.parse().map_err(|_| SendError::InvalidRecipient { channel })?;
        // Receivers score mail without a Message-ID as spam; the sender's own domain is
        // used because this host's name is often a meaningless container id.
        let message_id = format!("<{}@{}>", uuid::Uuid::now_v7().simple(), self.from.email.domain());
        let message = Message::builder()
            .message_id(Some(message_id))
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| SendError::Build { channel, reason: e.to_string() })?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| SendError::Transport { channel, reason: error_chain(&e) })
    }
}

/// Text messages through the Twilio REST API, or anything that speaks it:
/// `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with basic auth and the form
/// fields `To`, `From` and `Body`.
pub struct TwilioSmsSender {
    client: reqwest::Client,
    messages_url: String,
    account_sid: String,
    auth_token: SecretString,
    from: String,
}

impl fmt::Debug for TwilioSmsSender {
    // By hand so the auth token can never be shown, whatever `SecretString` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSmsSender")
            .field("messages_url", &self.messages_url)
            .field("account_sid", &self.account_sid)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl TwilioSmsSender {
    pub fn new(base_url: &str, account_sid: &str, auth_token: SecretString, from: &str) -> anyhow::Result<Self> {
        let base = Url::parse(base_url).map_err(|e| anyhow::anyhow!("sms_base_url is not a valid URL: {e}"))?;
        if !matches!(base.scheme(), "https" | "http") {
            anyhow::bail!("sms_base_url must start with https:// (or http:// for a local stand-in)");
        }
        if !base.username().is_empty() || base.password().is_some() {
            anyhow::bail!("sms_base_url must not hold credentials; use sms_auth_token");
        }
        if base.query().is_some() || base.fragment().is_some() {
            anyhow::bail!("sms_base_url must not have a query or a fragment");
        }
        if base.scheme() == "http" && !is_loopback(&base) {
            tracing::warn!(
                "sms_base_url uses plain http to a host that is not this machine: the auth \
                 token and every code cross the network unencrypted"
            );
        }
        // The SID becomes a path segment; anything but letters and digits could
        // redirect the request elsewhere on the provider.
        if account_sid.is_empty() || !account_sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            anyhow::bail!("sms_account_sid may hold letters and digits only");
        }
        let messages_url =
            format!("{}/2010-04-01/Accounts/{account_sid}/Messages.json", base.as_str().trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            // The API never redirects; following one would send the credentials to
            // wherever it pointed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("could not set up the SMS HTTP client: {e}"))?;
        Ok(Self { client, messages_url, account_sid: account_sid.to_owned(), auth_token, from: from.to_owned() })
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

#[async_trait]
impl SmsSender for TwilioSmsSender {
    async fn send(&self, to: &str, body: &str) -> Result<(), SendError> {
        let channel = Channel::Sms;
        if to.is_empty() || to.len() > 32 || to.chars().any(char::is_control) {
            return Err(SendError::InvalidRecipient { channel });
        }
        let mut response = self
            .client
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&[("To", to), ("From", self.from.as_str()), ("Body", body)])
            .send()
            .await
            .map_err(|e| SendError::Transport { channel, reason: error_chain(&e) })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }

        let mut answer = Vec::new();
        while answer.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
                // The status alone is enough to report; a broken error body is no reason
                // to hide it.
                Ok(None) | Err(_) => break,
            }
        }
        let (code, message) = provider_error(&answer, body);
        Err(SendError::Rejected { channel, status: status.as_u16(), code, message })
    }
}

/// Twilio's error answer is `{"code": 21211, "message": "...", ...}`. Both fields are
/// cleaned for the log, and a message that quotes our body is dropped, since the body
/// holds the code.
fn provider_error(answer: &[u8], sent_body: &str) -> (Option<String>, Option<String>) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(answer) else {
        return (None, None);
    };
    let field = |name: &str| match json.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let clean = |s: String| -> Option<String> {
        let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_PROVIDER_MESSAGE).collect();
        let body = sent_body.trim();
        (!s.trim().is_empty() && (body.is_empty() || !s.contains(body))).then_some(s)
    };
    (field("code").and_then(clean), field("message").and_then(clean))
}

/// The error and its causes on one line. Some errors (lettre's) already print their
/// cause, so a cause whose text is already there is not repeated.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// The development stand-in for an unconfigured channel: it delivers nothing and
/// writes the whole message, code included, to the log as a warning. This is the only
/// place a code is ever logged, and [`Senders::from_config`] uses it only when
/// `dev_senders` is on, for a channel that has no real sender.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSender;

#[async_trait]
impl EmailSender for LogSender {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), SendError> {
        tracing::warn!(
            development_sender = true,
            channel = "email",
            to,
            subject,
            body,
            "development sender: email NOT sent, logged instead"
        );
        Ok(())
    }

    fn is_development(&self) -> bool {
        true
    }
}

#[async_trait]
impl SmsSender for LogSender {
    async fn send(&self, to: &str, body: &str) -> Result<(), SendError> {
        tracing::warn!(
            development_sender = true,
            channel = "sms",
            to,
            body,
            "development sender: SMS NOT sent, logged instead"
        );
        Ok(())
    }

    fn is_development(&self) -> bool {
        true
    }
}
