//! The authorization endpoint and the API the web app resumes a parked request with.
//!
//! Order matters: the client and its redirect URI are checked first and failures there
//! are answered here, never redirected (no open redirect); every later failure goes to
//! the registered redirect URI with `state` and `iss` (RFC 9207).
//!
//! The web app's hook: a request that needs the browser (no session, a weaker or older
//! one than the rule asks, consent) is parked, and the browser goes to
//! `{public_url}/sign-in?request=<handle>`. The web app reads what is needed with
//! `GET /api/oidc/requests/{handle}`, signs in (`/api/auth/sign-in`, no tenant field:
//! the request names the tenant) or steps up (`/api/auth/step-up`) through the sign-in
//! machine, then `POST /api/oidc/requests/{handle}` answers where the browser goes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use twofold_policy::authorization::{
    self, Authorization, AuthorizationInput, AuthorizationRequest, SessionFacts, Verdict,
};
use twofold_policy::wire::{
    ApplicationAccess, AuthorizationProgress, AuthorizationStep, ClientType, ErrorBody, ResumeAuthorization,
    SecondFactorMethod,
};
use twofold_policy::{ApplicationRule, EffectivePolicy, Strength};

use super::code::Code;
use super::{Issuer, MaybeSession, OAuthError, OAuthResult};
use crate::app::AppState;
use crate::auth::{self, Authenticated};
use crate::db;
use crate::db::oidc::{self as odb, ApplicationRow, RequestRow};
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Path};

pub fn api_routes() -> Router<AppState> {
    Router::new().route("/api/oidc/requests/{handle}", get(request_state).post(resume))
}

/// The validated parameters of an authorization request, kept while it is parked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub prompt_consent: bool,
    pub max_age: Option<i64>,
    pub acr_values: Vec<String>,
    pub login_hint: Option<String>,
}

/// The application of `client_id`, if it belongs to the issuer's scope: a client of
/// one scope is unknown to every other issuer.
pub async fn client_of(state: &AppState, issuer: &Issuer, client_id: &str) -> AppResult<Option<Arc<ApplicationRow>>> {
    if uuid::Uuid::parse_str(client_id).is_err() {
        return Ok(None);
    }
    let app = state.cache().application(state.db(), client_id).await?;
    Ok(app.filter(|a| a.scope_key == issuer.scope_key))
}

pub fn uris(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Where an error of a validated request goes: the registered redirect URI.
#[derive(Debug, Clone)]
struct Reply<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
    iss: &'a str,
}

impl Reply<'_> {
    fn url(&self, pairs: &[(&str, &str)]) -> String {
        // The redirect URI was matched exactly against a registered absolute URL, so it
        // parses; the fallback only keeps this total.
        let Ok(mut url) = url::Url::parse(self.redirect_uri) else {
            return self.redirect_uri.to_owned();
        };
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
            if let Some(s) = self.state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", self.iss);
        }
        url.into()
    }

    /// [`Reply::url`] with a code, which is URL-safe as sealed ([`crate::secrets::Keys::seal`]:
    /// hex, a dot, base64url) and goes in as it is: form-encoding its several hundred
    /// random characters byte by byte was 9 % of the server's work on a request that a
    /// session already satisfies.
    fn code_url(&self, code: &str) -> String {
        debug_assert!(code.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
        // A registered redirect URI is in normal form and has no fragment
        // (`apps::check_uri`), so the pairs can be appended to its text; one
        // without a path gets the `/` that the URL parser would add.
        if self.redirect_uri.contains('#') {
            return self.url(&[("code", code)]);
        }
        let bare_origin = self.redirect_uri.split_once("://").is_some_and(|(_, rest)| !rest.contains('/'));
        let mut out = String::with_capacity(self.redirect_uri.len() + code.len() + 160);
        out.push_str(self.redirect_uri);
        if bare_origin {
            out.push('/');
        }
        out.push(if self.redirect_uri.contains('?') { '&' } else { '?' });
        out.push_str("code=");
        out.push_str(code);
        if let Some(s) = self.state {
            out.push_str("&state=");
            out.extend(url::form_urlencoded::byte_serialize(s.as_bytes()));
        }
        out.push_str("&iss=");
        out.extend(url::form_urlencoded::byte_serialize(self.iss.as_bytes()));
        out
    }

    fn error(&self, error: &str, description: &str) -> String {
        self.url(&[("error", error), ("error_description", description)])
    }
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => OAuthError::bad("invalid_request", "the redirect URI cannot be sent").into_response(),
    }
}

