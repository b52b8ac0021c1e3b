//! The application: shared state, the router with its middleware, start-up (migrations,
//! the first host admin, the authorisation rules) and serving.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use twofold_policy::authz::{Action, Actor, Authorizer, Domain, Role, Target};
use twofold_policy::names::Username;

use crate::auth::{self, Authenticated};
use crate::cache::PolicyCache;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::db::{self, Db, HOST_SCOPE, NewAudit};
use crate::error::{AppError, AppResult};
use crate::housekeeping::Outcome;
use crate::ratelimit::{Limits, PasswordLimits};
use crate::secrets::Keys;
use crate::senders::Senders;

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    db: Db,
    cache: PolicyCache,
    authz: RwLock<Authorizer>,
    clock: Arc<dyn Clock>,
    dummy_hash: String,
    keys: Keys,
    senders: Senders,
    passwords: PasswordLimits,
    limits: Limits,
    oidc_keys: crate::oidc::keys::KeyStore,
    /// The WebAuthn relying party; `None` while passkeys are off (no usable `public_url`).
    webauthn: Option<webauthn_rs::Webauthn>,
}

impl AppState {
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn webauthn(&self) -> Option<&webauthn_rs::Webauthn> {
        self.inner.webauthn.as_ref()
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn cache(&self) -> &PolicyCache {
        &self.inner.cache
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn senders(&self) -> &Senders {
        &self.inner.senders
    }

    /// Wrong-password limits.
    pub fn passwords(&self) -> &PasswordLimits {
        &self.inner.passwords
    }

    /// Request-rate limits and the cap on messages sent.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The OpenID Connect signing keys.
    pub fn oidc_keys(&self) -> &crate::oidc::keys::KeyStore {
        &self.inner.oidc_keys
    }

    /// Deletes expired rows (and audit events past their retention) now, as the
    /// schedule does; tests call it after moving the clock.
    pub async fn housekeep(&self) -> anyhow::Result<Outcome> {
        crate::housekeeping::run_once(self).await
    }

    /// A hash of a random password, verified against when the user is unknown.
    pub fn dummy_hash(&self) -> &str {
        &self.inner.dummy_hash
    }

    /// Refuses unless the signed-in user may perform `action` on `target`.
    pub fn authorize(&self, who: &Authenticated, action: Action, target: Target<'_>) -> AppResult<()> {
        let allowed = self
            .inner
            .authz
            .read()
            .map_err(|_| AppError::Internal(anyhow::anyhow!("authorizer lock poisoned")))?
            .authorize(Actor { user_id: &who.user.id }, action, target);
        if allowed { Ok(()) } else { Err(AppError::Forbidden) }
    }

    /// Replaces the enforcer's role assignments with the stored ones, after another
    /// node changed them.
    pub async fn reload_roles(&self) -> anyhow::Result<()> {
        let fresh = load_authorizer(&self.inner.db).await?;
        let mut authz = self.inner.authz.write().map_err(|_| anyhow::anyhow!("authorizer lock poisoned"))?;
        *authz = fresh;
        Ok(())
    }

    /// Records a role assignment in the enforcer after it was committed to storage.
    pub fn grant_in_memory(&self, user_id: &str, role: Role, scope_key: &str) -> AppResult<()> {
        let mut authz =
            self.inner.authz.write().map_err(|_| AppError::Internal(anyhow::anyhow!("authorizer lock poisoned")))?;
        authz.grant(user_id, role, domain_of(scope_key)).map_err(|e| AppError::Internal(e.into()))
    }

    pub fn revoke_in_memory(&self, user_id: &str, role: Role, scope_key: &str) -> AppResult<()> {
        let mut authz =
            self.inner.authz.write().map_err(|_| AppError::Internal(anyhow::anyhow!("authorizer lock poisoned")))?;
        authz.revoke(user_id, role, domain_of(scope_key)).map_err(|e| AppError::Internal(e.into()))
    }
}

/// The authorisation domain of a scope key.
pub fn domain_of(scope_key: &str) -> Domain<'_> {
    if scope_key == HOST_SCOPE { Domain::Host } else { Domain::Tenant(scope_key) }
}

/// Connects, migrates, creates the first admin when the database is empty and loads
/// the role assignments into the enforcer.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    let db = Db::connect(&config.database_url, config.pool_size()).await?;
    db.migrate().await?;
    bootstrap_admin(&db, &config, clock.now_ms()).await?;
    let authz = load_authorizer(&db).await?;
    let dummy_hash = auth::hash_password(auth::new_token()).await?;
    let pending = Duration::from_secs(u64::from(config.pending_sign_in_minutes) * 60);
    let cache = PolicyCache::new(Duration::from_secs(config.cache_ttl_seconds), pending);
    let keys = Keys::from_config(&config)?;
    let senders = Senders::from_config(&config)?;
    let passwords = PasswordLimits::from_config(&config);
    let limits = Limits::from_config(&config)?;
    let webauthn = crate::factors::passkey::relying_party(&config)?;
    Ok(AppState {
        inner: Arc::new(Inner {
            config,
            db,
            cache,
            authz: RwLock::new(authz),
            clock,
            dummy_hash,
            keys,
            senders,
            passwords,
            limits,
            oidc_keys: crate::oidc::keys::KeyStore::default(),
            webauthn,
        }),
    })
}

