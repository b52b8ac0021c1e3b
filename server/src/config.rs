//! Configuration: defaults, then an optional TOML file, then `TWOFOLD_*` environment
//! variables. Unknown keys are an error at start, so a misspelt setting is never
//! silently ignored. Secrets are wrapped so they cannot be printed by accident.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

/// The default SQLite file, relative to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/twofold.db";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// `sqlite://path` (created when absent) or `postgres://...`.
    #[serde(serialize_with = "redact_url_password")]
    pub database_url: String,
    /// Largest number of pooled database connections; unset, it depends on the
    /// database ([`Config::pool_size`]).
    pub database_max_connections: Option<u32>,
    /// The first host admin, created on first start with an empty database.
    pub admin_username: Option<String>,
    #[serde(serialize_with = "redact")]
    pub admin_password: Option<SecretString>,
    /// Marks cookies `Secure` and gives them the `__Host-` prefix. Only turn off for
    /// plain-HTTP development on loopback.
    pub cookie_secure: bool,
    /// How long a session lives without activity, in minutes.
    pub session_idle_minutes: u32,
    /// The longest a session lives, in hours.
    pub session_max_hours: u32,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// How long resolved settings stay cached before being re-read, in seconds. Writes
    /// through this node invalidate at once; this bounds staleness otherwise.
    pub cache_ttl_seconds: u64,
    /// 32 random bytes, base64: encrypts authenticator secrets at rest and keys the
    /// hashes of codes and the signatures of remember-browser tokens. Every node of a
    /// deployment needs the same key. Without it, a SQLite deployment keeps a generated
    /// key in a file beside the database; a PostgreSQL deployment refuses to start.
    #[serde(serialize_with = "redact")]
    pub secret_key: Option<SecretString>,
    /// Earlier values of `secret_key`, still accepted for reading after a rotation:
    /// what was encrypted, hashed or signed under them keeps working, and new values are
    /// written under `secret_key`. `twofold rotate-secrets` rewrites the stored
    /// ciphertexts; a key can leave this list once that has run and the longest-lived
    /// token signed under it (remembered and known browsers) has expired. In the
    /// environment: `TWOFOLD_PREVIOUS_SECRET_KEYS='["…", "…"]'`.
    #[serde(serialize_with = "redact_all")]
    pub previous_secret_keys: Vec<SecretString>,
    /// `smtp://user:pass@host:port` (STARTTLS when offered), `smtps://...` (TLS) or
    /// `smtp://host:port?tls=none` for a local relay. Without it (and without
    /// `dev_senders`), email codes cannot be sent and email is neither offered nor
    /// enrollable.
    #[serde(serialize_with = "redact")]
    pub smtp_url: Option<SecretString>,
    pub smtp_from: String,
    /// A Twilio-compatible SMS API. Without `sms_base_url` (and without `dev_senders`),
    /// SMS codes cannot be sent and SMS is neither offered nor enrollable.
    pub sms_base_url: Option<String>,
    pub sms_account_sid: Option<String>,
    #[serde(serialize_with = "redact")]
    pub sms_auth_token: Option<SecretString>,
    pub sms_from: Option<String>,
    /// Development only: a channel without a real sender writes its messages, codes
    /// included, to the log. Off by default, because whoever reads the log could then
    /// complete anyone's second factor; a configured real sender always wins.
    pub dev_senders: bool,
    /// Texts and emails per clock hour, to the users of one scope (the host or one
    /// tenant) and to everyone together, whatever asked for them. They bound what a
    /// tenant admin with many users, or a flood of sign-ins, can make the SMS provider
    /// and the mail relay send. Zero turns a cap off.
    pub sms_per_tenant_per_hour: u32,
    pub sms_per_hour: u32,
    pub email_per_tenant_per_hour: u32,
    pub email_per_hour: u32,
    /// Issuer shown in authenticator apps.
    pub totp_issuer: String,
    /// Second-factor failures before the account is locked.
    pub lockout_max_failures: u32,
    /// How long the first lockout lasts, in minutes; each further lock without a
    /// success in between lasts twice as long as the one before, up to
    /// `lockout_max_minutes`.
    pub lockout_minutes: u32,
    pub lockout_max_minutes: u32,
    /// Wrong second factors in a row (across locks) after which second-factor sign-in
    /// stays locked until an admin unlocks it (NIST SP 800-63B caps failed attempts at 100).
    pub lockout_permanent_after: u32,
    /// Lifetime of an emailed or texted code, in minutes (at most 10).
    pub code_lifetime_minutes: u32,
    /// Least time between two code sends for one sign-in, in seconds.
    pub code_resend_seconds: u32,
    /// How long a sign-in may wait between the password and the second factor, in minutes.
    pub pending_sign_in_minutes: u32,
    /// How recent a password-and-second-factor check must be for sensitive account
    /// changes, in minutes.
    pub reauth_minutes: u32,
    /// Wrong passwords allowed in each window: per account from browsers that never
    /// signed in to it (so a flood from elsewhere cannot lock the owner out of a browser
    /// they used before), per account and client address together, and per address.
    pub password_failures_per_account: u32,
    pub password_failures_per_account_and_address: u32,
    pub password_failures_per_address: u32,
    /// Lifetime of the "known browser" cookie set by a right password, in days.
    pub known_browser_days: u32,
    /// How long a password reset link works, in minutes.
    pub password_reset_minutes: u32,
    pub password_window_minutes: u32,
    /// Requests per minute, per client address and per account, for the password step,
    /// code sends, code checks and the account API (`/api/account/*`). Each allows a
    /// burst of that many, then one every minute / limit. Zero turns a limit off.
    pub sign_in_per_address_per_minute: u32,
    pub sign_in_per_account_per_minute: u32,
    pub send_code_per_address_per_minute: u32,
    pub send_code_per_account_per_minute: u32,
    pub verify_per_address_per_minute: u32,
    pub verify_per_account_per_minute: u32,
    pub account_per_address_per_minute: u32,
    pub account_per_account_per_minute: u32,
    /// Emails and texts per hour to one user, and to one address or number, whatever
    /// asked for them. Zero turns a cap off.
    pub code_sends_per_user_per_hour: u32,
    pub code_sends_per_destination_per_hour: u32,
    /// Reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` is believed.
    /// Empty (the default): the header is ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Name of the remember-browser cookie (prefixed with `__Host-` when secure).
    pub remember_cookie_name: String,
    /// The built web app (`index.html` and the hashed files it names), served at `/`.
    pub web_dir: std::path::PathBuf,
    /// A PEM certificate chain (leaf first) and its PEM private key: with both set the
    /// server speaks HTTPS itself, for deployments without a TLS-terminating proxy.
    pub tls_cert_path: Option<PathBuf>,
    pub tls_key_path: Option<PathBuf>,
    /// Sends `Strict-Transport-Security` even though this server speaks plain HTTP,
    /// for when a TLS-terminating proxy sits in front. Always sent when serving TLS.
    pub hsts: bool,
    /// How often expired codes, sign-ins, sessions and remembered browsers (and audit
    /// events past `audit_retention_days`) are deleted.
    pub housekeeping_interval_seconds: u64,
    /// Rows deleted per statement: small enough that a backlog never blocks sign-ins
    /// for long, large enough to keep up.
    pub housekeeping_batch_size: u32,
    /// Audit events older than this many days are deleted; `None` keeps them forever.
    pub audit_retention_days: Option<u32>,
    /// After SIGTERM or SIGINT, how long requests already in progress may take to
    /// finish before the server exits anyway, in seconds.
    pub shutdown_grace_seconds: u64,
    /// Where `/metrics` (Prometheus text format) is served; off when unset. Never on the
    /// public listener.
    pub metrics_bind: Option<SocketAddr>,
    /// The URL browsers and applications reach this server at (`https://id.example.com`,
    /// no trailing slash). It fixes the OpenID Connect issuers: the host's is this URL,
    /// each tenant's is `{public_url}/t/{tenant name}`; links in emails (password reset)
    /// point here. Never taken from a request's Host header, which a client chooses.
    /// Unset: `http://{bind}` for the issuers (development only), and no reset links.
    pub public_url: Option<String>,
    /// Lifetime of OpenID Connect access and ID tokens, in seconds.
    pub oidc_access_token_seconds: u32,
    /// Lifetime of a refresh token family (from its code exchange), in days.
    pub oidc_refresh_token_days: u32,
    /// How often the signing keys are replaced, in days. A new key is published in the
    /// JWKS `oidc_key_publish_hours` before it signs anything, and the old one stays
    /// published until the tokens it signed have expired.
    pub oidc_key_rotation_days: u32,
    pub oidc_key_publish_hours: u32,
    /// Token endpoint requests per minute, per client address and per application.
    pub oidc_token_per_address_per_minute: u32,
    pub oidc_token_per_client_per_minute: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What serialising the configuration (`twofold check-config`) shows of a secret:
