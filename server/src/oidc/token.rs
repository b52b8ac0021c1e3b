//! The token endpoint (authorization code and refresh token grants), userinfo and
//! RP-initiated logout.
//!
//! Single use is enforced in the database: a code is spent by inserting its row (see
//! [`super::code`]) and a refresh token by a conditional update, and whoever loses
//! that race is treated as a replay. A replayed code revokes the token family its first
//! use started; a reused refresh token revokes its family. Every grant and every
//! refusal is audited.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use twofold_policy::wire::{ClientType, TokenAlg};

use super::authorize::{client_of, pkce_matches, uris};
use super::code::Code;
use super::{Issuer, MaybeSession, OAuthError, OAuthResult};
use crate::app::AppState;
use crate::auth;
use crate::db::oidc::{self as odb, ApplicationRow, FamilyRow, RefreshRow};
use crate::db::{self, UserRow};
use crate::error::{AppError, AppResult};
use crate::extract::ClientAddr;
use crate::oidc::keys::Signer;
use crate::ratelimit::Class;

/// The token endpoint's form, every parameter at most once.
pub fn form_params(body: &[u8]) -> OAuthResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(OAuthError::bad("invalid_request", format!("parameter {k} is repeated")));
        }
    }
    Ok(out)
}

/// Client authentication: `client_secret_basic`, `client_secret_post`, or `none` for a
/// public client (which must then prove the code with PKCE).
async fn authenticate_client(
    state: &AppState,
    issuer: &Issuer,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> OAuthResult<std::sync::Arc<ApplicationRow>> {
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(basic_credentials);
    let (client_id, secret, used_basic) = match basic {
        Some(Some((id, secret))) => {
            if form.contains_key("client_secret") {
                return Err(OAuthError::bad("invalid_request", "use one client authentication method"));
            }
            if form.get("client_id").is_some_and(|f| *f != id) {
                return Err(OAuthError::invalid_client(true));
            }
            (id, Some(secret), true)
        }
        Some(None) => return Err(OAuthError::invalid_client(true)),
        None => {
            let id = form.get("client_id").cloned().ok_or_else(|| OAuthError::invalid_client(false))?;
            (id, form.get("client_secret").cloned(), false)
        }
    };
    state.limits().by_account(Class::Token, &client_id, state.now())?;
    let app = client_of(state, issuer, &client_id).await?;
    let authenticated = match (&app, &secret) {
        (Some(a), Some(secret)) if a.client_type == ClientType::Confidential.as_str() => {
            a.secret_hash.as_deref().is_some_and(|stored| secret_matches(secret, stored))
        }
        (Some(a), None) => a.client_type == ClientType::Public.as_str(),
        _ => false,
    };
    match app {
        Some(a) if authenticated => Ok(a),
        other => {
            if let Some(a) = &other {
                audit(state, a, None, "oidc.token_refused", json!({ "reason": "invalid_client" })).await?;
            }
            Err(OAuthError::invalid_client(used_basic))
        }
    }
}

/// The client id and secret of an `Authorization` header value: `None` when it is not
/// `Basic`, `Some(None)` when it is but does not decode to `id:secret`.
pub fn basic_credentials(value: &str) -> Option<Option<(String, String)>> {
    let b64 = value.strip_prefix("Basic ")?;
    let decoded = STANDARD.decode(b64.trim()).ok().and_then(|d| String::from_utf8(d).ok());
    // RFC 6749 section 2.3.1: both parts are form-urlencoded before joining.
    Some(decoded.and_then(|d| {
        let (id, secret) = d.split_once(':')?;
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8().ok().map(|c| c.into_owned())
        };
        Some((dec(id)?, dec(secret)?))
    }))
}

/// Client secrets are 256 random bits, so a plain SHA-256 suffices (nothing to brute
/// force), and unlike a keyed hash it survives a change of the secret key.
pub fn secret_hash(secret: &str) -> String {
    auth::token_hash(&format!("oidc-client-secret:{secret}"))
}

fn secret_matches(secret: &str, stored: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(secret_hash(secret).as_bytes(), stored.as_bytes()).into()
}