/// `GET {issuer}/oauth2/authorize`: the code flow.
pub async fn authorize(
    State(state): State<AppState>,
    issuer: Issuer,
    MaybeSession(session): MaybeSession,
    query: axum::extract::RawQuery,
) -> OAuthResult<Response> {
    let pairs = query_pairs(query.0.as_deref().unwrap_or(""))?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    // 1. The client and the redirect URI: failures are answered here, never redirected.
    let client_id = get("client_id").ok_or_else(|| OAuthError::bad("invalid_request", "client_id is missing"))?;
    let app = client_of(&state, &issuer, &client_id)
        .await?
        .ok_or_else(|| OAuthError::bad("invalid_client", "unknown client for this issuer"))?;
    let redirect_uri =
        get("redirect_uri").ok_or_else(|| OAuthError::bad("invalid_request", "redirect_uri is missing"))?;
    if !uris(&app.redirect_uris).contains(&redirect_uri) {
        audit_refusal(&state, &app, None, "redirect_uri_mismatch").await?;
        return Err(OAuthError::bad("invalid_request", "redirect_uri is not registered for this client"));
    }
    let req_state = get("state");
    let reply = Reply { redirect_uri: &redirect_uri, state: req_state.as_deref(), iss: &issuer.url };
    // 2. Everything else is answered at the client's redirect URI.
    match parse_params(&app, &pairs, &client_id, &redirect_uri) {
        Ok(params) => {
            let outcome = decide(&state, &issuer, &app, &params, session.as_ref(), state.now(), None, true).await?;
            Ok(respond_to_browser(&state, &app, &params, outcome, &reply).await?)
        }
        Err((error, description)) => {
            audit_refusal(&state, &app, None, error).await?;
            Ok(see_other(&reply.error(error, &description)))
        }
    }
}

/// The query of an authorization request, every parameter at most once (RFC 6749
/// section 3.1).
pub fn query_pairs(raw: &str) -> OAuthResult<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
    // A request has a handful of parameters: sorted names beat hashing them.
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if let Some(k) = names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0]) {
        return Err(OAuthError::bad("invalid_request", format!("parameter {k} is repeated")));
    }
    Ok(pairs)
}