/// whether it is set, never its value.
const REDACTED: &str = "<redacted>";

fn redact<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str(REDACTED),
        None => s.serialize_none(),
    }
}

fn redact_all<S: Serializer>(secrets: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(secrets.iter().map(|_| REDACTED))
}

/// A database URL with its password (`postgres://user:password@host/db`) redacted.
fn redact_url_password<S: Serializer>(raw: &str, s: S) -> Result<S::Ok, S::Error> {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // The URL has a host (it has a password), so setting one cannot fail.
            let _ = parsed.set_password(Some("REDACTED"));
            s.serialize_str(parsed.as_str())
        }
        Ok(_) => s.serialize_str(raw),
        // Unparseable: it may hold anything, so show nothing of it.
        Err(_) => s.serialize_str(REDACTED),
    }
}

/// The most connections a default PostgreSQL pool opens: a node has two pools and the
/// change feed's connection, so two nodes stay within PostgreSQL's default
/// `max_connections` (100, three of them kept for superusers) on machines of any size.
const MOST_POSTGRES_CONNECTIONS: usize = 20;

/// The pool size where none is configured. On SQLite two connections per core and two
/// more: each connection is a thread and a page cache of its own, and at 1 M users 16 of
/// them held 17 MiB more than 6 while reading no faster on two cores (BENCHMARKS.md).
/// On PostgreSQL eight per core: a connection there spends most of a completed sign-in,
/// a settings write or a code exchange waiting for the write-ahead log's sync, not
/// working, and with six of them the 32 clients of the load generator left a core idle
/// 9–13 % of the time for want of a connection to commit on (BENCHMARKS.md, "Connections
/// enough to wait for the disk on"). At most [`MOST_POSTGRES_CONNECTIONS`].
fn default_pool_size(postgres: bool, cores: usize) -> u32 {
    let size = if postgres { (cores * 8).min(MOST_POSTGRES_CONNECTIONS) } else { cores * 2 + 2 };
    u32::try_from(size).unwrap_or(u32::MAX)
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_max_connections: None,
            admin_username: None,
            admin_password: None,
            cookie_secure: true,
            session_idle_minutes: 60,
            session_max_hours: 12,
            log_format: LogFormat::Text,
            cache_ttl_seconds: 10,
            secret_key: None,
            previous_secret_keys: Vec::new(),
            smtp_url: None,
            smtp_from: "Twofold <no-reply@localhost>".to_owned(),
            sms_base_url: None,
            sms_account_sid: None,
            sms_auth_token: None,
            sms_from: None,
            dev_senders: false,
            sms_per_tenant_per_hour: 200,
            sms_per_hour: 1000,
            email_per_tenant_per_hour: 1000,
            email_per_hour: 10_000,
            totp_issuer: "Twofold".to_owned(),
            lockout_max_failures: 5,
            lockout_minutes: 5,
            lockout_max_minutes: 1440,
            lockout_permanent_after: 100,
            code_lifetime_minutes: 5,
            code_resend_seconds: 30,
            pending_sign_in_minutes: 10,
            reauth_minutes: 5,
            password_failures_per_account: 10,
            password_failures_per_account_and_address: 10,
            known_browser_days: 180,
            password_reset_minutes: 30,
            password_failures_per_address: 100,
            password_window_minutes: 15,
            sign_in_per_address_per_minute: 60,
            sign_in_per_account_per_minute: 30,
            send_code_per_address_per_minute: 20,
            send_code_per_account_per_minute: 10,
            verify_per_address_per_minute: 60,
            verify_per_account_per_minute: 30,
            account_per_address_per_minute: 300,
            account_per_account_per_minute: 120,
            code_sends_per_user_per_hour: 10,
            code_sends_per_destination_per_hour: 10,
            trusted_proxies: Vec::new(),
            remember_cookie_name: "twofold_remember".to_owned(),
            web_dir: std::path::PathBuf::from("web/dist"),
            tls_cert_path: None,
            tls_key_path: None,
            hsts: false,
            housekeeping_interval_seconds: 300,
            housekeeping_batch_size: 1000,
            audit_retention_days: None,
            shutdown_grace_seconds: 10,
            metrics_bind: None,
            public_url: None,
            oidc_access_token_seconds: 600,
            oidc_refresh_token_days: 30,
            oidc_key_rotation_days: 30,
            oidc_key_publish_hours: 24,
            oidc_token_per_address_per_minute: 120,
            oidc_token_per_client_per_minute: 600,
        }
    }
}

