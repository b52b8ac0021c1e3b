//! The signed-in user's own account: two-factor state, the switch, authenticator,
//! email and phone, recovery codes, remembered browsers, password and
//! reauthentication.
//!
//! Every change to the user's own security profile (the 2FA switch either way, adding or
//! removing a factor, a first or new email or phone, new recovery codes) needs a fresh
//! reauthentication (`POST /api/account/reauthenticate`) at least as strong as the
//! user's strongest factor; a new password needs the current one, and wrong ones count
//! like wrong passwords at sign-in. Factor checks go through the sign-in machine
//! (`crate::signin`). No response here ever repeats a secret or a recovery code after
//! the moment it was issued.

use std::net::IpAddr;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};
use axum_extra::extract::CookieJar;
use twofold_policy::authz::{Action, Target};
use twofold_policy::names::{EmailAddress, check_new_password};
use twofold_policy::wire::{
    AccountState, AuthenticatorEnrollment, ChangePassword, CodeRequest, EffectivePolicyView, EmailRequest, ErrorBody,
    Factors, PhoneRequest, ReauthenticateRequest, RecoveryCodes, RememberedBrowser, SendCodeRequest, SendCodeResponse,
    SessionInfo, SetTwoFactor,
};

use crate::app::{AppState, domain_of};
use crate::auth::{self, Authenticated, token_hash};
use crate::clock::rfc3339;
use crate::db::factors as fdb;
use crate::error::{AppError, AppResult};
use crate::extract::{ClientAddr, Json, Path, parse_id};
use crate::factors::lifecycle::{self, FactorKind};
use crate::factors::{self, Channel, CodePurpose};
use crate::notify::{self, Notice};
use crate::ratelimit::Class;
use crate::signin::{self, ClientInfo, Event, Outcome, State as SignIn, effective_policy};
use twofold_policy::wire::ErrorCode;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/account", get(get_account))
        .route("/api/account/two-factor", put(set_two_factor))
        .route("/api/account/reauthenticate", post(reauthenticate))
        .route("/api/account/reauthenticate/send-code", post(reauth_send_code))
        .route("/api/account/password", put(change_password))
        .route("/api/account/authenticator", post(start_authenticator).delete(remove_authenticator))
        .route("/api/account/authenticator/confirm", post(confirm_authenticator))
        .route("/api/account/recovery-codes", post(regenerate_recovery_codes))
        .route("/api/account/email", put(change_email).delete(remove_email))
        .route("/api/account/email/confirm", post(confirm_email))
        .route("/api/account/phone", put(change_phone).delete(remove_phone))
        .route("/api/account/phone/confirm", post(confirm_phone))
        .route("/api/account/browsers", get(list_browsers).delete(forget_all_browsers))
        .route("/api/account/browsers/{browser_id}", delete(forget_browser))
        .route("/api/account/sessions", get(list_sessions))
        .route("/api/account/sessions/{session_id}", delete(end_session))
        .route("/api/account/sessions/end-others", post(end_other_sessions))
}

/// The signed-in caller of an account route. Extracting it counts the request against
/// the account API's limits: by client address before the session is even looked up,
/// then by user.
#[derive(Debug)]
pub struct Caller {
    pub who: Authenticated,
    pub addr: IpAddr,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ClientAddr(addr) = ClientAddr::from_request_parts(parts, state).await?;
        state.limits().by_address(Class::Account, addr, state.now())?;
        let who = Authenticated::from_request_parts(parts, state).await?;
        state.limits().by_account(Class::Account, &who.user.id, state.now())?;
        Ok(Caller { who, addr })
    }
}

/// Counts a code send or a code check of the caller, by address and by user.
fn limit(state: &AppState, caller_addr: IpAddr, who: &Authenticated, class: Class) -> AppResult<()> {
    let now = state.now();
    state.limits().by_address(class, caller_addr, now)?;
    state.limits().by_account(class, &who.user.id, now)
}

fn own(state: &AppState, who: &Authenticated, action: Action) -> AppResult<()> {
    state.authorize(who, action, Target::User { id: &who.user.id, domain: domain_of(&who.user.scope_key) })
}

