//! Pending sign-ins: the rows that hold a sign-in between the password and the session,
//! and what may happen while one waits (code sends, the start of an enrolment).

use twofold_policy::EffectivePolicy;
use twofold_policy::Provider;
use twofold_policy::names::EmailAddress;
use twofold_policy::wire::SendCodeResponse;

use super::{Outcome, Stage, Start};
use crate::app::AppState;
use crate::auth::{self, token_hash};
use crate::db::UserRow;
use crate::db::factors::{self as fdb, AttemptRow, NewAttempt};
use crate::error::{AppError, AppResult};
use crate::factors::{self, Channel, CodePurpose, lifecycle};
use crate::ratelimit::Class;
use twofold_policy::wire::ErrorCode;

/// A pending sign-in that is still open, with its user and their current policy.
#[derive(Debug)]
pub struct Pending {
    pub attempt: AttemptRow,
    pub user: UserRow,
    pub policy: EffectivePolicy,
    pub stage: Stage,
}

/// Opens a pending sign-in in `stage` and returns the token for its cookie.
pub(super) async fn open(state: &AppState, user: &UserRow, stage: Stage) -> AppResult<String> {
    let token = auth::new_token();
    let now = state.now();
    let hash = token_hash(&token);
    let (user_id, stamp) = (user.id.clone(), user.security_stamp.clone());
    let expires_at = now + i64::from(state.config().pending_sign_in_minutes) * 60_000;
    state
        .db()
        // An insert: no row a cache keeps changes.
        .write_one_touching(crate::db::Touches::NothingKept, move |c| {
            Box::pin(async move {
                let attempt = NewAttempt {
                    token_hash: &hash,
                    id: &uuid::Uuid::now_v7().to_string(),
                    user_id: &user_id,
                    stage: stage.as_str(),
                    security_stamp: &stamp,
                    created_at: now,
                    expires_at,
                };
                fdb::insert_attempt(c, &attempt).await
            })
        })
        .await?;
    Ok(token)
}

/// Loads the pending sign-in of `token`.
pub(super) async fn load(state: &AppState, token: Option<&str>) -> AppResult<Pending> {
    let token = token.ok_or(AppError::SignInExpired)?;
    let (attempt, user, groups) = state.db().pending(&token_hash(token)).await?.ok_or(AppError::SignInExpired)?;
    let now = state.now();
    let stage = match attempt.stage.as_str() {
        "second_factor" => Stage::AwaitingSecondFactor,
        "enrollment" => Stage::AwaitingEnrollment,
        _ => return Err(AppError::SignInExpired),
    };
    if attempt.completed_at.is_some() || attempt.expires_at <= now {
        return Err(AppError::SignInExpired);
    }
    if !auth::stamps_equal(&attempt.security_stamp, &user.security_stamp) {
        return Err(AppError::SignInExpired);
    }
    let policy = super::resolved_with(state, user.tenant_id.as_deref(), user.two_factor_enabled != 0, groups, None)
        .await?
        .policy;
    Ok(Pending { attempt, user, policy, stage })
}

/// Whether the pending sign-in `id` has been completed (by another request).
pub(super) async fn completed(state: &AppState, id: &str) -> AppResult<bool> {
    Ok(fdb::attempt_completed(&state.db().pool, id).await?)
}

/// Sends a sign-in code by email or SMS, to a confirmed destination only.
pub(super) async fn send_sign_in_code(
    state: &AppState,
    p: &Pending,
    provider: Provider,
) -> AppResult<SendCodeResponse> {
    state.limits().by_account(Class::SendCode, &p.user.id, state.now())?;
    super::ensure_not_locked(state, &p.user)?;
    if let Some(channel) = Channel::of(provider) {
        factors::ensure_sender(state, channel)?;
    }
    let (channel, destination) = match provider {
        Provider::Email if p.user.email_confirmed != 0 && p.policy.allowed_providers.email => {
            (Channel::Email, p.user.email.clone())
        }
        Provider::Sms if p.user.phone_confirmed != 0 && p.policy.allowed_providers.sms => {
            (Channel::Sms, p.user.phone.clone())
        }
        _ => (Channel::Email, None),
    };
    let Some(destination) = destination else {
        return Err(AppError::bad_request(
            ErrorCode::ProviderUnavailable,
            "this provider is not available for this account",
        ));
    };
    let purpose = CodePurpose::sign_in(channel);
    factors::send_code(state, &p.user, purpose, &p.attempt.id, &destination, channel, Some(&p.attempt)).await
}

/// Starts enrolling a factor in a pending sign-in: a new authenticator secret (shown
/// once), or a code to the email address or phone to confirm.
pub(super) async fn start_enrollment(state: &AppState, p: &Pending, start: Start) -> AppResult<Outcome> {
    match start {
        Start::Authenticator => {
            if !p.policy.allowed_providers.authenticator {
                return Err(AppError::bad_request(
                    ErrorCode::ProviderUnavailable,
                    "authenticator apps are not allowed here",
                ));
            }
            lifecycle::begin_authenticator(state, &p.user).await.map(Outcome::EnrollmentStarted)
        }
        Start::Contact(channel, destination) => {
            state.limits().by_account(Class::SendCode, &p.user.id, state.now())?;
            super::ensure_not_locked(state, &p.user)?;
            if !p.policy.allowed_providers.allows(channel.provider()) {
                return Err(AppError::bad_request(ErrorCode::ProviderUnavailable, "this provider is not allowed here"));
            }
            let destination = match (channel, destination.as_deref()) {
                (Channel::Email, Some(e)) => {
                    EmailAddress::parse(e).map_err(|e| AppError::invalid_field(e.field, e.message))?.as_str().to_owned()
                }
                (Channel::Email, None) => p
                    .user
                    .email
                    .clone()
                    .ok_or_else(|| AppError::invalid_field("email", "give the address to confirm"))?,
                (Channel::Sms, Some(n)) => factors::parse_phone(n)?,
                (Channel::Sms, None) => p
                    .user
                    .phone
                    .clone()
                    .ok_or_else(|| AppError::invalid_field("phone", "give the number to confirm"))?,
            };
            factors::ensure_sender(state, channel)?;
            let purpose = CodePurpose::enroll(channel);
            factors::send_code(state, &p.user, purpose, &p.attempt.id, &destination, channel, Some(&p.attempt))
                .await
                .map(Outcome::CodeSent)
        }
    }
}