async fn audit(
    state: &AppState,
    app: &ApplicationRow,
    user_id: Option<&str>,
    action: &str,
    after: Value,
) -> AppResult<()> {
    state
        .db()
        .insert_audit_alone(&db::NewAudit {
            at: state.now(),
            actor_user_id: user_id,
            scope_key: &app.scope_key,
            action,
            target: &format!("application:{}", app.id),
            before: None,
            after: Some(after),
        })
        .await?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u32,
    id_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
}

/// `POST {issuer}/oauth2/token`.
pub async fn token(
    State(state): State<AppState>,
    issuer: Issuer,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> OAuthResult<Response> {
    state.limits().by_address(Class::Token, addr, state.now())?;
    let form = form_params(&body)?;
    let app = authenticate_client(&state, &issuer, &headers, &form).await?;
    let answer = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => code_grant(&state, &issuer, &app, &form).await,
        Some("refresh_token") => refresh_grant(&state, &issuer, &app, &form).await,
        Some(_) => Err(OAuthError::bad("unsupported_grant_type", "authorization_code or refresh_token")),
        None => Err(OAuthError::bad("invalid_request", "grant_type is missing")),
    };
    match answer {
        Ok(tokens) => {
            let mut resp = axum::Json(tokens).into_response();
            resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            Ok(resp)
        }
        Err(e) => {
            if e.status.is_client_error() {
                audit(&state, &app, None, "oidc.token_refused", json!({ "reason": e.error, "detail": e.description }))
                    .await?;
            }
            Err(e)
        }
    }
}