/// Builds the enforcer with every stored role assignment.
async fn load_authorizer(db: &Db) -> anyhow::Result<Authorizer> {
    let mut authz = Authorizer::new()?;
    for row in db::all_roles(&db.pool).await? {
        let Some(role) = Role::parse(&row.role) else {
            anyhow::bail!("stored role {:?} is not known", row.role);
        };
        authz.grant(&row.user_id, role, domain_of(&row.scope_key))?;
    }
    Ok(authz)
}

async fn bootstrap_admin(db: &Db, config: &Config, now: i64) -> anyhow::Result<()> {
    if db::count_users(&db.pool).await? > 0 {
        return Ok(());
    }
    let username = config.admin_username.clone().unwrap_or_else(|| "admin".to_owned());
    let username = Username::parse(&username).map_err(|e| anyhow::anyhow!("admin_username: {e}"))?;
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.expose_secret().to_owned(), false),
        None => (auth::new_token(), true),
    };
    twofold_policy::names::check_new_password(&password).map_err(|e| anyhow::anyhow!("admin_password: {e}"))?;
    let hash = auth::hash_password(password.clone()).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = db.begin_write().await?;
    db::insert_host_admin(&mut tx, &id, &username, &hash, &auth::new_stamp(), now).await?;
    if generated {
        // Printed to the log once: whoever reads the log must not keep it.
        db::set_temporary_password(&mut tx, &id, &hash).await?;
    }
    db::insert_audit(
        &mut tx,
        &NewAudit {
            at: now,
            actor_user_id: None,
            scope_key: HOST_SCOPE,
            action: "user.created",
            target: &format!("user:{id}"),
            before: None,
            after: Some(serde_json::json!({ "username": username.as_str(), "role": "host_admin", "bootstrap": true })),
        },
    )
    .await?;
    tx.commit().await?;
    if generated {
        // The one place a password is ever written out: the operator has no other way to
        // learn it, and it is printed once, on the first start only.
        tracing::warn!(
            username = username.as_str(),
            password = %password,
            "created the first host admin with a generated password; sign in and change it"
        );
    } else {
        tracing::info!(username = username.as_str(), "created the first host admin");
    }
    Ok(())
}

/// Serves the request with its client address in `db::REQUEST_ADDRESS`, which every
/// audit event it writes records (the same address the rate limits count).
async fn client_address_scope(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    match peer {
        Some(peer) => {
            let address = crate::ratelimit::client_address(peer, req.headers(), state.limits().trusted_proxies());
            // Kept as an address, not text: most requests write no audit event, and
            // formatting it for every one showed in the profile of the read.
            db::REQUEST_ADDRESS.scope(address, next.run(req)).await
        }
        None => next.run(req).await,
    }
}

/// Refuses state-changing API requests that lack the `X-Requested-With` header. A
/// cross-site form cannot set it and a cross-site script cannot send it without a CORS
/// preflight, which Twofold never grants under `/api/` (only the OpenID endpoints that
/// read no cookie answer other origins); with SameSite cookies this closes CSRF,
/// including forced sign-in.
async fn csrf_guard(req: Request, next: Next) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && req.uri().path().starts_with("/api/") && !req.headers().contains_key("x-requested-with") {
        return AppError::CsrfHeaderMissing.into_response();
    }
    next.run(req).await
}

/// The Content-Security-Policy of every response. The web app is one module script
/// and a WebAssembly module from this origin ('wasm-unsafe-eval' permits compiling
/// WebAssembly and nothing else), one stylesheet, QR codes as `data:` PNGs, and
/// fetches to this origin's API. No inline script or style is allowed, so injected
/// markup cannot run or restyle anything; API responses carry it too, so a JSON body
/// opened as a page is inert.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// A year, with subdomains: long enough that a returning browser never tries plain HTTP
/// first.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000; includeSubDomains";

