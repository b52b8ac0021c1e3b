//! Passkey routes: passwordless sign-in, a passkey as the second factor, enrolment
//! during a sign-in, and the account page's own passkeys (list, add, rename, remove).
//!
//! Each ceremony has two requests: `.../options` (or the enrolment start) answers what
//! to pass to `navigator.credentials`, the next request carries the browser's answer.
//! Both go through the sign-in machine (`crate::signin`); nothing here checks a
//! credential itself.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
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
use crate::db::passkeys as pdb;
use crate::error::{AppError, AppResult};
use crate::extract::{ClientAddr, Json, Path, parse_id};
use crate::factors::lifecycle;
use crate::ratelimit::Class;
use crate::signin::{self, ClientInfo, Event, Outcome, PasskeyStart, State as SignIn, effective_policy};

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
        .route("/api/account/passkeys/{passkey_id}", put(rename).delete(remove))
}

fn challenge(outcome: Outcome) -> AppResult<Json<PasskeyChallenge>> {
    match outcome {
        Outcome::PasskeyChallenge(c) => Ok(Json(c)),
        other => Err(AppError::Internal(anyhow::anyhow!("unexpected passkey outcome {other:?}"))),
    }
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
    state.limits().by_address(Class::Verify, addr, state.now())?;
    let client = client_info(addr, &headers);
    let done = signin::advance(&state, SignIn::AwaitingPassword, Event::PasskeySignIn(req), &client)
        .await?
        .into_completed()?;
    signed_in(&state, jar, done).await
}

/// Starts proving a passkey as the second factor of this browser's pending sign-in.
#[utoipa::path(post, path = "/api/auth/sign-in/passkey/options", tag = "auth", security(()),
    responses((status = 200, body = PasskeyChallenge), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 423, body = ErrorBody)))]
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
    state.limits().by_address(Class::Verify, addr, state.now())?;
    let client = client_info(addr, &headers);
    let done = advance_pending(&state, &jar, Event::PasskeySecondFactor(req), &client).await?.into_completed()?;
    signed_in(&state, jar, done).await
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
    state.limits().by_address(Class::Verify, addr, state.now())?;
    let client = client_info(addr, &headers);
    let done = advance_pending(&state, &jar, Event::EnrollPasskey(req), &client).await?.into_completed()?;
    signed_in(&state, jar, done).await
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

/// Renames one of the user's passkeys.
#[utoipa::path(put, path = "/api/account/passkeys/{passkey_id}", tag = "account", request_body = PasskeyName,
    params(("passkey_id" = String, Path, description = "The passkey's id")),
    responses((status = 200, body = Passkey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rename(
    State(state): State<AppState>,
    Caller { who, .. }: Caller,
    Path(raw_id): Path<String>,
    Json(req): Json<PasskeyName>,
) -> AppResult<Json<Passkey>> {
    own(&state, &who, Action::UpdateOwnAccount)?;
    let id = parse_id(&raw_id, "passkey")?;
    let name = req.parse().map_err(|m| AppError::invalid_field("name", m))?;
    let mut tx = state.db().begin_write().await?;
    if !pdb::rename(&mut tx, &who.user.id, &id, name).await? {
        return Err(AppError::NotFound("passkey"));
    }
    tx.commit().await?;
    let rows = pdb::list(&state.db().pool, &who.user.id).await?;
    rows.iter().find(|r| r.id == id).map(|r| Json(view(r))).ok_or(AppError::NotFound("passkey"))
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