async fn code_grant(
    state: &AppState,
    issuer: &Issuer,
    app: &ApplicationRow,
    form: &HashMap<String, String>,
) -> OAuthResult<TokenResponse> {
    let now = state.now();
    let presented = form.get("code").ok_or_else(|| OAuthError::bad("invalid_request", "code is missing"))?;
    let code = Code::open(state.keys(), presented).ok_or_else(|| OAuthError::invalid_grant("unknown code"))?;
    // Bound to the client: another client presenting it learns nothing and spends nothing.
    if code.application_id != app.id {
        return Err(OAuthError::invalid_grant("the code was not issued to this client"));
    }
    let spent_key = code.spent_key();
    // A code presented again after it was spent is a replay whatever else is wrong with
    // the second request: only that is looked up, and only when the request is refused
    // anyway, so an exchange that succeeds reads nothing for it.
    let refuse = async |why: &'static str| -> OAuthResult<TokenResponse> {
        match odb::find_code(&state.db().pool, &spent_key).await? {
            Some(spent) => Err(replayed_code(state, app, &code.user_id, spent.family_id.as_deref()).await?),
            None => Err(OAuthError::invalid_grant(why)),
        }
    };
    if code.expires_at <= now {
        return refuse("the code has expired").await;
    }
    if form.get("redirect_uri") != Some(&code.redirect_uri) {
        return refuse("redirect_uri does not match the authorization request").await;
    }
    match (&code.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if pkce_matches(verifier, challenge) => {}
        (Some(_), _) => return refuse("code_verifier does not match").await,
        // A verifier for a code issued without a challenge: the request was altered
        // on the way (a PKCE downgrade); refused (RFC 9700 section 2.1.1).
        (None, Some(_)) => return refuse("no code_challenge was sent for this code").await,
        (None, None) if app.client_type == ClientType::Public.as_str() => {
            return refuse("public clients must use PKCE").await;
        }
        (None, None) => {}
    }
    let refresh_days = i64::from(state.config().oidc_refresh_token_days);
    // The family takes the code's user and security stamp: the exchange goes ahead only
    // while the user is the code's, in the application's scope, with that stamp.
    let family = FamilyRow {
        id: uuid::Uuid::now_v7().to_string(),
        application_id: app.id.clone(),
        grant_id: code.grant_id.clone(),
        user_id: code.user_id.clone(),
        scopes: code.scopes.clone(),
        sid: code.sid.clone(),
        auth_time: code.auth_time,
        amr: code.amr.clone(),
        acr: code.acr.clone(),
        security_stamp: code.security_stamp.clone(),
        created_at: now,
        expires_at: now + refresh_days * 86_400_000,
        revoked_at: None,
        revoked_reason: None,
    };
    let spent = code.spent(now, &family.id);
    let audit = json!({
        "grant_type": "authorization_code", "family": family.id, "scopes": family.scopes,
        "acr": family.acr, "amr": family.amr, "auth_time": family.auth_time,
    });
    let redeemed = match state.db().backend {
        // On PostgreSQL, where each statement is a round trip: one statement, which
        // reads the user too.
        db::Backend::Postgres => {
            let refresh = refresh_for(app, &family, now);
            let (app, family) = (app.clone(), family.clone());
            let row = refresh.as_ref().map(|(_, row)| row.clone());
            // The code spent, the rest inserted: no row a cache keeps changes.
            let written = state
                .db()
                .write_one_touching(db::Touches::NothingKept, move |c| {
                    Box::pin(async move {
                        let target = format!("application:{}", app.id);
                        let event = issued_event(&app, &family, &target, now, audit);
                        odb::redeem_code(c, &family_user(&app, &family), &spent, &family, row.as_ref(), &event).await
                    })
                })
                .await;
            written.map(|(used, user)| match user {
                Some(user) if user.security_stamp != code.security_stamp => Redeemed::StampChanged,
                Some(user) if used => Redeemed::Tokens(Box::new(user), refresh.map(|(token, _)| token)),
                Some(_) => Redeemed::AlreadyUsed,
                None => Redeemed::NoUser,
            })
        }
        db::Backend::Sqlite => {
            // Reads here cost no round trip; the writer then takes only the writes.
            let user = same_scope_user(state, app, &code.user_id).await?;
            if user.security_stamp != code.security_stamp {
                Ok(Redeemed::StampChanged)
            } else {
                let (store, app, family) = (state.db().clone(), app.clone(), family.clone());
                let job = async move {
                    let mut tx = store.begin().await?;
                    tx.touches(db::Touches::NothingKept);
                    if !odb::spend_code(&mut tx, &spent).await? {
                        return Ok(None);
                    }
                    odb::insert_family(&mut tx, &family).await?;
                    let refresh = refresh_for(&app, &family, now);
                    if let Some((_, row)) = &refresh {
                        odb::insert_refresh(&mut tx, row).await?;
                    }
                    let target = format!("application:{}", app.id);
                    db::insert_audit(&mut tx, &issued_event(&app, &family, &target, now, audit)).await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(Some(refresh.map(|(token, _)| token)))
                };
                state.db().on_writer(job).await.and_then(|done| done).map(|done| match done {
                    Some(refresh) => Redeemed::Tokens(Box::new(user), refresh),
                    None => Redeemed::AlreadyUsed,
                })
            }
        }
    };
    let (user, refresh) = match redeemed {
        Ok(Redeemed::Tokens(user, refresh)) => (*user, refresh),
        Ok(Redeemed::NoUser) => return Err(no_such_user()),
        // A password or factor change since the code was issued ends the session it
        // came from; the code goes with it.
        Ok(Redeemed::StampChanged) => {
            return refuse("the user's security profile changed after the code was issued").await;
        }
        Ok(Redeemed::AlreadyUsed) => return refuse("the code was already used").await,
        // The grant was revoked (or the application deleted) after the code was issued.
        Err(sqlx::Error::Database(e)) if e.kind() == sqlx::error::ErrorKind::ForeignKeyViolation => {
            return Err(OAuthError::invalid_grant("the grant this code was issued under was revoked"));
        }
        Err(e) => return Err(AppError::from(e).into()),
    };
    Ok(tokens(state, issuer, app, &user, &family, code.nonce.as_deref(), refresh).await?)
}

/// Revokes the token family `id` for `reason`, on the writer. Families are read anew
/// for every use, never kept: no row a cache keeps changes.
async fn revoke_family(state: &AppState, id: &str, reason: &'static str) -> AppResult<()> {
    let (id, now) = (id.to_owned(), state.now());
    state
        .db()
        .write_one_touching(db::Touches::NothingKept, move |c| {
            Box::pin(async move { odb::revoke_family(c, &id, reason, now).await })
        })
        .await?;
    Ok(())
}

