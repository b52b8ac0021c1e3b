//! Pending sign-ins: the rows that hold a sign-in between the password and the session,
//! and what may happen while one waits (code sends, the start of an enrolment).

use twofold_policy::EffectivePolicy;
use twofold_policy::Provider;
use twofold_policy::names::EmailAddress;
use twofold_policy::wire::SendCodeResponse;

use super::lockout::{self, Counted};
use super::opened;
use super::{Outcome, Stage, Start};
use crate::app::AppState;
use crate::auth::{self, token_hash};
use crate::db::UserRow;
use crate::db::factors::{self as fdb, AttemptRow, NewAttempt};
use crate::db::groups::{PendingRows, ReserveAt};
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
    /// The lockout attempt counted with the read ([`load_counting`]), for the check it
    /// was counted for.
    pub counted: Option<Counted>,
}

/// Opens a pending sign-in in `stage` and returns the token for its cookie. The token
/// names its user (`signin::opened`); `authenticator` is the user's confirmed
/// authenticator's secret as stored, when the password step read it, from which the
/// sign-in keeps the tags that let any node verify its code in one statement, and
/// `claim` what the step read of the user's policy inputs, which the token carries for
/// that statement ([`opened::Claim`]).
pub(super) async fn open(
    state: &AppState,
    user: &UserRow,
    stage: Stage,
    authenticator: Option<&str>,
    claim: Option<&opened::Claim>,
) -> AppResult<String> {
    let token = opened::new_token(state.keys(), &user.id, claim);
    let now = state.now();
    let hash = token_hash(&token);
    let (user_id, stamp) = (user.id.clone(), user.security_stamp.clone());
    let expires_at = now + i64::from(state.config().pending_sign_in_minutes) * 60_000;
    let id = uuid::Uuid::now_v7().to_string();
    let tags = match authenticator {
        Some(secret_enc) if stage == Stage::AwaitingSecondFactor && opened::kept_by(state.db()) => {
            opened::tags(state.keys(), &user.id, secret_enc, &hash, now, expires_at)
        }
        _ => None,
    };
    state
        .db()
        // An insert: no row a cache keeps changes.
        .write_one_touching(crate::db::Touches::NothingKept, move |c| {
            Box::pin(async move {
                let attempt = NewAttempt {
                    token_hash: &hash,
                    id: &id,
                    user_id: &user_id,
                    stage: stage.as_str(),
                    security_stamp: &stamp,
                    created_at: now,
                    expires_at,
                };
                match &tags {
                    Some(tags) => fdb::insert_tagged_attempt(c, &attempt, tags).await,
                    None => fdb::insert_attempt(c, &attempt).await,
                }
            })
        })
        .await?;
    Ok(token)
}

/// Loads the pending sign-in of `token`.
pub(super) async fn load(state: &AppState, token: Option<&str>) -> AppResult<Pending> {
    let token = token.ok_or(AppError::SignInExpired)?;
    let rows = state.db().pending(&token_hash(token)).await?.ok_or(AppError::SignInExpired)?;
    admit(state, rows, None).await
}

/// [`load`] that also counts a lockout attempt for the check of a code, in the same
/// statement (PostgreSQL; `db::groups::pending_reserving`). The attempt is counted only
/// where [`load`] would admit the sign-in at the second factor and the user is neither
/// locked nor at the limit; otherwise the check reserves one itself as before, which
/// refuses with the reason. Whatever refuses the request before its code is checked
/// gives the attempt back.
pub(super) async fn load_counting(state: &AppState, token: Option<&str>) -> AppResult<Pending> {
    let token = token.ok_or(AppError::SignInExpired)?;
    let at = ReserveAt {
        now: state.now(),
        stage: Stage::AwaitingSecondFactor.as_str(),
        max_failures: lockout::max_failures(state),
        permanent_after: lockout::permanent_after(state),
    };
    let (rows, reserved) =
        state.db().pending_reserving(&token_hash(token), at).await?.ok_or(AppError::SignInExpired)?;
    admit(state, rows, reserved.map(|(counts, authenticator)| Counted::new(counts, authenticator))).await
}

/// The pending sign-in of `rows` with its user's policy, if it is still open: expired,
/// completed or stale (the user's security stamp changed) sign-ins are refused alike,
/// and an attempt `counted` for them given back.
async fn admit(state: &AppState, (attempt, user, groups): PendingRows, counted: Option<Counted>) -> AppResult<Pending> {
    let opened = async {
        let stage = match attempt.stage.as_str() {
            "second_factor" => Stage::AwaitingSecondFactor,
            "enrollment" => Stage::AwaitingEnrollment,
            _ => return Err(AppError::SignInExpired),
        };
        if attempt.completed_at.is_some() || attempt.expires_at <= state.now() {
            return Err(AppError::SignInExpired);
        }
        if !auth::stamps_equal(&attempt.security_stamp, &user.security_stamp) {
            return Err(AppError::SignInExpired);
        }
        let policy = super::resolved_with(state, user.tenant_id.as_deref(), user.two_factor_enabled != 0, groups, None)
            .await?
            .policy;
        Ok((stage, policy))
    }
    .await;
    match opened {
        Ok((stage, policy)) => Ok(Pending { attempt, user, policy, stage, counted }),
        Err(refused) => {
            if let Some(counted) = counted {
                counted.release(state, &user).await?;
            }
            Err(refused)
        }
    }
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