/// The parameters after the client and its redirect URI were checked; an error is a
/// protocol error code and its description, for the redirect URI.
pub fn parse_params(
    app: &ApplicationRow,
    pairs: &[(String, String)],
    client_id: &str,
    redirect_uri: &str,
) -> Result<Params, (&'static str, String)> {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    if get("request").is_some() {
        return Err(("request_not_supported", "request objects are not supported".to_owned()));
    }
    if get("request_uri").is_some() {
        return Err(("request_uri_not_supported", "request_uri is not supported".to_owned()));
    }
    match get("response_type").as_deref() {
        Some("code") => {}
        Some(_) => return Err(("unsupported_response_type", "only the code flow (response_type=code)".to_owned())),
        None => return Err(("invalid_request", "response_type is missing".to_owned())),
    }
    if get("response_mode").is_some_and(|m| m != "query") {
        return Err(("invalid_request", "only response_mode=query is supported".to_owned()));
    }
    let raw_scope = get("scope").unwrap_or_default();
    let allowed = super::split_scopes(&app.allowed_scopes);
    let mut scopes = Vec::new();
    for s in raw_scope.split(' ').filter(|s| !s.is_empty()) {
        if !allowed.iter().any(|a| a == s) {
            return Err(("invalid_scope", format!("scope {s} is not allowed for this client")));
        }
        if !scopes.iter().any(|x: &String| x == s) {
            scopes.push(s.to_owned());
        }
    }
    if !scopes.iter().any(|s| s == "openid") {
        return Err(("invalid_scope", "the openid scope is required".to_owned()));
    }
    let scopes = super::split_scopes(&scopes.join(" "));
    let code_challenge = get("code_challenge");
    match (code_challenge.as_deref(), get("code_challenge_method").as_deref()) {
        (Some(_), Some("S256")) => {}
        // RFC 7636 makes an absent method mean `plain`, which offers no protection
        // against a stolen code: refused, as is plain itself.
        (Some(_), _) => return Err(("invalid_request", "code_challenge_method must be S256".to_owned())),
        (None, Some(_)) => return Err(("invalid_request", "code_challenge_method without code_challenge".to_owned())),
        (None, None) if app.client_type == ClientType::Public.as_str() => {
            return Err(("invalid_request", "public clients must use PKCE (code_challenge, S256)".to_owned()));
        }
        (None, None) => {}
    }
    if let Some(c) = &code_challenge
        && (c.len() != 43 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)".to_owned()));
    }
    let prompts: Vec<String> =
        get("prompt").unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    for p in &prompts {
        if !matches!(p.as_str(), "none" | "login" | "consent") {
            return Err(("invalid_request", format!("prompt {p} is not supported")));
        }
    }
    let prompt_none = prompts.iter().any(|p| p == "none");
    if prompt_none && prompts.len() > 1 {
        return Err(("invalid_request", "prompt=none cannot be combined with other values".to_owned()));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => return Err(("invalid_request", "max_age must be a non-negative integer".to_owned())),
        },
    };
    let bounded = |v: Option<String>, max: usize| v.filter(|s| s.len() <= max);
    if get("state").is_some_and(|s| s.len() > 1024) || get("nonce").is_some_and(|s| s.len() > 512) {
        return Err(("invalid_request", "state or nonce is too long".to_owned()));
    }
    Ok(Params {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state: get("state"),
        nonce: get("nonce"),
        code_challenge,
        prompt_none,
        prompt_login: prompts.iter().any(|p| p == "login"),
        prompt_consent: prompts.iter().any(|p| p == "consent"),
        max_age,
        acr_values: get("acr_values")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        login_hint: bounded(get("login_hint"), 256),
    })
}

/// Where a request stands for a given browser.
#[derive(Debug)]
enum Outcome {
    /// A code was issued (or the user refused): the URL to send the browser to.
    Redirect(String),
    /// The browser must do something first.
    Needs { step: AuthorizationStep, min_strength: Option<Strength> },
    /// The scope cannot meet the rule.
    Unmet(String),
}

/// The policy of the application's scope for a sign-in to it, before anyone is known:
/// the scope's settings (or ceiling) with the switch off and no groups, and the
/// application's rule. Enough to tell whether the scope can meet the request at all.
async fn scope_policy(state: &AppState, app: &ApplicationRow, rule: &ApplicationRule) -> AppResult<EffectivePolicy> {
    let loaded = crate::population::LoadedScope::load(state, &app.scope_key).await?;
    Ok(crate::population::resolve_with(loaded.scope(), false, &[], Some(rule)))
}

/// What an authorization request to `application` (no `acr_values`, `max_age` or
/// `prompt`) would ask of the session a sign-in of `user` makes now, for an admin's
/// what-if. `policy` is the user's, resolved with the application's rule: where it
/// requires a second factor the sign-in proves the strongest one it offers.
pub fn access_after_sign_in(
    state: &AppState,
    user: &crate::db::UserRow,
    policy: &EffectivePolicy,
    application: &ApplicationRule,
) -> ApplicationAccess {
    let strongest_offered = crate::signin::strongest_offered(state, user, policy);
    let proved = strongest_offered.filter(|_| policy.required);
    let decision = decide_after_sign_in(policy, application, proved, strongest_offered, state.now());
    ApplicationAccess {
        verdict: decision.verdict,
        min_strength: decision.second_factor,
        trace: decision.trace(application),
    }
}

/// The decision for a session made by a sign-in at `now` that proved `proved` (a second
/// factor of that strength, or the password alone), of a user whose strongest factor
/// the scope offers is `strongest_offered`. The what-if and the impact preview both ask
/// this; `policy` is the user's, resolved with `application`'s rule.
pub fn decide_after_sign_in(
    policy: &EffectivePolicy,
    application: &ApplicationRule,
    proved: Option<Strength>,
    strongest_offered: Option<Strength>,
    now: i64,
) -> authorization::Authorization {
    let facts =
        SessionFacts { signed_in_at: now, auth_time: now, second_factor: proved.map(|s| (s, now)), strongest_offered };
    authorization::decide(&AuthorizationInput {
        policy,
        application,
        request: &AuthorizationRequest::default(),
        session: Some(&facts),
        request_at: now,
        now,
    })
}