async fn audit(state: &AppState, who: &Authenticated, action: &str, after: serde_json::Value) -> AppResult<()> {
    factors::audit_user(state, &who.user, action, after).await
}

/// The user's policy with its explanation, switch, factors and recovery codes left.
#[utoipa::path(get, path = "/api/account", tag = "account",
    responses((status = 200, body = AccountState), (status = 401, body = ErrorBody)))]
pub async fn get_account(State(state): State<AppState>, Caller { who, .. }: Caller) -> AppResult<Json<AccountState>> {
    own(&state, &who, Action::ReadOwnAccount)?;
    let u = &who.user;
    let resolved = signin::resolved_policy(&state, u).await?;
    let left = fdb::unused_recovery_codes(&state.db().pool, &u.id).await?.len();
    Ok(Json(AccountState {
        user: super::auth::current_user(&state, u).await?,
        policy: resolved.own_view(u.id.clone()),
        two_factor_enabled: u.two_factor_enabled != 0,
        user_can_change: resolved.policy.user_can_change,
        factors: Factors {
            authenticator: u.has_authenticator != 0,
            email: u.email.clone(),
            email_confirmed: u.email_confirmed != 0,
            pending_email: u.pending_email.clone(),
            phone: u.phone.clone(),
            phone_confirmed: u.phone_confirmed != 0,
            pending_phone: u.pending_phone.clone(),
            recovery_codes_left: u32::try_from(left).unwrap_or(u32::MAX),
            passkeys: crate::db::passkeys::list(&state.db().pool, &u.id)
                .await?
                .iter()
                .map(super::passkeys::view)
                .collect(),
        },
        reauthenticated_until: who.fresh_until(&state).map(rfc3339),
    }))
}

/// Turns the user's own 2FA switch on or off, where the policy lets users change it.
/// Either way needs a fresh reauthentication.
#[utoipa::path(put, path = "/api/account/two-factor", tag = "account", request_body = SetTwoFactor,
    responses((status = 200, body = EffectivePolicyView), (status = 401, body = ErrorBody),
        (status = 403, description = "Reauthentication required", body = ErrorBody),
        (status = 409, description = "The policy does not let users change it (`user_cannot_change`)", body = ErrorBody)))]
pub async fn set_two_factor(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
    Json(req): Json<SetTwoFactor>,
) -> AppResult<Json<EffectivePolicyView>> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let policy = effective_policy(&state, &who.user).await?;
    if !policy.user_can_change {
        return Err(AppError::conflict(
            ErrorCode::UserCannotChange,
            "your organisation does not let users change this setting",
        ));
    }
    who.require_fresh(&state)?;
    let mut tx = state.db().begin_write().await?;
    // The caller's own switch and stamp, and an audit event: their rows alone.
    tx.touches(crate::db::Touches::user(&who.user.id));
    fdb::set_user_flag(&mut tx, &who.user.id, req.enabled).await?;
    fdb::rotate_stamp(&mut tx, &who.user.id, &auth::new_stamp(), Some(&who.token_hash)).await?;
    super::audit(
        &mut tx,
        &state,
        &who.user.id,
        &who.user.scope_key,
        "user.two_factor_set",
        &format!("user:{}", who.user.id),
        Some(serde_json::json!({ "two_factor_enabled": who.user.two_factor_enabled != 0 })),
        Some(serde_json::json!({ "two_factor_enabled": req.enabled, "by": "self" })),
    )
    .await?;
    tx.commit().await?;
    let user = crate::db::get_user(&state.db().pool, &who.user.id).await?.ok_or(AppError::Unauthenticated)?;
    if !req.enabled && who.user.two_factor_enabled != 0 {
        notify::send(&state, &user, Notice::TwoFactorTurnedOff);
    }
    Ok(Json(signin::resolved_policy(&state, &user).await?.view(user.id.clone())))
}

