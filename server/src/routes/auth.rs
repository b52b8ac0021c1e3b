//! Sign-in (every step of the pipeline), sign-out and the current user.
//!
//! The pending sign-in travels in its own HttpOnly cookie between the password step and
//! the second factor; the session cookie is set only when the pipeline has finished.

use std::net::IpAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use twofold_policy::wire::{
    AuthenticatorEnrollment, CodeRequest, CurrentUser, EmailRequest, ErrorBody, PasswordResetConfirm,
    PasswordResetRequest, PhoneRequest, SendCodeRequest, SendCodeResponse, SessionState, SignInRequest, SignInResponse,
    SignInStatus, VerifyRequest,
};

use crate::app::AppState;
use crate::auth::Authenticated;
use crate::clock::rfc3339;
use crate::db::{self, UserRow};
use crate::error::AppResult;
use crate::extract::{ClientAddr, Json};
use crate::factors::Channel;
use crate::factors::lifecycle::FactorKind;
use crate::ratelimit::Class;
use crate::signin::{self, ClientInfo, Completed, Event, Outcome, Start, State as SignIn};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/sign-in", post(sign_in))
        .route("/api/auth/sign-in/send-code", post(send_code))
        .route("/api/auth/sign-in/verify", post(verify))
        .route("/api/auth/enroll/authenticator", post(enroll_authenticator))
        .route("/api/auth/enroll/authenticator/confirm", post(enroll_authenticator_confirm))
        .route("/api/auth/enroll/email", post(enroll_email))
        .route("/api/auth/enroll/email/confirm", post(enroll_email_confirm))
        .route("/api/auth/enroll/phone", post(enroll_phone))
        .route("/api/auth/enroll/phone/confirm", post(enroll_phone_confirm))
        .route("/api/auth/enroll/postpone", post(postpone))
        .route("/api/auth/step-up", post(step_up))
        .route("/api/auth/sign-out", post(sign_out))
        .route("/api/auth/password-reset", post(request_password_reset))
        .route("/api/auth/password-reset/confirm", post(confirm_password_reset))
        .route("/api/auth/me", get(me))
        .route("/api/auth/session", get(session))
}

fn cookie(state: &AppState, name: String, value: String, max_age_ms: Option<i64>) -> Cookie<'static> {
    let mut c = Cookie::new(name, value);
    c.set_http_only(true);
    c.set_secure(state.config().cookie_secure);
    // Strict: the cookies are only ever needed by Twofold's own pages and API.
    c.set_same_site(SameSite::Strict);
    c.set_path("/");
    if let Some(ms) = max_age_ms {
        c.set_max_age(time::Duration::milliseconds(ms));
    }
    c
}

pub fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    cookie(state, state.config().session_cookie_name().to_owned(), value, None)
}

fn pending_cookie(state: &AppState, value: String) -> Cookie<'static> {
    let ms = i64::from(state.config().pending_sign_in_minutes) * 60_000;
    cookie(state, state.config().pending_cookie_name().to_owned(), value, Some(ms))
}

pub fn remember_cookie(state: &AppState, value: String, max_age_ms: i64) -> Cookie<'static> {
    cookie(state, state.config().remember_cookie(), value, Some(max_age_ms))
}

/// The long-lived cookie that marks a browser where this user typed the right password:
/// wrong passwords from elsewhere never lock such a browser out (see `PasswordLimits`).
fn known_browser_cookie(state: &AppState, user: &UserRow) -> Cookie<'static> {
    let days = i64::from(state.config().known_browser_days);
    let value = signin::known_browser_token(state, user);
    cookie(state, state.config().known_browser_cookie_name().to_owned(), value, Some(days * 86_400_000))
}

pub fn client_info(addr: IpAddr, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: Some(addr.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    }
}

pub async fn current_user(state: &AppState, user: &UserRow) -> AppResult<CurrentUser> {
    let described = state.db().roles_and_tenant_names(&user.id, user.tenant_id.as_deref()).await?;
    Ok(described_user(user, described))
}

/// [`current_user`] with the roles and tenant's names already read.
fn described_user(user: &UserRow, described: db::Description) -> CurrentUser {
    let db::Description { roles, tenant } = described;
    let (tenant_name, tenant_display_name) = match tenant {
        Some(t) => (Some(t.name), Some(t.display_name)),
        None => (None, None),
    };
    CurrentUser {
        id: user.id.clone(),
        username: user.username.clone(),
        tenant_id: user.tenant_id.clone(),
        tenant_name,
        tenant_display_name,
        roles: super::role_grants(&roles),
        must_change_password: user.must_change_password != 0,
    }
}