/// What a session proved: when it last authenticated, and its second factor (when and
/// how strong), for `max_age`, `auth_time`, `acr` and `amr`.
#[derive(Debug, Clone)]
pub struct Proof {
    pub auth_time_ms: i64,
    pub second_factor: Option<(i64, SecondFactorMethod)>,
    /// Whether the session began with a password (a passwordless passkey sign-in did not).
    pub password: bool,
}

impl Proof {
    pub fn of(who: &Authenticated) -> Self {
        let second_factor =
            who.second_factor_at.zip(who.second_factor_method.as_deref().and_then(SecondFactorMethod::parse));
        let auth_time_ms = [Some(who.session_created_at), who.reauthenticated_at, who.second_factor_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(who.session_created_at);
        Proof { auth_time_ms, second_factor, password: who.auth_methods.starts_with("pwd") }
    }

    pub fn strength(&self) -> Option<Strength> {
        self.second_factor.map(|(_, m)| m.strength())
    }

    /// RFC 8176 authentication method references.
    pub fn amr(&self) -> Vec<&'static str> {
        let mut amr = Vec::with_capacity(3);
        if self.password {
            amr.push("pwd");
        }
        if let Some((_, m)) = self.second_factor {
            amr.push(match m {
                SecondFactorMethod::Sms => "sms",
                SecondFactorMethod::Authenticator | SecondFactorMethod::Email | SecondFactorMethod::RecoveryCode => {
                    "otp"
                }
                // Proof of possession of a key held by an authenticator (RFC 8176).
                SecondFactorMethod::Passkey => "hwk",
            });
            amr.push("mfa");
        }
        amr
    }
}

/// What the rule asks of this browser's session, or a code when it is met. `issue`
/// false only reports (the web app's look at a parked request).
#[allow(clippy::too_many_arguments)]
async fn decide(
    state: &AppState,
    issuer: &Issuer,
    app: &ApplicationRow,
    params: &Params,
    session: Option<&Authenticated>,
    request_created_at: i64,
    consent: Option<bool>,
    issue: bool,
) -> AppResult<Outcome> {
    let request = AuthorizationRequest {
        acr_values: params.acr_values.clone(),
        max_age_seconds: params.max_age,
        prompt_login: params.prompt_login,
    };
    let rule = super::apps::application_rule(app);
    // Tenant isolation: only a session of the application's own scope is ever used.
    let who = session.filter(|w| w.user.scope_key == app.scope_key);
    let (policy, facts, proof) = match who {
        None => (scope_policy(state, app, &rule).await?, None, None),
        Some(who) => {
            let policy = crate::signin::resolved_policy_for(state, &who.user, Some(rule.clone())).await?.policy;
            let proof = Proof::of(who);
            let strongest_offered = crate::signin::strongest_offered(state, &who.user, &policy);
            let facts = SessionFacts {
                signed_in_at: who.session_created_at,
                auth_time: proof.auth_time_ms,
                second_factor: proof.second_factor.map(|(at, m)| (m.strength(), at)),
                strongest_offered,
            };
            (policy, Some(facts), Some(proof))
        }
    };
    let decision = authorization::decide(&AuthorizationInput {
        policy: &policy,
        application: &rule,
        request: &request,
        session: facts.as_ref(),
        request_at: request_created_at,
        now: state.now(),
    });
    let needs = |step| Ok(Outcome::Needs { step, min_strength: decision.second_factor });
    let (who, proof) = match (decision.verdict, who, proof) {
        (Verdict::Unmet, _, _) => {
            let why = match decision.reason {
                authorization::Reason::Unmet(u) => u.description(),
                _ => "the scope cannot meet this request".to_owned(),
            };
            return Ok(Outcome::Unmet(why));
        }
        (Verdict::SignIn, _, _) => return needs(AuthorizationStep::SignIn),
        (Verdict::StepUp, _, _) => return needs(AuthorizationStep::StepUp),
        (Verdict::Enroll, _, _) => return needs(AuthorizationStep::Enroll),
        (Verdict::Reuse, Some(who), Some(proof)) => (who, proof),
        // Reuse is only ever decided for a session.
        (Verdict::Reuse, _, _) => return needs(AuthorizationStep::SignIn),
    };
    let first_party = app.first_party != 0;
    let grant = state.cache().grant(state.db(), &who.user.id, &app.id).await?;
    let covered =
        grant.as_ref().is_some_and(|g| params.scopes.iter().all(|s| g.scopes.split(' ').any(|granted| granted == s)));
    let reply = Reply { redirect_uri: &params.redirect_uri, state: params.state.as_deref(), iss: &issuer.url };
    match consent {
        Some(false) => {
            if issue {
                audit_refusal(state, app, Some(&who.user.id), "consent_refused").await?;
            }
            return Ok(Outcome::Redirect(reply.error("access_denied", "the user refused")));
        }
        Some(true) => {}
        None if first_party || (covered && !params.prompt_consent) => {}
        None => return needs(AuthorizationStep::Consent),
    }
    if !issue {
        return Ok(Outcome::Needs { step: AuthorizationStep::Redirect, min_strength: decision.second_factor });
    }
    // A grant that already covers the request and was touched within the last minute
    // needs no write of its own: the code is sealed under it as it is.
    let settled =
        grant.filter(|g| covered && state.now().saturating_sub(g.last_used_at) < GRANT_TOUCH_MS).map(|g| g.id.clone());
    let code = issue_code(state, app, params, who, &proof, &decision, settled).await?;
    Ok(Outcome::Redirect(reply.code_url(&code)))
}