/// A code used a second time: whatever its first use issued is revoked, since one of
/// the two users of the code is not the client.
async fn replayed_code(
    state: &AppState,
    app: &ApplicationRow,
    user_id: &str,
    family_id: Option<&str>,
) -> AppResult<OAuthError> {
    if let Some(family) = family_id {
        revoke_family(state, family, "code_replay").await?;
    }
    audit(state, app, Some(user_id), "oidc.code_replayed", json!({ "family": family_id })).await?;
    Ok(OAuthError::invalid_grant("the code was already used; the tokens it gave are revoked"))
}

/// What a refresh grant's writes came to.
enum Rotation {
    /// The presented token used and the next one written: the user.
    Rotated(Box<UserRow>),
    /// The presented token was used before: a copy.
    Reused,
    /// The user's security stamp is no longer the family's.
    StampChanged,
}

/// What an exchange of a code came to.
enum Redeemed {
    /// Spent: the user and the refresh token, if the grant gives one.
    Tokens(Box<UserRow>, Option<String>),
    /// Spent before, by this request's code or a replay of it.
    AlreadyUsed,
    /// The user's security stamp is no longer the code's.
    StampChanged,
    /// The code's user is gone, or not in the application's scope.
    NoUser,
}

/// The user of a grant, who must still exist and still belong to the application's
/// scope: a client of one tenant never receives tokens about a user of another.
async fn same_scope_user(state: &AppState, app: &ApplicationRow, user_id: &str) -> OAuthResult<UserRow> {
    match state.db().user(user_id).await.map_err(AppError::from)? {
        Some(u) if u.scope_key == app.scope_key => Ok(u),
        _ => Err(no_such_user()),
    }
}

fn no_such_user() -> OAuthError {
    OAuthError::invalid_grant("the grant's user is not available to this client")
}

/// A new refresh token and its row in `family`, when the grant includes
/// `offline_access`.
fn refresh_for(app: &ApplicationRow, family: &FamilyRow, now: i64) -> Option<(String, RefreshRow)> {
    if !super::split_scopes(&family.scopes).iter().any(|s| s == "offline_access") {
        return None;
    }
    let token = auth::new_token();
    let row = RefreshRow {
        token_hash: auth::token_hash(&token),
        family_id: family.id.clone(),
        application_id: app.id.clone(),
        created_at: now,
        expires_at: family.expires_at,
        used_at: None,
    };
    Some((token, row))
}

/// The user of `family` as the statements that write it check them: in the
/// application's scope, with the family's security stamp (for a code's new family, the
/// code's).
fn family_user<'a>(app: &'a ApplicationRow, family: &'a FamilyRow) -> odb::ScopedUser<'a> {
    odb::ScopedUser { id: &family.user_id, scope_key: &app.scope_key, security_stamp: &family.security_stamp }
}

/// The audit event of tokens issued for a code or a refresh token; `target` names the
/// application.
fn issued_event<'a>(
    app: &'a ApplicationRow,
    family: &'a FamilyRow,
    target: &'a str,
    now: i64,
    after: Value,
) -> db::NewAudit<'a> {
    db::NewAudit {
        at: now,
        actor_user_id: Some(&family.user_id),
        scope_key: &app.scope_key,
        action: "oidc.token_issued",
        target,
        before: None,
        after: Some(after),
    }
}