pub fn router(state: AppState) -> Router {
    let api = crate::routes::router();
    // Unknown API paths must stay JSON errors; every other path belongs to the web app,
    // whose client-side router needs index.html for deep links and reloads.
    let web = crate::web::router(state.clone());
    let hsts = state.config().sends_hsts().then(|| HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
    Router::new()
        .merge(api)
        .route("/api/{*rest}", any(|| async { AppError::NotFound("route") }))
        // A known path with the wrong method would otherwise get axum's empty 405 body
        // instead of the API's one error shape; axum still adds the Allow header. Must
        // follow every route: it only reaches routes added before it.
        // Metrics live on their own listener (`metrics_bind`); here the path is
        // refused outright rather than answered by the web app.
        .route("/metrics", any(|| async { AppError::NotFound("route") }))
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        // Latency by route template: only matched routes carry one.
        .route_layer(middleware::from_fn(crate::metrics::track_latency))
        .fallback_service(web)
        .layer(middleware::from_fn(csrf_guard))
        .layer(middleware::from_fn_with_state(state.clone(), client_address_scope))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        // API answers and anything the web app does not mark cacheable are never stored.
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        // `None` adds no header: plain HTTP without `hsts = true`.
        .layer(SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, hsts))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A bound, running server; tests start one on port 0.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when `metrics_bind` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    /// Ends once the server has stopped after SIGTERM or SIGINT: in-flight requests
    /// finished (or `shutdown_grace_seconds` ran out) and the database pool closed.
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Resolves once `stop` has turned true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    // Before anything else, so a bad certificate stops the start before migrations run.
    let tls = match (&config.tls_cert_path, &config.tls_key_path) {
        (Some(cert), Some(key)) => Some(crate::tls::load(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let mut config = config;
    if config.public_url.is_none() {
        // Issuers must be stable URLs; the bound address (port 0 resolved) is only
        // right for development on one machine.
        let scheme = if config.serves_tls() { "https" } else { "http" };
        tracing::warn!("public_url is not set; OpenID Connect issuers use {scheme}://{addr}");
        config.public_url = Some(format!("{scheme}://{addr}"));
    }
    let state = build_state(config, clock).await?;
    spawn_housekeeping(state.clone());
    spawn_limit_sweep(state.clone());
    match state.db().backend {
        crate::db::Backend::Postgres => {
            crate::changes::spawn_listener(state.clone(), state.config().database_url.clone());
        }
        crate::db::Backend::Sqlite => crate::changes::spawn_subject_poll(state.clone()),
    }
    // The client address reaches the handlers (rate limits, audit) either way.
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let grace = Duration::from_secs(state.config().shutdown_grace_seconds);
    let db = state.db().clone();
    // One signal stops every listener.
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(grace_seconds = grace.as_secs(), "stopping: no new connections, finishing requests");
        let _ = stop.send(true);
    });
    let metrics_addr = match state.config().metrics_bind {
        Some(bind) => Some(crate::metrics::serve(bind, state.clone(), stopped(stop_rx.clone())).await?),
        None => None,
    };
    let handle = match tls {
        None => {
            let on_stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                // axum stops accepting at once and lets open requests finish; the bound
                // keeps one stuck client from holding the process forever.
                let serve = axum::serve(listener, app).with_graceful_shutdown(on_stop).into_future();
                tokio::pin!(serve);
                tokio::select! {
                    result = &mut serve => result?,
                    () = stopped(stop_rx) => {
                        if tokio::time::timeout(grace, &mut serve).await.is_err() {
                            tracing::warn!("requests still open after the grace period; stopping anyway");
                        }
                    }
                }
                db.close().await;
                Ok(())
            })
        }
        Some(tls) => {
            let server = axum_server::from_tcp_rustls(listener.into_std()?, tls)?;
            let shutdown = axum_server::Handle::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                stopped(stop_rx).await;
                // axum-server bounds the wait itself, then drops what is still open.
                trigger.graceful_shutdown(Some(grace));
            });
            tokio::spawn(async move {
                server.handle(shutdown).serve(app).await?;
                db.close().await;
                Ok(())
            })
        }
    };
    Ok(Running { addr, metrics_addr, state, handle })
}

pub async fn start_default(config: Config) -> anyhow::Result<Running> {
    start(config, Arc::new(SystemClock)).await
}

/// Runs housekeeping every `housekeeping_interval_seconds`. The first run waits one
/// interval: nodes restarted together do not all start with the same work, and a test's
/// own runs never race a background one.
fn spawn_housekeeping(state: AppState) {
    tokio::spawn(async move {
        let period = Duration::from_secs(state.config().housekeeping_interval_seconds.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match state.housekeep().await {
                Ok(Outcome::Ran(report)) if report.total() > 0 => {
                    tracing::info!(?report, "housekeeping deleted expired rows")
                }
                Ok(Outcome::Ran(_)) => {}
                Ok(Outcome::Skipped) => tracing::debug!("housekeeping skipped: another node holds the lock"),
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; retrying at the next interval"),
            }
            // Only the current hour is read; a day is kept for whoever looks by hand.
            let day_ago = state.now() - 24 * db::messages::HOUR_MS;
            if let Err(e) = state.db().write(move |w| async move { db::messages::purge(&w, day_ago).await }).await {
                tracing::warn!(error = %e, "purging old message counts failed");
            }
        }
    });
}

/// Drops the request-rate limits' keys that owe nothing, every
/// [`crate::ratelimit::SWEEP_EVERY`].
fn spawn_limit_sweep(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::ratelimit::SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            state.limits().forget_settled(state.now());
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