/// How stale a grant's `last_used_at` may get: a grant used again within this long is
/// not written again, which saves each repeated sign-in to an application one
/// statement on the database's single writer. The account page's "last used" is
/// accurate to this.
const GRANT_TOUCH_MS: i64 = 60_000;

/// A code for the session's user, sealed with what the session proved (see
/// [`super::code`]), under the grant: `settled`, a grant read just before that covers
/// the request and was recently touched, is used as it is, so the request writes
/// nothing; otherwise the grant is recorded (consent given now, remembered, or a
/// first-party application) with its audit event. A grant revoked after it was read is
/// caught when the code is exchanged: the spent code's row refers to it.
#[allow(clippy::too_many_arguments)]
async fn issue_code(
    state: &AppState,
    app: &ApplicationRow,
    params: &Params,
    who: &Authenticated,
    proof: &Proof,
    decision: &Authorization,
    settled: Option<String>,
) -> AppResult<String> {
    let now = state.now();
    let sid = match &who.sid {
        Some(sid) => sid.clone(),
        None => {
            let fresh = auth::new_token();
            {
                let hash = who.token_hash.clone();
                state
                    .db()
                    .write_one(move |c| Box::pin(async move { db::ensure_session_sid(c, &hash, &fresh).await }))
                    .await?
            }
        }
    };
    let scopes = super::join_scopes(&params.scopes);
    let amr = proof.amr().join(" ");
    let acr = authorization::acr_of(proof.strength());
    let grant_id = match settled {
        Some(id) => id,
        None => {
            let after = serde_json::json!({
                "scopes": scopes, "acr": acr, "amr": amr,
                "rule": {
                    "second_factor": decision.second_factor.map(Strength::as_str),
                    "max_age": decision.max_age_seconds,
                },
            });
            record_grant(state, app, &who.user.id, &params.scopes, after).await?
        }
    };
    let code = Code {
        id: Code::new_id(),
        application_id: app.id.clone(),
        grant_id,
        user_id: who.user.id.clone(),
        redirect_uri: params.redirect_uri.clone(),
        scopes,
        code_challenge: params.code_challenge.clone(),
        nonce: params.nonce.clone(),
        sid,
        auth_time: proof.auth_time_ms,
        amr,
        acr: acr.to_owned(),
        security_stamp: who.user.security_stamp.clone(),
        created_at: now,
        expires_at: now + super::CODE_LIFETIME_MS,
    };
    Ok(code.seal(state.keys()))
}

