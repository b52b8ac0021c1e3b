//! The OpenID Connect provider: one issuer per scope (the host at `public_url`, each
//! tenant at `{public_url}/t/{tenant name}`), discovery and JWKS per issuer, the
//! authorization, token, userinfo and end-session endpoints, the admin API of
//! applications and the account API of grants.
//!
//! An authorization request is one more entry into the sign-in machine (`signin`):
//! this module never creates a session and never checks a password or a factor. It
//! reuses a session that meets the rule the policy crate resolves
//! (`twofold_policy::authorization::decide`); otherwise it parks the
//! request behind an opaque handle and sends the browser to the web app
//! (`/sign-in?request=<handle>`), which signs in or steps up through the machine and
//! resumes the request (`POST /api/oidc/requests/{handle}`).
//!
//! Never: redirect anywhere but an exact registered URI, answer a client of one scope
//! with a user of another, or log a code, token, secret or key.

pub mod apps;
pub mod authorize;
pub mod code;
pub mod keys;
pub mod token;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::app::AppState;
use crate::auth::Authenticated;
use crate::db::HOST_SCOPE;
use crate::error::{AppError, AppResult};

/// Scopes an application may be allowed.
pub const SCOPES: [&str; 5] = ["openid", "profile", "email", "phone", "offline_access"];
/// Lifetime of an authorization code.
pub const CODE_LIFETIME_MS: i64 = 60_000;
/// How long a parked authorization request waits for the sign-in.
pub const REQUEST_LIFETIME_MS: i64 = 15 * 60_000;

/// The issuer a request is addressed to: the host, or one tenant by name.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub scope_key: String,
    pub tenant_name: Option<String>,
    /// The issuer identifier, exactly as in tokens and discovery.
    pub url: String,
}

impl Issuer {
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn host(state: &AppState) -> Self {
        Issuer { scope_key: HOST_SCOPE.to_owned(), tenant_name: None, url: state.config().public_base() }
    }

    /// The issuer of the scope `scope_key`.
    pub async fn of_scope(state: &AppState, scope_key: &str) -> AppResult<Self> {
        if scope_key == HOST_SCOPE {
            return Ok(Self::host(state));
        }
        let tenant = state.db().tenant(scope_key).await?.ok_or(AppError::NotFound("tenant"))?;
        Ok(Self::tenant(state, tenant.id, tenant.name))
    }

    fn tenant(state: &AppState, id: String, name: String) -> Self {
        let url = format!("{}/t/{name}", state.config().public_base());
        Issuer { scope_key: id, tenant_name: Some(name), url }
    }
}

/// Routes under `/t/{tenant}/...` name the tenant's issuer; all others the host's. An
/// unknown tenant is a 404 in the protocol's error shape.
impl FromRequestParts<AppState> for Issuer {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let params = axum::extract::Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|p| p.0)
            .unwrap_or_default();
        let Some(name) = params.get("tenant") else {
            return Ok(Issuer::host(state));
        };
        match state.cache().tenant_by_name(state.db(), name).await? {
            Some(t) => Ok(Issuer::tenant(state, t.id.clone(), t.name.clone())),
            None => Err(OAuthError::new(StatusCode::NOT_FOUND, "invalid_request", "no such issuer")),
        }
    }
}

/// The session of the browser, if it has a valid one. Other failures (the database
/// being down) still fail the request.
#[derive(Debug)]
pub struct MaybeSession(pub Option<Authenticated>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match Authenticated::from_request_parts(parts, state).await {
            Ok(who) => Ok(MaybeSession(Some(who))),
            Err(AppError::Unauthenticated) => Ok(MaybeSession(None)),
            Err(e) => Err(e),
        }
    }
}

/// An error of the protocol endpoints, in OAuth 2.0's shape
/// (`{"error", "error_description"}`), which relying parties parse.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// `WWW-Authenticate` for 401 answers.
    pub challenge: Option<String>,
    retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError { status, error, description: description.into(), challenge: None, retry_after: None }
    }

    pub fn bad(error: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::bad("invalid_grant", description)
    }

    pub fn invalid_client(basic: bool) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
        if basic {
            e.challenge = Some("Basic realm=\"twofold\"".to_owned());
        }
        e
    }
}