/// Confirms the password (and a second factor, when the user has one) so sensitive
/// changes are allowed for a few minutes.
#[utoipa::path(post, path = "/api/account/reauthenticate", tag = "account", request_body = ReauthenticateRequest,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub async fn reauthenticate(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<ReauthenticateRequest>,
) -> AppResult<StatusCode> {
    limit(&state, addr, &who, Class::Verify)?;
    own(&state, &who, Action::UpdateOwnAccount)?;
    let client = ClientInfo { ip: Some(addr.to_string()), user_agent: None };
    signin::advance(&state, SignIn::Complete(Box::new(who)), Event::Reauthenticate(req), &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends an email or SMS code for reauthentication, to a confirmed destination.
#[utoipa::path(post, path = "/api/account/reauthenticate/send-code", tag = "account", request_body = SendCodeRequest,
    responses((status = 200, body = SendCodeResponse), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub async fn reauth_send_code(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<SendCodeRequest>,
) -> AppResult<Json<SendCodeResponse>> {
    limit(&state, addr, &who, Class::SendCode)?;
    own(&state, &who, Action::UpdateOwnAccount)?;
    if let Some(channel) = Channel::of(req.method) {
        factors::ensure_sender(&state, channel)?;
    }
    let event = Event::SendCode(req.method);
    Ok(Json(
        signin::advance(&state, SignIn::Complete(Box::new(who)), event, &ClientInfo::default()).await?.into_sent()?,
    ))
}

/// Changes the password; other sessions and remembered browsers end.
#[utoipa::path(put, path = "/api/account/password", tag = "account", request_body = ChangePassword,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<ChangePassword>,
) -> AppResult<StatusCode> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    check_new_password(&req.new_password).map_err(|e| AppError::invalid_field("new_password", e.message))?;
    let client = ClientInfo { ip: Some(addr.to_string()), user_agent: None };
    signin::verify_password_of(&state, &who.user, req.current_password, &client, "password_change.failed").await?;
    let hash = auth::hash_password(req.new_password).await?;
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&who.user.id));
    fdb::set_password_hash(&mut tx, &who.user.id, &hash).await?;
    fdb::rotate_stamp(&mut tx, &who.user.id, &auth::new_stamp(), Some(&who.token_hash)).await?;
    super::audit(
        &mut tx,
        &state,
        &who.user.id,
        &who.user.scope_key,
        "user.password_changed",
        &format!("user:{}", who.user.id),
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    notify::send(&state, &who.user, Notice::PasswordChanged);
    Ok(StatusCode::NO_CONTENT)
}

/// Starts setting up an authenticator app: the secret, shown this once.
#[utoipa::path(post, path = "/api/account/authenticator", tag = "account",
    responses((status = 200, body = AuthenticatorEnrollment),
        (status = 400, description = "Authenticator apps are not allowed here", body = ErrorBody),
        (status = 409, description = "An authenticator is already set up", body = ErrorBody)))]
pub async fn start_authenticator(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
) -> AppResult<Json<AuthenticatorEnrollment>> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    who.require_fresh(&state)?;
    let policy = effective_policy(&state, &who.user).await?;
    if !policy.allowed_providers.authenticator {
        return Err(AppError::bad_request(ErrorCode::ProviderUnavailable, "authenticator apps are not allowed here"));
    }
    Ok(Json(lifecycle::begin_authenticator(&state, &who.user).await?))
}

/// Activates the authenticator with its first code. Returns recovery codes, once, when
/// it is the user's first factor.
#[utoipa::path(post, path = "/api/account/authenticator/confirm", tag = "account", request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub async fn confirm_authenticator(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<CodeRequest>,
) -> AppResult<Json<RecoveryCodes>> {
    limit(&state, addr, &who, Class::Verify)?;
    confirm_factor(&state, who, FactorKind::Authenticator, req.code).await
}