async fn refresh_grant(
    state: &AppState,
    issuer: &Issuer,
    app: &ApplicationRow,
    form: &HashMap<String, String>,
) -> OAuthResult<TokenResponse> {
    let now = state.now();
    let token =
        form.get("refresh_token").ok_or_else(|| OAuthError::bad("invalid_request", "refresh_token is missing"))?;
    let hash = auth::token_hash(token);
    let asked = form.get("scope").map(String::as_str);
    let (family, refresh, rotated) = match state.db().backend {
        // On PostgreSQL, where each statement is a round trip: one statement, which
        // reads the token, its family and its user, and writes only where none of the
        // refusals below applies to what it read.
        db::Backend::Postgres => {
            let next = auth::new_token();
            let next_hash = auth::token_hash(&next);
            let (client, presented, scopes) = (app.clone(), hash.clone(), asked.map(str::to_owned));
            let written = state
                .db()
                .write_one_touching(db::Touches::NothingKept, move |c| {
                    Box::pin(async move {
                        let target = format!("application:{}", client.id);
                        let grant = odb::RefreshGrant {
                            token_hash: &presented,
                            application_id: &client.id,
                            scope_key: &client.scope_key,
                            asked_scopes: scopes.as_deref(),
                            next_hash: &next_hash,
                            now,
                        };
                        // Its actor and what it says are the family's, which the
                        // statement reads.
                        let event = db::NewAudit {
                            at: now,
                            actor_user_id: None,
                            scope_key: &client.scope_key,
                            action: "oidc.token_issued",
                            target: &target,
                            before: None,
                            after: None,
                        };
                        odb::rotate_refresh(c, &grant, &event).await
                    })
                })
                .await
                .map_err(|e| match e {
                    // The family went with its grant (revoked, or its user or
                    // application deleted) while the token was being used.
                    sqlx::Error::Database(e) if e.kind() == sqlx::error::ErrorKind::ForeignKeyViolation => {
                        OAuthError::invalid_grant("the refresh token is no longer valid")
                    }
                    e => AppError::from(e).into(),
                })?;
            let found = written.found.ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
            refuse_refresh(app, &found, asked, now)?;
            let rotated = match written.user {
                None => return Err(no_such_user()),
                Some(user) if !auth::stamps_equal(&found.family.security_stamp, &user.security_stamp) => {
                    Rotation::StampChanged
                }
                Some(user) if written.used => Rotation::Rotated(Box::new(user)),
                Some(_) => Rotation::Reused,
            };
            (found.family, written.next.then_some(next), rotated)
        }
        db::Backend::Sqlite => {
            let found = odb::find_refresh(&state.db().pool, &hash)
                .await?
                .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
            refuse_refresh(app, &found, asked, now)?;
            let family = found.family;
            let next = refresh_for(app, &family, now);
            let issued = json!({ "grant_type": "refresh_token", "family": family.id });
            let user = same_scope_user(state, app, &family.user_id).await?;
            let rotated = if !auth::stamps_equal(&family.security_stamp, &user.security_stamp) {
                Rotation::StampChanged
            } else if found.refresh_used_at.is_some() {
                Rotation::Reused
            } else {
                // On the writer, as a code's exchange is: one transaction of the
                // writer's group commit, none of its statements a hop to another thread.
                let (store, app, family) = (state.db().clone(), app.clone(), family.clone());
                let row = next.as_ref().map(|(_, row)| row.clone());
                let job = async move {
                    let mut tx = store.begin().await?;
                    // The token used, the next one and an audit event inserted: no row
                    // a cache keeps changes.
                    tx.touches(db::Touches::NothingKept);
                    if !odb::use_refresh(&mut tx, &hash, now).await? {
                        return Ok(false);
                    }
                    if let Some(row) = &row {
                        odb::insert_refresh(&mut tx, row).await?;
                    }
                    let target = format!("application:{}", app.id);
                    db::insert_audit(&mut tx, &issued_event(&app, &family, &target, now, issued)).await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(true)
                };
                match state.db().on_writer(job).await.and_then(|done| done) {
                    Ok(true) => Rotation::Rotated(Box::new(user)),
                    Ok(false) => Rotation::Reused,
                    Err(e) => return Err(AppError::from(e).into()),
                }
            };
            (family, next.map(|(token, _)| token), rotated)
        }
    };
    let user = match rotated {
        Rotation::Rotated(user) => *user,
        Rotation::StampChanged => {
            // The user's password or factors changed since: like their sessions, the
            // tokens of earlier sign-ins end.
            revoke_family(state, &family.id, "security_stamp").await?;
            return Err(OAuthError::invalid_grant("the user's security profile changed; sign in again"));
        }
        Rotation::Reused => {
            // Reuse of a rotated refresh token: it was copied. The whole family ends, the
            // rightful holder's current token included; the user signs in again.
            let mut tx = state.db().begin_write().await?;
            odb::revoke_family(&mut tx, &family.id, "refresh_reuse", now).await?;
            db::insert_audit(
                &mut tx,
                &db::NewAudit {
                    at: now,
                    actor_user_id: Some(&family.user_id),
                    scope_key: &app.scope_key,
                    action: "oidc.refresh_reused",
                    target: &format!("application:{}", app.id),
                    before: None,
                    after: Some(json!({ "family": family.id })),
                },
            )
            .await?;
            tx.commit().await?;
            return Err(OAuthError::invalid_grant("the refresh token was already used; its family is revoked"));
        }
    };
    Ok(tokens(state, issuer, app, &user, &family, None, refresh).await?)
}