/// Records `user_id`'s grant to `app` (widened by `requested`) with the audit event of
/// the authorization (`after`), and returns its id.
async fn record_grant(
    state: &AppState,
    app: &ApplicationRow,
    user_id: &str,
    requested: &[String],
    after: serde_json::Value,
) -> AppResult<String> {
    let now = state.now();
    let requested = requested.to_vec();
    let (scope_key, app_id, user_id) = (app.scope_key.clone(), app.id.clone(), user_id.to_owned());
    let store = state.db().clone();
    let job = async move {
        let mut tx = store.begin().await?;
        let granted = match odb::find_grant(&mut tx, &user_id, &app_id).await? {
            Some(g) => {
                let mut all = super::split_scopes(&g.scopes);
                all.extend(requested.iter().cloned());
                super::join_scopes(&super::split_scopes(&all.join(" ")))
            }
            None => super::join_scopes(&requested),
        };
        let grant_id = odb::upsert_grant(&mut tx, &user_id, &app_id, &granted, now).await?;
        let target = format!("application:{app_id}");
        let event = db::NewAudit {
            at: now,
            actor_user_id: Some(&user_id),
            scope_key: &scope_key,
            action: "oidc.authorized",
            target: &target,
            before: None,
            after: Some(after),
        };
        db::insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(grant_id)
    };
    Ok(state.db().on_writer(job).await??)
}

/// Records a refused authorization request (the reason is a protocol error code).
async fn audit_refusal(state: &AppState, app: &ApplicationRow, user_id: Option<&str>, reason: &str) -> AppResult<()> {
    state
        .db()
        .insert_audit_alone(&db::NewAudit {
            at: state.now(),
            actor_user_id: user_id,
            scope_key: &app.scope_key,
            action: "oidc.authorization_refused",
            target: &format!("application:{}", app.id),
            before: None,
            after: Some(serde_json::json!({ "reason": reason })),
        })
        .await?;
    Ok(())
}

/// Answers the browser at the authorization endpoint: the client (code or error), or
/// the web app's sign-in with the parked request's handle.
async fn respond_to_browser(
    state: &AppState,
    app: &ApplicationRow,
    params: &Params,
    outcome: Outcome,
    reply: &Reply<'_>,
) -> AppResult<Response> {
    match outcome {
        Outcome::Redirect(url) => Ok(see_other(&url)),
        Outcome::Unmet(why) => {
            audit_refusal(state, app, None, "unmet_authentication_requirements").await?;
            Ok(see_other(&reply.error("unmet_authentication_requirements", &why)))
        }
        Outcome::Needs { step, .. } if params.prompt_none => {
            let error = match step {
                AuthorizationStep::SignIn => "login_required",
                AuthorizationStep::Consent => "consent_required",
                _ => "interaction_required",
            };
            audit_refusal(state, app, None, error).await?;
            Ok(see_other(&reply.error(error, "the user must interact with Twofold first")))
        }
        Outcome::Needs { .. } => {
            let handle = auth::new_token();
            let now = state.now();
            let parked = RequestRow {
                handle_hash: auth::token_hash(&handle),
                application_id: app.id.clone(),
                params: serde_json::to_string(params).map_err(anyhow::Error::from)?,
                created_at: now,
                expires_at: now + super::REQUEST_LIFETIME_MS,
                completed_at: None,
            };
            state
                .db()
                // An insert, and parked requests are read anew each time: no row a
                // cache keeps.
                .write_one_touching(db::Touches::NothingKept, move |c| {
                    Box::pin(async move { odb::insert_request(c, &parked).await })
                })
                .await?;
            Ok(see_other(&format!("{}/sign-in?request={handle}", state.config().public_base())))
        }
    }
}

/// A parked request by its handle, with its application and issuer.
async fn parked(state: &AppState, handle: &str) -> AppResult<(RequestRow, ApplicationRow, Params, Issuer)> {
    let gone = AppError::NotFound("authorization request");
    let row = odb::find_request(&state.db().pool, &auth::token_hash(handle)).await?.ok_or(gone)?;
    if row.completed_at.is_some() || row.expires_at <= state.now() {
        return Err(AppError::NotFound("authorization request"));
    }
    let app = odb::get_application(&state.db().pool, &row.application_id)
        .await?
        .ok_or(AppError::NotFound("authorization request"))?;
    let params: Params = serde_json::from_str(&row.params).map_err(anyhow::Error::from)?;
    let issuer = Issuer::of_scope(state, &app.scope_key).await?;
    Ok((row, app, params, issuer))
}