/// Confirms a factor being added with its first code, through the sign-in machine.
async fn confirm_factor(
    state: &AppState,
    who: Authenticated,
    factor: FactorKind,
    code: String,
) -> AppResult<Json<RecoveryCodes>> {
    own(state, &who, Action::UpdateOwnAccount)?;
    who.require_fresh(state)?;
    let event = Event::ConfirmFactor { factor, code };
    match signin::advance(state, SignIn::Complete(Box::new(who)), event, &ClientInfo::default()).await? {
        Outcome::FactorAdded(codes) => Ok(Json(RecoveryCodes { recovery_codes: codes.unwrap_or_default() })),
        other => Err(AppError::Internal(anyhow::anyhow!("unexpected confirmation outcome {other:?}"))),
    }
}

/// Removes a factor after the usual checks: fresh, present, never the last under forced.
async fn remove_factor(state: &AppState, who: &Authenticated, factor: FactorKind) -> AppResult<()> {
    let policy = effective_policy(state, &who.user).await?;
    lifecycle::ensure_not_last(&who.user, &policy, factor)?;
    lifecycle::remove(state, &who.user, factor, Some(&who.token_hash)).await
}

/// Removes the authenticator (fresh reauthentication; never the last factor under forced).
#[utoipa::path(delete, path = "/api/account/authenticator", tag = "account",
    responses((status = 204), (status = 403, body = ErrorBody),
        (status = 404, description = "No authenticator is set up", body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_authenticator(State(state): State<AppState>, Caller { who, .. }: Caller) -> AppResult<StatusCode> {
    remove_held(&state, &who, FactorKind::Authenticator).await
}

/// Replaces every recovery code with ten new ones, shown once (fresh reauthentication).
#[utoipa::path(post, path = "/api/account/recovery-codes", tag = "account",
    responses((status = 200, body = RecoveryCodes), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
) -> AppResult<Json<RecoveryCodes>> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    who.require_fresh(&state)?;
    if !who.user.has_factor() {
        return Err(AppError::conflict(ErrorCode::NoFactor, "set up a second factor before creating recovery codes"));
    }
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&who.user.id));
    let codes = factors::issue_recovery_codes(&mut tx, &state, &who.user.id).await?;
    super::audit(
        &mut tx,
        &state,
        &who.user.id,
        &who.user.scope_key,
        "recovery_codes.regenerated",
        &format!("user:{}", who.user.id),
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    notify::send(&state, &who.user, Notice::RecoveryCodesIssued);
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Sets an email address to confirm and sends it a code. Replacing a confirmed address
/// needs a fresh reauthentication.
#[utoipa::path(put, path = "/api/account/email", tag = "account", request_body = EmailRequest,
    responses((status = 200, body = SendCodeResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn change_email(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<EmailRequest>,
) -> AppResult<Json<SendCodeResponse>> {
    limit(&state, addr, &who, Class::SendCode)?;
    own(&state, &who, Action::UpdateOwnAccount)?;
    factors::ensure_sender(&state, Channel::Email)?;
    let email = match req.email.as_deref() {
        Some(e) => EmailAddress::parse(e).map_err(|e| AppError::invalid_field(e.field, e.message))?.as_str().to_owned(),
        None => {
            who.user.email.clone().ok_or_else(|| AppError::invalid_field("email", "give the address to confirm"))?
        }
    };
    who.require_fresh(&state)?;
    // Send first: a refused or failed send must leave the account as it was.
    let purpose = CodePurpose::ConfirmEmail;
    let sent = factors::send_code(&state, &who.user, purpose, &who.user.id, &email, Channel::Email, None).await?;
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&who.user.id));
    fdb::set_pending_email(&mut tx, &who.user.id, &email).await?;
    tx.commit().await?;
    Ok(Json(sent))
}

/// Confirms the pending email address with its code.
#[utoipa::path(post, path = "/api/account/email/confirm", tag = "account", request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub async fn confirm_email(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<CodeRequest>,
) -> AppResult<Json<RecoveryCodes>> {
    limit(&state, addr, &who, Class::Verify)?;
    confirm_factor(&state, who, FactorKind::Email, req.code).await
}

