//! Passkey routes: passwordless sign-in, a passkey as the second factor, enrolment
//! during a sign-in, reauthentication of a session, and the account page's own passkeys
//! (list, add, rename, remove).
//!
//! Each ceremony has two requests: `.../options` (or the enrolment start) answers what
//! to pass to `navigator.credentials`, the next request carries the browser's answer.
//! Both go through the sign-in machine (`crate::signin`); nothing here checks a
//! credential itself.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch, post};
use axum_extra::extract::CookieJar;
use twofold_policy::authz::{Action, Target};
use twofold_policy::wire::{
    ErrorBody, Passkey, PasskeyChallenge, PasskeyFinish, PasskeyName, RecoveryCodes, SignInResponse, SignInStatus,
};

use super::account::Caller;
use super::auth::{advance_pending, client_info, signed_in};
use crate::app::{AppState, domain_of};
use crate::auth::Authenticated;
use crate::clock::rfc3339;
use crate::db::{self, passkeys as pdb};
use crate::error::{AppError, AppResult};
use crate::extract::{ClientAddr, Json, Path, parse_id};
use crate::factors::lifecycle;
use crate::ratelimit::Class;
use crate::signin::{
    self, ClientInfo, Event, EventKind, Outcome, PasskeyStart, State as SignIn, StepUpProof, effective_policy,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/passkey/options", post(passwordless_options))
        .route("/api/auth/passkey", post(passwordless))
        .route("/api/auth/sign-in/passkey/options", post(second_factor_options))
        .route("/api/auth/sign-in/passkey", post(second_factor))
        .route("/api/auth/enroll/passkey", post(enroll_options))
        .route("/api/auth/enroll/passkey/confirm", post(enroll_confirm))
        .route("/api/account/passkeys", get(list).post(add_options))
        .route("/api/account/passkeys/confirm", post(add_confirm))
        .route("/api/account/passkeys/{passkey_id}", patch(rename).delete(remove))
        .route("/api/account/reauthenticate/passkey/options", post(reauth_options))
        .route("/api/account/reauthenticate/passkey", post(reauthenticate))
        .route("/api/auth/step-up/passkey/options", post(step_up_options))
        .route("/api/auth/step-up/passkey", post(step_up))
}

fn challenge(outcome: Outcome) -> AppResult<Json<PasskeyChallenge>> {
    match outcome {
        Outcome::PasskeyChallenge(c) => Ok(Json(c)),
        other => Err(AppError::Internal(anyhow::anyhow!("unexpected passkey outcome {other:?}"))),
    }
}

/// Finishes a sign-in ceremony with the browser's answer, the one way for the
/// passwordless sign-in, the second factor and the enrolment: a passwordless sign-in
/// starts from nothing, the others continue the browser's pending sign-in.
async fn finish_sign_in(
    state: &AppState,
    addr: std::net::IpAddr,
    headers: &HeaderMap,
    jar: CookieJar,
    event: Event,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    state.limits().by_address(Class::Verify, addr, state.now())?;
    let client = client_info(addr, headers);
    let outcome = match event.kind() {
        EventKind::PasskeySignIn => signin::advance(state, SignIn::AwaitingPassword, event, &client).await?,
        _ => advance_pending(state, &jar, event, &client).await?,
    };
    signed_in(state, jar, outcome.into_completed()?).await
}