/// The refusals of a refresh grant that depend on the presented token and its family
/// alone, in the order they are answered: another client's token, a family revoked or
/// expired (or the token), scopes beyond the family's.
fn refuse_refresh(
    app: &ApplicationRow,
    found: &odb::RefreshInFamily,
    asked: Option<&str>,
    now: i64,
) -> OAuthResult<()> {
    let family = &found.family;
    // The family's application as well as the token's: only the family's is held by a
    // key that agrees with its grant (PostgreSQL's migration 0017).
    if found.refresh_application_id != app.id || family.application_id != app.id {
        return Err(OAuthError::invalid_grant("the refresh token was not issued to this client"));
    }
    if family.revoked_at.is_some() || family.expires_at <= now || found.refresh_expires_at <= now {
        return Err(OAuthError::invalid_grant("the refresh token is no longer valid"));
    }
    if let Some(asked) = asked {
        let granted = super::split_scopes(&family.scopes);
        if asked.split(' ').filter(|s| !s.is_empty()).any(|s| !granted.iter().any(|g| g == s)) {
            return Err(OAuthError::bad("invalid_scope", "a refresh cannot widen the scopes"));
        }
    }
    Ok(())
}

/// The access token (a JWT, `typ` `at+jwt`, naming its family) and the ID token.
async fn tokens(
    state: &AppState,
    issuer: &Issuer,
    app: &ApplicationRow,
    user: &UserRow,
    family: &FamilyRow,
    nonce: Option<&str>,
    refresh_token: Option<String>,
) -> AppResult<TokenResponse> {
    let now_s = state.now() / 1000;
    let lifetime = state.config().oidc_access_token_seconds;
    let exp = now_s + i64::from(lifetime);
    let alg = TokenAlg::parse(&app.token_alg).unwrap_or_default();
    let signer = state.oidc_keys().signer(state, alg).await?;
    let access = json!({
        "iss": issuer.url, "sub": user.id, "aud": app.id, "client_id": app.id, "iat": now_s, "exp": exp,
        "jti": uuid::Uuid::now_v7().to_string(), "scope": family.scopes, "fid": family.id, "sid": family.sid,
    });
    let mut id = Map::new();
    id.insert("iss".into(), json!(issuer.url));
    id.insert("sub".into(), json!(user.id));
    id.insert("aud".into(), json!(app.id));
    id.insert("azp".into(), json!(app.id));
    id.insert("iat".into(), json!(now_s));
    id.insert("exp".into(), json!(exp));
    id.insert("auth_time".into(), json!(family.auth_time / 1000));
    id.insert("acr".into(), json!(family.acr));
    id.insert("amr".into(), json!(family.amr.split(' ').collect::<Vec<_>>()));
    id.insert("sid".into(), json!(family.sid));
    if let Some(n) = nonce {
        id.insert("nonce".into(), json!(n));
    }
    profile_claims(&mut id, user, &family.scopes);
    let (access_token, id_token) = match alg {
        // Two RSA signatures hold a thread for half a millisecond: on the runtime's
        // workers that stalls the requests queued behind them while the other core
        // idles (BENCHMARKS.md, "Signing keys parsed once"), and on the blocking pool
        // as many run at once as requests wait, on two cores. They run on threads of
        // their own, one per core ("RSA signatures on a thread per core").
        TokenAlg::RS256 => {
            let signers = SIGNERS.as_ref().map_err(|e| anyhow::anyhow!("cannot start the signing threads: {e}"))?;
            signers.run(|| {}, move || sign_both(&signer, &access, id)).await??
        }
        TokenAlg::ES256 => sign_both(&signer, &access, id)?,
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        id_token,
        refresh_token,
        scope: family.scopes.clone(),
    })
}

