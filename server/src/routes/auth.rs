//! Sign-in, sign-out and the current user.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use twofold_policy::wire::{CurrentUser, ErrorBody, SignInRequest, SignInResponse};

use crate::app::AppState;
use crate::auth::Authenticated;
use crate::db::{self, UserRow};
use crate::error::AppResult;
use crate::extract::Json;
use crate::signin::{self, ClientInfo, PasswordOutcome};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/sign-in", post(sign_in))
        .route("/api/auth/sign-out", post(sign_out))
        .route("/api/auth/me", get(me))
}

pub fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    let mut c = Cookie::new(state.config().session_cookie_name(), value);
    c.set_http_only(true);
    c.set_secure(state.config().cookie_secure);
    // Strict: the session is only ever needed by Twofold's own pages and API.
    c.set_same_site(SameSite::Strict);
    c.set_path("/");
    c
}

fn client_info(addr: SocketAddr, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: Some(addr.ip().to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    }
}

async fn current_user(state: &AppState, user: &UserRow) -> AppResult<CurrentUser> {
    let roles = db::roles_of(&state.db().pool, &user.id).await?;
    let tenant_name = match &user.tenant_id {
        Some(id) => db::get_tenant(&state.db().pool, id).await?.map(|t| t.name),
        None => None,
    };
    Ok(CurrentUser {
        id: user.id.clone(),
        username: user.username.clone(),
        tenant_id: user.tenant_id.clone(),
        tenant_name,
        roles: super::role_grants(&roles),
    })
}

/// The password step. When no second factor is required it sets the session cookie;
/// otherwise it says what must come next and sets nothing.
#[utoipa::path(post, path = "/api/auth/sign-in", tag = "auth", request_body = SignInRequest,
    responses(
        (status = 200, body = SignInResponse),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Unknown user or wrong password (indistinguishable)", body = ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<SignInRequest>,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    let client = client_info(addr, &headers);
    let outcome = signin::password_step(&state, req, &client).await?;
    let status = outcome.status();
    match outcome {
        PasswordOutcome::SignedIn { user, token } => {
            let current = current_user(&state, &user).await?;
            let jar = jar.add(session_cookie(&state, token));
            Ok((
                jar,
                Json(SignInResponse {
                    status,
                    user: Some(current),
                }),
            ))
        }
        PasswordOutcome::RequiresTwoFactor { .. } | PasswordOutcome::RequiresEnrollment { .. } => {
            Ok((jar, Json(SignInResponse { status, user: None })))
        }
    }
}

/// Ends the current session.
#[utoipa::path(post, path = "/api/auth/sign-out", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn sign_out(
    State(state): State<AppState>,
    who: Authenticated,
    jar: CookieJar,
) -> AppResult<(CookieJar, axum::http::StatusCode)> {
    db::delete_session(&state.db().pool, &who.token_hash).await?;
    let jar = jar.remove(session_cookie(&state, String::new()));
    Ok((jar, axum::http::StatusCode::NO_CONTENT))
}

/// The signed-in user and their roles.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    responses((status = 200, body = CurrentUser), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, who: Authenticated) -> AppResult<Json<CurrentUser>> {
    Ok(Json(current_user(&state, &who.user).await?))
}