/// Starts a passwordless sign-in: options for `navigator.credentials.get` with
/// conditional mediation (the browser offers this site's passkeys in the user name
/// field's autofill).
#[utoipa::path(post, path = "/api/auth/passkey/options", tag = "auth", security(()),
    responses((status = 200, body = PasskeyChallenge),
        (status = 409, description = "Passkeys are not set up here (passkeys_unavailable)", body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn passwordless_options(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
) -> AppResult<Json<PasskeyChallenge>> {
    state.limits().by_address(Class::SignIn, addr, state.now())?;
    let event = Event::PasskeyOptions(PasskeyStart::Discover);
    challenge(signin::advance(&state, SignIn::AwaitingPassword, event, &ClientInfo::default()).await?)
}

/// Finishes a passwordless sign-in: a discoverable passkey with user verification is a
/// complete two-factor sign-in. Unknown passkeys, used challenges and refused accounts
/// all answer `passkey_refused`.
#[utoipa::path(post, path = "/api/auth/passkey", tag = "auth", security(()), request_body = PasskeyFinish,
    responses((status = 200, body = SignInResponse), (status = 400, body = ErrorBody),
        (status = 401, description = "The passkey was not accepted (passkey_refused)", body = ErrorBody),
        (status = 423, body = ErrorBody), (status = 409, description = "passkeys_unavailable: no public_url with a domain", body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn passwordless(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<PasskeyFinish>,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    finish_sign_in(&state, addr, &headers, jar, Event::PasskeySignIn(req)).await
}

/// Starts proving a passkey as the second factor of this browser's pending sign-in.
#[utoipa::path(post, path = "/api/auth/sign-in/passkey/options", tag = "auth", security(()),
    responses((status = 200, body = PasskeyChallenge), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 423, body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn second_factor_options(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
) -> AppResult<Json<PasskeyChallenge>> {
    state.limits().by_address(Class::Verify, addr, state.now())?;
    let event = Event::PasskeyOptions(PasskeyStart::Prove);
    challenge(advance_pending(&state, &jar, event, &ClientInfo::default()).await?)
}

/// Finishes the second factor with a passkey and completes the sign-in.
#[utoipa::path(post, path = "/api/auth/sign-in/passkey", tag = "auth", security(()), request_body = PasskeyFinish,
    responses((status = 200, body = SignInResponse), (status = 400, body = ErrorBody),
        (status = 401, description = "passkey_refused, or an expired sign-in (sign_in_expired)", body = ErrorBody),
        (status = 423, body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn second_factor(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<PasskeyFinish>,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    finish_sign_in(&state, addr, &headers, jar, Event::PasskeySecondFactor(req)).await
}

/// Starts registering a passkey during a sign-in that requires enrolment.
#[utoipa::path(post, path = "/api/auth/enroll/passkey", tag = "auth", security(()), request_body = PasskeyName,
    responses((status = 200, body = PasskeyChallenge), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn enroll_options(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Json(req): Json<PasskeyName>,
) -> AppResult<Json<PasskeyChallenge>> {
    state.limits().by_address(Class::SendCode, addr, state.now())?;
    let event = Event::PasskeyOptions(PasskeyStart::Register(req.name));
    challenge(advance_pending(&state, &jar, event, &ClientInfo::default()).await?)
}

/// Finishes registering the passkey and completes the sign-in; the response carries the
/// recovery codes, once, when it is the user's first factor.
#[utoipa::path(post, path = "/api/auth/enroll/passkey/confirm", tag = "auth", security(()), request_body = PasskeyFinish,
    responses((status = 200, body = SignInResponse), (status = 400, body = ErrorBody),
        (status = 401, description = "passkey_refused, or an expired sign-in", body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn enroll_confirm(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<PasskeyFinish>,
) -> AppResult<(CookieJar, Json<SignInResponse>)> {
    finish_sign_in(&state, addr, &headers, jar, Event::EnrollPasskey(req)).await
}

/// A passkey ceremony's step in a signed-in session (reauthentication, step-up), after
/// the per-address limit every proof of a factor has.
async fn on_session(
    state: &AppState,
    addr: std::net::IpAddr,
    who: Authenticated,
    event: Event,
    client: &ClientInfo,
) -> AppResult<Outcome> {
    state.limits().by_address(Class::Verify, addr, state.now())?;
    signin::advance(state, SignIn::Complete(Box::new(who)), event, client).await
}

fn own(state: &AppState, who: &Authenticated, action: Action) -> AppResult<()> {
    state.authorize(who, action, Target::User { id: &who.user.id, domain: domain_of(&who.user.scope_key) })
}

/// A passkey row as its owner sees it.
pub fn view(row: &pdb::PasskeyRow) -> Passkey {
    Passkey {
        id: row.id.clone(),
        name: row.name.clone(),
        aaguid: row.aaguid.clone(),
        backup_eligible: row.backup_eligible != 0,
        backed_up: row.backup_state != 0,
        created_at: rfc3339(row.created_at),
        last_used_at: row.last_used_at.map(rfc3339),
    }
}

/// The signed-in user's passkeys.
#[utoipa::path(get, path = "/api/account/passkeys", tag = "account",
    responses((status = 200, body = [Passkey]), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, Caller { who, .. }: Caller) -> AppResult<Json<Vec<Passkey>>> {
    own(&state, &who, Action::ReadOwnAccount)?;
    Ok(Json(pdb::list(&state.db().pool, &who.user.id).await?.iter().map(view).collect()))
}

/// Starts adding a passkey named `name` (fresh reauthentication).
#[utoipa::path(post, path = "/api/account/passkeys", tag = "account", request_body = PasskeyName,
    responses((status = 200, body = PasskeyChallenge), (status = 400, body = ErrorBody),
        (status = 403, description = "Reauthentication required", body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_options(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<PasskeyName>,
) -> AppResult<Json<PasskeyChallenge>> {
    state.limits().by_address(Class::SendCode, addr, state.now())?;
    own(&state, &who, Action::UpdateOwnAccount)?;
    let event = Event::PasskeyOptions(PasskeyStart::Register(req.name));
    challenge(signin::advance(&state, SignIn::Complete(Box::new(who)), event, &ClientInfo::default()).await?)
}

/// Finishes adding the passkey. Returns recovery codes, once, when it is the user's
/// first factor (empty otherwise).
#[utoipa::path(post, path = "/api/account/passkeys/confirm", tag = "account", request_body = PasskeyFinish,
    responses((status = 200, body = RecoveryCodes), (status = 400, body = ErrorBody),
        (status = 401, description = "passkey_refused", body = ErrorBody),
        (status = 403, description = "Reauthentication required", body = ErrorBody), (status = 409, description = "passkeys_unavailable: no public_url with a domain", body = ErrorBody)))]
pub async fn add_confirm(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<PasskeyFinish>,
) -> AppResult<Json<RecoveryCodes>> {
    state.limits().by_address(Class::Verify, addr, state.now())?;
    own(&state, &who, Action::UpdateOwnAccount)?;
    match signin::advance(&state, SignIn::Complete(Box::new(who)), Event::AddPasskey(req), &ClientInfo::default())
        .await?
    {
        Outcome::FactorAdded(codes) => Ok(Json(RecoveryCodes { recovery_codes: codes.unwrap_or_default() })),
        other => Err(AppError::Internal(anyhow::anyhow!("unexpected passkey outcome {other:?}"))),
    }
}

/// Renames one of the user's passkeys. A name is a label, not a change to how the user
/// signs in, so it needs no fresh reauthentication; it is audited like the others.
#[utoipa::path(patch, path = "/api/account/passkeys/{passkey_id}", tag = "account", request_body = PasskeyName,
    params(("passkey_id" = String, Path, description = "The passkey's id")),
    responses((status = 200, body = Passkey),
        (status = 400, description = "An empty, too long or control-character name (invalid_field, field name), or a malformed id", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Not one of the user's passkeys", body = ErrorBody)))]
pub async fn rename(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
    Path(raw_id): Path<String>,
    Json(req): Json<PasskeyName>,
) -> AppResult<Json<Passkey>> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let id = parse_id(&raw_id, "passkey")?;
    let name = req.parse().map_err(|m| AppError::invalid_field("name", m))?;
    let Some(before) = pdb::list(&state.db().pool, &who.user.id).await?.into_iter().find(|r| r.id == id) else {
        return Err(AppError::NotFound("passkey"));
    };
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&who.user.id));
    if !pdb::rename(&mut tx, &who.user.id, &id, name).await? {
        return Err(AppError::NotFound("passkey"));
    }
    db::insert_audit(
        &mut tx,
        &db::NewAudit {
            at: state.now(),
            actor_user_id: Some(&who.user.id),
            scope_key: &who.user.scope_key,
            action: "passkey.renamed",
            target: &format!("user:{}", who.user.id),
            before: Some(serde_json::json!({ "passkey_id": id, "name": before.name })),
            after: Some(serde_json::json!({ "passkey_id": id, "name": name })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Passkey { name: name.to_owned(), ..view(&before) }))
}

/// Removes one of the user's passkeys (fresh reauthentication; never the last factor
/// while two-factor sign-in is imposed).
#[utoipa::path(delete, path = "/api/account/passkeys/{passkey_id}", tag = "account",
    params(("passkey_id" = String, Path, description = "The passkey's id")),
    responses((status = 204), (status = 403, description = "Reauthentication required", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "The last factor (last_factor)", body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
    Path(raw_id): Path<String>,
) -> AppResult<StatusCode> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let id = parse_id(&raw_id, "passkey")?;
    // Another user's passkey is unknown here, fresh session or not.
    if !pdb::list(&state.db().pool, &who.user.id).await?.iter().any(|r| r.id == id) {
        return Err(AppError::NotFound("passkey"));
    }
    who.require_fresh(&state)?;
    let policy = effective_policy(&state, &who.user).await?;
    lifecycle::ensure_not_last(&who.user, &policy, lifecycle::FactorKind::Passkey)?;
    lifecycle::remove_passkey(&state, &who.user, &id, Some(&who.token_hash)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts reauthenticating the session with one of the user's passkeys, for sensitive
/// account changes.
#[utoipa::path(post, path = "/api/account/reauthenticate/passkey/options", tag = "account",
    responses((status = 200, body = PasskeyChallenge),
        (status = 400, description = "The user has no passkey (provider_unavailable)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "passkeys_unavailable: no public_url with a domain", body = ErrorBody),
        (status = 423, description = "The account is locked after failed second factors", body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn reauth_options(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
) -> AppResult<Json<PasskeyChallenge>> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let event = Event::PasskeyOptions(PasskeyStart::Prove);
    challenge(on_session(&state, addr, who, event, &ClientInfo::default()).await?)
}

/// Makes the session fresh with a passkey. A passkey with user verification is two
/// factors at once (it signs in without a password), so no password is asked here.
/// `remember_browser` has no meaning for a session that exists and is ignored.
#[utoipa::path(post, path = "/api/account/reauthenticate/passkey", tag = "account", request_body = PasskeyFinish,
    responses((status = 204),
        (status = 400, description = "Not a WebAuthn credential (invalid_field)", body = ErrorBody),
        (status = 401, description = "passkey_refused: unknown, used or expired challenge, or a refused passkey", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "passkeys_unavailable: no public_url with a domain", body = ErrorBody),
        (status = 423, description = "The account is locked after failed second factors", body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn reauthenticate(
    State(state): State<AppState>,
    Caller { who, addr }: Caller,
    Json(req): Json<PasskeyFinish>,
) -> AppResult<StatusCode> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let client = ClientInfo { ip: Some(addr.to_string()), user_agent: None };
    match on_session(&state, addr, who, Event::ReauthenticatePasskey(req), &client).await? {
        Outcome::Reauthenticated => Ok(StatusCode::NO_CONTENT),
        other => Err(AppError::Internal(anyhow::anyhow!("unexpected passkey outcome {other:?}"))),
    }
}

/// Starts a step-up with one of the user's passkeys, for an application that asks for a
/// recent or phishing-resistant second factor (see `GET /api/oidc/requests/{handle}`).
/// The challenge is bound to the session and answers once.
#[utoipa::path(post, path = "/api/auth/step-up/passkey/options", tag = "auth",
    responses((status = 200, body = PasskeyChallenge),
        (status = 400, description = "The user has no passkey (provider_unavailable)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "passkeys_unavailable: no public_url with a domain", body = ErrorBody),
        (status = 423, description = "The account is locked after failed second factors", body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn step_up_options(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    who: Authenticated,
) -> AppResult<Json<PasskeyChallenge>> {
    let event = Event::PasskeyOptions(PasskeyStart::Prove);
    challenge(on_session(&state, addr, who, event, &ClientInfo::default()).await?)
}

/// Proves a passkey again in a signed-in session, for an application's rule: the
/// session's second factor becomes this passkey (`phishing_resistant`), now. Like the
/// code step-up it opens no sensitive account change; the scope must still allow
/// passkeys.
#[utoipa::path(post, path = "/api/auth/step-up/passkey", tag = "auth", request_body = PasskeyFinish,
    responses((status = 204),
        (status = 400, description = "Not a WebAuthn credential (invalid_field), or passkeys are not allowed here (provider_unavailable)", body = ErrorBody),
        (status = 401, description = "passkey_refused: unknown, used or expired challenge, or a refused passkey; or no session", body = ErrorBody),
        (status = 409, description = "passkeys_unavailable: no public_url with a domain", body = ErrorBody),
        (status = 423, description = "The account is locked after failed second factors", body = ErrorBody),
        (status = 429, description = "rate_limited; Retry-After says when to try again", body = ErrorBody)))]
pub async fn step_up(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    who: Authenticated,
    Json(req): Json<PasskeyFinish>,
) -> AppResult<StatusCode> {
    let event = Event::StepUp(StepUpProof::Passkey(req));
    match on_session(&state, addr, who, event, &ClientInfo::default()).await? {
        Outcome::SteppedUp(_) => Ok(StatusCode::NO_CONTENT),
        other => Err(AppError::Internal(anyhow::anyhow!("unexpected step-up outcome {other:?}"))),
    }
}

/// What the verify step answers when a recovery code led to enrolment instead of a
/// session (a passkey is required and the user's is lost): the pending sign-in's cookie
/// stays, now naming an enrolment.
pub fn enrollment_after_recovery(state: &AppState, policy: &twofold_policy::EffectivePolicy) -> SignInResponse {
    SignInResponse {
        status: SignInStatus::RequiresEnrollment,
        enrollable: signin::enrollable(state, policy),
        ..SignInResponse::default()
    }
}