/// The threads that make RSA signatures ([`crate::threads`]).
static SIGNERS: std::sync::LazyLock<std::io::Result<crate::threads::Pool>> =
    std::sync::LazyLock::new(|| crate::threads::Pool::start("rsa-sign", None));

/// The access token, then the ID token with the access token's hash (`at_hash`: the
/// left half of its SHA-256, base64url; both algorithms use SHA-256).
fn sign_both(signer: &Signer, access: &Value, mut id: Map<String, Value>) -> AppResult<(String, String)> {
    let access_token = signer.sign("at+jwt", access)?;
    let digest = Sha256::digest(access_token.as_bytes());
    id.insert("at_hash".into(), json!(URL_SAFE_NO_PAD.encode(&digest[..16])));
    let id_token = signer.sign("JWT", &Value::Object(id))?;
    Ok((access_token, id_token))
}

/// The claims the granted scopes allow.
fn profile_claims(out: &mut Map<String, Value>, user: &UserRow, scopes: &str) {
    let scopes = super::split_scopes(scopes);
    let has = |s: &str| scopes.iter().any(|x| x == s);
    if has("profile") {
        out.insert("preferred_username".into(), json!(user.username));
    }
    if has("email")
        && let Some(email) = &user.email
    {
        out.insert("email".into(), json!(email));
        out.insert("email_verified".into(), json!(user.email_confirmed != 0));
    }
    if has("phone")
        && let Some(phone) = &user.phone
    {
        out.insert("phone_number".into(), json!(phone));
        out.insert("phone_number_verified".into(), json!(user.phone_confirmed != 0));
    }
}

#[derive(Debug, Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    fid: String,
}

fn bearer_error(description: &str) -> OAuthError {
    let mut e = OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_token", description);
    e.challenge = Some(format!("Bearer error=\"invalid_token\", error_description=\"{description}\""));
    e
}

/// Verifies a token we signed: by its `kid`, with its algorithm, its `typ`.
async fn verify<T: serde::de::DeserializeOwned>(state: &AppState, token: &str, typ: &str) -> OAuthResult<T> {
    let invalid = || bearer_error("the token is not valid");
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
    if header.typ.as_deref() != Some(typ) {
        return Err(invalid());
    }
    let kid = header.kid.ok_or_else(invalid)?;
    let (alg, key) = state.oidc_keys().verifier(state, &kid).await?.ok_or_else(invalid)?;
    if alg != header.alg {
        return Err(invalid());
    }
    let mut validation = Validation::new(alg);
    // Time comes from the app's clock (tests move it), checked by the caller.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<T>(token, &key, &validation).map(|d| d.claims).map_err(|_| invalid())
}

/// `GET|POST {issuer}/oauth2/userinfo` with a Bearer access token.
pub async fn userinfo(State(state): State<AppState>, issuer: Issuer, headers: HeaderMap) -> OAuthResult<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            let mut e = OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_request", "a Bearer token is required");
            e.challenge = Some("Bearer".to_owned());
            e
        })?;
    let claims: AccessClaims = verify(&state, token.trim(), "at+jwt").await?;
    let now = state.now();
    if claims.iss != issuer.url || claims.exp * 1000 <= now {
        return Err(bearer_error("the token is expired or for another issuer"));
    }
    let family = odb::get_family(&state.db().pool, &claims.fid).await?;
    let Some(family) = family.filter(|f| f.revoked_at.is_none() && f.expires_at > now && f.user_id == claims.sub)
    else {
        return Err(bearer_error("the token was revoked"));
    };
    let app = odb::get_application(&state.db().pool, &claims.aud).await?;
    let Some(app) = app.filter(|a| a.scope_key == issuer.scope_key && a.id == family.application_id) else {
        return Err(bearer_error("the token was revoked"));
    };
    let user =
        same_scope_user(&state, &app, &family.user_id).await.map_err(|_| bearer_error("the token was revoked"))?;
    if !auth::stamps_equal(&family.security_stamp, &user.security_stamp) {
        return Err(bearer_error("the token was revoked"));
    }
    let mut out = Map::new();
    out.insert("sub".into(), json!(user.id));
    profile_claims(&mut out, &user, &family.scopes);
    Ok(axum::Json(Value::Object(out)).into_response())
}