/// Removes the email address, confirmed or pending (fresh reauthentication; never the
/// last factor while 2FA is imposed). Without an address the account also gets no
/// security notices and no self-service password reset, which the web app says first.
#[utoipa::path(delete, path = "/api/account/email", tag = "account",
    responses((status = 204), (status = 403, body = ErrorBody),
        (status = 404, description = "No email address is set", body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_email(State(state): State<AppState>, Caller { who, .. }: Caller) -> AppResult<StatusCode> {
    remove_held(&state, &who, FactorKind::Email).await
}

/// Removes the authenticator, or the email address or phone number whether confirmed or
/// pending: 404 when there is none.
async fn remove_held(state: &AppState, who: &Authenticated, kind: FactorKind) -> AppResult<StatusCode> {
    own(state, who, Action::UpdateOwnAccount)?;
    who.require_fresh(state)?;
    let u = &who.user;
    let (on_file, what) = match kind {
        FactorKind::Email => (u.email.is_some() || u.pending_email.is_some(), "email"),
        FactorKind::Phone => (u.phone.is_some() || u.pending_phone.is_some(), "phone"),
        FactorKind::Authenticator => (u.has_authenticator != 0, "authenticator"),
        // Passkeys are removed one by one, by id (routes/passkeys.rs).
        FactorKind::Passkey => (false, "passkey"),
    };
    if !on_file {
        return Err(AppError::NotFound(what));
    }
    remove_factor(state, who, kind).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a phone number to confirm and texts it a code. Replacing a confirmed number
/// needs a fresh reauthentication.
#[utoipa::path(put, path = "/api/account/phone", tag = "account", request_body = PhoneRequest,
    responses((status = 200, body = SendCodeResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn change_phone(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<PhoneRequest>,
) -> AppResult<Json<SendCodeResponse>> {
    limit(&state, addr, &who, Class::SendCode)?;
    own(&state, &who, Action::UpdateOwnAccount)?;
    factors::ensure_sender(&state, Channel::Sms)?;
    let phone = match req.phone.as_deref() {
        Some(p) => factors::parse_phone(p)?,
        None => who.user.phone.clone().ok_or_else(|| AppError::invalid_field("phone", "give the number to confirm"))?,
    };
    factors::ensure_phone_country(&state, &who.user.scope_key, &phone).await?;
    who.require_fresh(&state)?;
    // Send first: a refused or failed send must leave the account as it was.
    let purpose = CodePurpose::ConfirmPhone;
    let sent = factors::send_code(&state, &who.user, purpose, &who.user.id, &phone, Channel::Sms, None).await?;
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&who.user.id));
    fdb::set_pending_phone(&mut tx, &who.user.id, &phone).await?;
    tx.commit().await?;
    Ok(Json(sent))
}

/// Confirms the pending phone number with its code.
#[utoipa::path(post, path = "/api/account/phone/confirm", tag = "account", request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub async fn confirm_phone(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<CodeRequest>,
) -> AppResult<Json<RecoveryCodes>> {
    limit(&state, addr, &who, Class::Verify)?;
    confirm_factor(&state, who, FactorKind::Phone, req.code).await
}

/// Removes the phone number (fresh reauthentication; never the last factor under forced).
#[utoipa::path(delete, path = "/api/account/phone", tag = "account",
    responses((status = 204), (status = 403, body = ErrorBody),
        (status = 404, description = "No phone number is set", body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_phone(State(state): State<AppState>, Caller { who, .. }: Caller) -> AppResult<StatusCode> {
    remove_held(&state, &who, FactorKind::Phone).await
}

/// Browsers remembered for this user, newest first.
#[utoipa::path(get, path = "/api/account/browsers", tag = "account",
    responses((status = 200, body = Vec<RememberedBrowser>), (status = 401, body = ErrorBody)))]
pub async fn list_browsers(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
    jar: CookieJar,
) -> AppResult<Json<Vec<RememberedBrowser>>> {
    own(&state, &who, Action::ReadOwnAccount)?;
    let current = jar
        .get(&state.config().remember_cookie())
        .and_then(|c| state.keys().verify_signed_token(c.value()))
        .map(|t| token_hash(&t));
    let current_id = match current {
        Some(h) => fdb::find_browser(&state.db().pool, &h).await?.map(|b| b.id),
        None => None,
    };
    let now = state.now();
    let policy = effective_policy(&state, &who.user).await?;
    let rows = fdb::list_browsers(&state.db().pool, &who.user.id, now).await?;
    Ok(Json(
        rows.into_iter()
            // Only browsers that still skip the second factor: one remembered before a
            // password change (or under a longer lifetime) is not remembered any more.
            .filter(|r| signin::browser_still_skips(r, &who.user, &policy, now))
            .map(|r| RememberedBrowser {
                current: current_id.as_deref() == Some(r.id.as_str()),
                id: r.id,
                created_at: rfc3339(r.created_at),
                last_used_at: rfc3339(r.last_used_at),
                expires_at: rfc3339(r.expires_at),
                user_agent: r.user_agent,
            })
            .collect(),
    ))
}

/// Forgets one remembered browser: its next sign-in asks for the second factor again.
#[utoipa::path(delete, path = "/api/account/browsers/{browser_id}", tag = "account",
    params(("browser_id" = String, Path, description = "Remembered browser id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn forget_browser(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
    Path(browser_id): Path<String>,
) -> AppResult<StatusCode> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let id = parse_id(&browser_id, "browser")?;
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&who.user.id));
    if !fdb::delete_browser(&mut tx, &who.user.id, &id).await? {
        return Err(AppError::NotFound("browser"));
    }
    tx.commit().await?;
    audit(&state, &who, "browser.forgotten", serde_json::json!({ "browser_id": id })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forgets every remembered browser of the user.
#[utoipa::path(delete, path = "/api/account/browsers", tag = "account", responses((status = 204)))]
pub async fn forget_all_browsers(State(state): State<AppState>, Caller { who, .. }: Caller) -> AppResult<StatusCode> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&who.user.id));
    let n = fdb::delete_browsers(&mut tx, &who.user.id).await?;
    tx.commit().await?;
    audit(&state, &who, "browser.forgotten", serde_json::json!({ "all": true, "count": n })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's signed-in sessions (device, address, when), the current one marked.
#[utoipa::path(get, path = "/api/account/sessions", tag = "account",
    responses((status = 200, body = Vec<SessionInfo>), (status = 401, body = ErrorBody)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
) -> AppResult<Json<Vec<SessionInfo>>> {
    own(&state, &who, Action::ReadOwnAccount)?;
    Ok(Json(super::live_sessions(&state, &who.user, who.sid.as_deref()).await?))
}

/// Signs one of the caller's sessions out (the current one too, if named).
#[utoipa::path(delete, path = "/api/account/sessions/{session_id}", tag = "account",
    params(("session_id" = String, Path, description = "Session id, as listed")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn end_session(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
    Path(session_id): Path<String>,
) -> AppResult<StatusCode> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let id = parse_session_id(&session_id)?;
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&who.user.id));
    if !crate::db::delete_session_by_id(&mut tx, &who.user.id, &id).await? {
        return Err(AppError::NotFound("session"));
    }
    tx.commit().await?;
    audit(&state, &who, "session.ended", serde_json::json!({ "session_id": id })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs out every session of the caller but the current one.
#[utoipa::path(post, path = "/api/account/sessions/end-others", tag = "account",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn end_other_sessions(State(state): State<AppState>, Caller { who, .. }: Caller) -> AppResult<StatusCode> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let keep = who.sid.clone().unwrap_or_default();
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&who.user.id));
    let n = crate::db::delete_other_sessions(&mut tx, &who.user.id, &keep).await?;
    tx.commit().await?;
    audit(&state, &who, "session.ended", serde_json::json!({ "others": true, "count": n })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Session ids (`sid`) are random base64url or hex; anything else names no session, as a
/// malformed id of any other object.
fn parse_session_id(raw: &str) -> AppResult<String> {
    if (16..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(raw.to_owned())
    } else {
        Err(AppError::NotFound("session"))
    }
}