impl Config {
    /// Loads the configuration from `file` (if given and present) and the environment.
    /// `TWOFOLD_CONFIG` names the file when no path is passed.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let file: Option<PathBuf> =
            file.map(Path::to_path_buf).or_else(|| std::env::var_os("TWOFOLD_CONFIG").map(PathBuf::from));
        let mut figment = Figment::new();
        if let Some(path) = &file {
            if !path.exists() {
                anyhow::bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("TWOFOLD_").ignore(&["config", "log"]));
        let config: Config = figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// The largest number of connections of each of the database pools: as configured,
    /// or by default as suits the database `database_url` names.
    pub fn pool_size(&self) -> u32 {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        self.database_max_connections
            .unwrap_or_else(|| default_pool_size(!self.database_url.starts_with("sqlite:"), cores))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            anyhow::bail!("database_url must start with sqlite: or postgres://");
        }
        if self.database_max_connections == Some(0) {
            anyhow::bail!("database_max_connections must be positive; leave it unset for the default");
        }
        if self.session_idle_minutes == 0 || self.session_max_hours == 0 {
            anyhow::bail!("session lifetimes must be positive");
        }
        if !(1..=10).contains(&self.code_lifetime_minutes) {
            anyhow::bail!("code_lifetime_minutes must be between 1 and 10");
        }
        if self.lockout_max_failures == 0 || self.lockout_minutes == 0 {
            anyhow::bail!("lockout_max_failures and lockout_minutes must be positive");
        }
        if self.lockout_max_minutes < self.lockout_minutes {
            anyhow::bail!("lockout_max_minutes must be at least lockout_minutes");
        }
        if self.lockout_permanent_after < self.lockout_max_failures {
            anyhow::bail!("lockout_permanent_after must be at least lockout_max_failures");
        }
        if !(5..=1440).contains(&self.password_reset_minutes) {
            anyhow::bail!("password_reset_minutes must be between 5 and 1440");
        }
        if self.known_browser_days == 0 {
            anyhow::bail!("known_browser_days must be positive");
        }
        if self.pending_sign_in_minutes == 0 || self.reauth_minutes == 0 || self.password_window_minutes == 0 {
            anyhow::bail!("pending_sign_in_minutes, reauth_minutes and password_window_minutes must be positive");
        }
        crate::ratelimit::parse_proxies(&self.trusted_proxies)?;
        if self.totp_issuer.trim().is_empty() {
            anyhow::bail!("totp_issuer must not be blank: authenticator apps show it beside the account");
        }
        if self.remember_cookie_name.is_empty()
            || !self.remember_cookie_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            anyhow::bail!("remember_cookie_name may use letters, digits, '_' and '-' only");
        }
        if self.tls_cert_path.is_some() != self.tls_key_path.is_some() {
            anyhow::bail!("tls_cert_path and tls_key_path must be set together");
        }
        if self.housekeeping_interval_seconds == 0 || self.housekeeping_batch_size == 0 {
            anyhow::bail!("housekeeping_interval_seconds and housekeeping_batch_size must be positive");
        }
        if let Some(public) = &self.public_url {
            let parsed = url::Url::parse(public).map_err(|e| anyhow::anyhow!("public_url: {e}"))?;
            if !matches!(parsed.scheme(), "https" | "http")
                || parsed.host().is_none()
                || parsed.query().is_some()
                || parsed.fragment().is_some()
                || public.ends_with('/')
            {
                anyhow::bail!("public_url must be an http(s) URL without query, fragment or trailing slash");
            }
        }
        if self.oidc_access_token_seconds == 0 || self.oidc_refresh_token_days == 0 || self.oidc_key_rotation_days == 0
        {
            anyhow::bail!(
                "oidc_access_token_seconds, oidc_refresh_token_days and oidc_key_rotation_days must be positive"
            );
        }
        if self.audit_retention_days == Some(0) {
            anyhow::bail!("audit_retention_days must be positive; leave it unset to keep audit events forever");
        }
        Ok(())
    }

    /// Whether this server terminates TLS itself.
    pub fn serves_tls(&self) -> bool {
        self.tls_cert_path.is_some()
    }

    /// Whether responses carry `Strict-Transport-Security`. Behind a proxy it is opt-in:
    /// this server cannot tell whether the proxy offers HTTPS, and the header commits
    /// the host and its subdomains to HTTPS for a year.
    pub fn sends_hsts(&self) -> bool {
        self.serves_tls() || self.hsts
    }

    pub fn remember_cookie(&self) -> String {
        if self.cookie_secure {
            format!("__Host-{}", self.remember_cookie_name)
        } else {
            self.remember_cookie_name.clone()
        }
    }

    pub fn pending_cookie_name(&self) -> &'static str {
        if self.cookie_secure { "__Host-twofold_pending" } else { "twofold_pending" }
    }

    pub fn known_browser_cookie_name(&self) -> &'static str {
        if self.cookie_secure { "__Host-twofold_known" } else { "twofold_known" }
    }

    /// How long the lock that follows `earlier_locks` locks (since the last success)
    /// lasts, in milliseconds: doubling from `lockout_minutes`, capped.
    pub fn lockout_ms(&self, earlier_locks: i64) -> i64 {
        let base = i64::from(self.lockout_minutes) * 60_000;
        let cap = i64::from(self.lockout_max_minutes) * 60_000;
        let doublings = u32::try_from(earlier_locks.clamp(0, 30)).unwrap_or(30);
        base.saturating_mul(1_i64 << doublings).min(cap)
    }

    /// The base of every issuer URL: `public_url`, or the bound address in development.
    pub fn public_base(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.bind))
    }

    pub fn session_cookie_name(&self) -> &'static str {
        // The __Host- prefix makes browsers refuse the cookie unless it is Secure,
        // host-only and path-wide, which rules out injection from sibling subdomains.
        if self.cookie_secure { "__Host-twofold_session" } else { "twofold_session" }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn unknown_keys_in_the_file_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:9\"\nbnid = 3\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("bnid"), "{err}");
    }

    #[test]
    fn file_values_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:9\"\ncookie_secure = false\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.bind.port(), 9);
        assert!(!c.cookie_secure);
        assert_eq!(c.session_cookie_name(), "twofold_session");
    }

    #[test]
    fn limits_and_proxies_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.toml");
        std::fs::write(
            &path,
            "verify_per_address_per_minute = 0\naccount_per_account_per_minute = 100000\n\
             trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.verify_per_address_per_minute, 0);
        assert_eq!(c.account_per_account_per_minute, 100_000);
        assert_eq!(c.trusted_proxies, ["10.0.0.0/8", "::1"]);
        std::fs::write(&path, "trusted_proxies = [\"10.0.0.0/40\"]\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("trusted_proxies"), "{err}");
    }

    #[test]
    fn the_development_sender_is_off_unless_switched_on() {
        assert!(!Config::default().dev_senders);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.toml");
        std::fs::write(&path, "dev_senders = true\nsms_per_tenant_per_hour = 5\nemail_per_hour = 0\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert!(c.dev_senders);
        assert_eq!((c.sms_per_tenant_per_hour, c.sms_per_hour), (5, 1000));
        assert_eq!((c.email_per_tenant_per_hour, c.email_per_hour), (1000, 0));
    }

    #[test]
    fn a_tls_certificate_needs_its_key() {
        let c = Config { tls_cert_path: Some("cert.pem".into()), ..Config::default() };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("tls_key_path"), "{err}");
        let c = Config { tls_key_path: Some("key.pem".into()), ..Config::default() };
        assert!(c.validate().is_err());
    }

    #[test]
    fn hsts_follows_tls_or_the_switch() {
        assert!(!Config::default().sends_hsts());
        assert!(Config { hsts: true, ..Config::default() }.sends_hsts());
        let tls = Config {
            tls_cert_path: Some("cert.pem".into()),
            tls_key_path: Some("key.pem".into()),
            ..Config::default()
        };
        assert!(tls.validate().is_ok());
        assert!(tls.sends_hsts());
    }

    #[test]
    fn database_url_scheme_is_checked() {
        let c = Config { database_url: "mysql://x".into(), ..Config::default() };
        assert!(c.validate().is_err());
    }

    /// PostgreSQL's connections wait for the disk at every commit, so it gets more of
    /// them by default than SQLite, whose each is a thread and a page cache; a configured
    /// size wins on both, and none at all is refused.
    #[test]
    fn the_pool_size_suits_the_database_unless_configured() {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        assert_eq!(Config::default().pool_size(), default_pool_size(false, cores));
        let postgres = Config { database_url: "postgres://db/twofold".into(), ..Config::default() };
        assert_eq!(postgres.pool_size(), default_pool_size(true, cores));
        assert_eq!((default_pool_size(false, 2), default_pool_size(true, 2)), (6, 16));
        assert_eq!((default_pool_size(false, 8), default_pool_size(true, 8)), (18, 20));
        for url in [Config::default().database_url.as_str(), "postgres://db/twofold"] {
            let c = Config { database_url: url.into(), database_max_connections: Some(5), ..Config::default() };
            assert_eq!(c.pool_size(), 5);
            let none = Config { database_url: url.into(), database_max_connections: Some(0), ..Config::default() };
            assert!(none.validate().unwrap_err().to_string().contains("database_max_connections"));
        }
    }

    /// README: two nodes with the default pools fit PostgreSQL's default
    /// `max_connections` (100, three kept for superusers) on machines of any size; each
    /// node has two pools and the change feed's connection.
    #[test]
    fn two_nodes_with_default_pools_fit_postgresqls_default_connections() {
        for cores in [1, 2, 4, 16, 128] {
            let node = 2 * default_pool_size(true, cores) + 1;
            assert!(2 * node <= 100 - 3, "{cores} cores: {node} connections a node");
        }
    }

    #[test]
    fn a_blank_totp_issuer_is_refused() {
        assert!(Config::default().validate().is_ok());
        let c = Config { totp_issuer: " ".into(), ..Config::default() };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("totp_issuer"), "{err}");
    }
}