#[derive(Debug, Deserialize)]
struct IdHint {
    iss: String,
    aud: String,
    sid: Option<String>,
}

/// `GET {issuer}/oauth2/logout`: RP-initiated logout. The session ends (by the cookie
/// when the browser sends it, else by the `sid` of a valid `id_token_hint`); the
/// browser returns only to an exactly registered `post_logout_redirect_uri`.
pub async fn end_session(
    State(state): State<AppState>,
    issuer: Issuer,
    MaybeSession(session): MaybeSession,
    jar: CookieJar,
    query: axum::extract::RawQuery,
) -> OAuthResult<Response> {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.0.as_deref().unwrap_or("").as_bytes()).into_owned().collect();
    let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let hint: Option<IdHint> = match get("id_token_hint") {
        Some(t) => {
            let h: IdHint = verify(&state, &t, "JWT")
                .await
                .map_err(|_| OAuthError::bad("invalid_request", "id_token_hint is not an ID token of this issuer"))?;
            if h.iss != issuer.url {
                return Err(OAuthError::bad("invalid_request", "id_token_hint is not an ID token of this issuer"));
            }
            Some(h)
        }
        None => None,
    };
    let client_id = match (hint.as_ref().map(|h| h.aud.clone()), get("client_id")) {
        (Some(a), Some(c)) if a != c => {
            return Err(OAuthError::bad("invalid_request", "client_id and id_token_hint disagree"));
        }
        (a, c) => a.or(c),
    };
    let app = match &client_id {
        Some(id) => Some(
            client_of(&state, &issuer, id)
                .await?
                .ok_or_else(|| OAuthError::bad("invalid_request", "unknown client"))?,
        ),
        None => None,
    };
    let target = match (get("post_logout_redirect_uri"), &app) {
        (Some(uri), Some(a)) if uris(&a.post_logout_redirect_uris).contains(&uri) => Some(uri),
        (Some(_), _) => {
            return Err(OAuthError::bad(
                "invalid_request",
                "post_logout_redirect_uri is not registered for this client",
            ));
        }
        (None, _) => None,
    };
    let mut ended = false;
    if let Some(who) = session.filter(|w| w.user.scope_key == issuer.scope_key) {
        let hash = who.token_hash.clone();
        state.db().write_one(move |c| Box::pin(async move { db::delete_session(c, &hash).await })).await?;
        ended = true;
    } else if let Some(sid) = hint.as_ref().and_then(|h| h.sid.as_deref()) {
        let sid = sid.to_owned();
        ended =
            state.db().write_one(move |c| Box::pin(async move { db::delete_session_by_sid(c, &sid).await })).await?;
    }
    if let Some(a) = &app {
        audit(&state, a, None, "oidc.logout", json!({ "session_ended": ended })).await?;
    }
    let jar = jar.remove(crate::routes::auth::session_cookie(&state, String::new()));
    let resp = match target {
        Some(uri) => {
            let mut url = url::Url::parse(&uri).map_err(|_| OAuthError::bad("invalid_request", "bad URI"))?;
            if let Some(s) = get("state") {
                url.query_pairs_mut().append_pair("state", &s);
            }
            let location =
                HeaderValue::from_str(url.as_str()).map_err(|_| OAuthError::bad("invalid_request", "bad URI"))?;
            (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
        }
        None => axum::Json(json!({ "status": "signed_out" })).into_response(),
    };
    Ok((jar, resp).into_response())
}