fn progress(
    app: &ApplicationRow,
    issuer: &Issuer,
    params: &Params,
    next: AuthorizationStep,
    min_strength: Option<Strength>,
    redirect_to: Option<String>,
) -> AuthorizationProgress {
    AuthorizationProgress {
        next,
        application: app.name.clone(),
        tenant: issuer.tenant_name.clone(),
        scopes: params.scopes.clone(),
        login_hint: params.login_hint.clone(),
        min_strength,
        redirect_to,
    }
}

/// What a parked authorization request needs next from this browser (nothing is
/// issued).
#[utoipa::path(get, path = "/api/oidc/requests/{handle}", tag = "oidc", security(()),
    params(("handle" = String, Path, description = "The `request` parameter the web app's /sign-in received")),
    responses((status = 200, body = AuthorizationProgress),
        (status = 404, description = "Unknown, expired or completed request (`not_found`)", body = ErrorBody)))]
pub async fn request_state(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    Path(handle): Path<String>,
) -> AppResult<Json<AuthorizationProgress>> {
    let (row, app, params, issuer) = parked(&state, &handle).await?;
    let outcome = decide(&state, &issuer, &app, &params, session.as_ref(), row.created_at, None, false).await?;
    Ok(Json(match outcome {
        Outcome::Needs { step, min_strength } => progress(&app, &issuer, &params, step, min_strength, None),
        Outcome::Redirect(_) | Outcome::Unmet(_) => {
            progress(&app, &issuer, &params, AuthorizationStep::Redirect, None, None)
        }
    }))
}

/// Resumes a parked authorization request after a sign-in, step-up or consent: either
/// what is still needed, or where the browser goes now (the application, with a code
/// or an error). A request completes once.
#[utoipa::path(post, path = "/api/oidc/requests/{handle}", tag = "oidc", security(()),
    request_body = ResumeAuthorization,
    params(("handle" = String, Path, description = "The `request` parameter the web app's /sign-in received")),
    responses((status = 200, body = AuthorizationProgress),
        (status = 404, description = "Unknown, expired or completed request (`not_found`)", body = ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    Path(handle): Path<String>,
    Json(body): Json<ResumeAuthorization>,
) -> AppResult<Json<AuthorizationProgress>> {
    let (row, app, params, issuer) = parked(&state, &handle).await?;
    let outcome = decide(&state, &issuer, &app, &params, session.as_ref(), row.created_at, body.consent, true).await?;
    let reply = Reply { redirect_uri: &params.redirect_uri, state: params.state.as_deref(), iss: &issuer.url };
    let url = match outcome {
        Outcome::Needs { step, min_strength } => {
            return Ok(Json(progress(&app, &issuer, &params, step, min_strength, None)));
        }
        Outcome::Unmet(why) => {
            audit_refusal(&state, &app, None, "unmet_authentication_requirements").await?;
            reply.error("unmet_authentication_requirements", &why)
        }
        Outcome::Redirect(url) => url,
    };
    let (handle_hash, now) = (row.handle_hash.clone(), state.now());
    let completed = state
        .db()
        // Parked requests are read anew each time: no row a cache keeps.
        .write_one_touching(db::Touches::NothingKept, move |c| {
            Box::pin(async move { odb::complete_request(c, &handle_hash, now).await })
        })
        .await?;
    if !completed {
        return Err(AppError::NotFound("authorization request"));
    }
    Ok(Json(progress(&app, &issuer, &params, AuthorizationStep::Redirect, None, Some(url))))
}

/// The PKCE check (RFC 7636, S256 only): BASE64URL(SHA256(verifier)) == challenge.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let valid = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    valid && subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_url_is_the_one_the_url_parser_builds() {
        let code = crate::secrets::Keys::from_bytes([1u8; 32]).seal("oidc-authorization-code", b"grant");
        for redirect_uri in ["https://app.example/cb", "https://app.example", "http://127.0.0.1:9/cb?tenant=a%20b"] {
            for state in [None, Some("s"), Some("a b&c=d/é?")] {
                let reply = Reply { redirect_uri, state, iss: "https://id.example/t/acme" };
                assert_eq!(reply.code_url(&code), reply.url(&[("code", &code)]), "{redirect_uri} {state:?}");
            }
        }
    }

    #[test]
    fn pkce_s256_follows_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(!pkce_matches("short", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    }
}