impl From<AppError> for OAuthError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::RateLimited { retry_after_ms } => OAuthError {
                status: StatusCode::TOO_MANY_REQUESTS,
                error: "slow_down",
                description: "too many requests; wait before trying again".to_owned(),
                challenge: None,
                retry_after: Some(u64::try_from((retry_after_ms + 999) / 1000).unwrap_or(1).max(1)),
            },
            AppError::Unavailable(inner) => {
                tracing::warn!(error = %inner, "database unavailable");
                OAuthError::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again shortly")
            }
            AppError::NotFound(what) => {
                OAuthError::new(StatusCode::NOT_FOUND, "invalid_request", format!("{what} not found"))
            }
            other => {
                tracing::error!(error = ?other, "internal error at an OpenID Connect endpoint");
                OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
            }
        }
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        AppError::from(e).into()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(secs) = self.retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, secs);
        }
        resp
    }
}

pub type OAuthResult<T> = Result<T, OAuthError>;

/// Every route of the provider.
pub fn routes() -> Router<AppState> {
    // The endpoints an application's own script calls (a single-page application, a
    // public client with PKCE) answer any origin. None of them reads a cookie: the
    // caller proves itself with a code and verifier, a secret or a bearer token, and
    // credentialed requests are not allowed, so another site gains nothing it could not
    // do from a server. The endpoints a browser navigates to (authorize, logout), and
    // the web app's own API, grant no cross-origin access at all.
    // OPTIONS is routed explicitly: the app's method-not-allowed fallback, set after
    // this layer, would otherwise answer a preflight before the layer sees it.
    let preflight = || async { StatusCode::NO_CONTENT };
    let scripted = Router::new()
        .route("/.well-known/openid-configuration", get(discovery).options(preflight))
        .route("/oauth2/jwks", get(jwks).options(preflight))
        .route("/oauth2/token", axum::routing::post(token::token).options(preflight))
        .route("/oauth2/userinfo", get(token::userinfo).post(token::userinfo).options(preflight))
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::any())
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER])
                .max_age(std::time::Duration::from_secs(3600)),
        );
    let protocol = Router::new()
        .merge(scripted)
        .route("/oauth2/authorize", get(authorize::authorize))
        .route("/oauth2/logout", get(token::end_session));
    Router::new()
        .merge(protocol.clone())
        .nest("/t/{tenant}", protocol)
        .merge(authorize::api_routes())
        .merge(apps::routes())
}

/// Answers that may be cached briefly: keys are published a day before use, so an hour
/// of caching never hides a key that signs.
fn cacheable(resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    resp
}

/// OpenID Provider Metadata (Discovery 1.0) of the issuer.
async fn discovery(State(_state): State<AppState>, issuer: Issuer) -> Response {
    let doc = json!({
        "issuer": issuer.url,
        "authorization_endpoint": issuer.endpoint("/oauth2/authorize"),
        "token_endpoint": issuer.endpoint("/oauth2/token"),
        "userinfo_endpoint": issuer.endpoint("/oauth2/userinfo"),
        "jwks_uri": issuer.endpoint("/oauth2/jwks"),
        "end_session_endpoint": issuer.endpoint("/oauth2/logout"),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": twofold_policy::authorization::ACR_VALUES,
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp", "at_hash",
            "preferred_username", "email", "email_verified", "phone_number", "phone_number_verified"
        ],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    });
    cacheable(axum::Json(doc))
}

async fn jwks(State(state): State<AppState>, _issuer: Issuer) -> OAuthResult<Response> {
    let set = state.oidc_keys().jwks(&state).await?;
    Ok(cacheable(axum::Json(set)))
}

/// Space-separated scopes as a list, in the order of [`SCOPES`], without repeats.
pub fn split_scopes(s: &str) -> Vec<String> {
    let given: Vec<&str> = s.split(' ').filter(|x| !x.is_empty()).collect();
    SCOPES.iter().filter(|k| given.contains(k)).map(|k| (*k).to_owned()).collect()
}

pub fn join_scopes(scopes: &[String]) -> String {
    scopes.join(" ")
}