pub(super) fn pending_token(state: &AppState, jar: &CookieJar) -> Option<String> {
    jar.get(state.config().pending_cookie_name()).map(|c| c.value().to_owned())
}

/// Sets the cookies of a finished sign-in and describes it.
pub(super) async fn signed_in(
    state: &AppState,
    jar: CookieJar,
    done: Completed,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    let mut jar = jar
        .remove(pending_cookie(state, String::new()))
        .add(session_cookie(state, done.session_token))
        .add(known_browser_cookie(state, &done.user));
    if let Some((token, lifetime)) = done.remember {
        jar = jar.add(remember_cookie(state, token, lifetime));
    }
    let user = match done.described {
        Some(described) => described_user(&done.user, described),
        None => current_user(state, &done.user).await?,
    };
    Ok((
        jar,
        Json(SignInResponse {
            status: SignInStatus::SignedIn,
            user: Some(user),
            recovery_codes: done.recovery_codes,
            ..SignInResponse::default()
        }),
    ))
}

/// The password step. Answers `signed_in` (session cookie set), `requires_two_factor`
/// or `requires_enrollment` (pending sign-in cookie set). Unknown user and wrong
/// password are indistinguishable.
#[utoipa::path(post, path = "/api/auth/sign-in", tag = "auth", security(()), request_body = SignInRequest,
    responses(
        (status = 200, body = SignInResponse),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Unknown user or wrong password (indistinguishable)", body = ErrorBody),
        (status = 423, description = "Locked out after repeated second-factor failures", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords, or too many requests from this address or for \
            this account (rate_limited, with Retry-After)", body = ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<SignInRequest>,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    state.limits().by_address(Class::SignIn, addr, state.now())?;
    let client = client_info(addr, &headers);
    let event = Event::Password {
        request: req,
        remember_cookie: jar.get(&state.config().remember_cookie()).map(|c| c.value().to_owned()),
        known_cookie: jar.get(state.config().known_browser_cookie_name()).map(|c| c.value().to_owned()),
    };
    match signin::advance(&state, SignIn::AwaitingPassword, event, &client).await? {
        Outcome::SignedIn(done) => signed_in(&state, jar, done).await,
        Outcome::SecondFactorRequired { attempt_token, user, providers, recovery_code_available, policy } => Ok((
            jar.add(pending_cookie(&state, attempt_token)).add(known_browser_cookie(&state, &user)),
            Json(SignInResponse {
                status: SignInStatus::RequiresTwoFactor,
                providers,
                recovery_code_available,
                remember_browser_offered: signin::may_remember(&policy),
                remember_browser_days: policy.remember_browser_days,
                ..SignInResponse::default()
            }),
        )),
        Outcome::EnrollmentRequired { attempt_token, user, policy, grace_until, can_postpone } => Ok((
            jar.add(pending_cookie(&state, attempt_token)).add(known_browser_cookie(&state, &user)),
            Json(SignInResponse {
                status: SignInStatus::RequiresEnrollment,
                enrollable: signin::enrollable(&state, &policy),
                grace_until: grace_until.map(rfc3339),
                can_postpone,
                ..SignInResponse::default()
            }),
        )),
        other => Err(crate::error::AppError::Internal(anyhow::anyhow!("unexpected password outcome {other:?}"))),
    }
}

/// Moves the pending sign-in of this browser with `event`.
pub(super) async fn advance_pending(
    state: &AppState,
    jar: &CookieJar,
    event: Event,
    client: &ClientInfo,
) -> AppResult<Outcome> {
    let token = pending_token(state, jar);
    if let (Some(token), Event::SecondFactor(req)) = (token.as_deref(), &event)
        && let Some(settled) = signin::verify_opened(state, token, req, client).await
    {
        return settled;
    }
    let current = SignIn::pending_for(state, token.as_deref(), &event).await?;
    signin::advance(state, current, event, client).await
}

/// Sends a sign-in code by email or SMS to the confirmed destination. Resends are
/// throttled and void the previous code.
#[utoipa::path(post, path = "/api/auth/sign-in/send-code", tag = "auth", security(()), request_body = SendCodeRequest,
    responses((status = 200, body = SendCodeResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 423, body = ErrorBody),
        (status = 429, description = "Too many sends or requests (rate_limited, with Retry-After)", body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub async fn send_code(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Json(req): Json<SendCodeRequest>,
) -> AppResult<Json<SendCodeResponse>> {
    state.limits().by_address(Class::SendCode, addr, state.now())?;
    let client = ClientInfo::default();
    Ok(Json(advance_pending(&state, &jar, Event::SendCode(req.method), &client).await?.into_sent()?))
}

/// Checks the second factor and completes the sign-in; optionally remembers the browser.
#[utoipa::path(post, path = "/api/auth/sign-in/verify", tag = "auth", security(()), request_body = VerifyRequest,
    responses((status = 200, body = SignInResponse), (status = 400, body = ErrorBody),
        (status = 401, description = "Wrong code (invalid_code) or expired sign-in (sign_in_expired)", body = ErrorBody),
        (status = 423, body = ErrorBody), (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<VerifyRequest>,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    state.limits().by_address(Class::Verify, addr, state.now())?;
    let client = client_info(addr, &headers);
    match advance_pending(&state, &jar, Event::SecondFactor(req), &client).await? {
        Outcome::SignedIn(done) => signed_in(&state, jar, done).await,
        // A recovery code where a passkey is required: enrolment comes next.
        Outcome::EnrollmentRequired { policy, .. } => {
            Ok((jar, Json(super::passkeys::enrollment_after_recovery(&state, &policy))))
        }
        other => Err(crate::error::AppError::Internal(anyhow::anyhow!("unexpected verify outcome {other:?}"))),
    }
}

/// Starts enrolling an authenticator during a sign-in that requires enrolment.
#[utoipa::path(post, path = "/api/auth/enroll/authenticator", tag = "auth", security(()),
    responses((status = 200, body = AuthenticatorEnrollment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "An authenticator is already set up", body = ErrorBody)))]
pub async fn enroll_authenticator(
    State(state): State<AppState>,
    jar: CookieJar,
) -> AppResult<Json<AuthenticatorEnrollment>> {
    let event = Event::StartEnrollment(Start::Authenticator);
    match advance_pending(&state, &jar, event, &ClientInfo::default()).await? {
        Outcome::EnrollmentStarted(enrollment) => Ok(Json(enrollment)),
        other => Err(crate::error::AppError::Internal(anyhow::anyhow!("unexpected enrolment outcome {other:?}"))),
    }
}

/// Confirms the new authenticator with its first code and completes the sign-in. The
/// response carries the recovery codes, once.
#[utoipa::path(post, path = "/api/auth/enroll/authenticator/confirm", tag = "auth", security(()), request_body = CodeRequest,
    responses((status = 200, body = SignInResponse), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn enroll_authenticator_confirm(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<CodeRequest>,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    enroll_confirm(&state, addr, &headers, jar, FactorKind::Authenticator, req.code).await
}

/// Sends a confirmation code to the email on file (or the one given) during enrolment.
#[utoipa::path(post, path = "/api/auth/enroll/email", tag = "auth", security(()), request_body = EmailRequest,
    responses((status = 200, body = SendCodeResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 423, body = ErrorBody), (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn enroll_email(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Json(req): Json<EmailRequest>,
) -> AppResult<Json<SendCodeResponse>> {
    state.limits().by_address(Class::SendCode, addr, state.now())?;
    let event = Event::StartEnrollment(Start::Contact(Channel::Email, req.email));
    Ok(Json(advance_pending(&state, &jar, event, &ClientInfo::default()).await?.into_sent()?))
}

/// Confirms the email with its code and completes the sign-in.
#[utoipa::path(post, path = "/api/auth/enroll/email/confirm", tag = "auth", security(()), request_body = CodeRequest,
    responses((status = 200, body = SignInResponse), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn enroll_email_confirm(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<CodeRequest>,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    enroll_confirm(&state, addr, &headers, jar, FactorKind::Email, req.code).await
}

/// Sends a confirmation code by SMS to the given phone during enrolment.
#[utoipa::path(post, path = "/api/auth/enroll/phone", tag = "auth", security(()), request_body = PhoneRequest,
    responses((status = 200, body = SendCodeResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 423, body = ErrorBody), (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn enroll_phone(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Json(req): Json<PhoneRequest>,
) -> AppResult<Json<SendCodeResponse>> {
    state.limits().by_address(Class::SendCode, addr, state.now())?;
    let event = Event::StartEnrollment(Start::Contact(Channel::Sms, req.phone));
    Ok(Json(advance_pending(&state, &jar, event, &ClientInfo::default()).await?.into_sent()?))
}

/// Confirms the phone with its code and completes the sign-in.
#[utoipa::path(post, path = "/api/auth/enroll/phone/confirm", tag = "auth", security(()), request_body = CodeRequest,
    responses((status = 200, body = SignInResponse), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn enroll_phone_confirm(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<CodeRequest>,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    enroll_confirm(&state, addr, &headers, jar, FactorKind::Phone, req.code).await
}

/// Sends a password reset link to the account's confirmed email address, if there is
/// such an account. The answer is the same either way, so it tells nobody whether the
/// account exists.
#[utoipa::path(post, path = "/api/auth/password-reset", tag = "auth", security(()), request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "A link is on its way if the account exists and has a confirmed email address"),
        (status = 400, description = "Password reset by email is not set up here", body = ErrorBody)))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Json(req): Json<PasswordResetRequest>,
) -> AppResult<StatusCode> {
    crate::reset::request(&state, req, addr).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Sets a new password with a reset link's token. The user then signs in as usual,
/// second factor included; every session of theirs has ended.
#[utoipa::path(post, path = "/api/auth/password-reset/confirm", tag = "auth", security(()), request_body = PasswordResetConfirm,
    responses((status = 204), (status = 400, description = "Unknown, used or expired link, or a weak password", body = ErrorBody)))]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Json(req): Json<PasswordResetConfirm>,
) -> AppResult<StatusCode> {
    crate::reset::confirm(&state, req, addr).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs in without enrolling, while the enrolment grace period runs.
#[utoipa::path(post, path = "/api/auth/enroll/postpone", tag = "auth", security(()),
    responses((status = 200, body = SignInResponse), (status = 401, body = ErrorBody), (status = 409, description = "Grace period over", body = ErrorBody)))]
pub async fn postpone(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    let client = client_info(addr, &headers);
    let done = advance_pending(&state, &jar, Event::Postpone, &client).await?.into_completed()?;
    signed_in(&state, jar, done).await
}

/// Confirms the factor being enrolled with its first code and completes the sign-in.
async fn enroll_confirm(
    state: &AppState,
    addr: IpAddr,
    headers: &HeaderMap,
    jar: CookieJar,
    factor: FactorKind,
    code: String,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    state.limits().by_address(Class::Verify, addr, state.now())?;
    let client = client_info(addr, headers);
    let done = advance_pending(state, &jar, Event::Enroll { factor, code }, &client).await?.into_completed()?;
    signed_in(state, jar, done).await
}

/// Proves a second factor again in a signed-in session, without the password, for an
/// application whose rule the session's last one does not meet (too weak or too old;
/// see `GET /api/oidc/requests/{handle}`). Email and SMS codes come from
/// `/api/account/reauthenticate/send-code`. Opens no sensitive account change.
#[utoipa::path(post, path = "/api/auth/step-up", tag = "auth", request_body = VerifyRequest,
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, description = "Wrong code (invalid_code) or no session", body = ErrorBody),
        (status = 423, body = ErrorBody), (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn step_up(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    who: Authenticated,
    Json(req): Json<VerifyRequest>,
) -> AppResult<StatusCode> {
    state.limits().by_address(Class::Verify, addr, state.now())?;
    let client = ClientInfo::default();
    let event = Event::StepUp(signin::StepUpProof::Code(req));
    match signin::advance(&state, SignIn::Complete(Box::new(who)), event, &client).await? {
        Outcome::SteppedUp(_) => Ok(StatusCode::NO_CONTENT),
        other => Err(crate::error::AppError::Internal(anyhow::anyhow!("unexpected step-up outcome {other:?}"))),
    }
}

/// Ends the current session.
#[utoipa::path(post, path = "/api/auth/sign-out", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn sign_out(
    State(state): State<AppState>,
    who: Authenticated,
    jar: CookieJar,
) -> AppResult<(CookieJar, StatusCode)> {
    let hash = who.token_hash.clone();
    state.db().write_one(move |c| Box::pin(async move { db::delete_session(c, &hash).await })).await?;
    let jar = jar.remove(session_cookie(&state, String::new()));
    Ok((jar, StatusCode::NO_CONTENT))
}

/// The signed-in user and their roles.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    responses((status = 200, body = CurrentUser), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, who: Authenticated) -> AppResult<Json<CurrentUser>> {
    Ok(Json(current_user(&state, &who.user).await?))
}

/// Who is signed in, if anyone: `{"user": null}` without a session. For pages that
/// load before anyone signed in, which would otherwise log a 401 on every visit.
#[utoipa::path(get, path = "/api/auth/session", tag = "auth", security(()),
    responses((status = 200, body = SessionState)))]
pub async fn session(
    State(state): State<AppState>,
    who: Result<Authenticated, crate::error::AppError>,
) -> AppResult<Json<SessionState>> {
    match who {
        Ok(who) => Ok(Json(SessionState { user: Some(current_user(&state, &who.user).await?) })),
        Err(crate::error::AppError::Unauthenticated) => Ok(Json(SessionState { user: None })),
        Err(e) => Err(e),
    }
}
