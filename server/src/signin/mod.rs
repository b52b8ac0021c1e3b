//! The sign-in state machine: every way to a session, and every proof a session gives
//! again, goes through [`advance`].
//!
//! ```text
//!  AwaitingPassword ──Password──> Complete                       (no 2FA needed, or a remembered browser)
//!         │                  └──> AwaitingSecondFactor ──SendCode──> (same)
//!         │                  │          └──SecondFactor──> Complete
//!         │                  └──> AwaitingEnrollment ──StartEnrollment──> (same)
//!         │                             ├──Enroll──> Complete
//!         │                             └──Postpone──> Complete  (while the grace period runs)
//!  Complete ──SendCode──> (same)  ──Reauthenticate──> Complete (fresh)  ──ConfirmFactor──> Complete (factor added)
//!          ──StepUp──> Complete (a code or a passkey proven again, for an application's rule)
//!          ──AddPasskey──> Complete (passkey added, and the session's second factor)
//!          ──ReauthenticatePasskey──> Complete (fresh: a passkey with user verification alone)
//!  AwaitingPassword ──PasskeySignIn──> Complete  (passwordless: a discoverable passkey with user verification)
//!  AwaitingSecondFactor ──PasskeySecondFactor──> Complete
//!                       ──SecondFactor(recovery code, where phishing_resistant is required)──> AwaitingEnrollment
//!  AwaitingEnrollment ──EnrollPasskey──> Complete
//!  every state ──PasskeyOptions──> (same)  (the first half of a WebAuthn ceremony)
//! ```
//!
//! The states between the password and the session are rows (pending sign-ins) bound to
//! the user, their security stamp and a random token held in an HttpOnly cookie; the
//! row's stage *is* the state, so a request can only send an event that [`admits`]
//! allows from where that sign-in stands. `Complete` is a signed-in session.
//!
//! Three things happen in one place each and nowhere else: a second-factor attempt is
//! reserved against the lockout before any code is checked ([`lockout`]); a factor is
//! consumed ([`Proven::consume`]); a session is minted ([`session`]). Routes only parse
//! the request, build an event and map the [`Outcome`].

mod lockout;
mod opened;
mod password;
mod pending;
mod session;

use twofold_policy::wire::{
    AuthenticatorEnrollment, PasskeyChallenge, PasskeyFinish, ProviderOffer, ReauthenticateRequest,
    SecondFactorMethod as M, SendCodeResponse, SignInRequest, VerifyRequest,
};
use twofold_policy::wire::{EffectivePolicyView, SignInStatus, WhatIf};
use twofold_policy::{ApplicationRule, EffectivePolicy, GroupRule, PolicyInput, Provider, Rules, Scope, resolve};

use crate::app::AppState;
use crate::auth::{Authenticated, Freshness};
use crate::db::factors as fdb;
use crate::db::{self, HOST_SCOPE, UserRow};
use crate::error::{AppError, AppResult};
use crate::factors::lifecycle::{self, FactorKind, NewFactor};
use crate::factors::{self, Channel, CodePurpose, Spend};
use crate::notify::{self, Notice};
use crate::ratelimit::Class;
use twofold_policy::wire::ErrorCode;

use lockout::Counted;
pub use lockout::{ensure_not_locked, lock_state};
pub use opened::{Claim as PendingClaim, new_token as new_pending_token, tags as step_tags, verify as verify_opened};
pub use password::{Named, find_named, known_browser_token, verify_password_of};
pub use pending::Pending;
pub use session::{Completed, browser_still_skips, may_remember};

const DAY_MS: i64 = 86_400_000;

/// Who is signing in from where; recorded with the session.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Where a sign-in stands.
#[derive(Debug)]
pub enum State {
    /// Nothing proven yet.
    AwaitingPassword,
    /// The password was right; a second factor is next.
    AwaitingSecondFactor(Box<Pending>),
    /// A second factor is required but the user has none: only enrolment is allowed.
    AwaitingEnrollment(Box<Pending>),
    /// A signed-in session.
    Complete(Box<Authenticated>),
}

/// The states without their data, for the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    AwaitingPassword,
    AwaitingSecondFactor,
    AwaitingEnrollment,
    Complete,
}

impl Stage {
    pub const ALL: [Stage; 4] =
        [Stage::AwaitingPassword, Stage::AwaitingSecondFactor, Stage::AwaitingEnrollment, Stage::Complete];

    /// The stored name of a pending sign-in's stage.
    fn as_str(self) -> &'static str {
        match self {
            Stage::AwaitingSecondFactor => "second_factor",
            Stage::AwaitingEnrollment => "enrollment",
            Stage::AwaitingPassword => "password",
            Stage::Complete => "complete",
        }
    }
}

impl State {
    pub fn stage(&self) -> Stage {
        match self {
            State::AwaitingPassword => Stage::AwaitingPassword,
            State::AwaitingSecondFactor(_) => Stage::AwaitingSecondFactor,
            State::AwaitingEnrollment(_) => Stage::AwaitingEnrollment,
            State::Complete(_) => Stage::Complete,
        }
    }

    /// The state of the pending sign-in whose token the cookie holds. Expired,
    /// completed or stale (the user's security stamp changed) sign-ins are all refused
    /// alike.
    pub async fn pending(app: &AppState, token: Option<&str>) -> AppResult<State> {
        Self::of(pending::load(app, token).await?)
    }

    /// [`State::pending`] for `event`. On PostgreSQL, where each statement is a round
    /// trip, the check of a typed second factor has its lockout attempt counted by the
    /// statement that reads the sign-in ([`pending::load_counting`]), which saves one of
    /// a verification's three round trips.
    pub async fn pending_for(app: &AppState, token: Option<&str>, event: &Event) -> AppResult<State> {
        let p = match event {
            Event::SecondFactor(_) if app.db().backend == db::Backend::Postgres => {
                pending::load_counting(app, token).await?
            }
            _ => pending::load(app, token).await?,
        };
        Self::of(p)
    }

    fn of(p: Pending) -> AppResult<State> {
        Ok(match p.stage {
            Stage::AwaitingEnrollment => State::AwaitingEnrollment(Box::new(p)),
            _ => State::AwaitingSecondFactor(Box::new(p)),
        })
    }
}

/// What a pending enrolment starts.
#[derive(Debug, Clone)]
pub enum Start {
    Authenticator,
    /// A code to the given address or number (or the one on file).
    Contact(Channel, Option<String>),
}

/// Which WebAuthn ceremony to begin.
#[derive(Debug, Clone)]
pub enum PasskeyStart {
    /// Register a new passkey with this name (enrolment, or the account page).
    Register(String),
    /// Prove one of the user's passkeys (second factor).
    Prove,
    /// A passwordless sign-in: any passkey of this site.
    Discover,
}

/// Something the user (or their browser) does.
#[derive(Debug)]
pub enum Event {
    /// The first half of a WebAuthn ceremony.
    PasskeyOptions(PasskeyStart),
    /// A passwordless sign-in with a discoverable passkey.
    PasskeySignIn(PasskeyFinish),
    /// A passkey as the second factor after the password.
    PasskeySecondFactor(PasskeyFinish),
    /// A passkey registered as the factor a pending sign-in must enrol.
    EnrollPasskey(PasskeyFinish),
    /// A passkey registered on the account page.
    AddPasskey(PasskeyFinish),
    /// A passkey with user verification proven again by a signed-in session: fresh for
    /// sensitive account changes, like the password and a second factor.
    ReauthenticatePasskey(PasskeyFinish),
    Password {
        request: SignInRequest,
        remember_cookie: Option<String>,
        known_cookie: Option<String>,
    },
    /// An emailed or texted code for the next proof.
    SendCode(Provider),
    SecondFactor(VerifyRequest),
    StartEnrollment(Start),
    /// The first code of the factor being enrolled.
    Enroll {
        factor: FactorKind,
        code: String,
    },
    Postpone,
    Reauthenticate(ReauthenticateRequest),
    /// The first code of a factor added on the account page.
    ConfirmFactor {
        factor: FactorKind,
        code: String,
    },
    /// A second factor alone, proven again by a signed-in session whose last one is
    /// too weak or too old for an application (`oidc`): no password, and no
    /// freshness for sensitive account changes.
    StepUp(StepUpProof),
}

/// What a step-up proves: a typed code, or one of the user's passkeys (whose challenge
/// came from `PasskeyOptions(Prove)` on the session).
#[derive(Debug)]
pub enum StepUpProof {
    Code(VerifyRequest),
    Passkey(PasskeyFinish),
}

impl StepUpProof {
    fn method(&self) -> M {
        match self {
            StepUpProof::Code(req) => req.method,
            StepUpProof::Passkey(_) => M::Passkey,
        }
    }
}

/// The events without their data, for the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    PasskeyOptions,
    PasskeySignIn,
    PasskeySecondFactor,
    EnrollPasskey,
    AddPasskey,
    ReauthenticatePasskey,
    Password,
    SendCode,
    SecondFactor,
    StartEnrollment,
    Enroll,
    Postpone,
    Reauthenticate,
    ConfirmFactor,
    StepUp,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::PasskeyOptions,
        EventKind::PasskeySignIn,
        EventKind::PasskeySecondFactor,
        EventKind::EnrollPasskey,
        EventKind::AddPasskey,
        EventKind::ReauthenticatePasskey,
        EventKind::Password,
        EventKind::SendCode,
        EventKind::SecondFactor,
        EventKind::StartEnrollment,
        EventKind::Enroll,
        EventKind::Postpone,
        EventKind::Reauthenticate,
        EventKind::ConfirmFactor,
        EventKind::StepUp,
    ];
}

impl Event {
    /// The metrics label of a sign-in step (what it proves); `None` for events that do
    /// not move towards a new session (sends, reauthentication, account-page factors).
    fn sign_in_factor(&self) -> Option<&'static str> {
        match self {
            Event::Password { .. } => Some("password"),
            Event::PasskeySignIn(_) => Some("passkey_passwordless"),
            Event::PasskeySecondFactor(_) => Some("passkey"),
            Event::EnrollPasskey(_) => Some("enroll_passkey"),
            Event::PasskeyOptions(_) | Event::AddPasskey(_) | Event::ReauthenticatePasskey(_) => None,
            Event::SecondFactor(req) => Some(req.method.as_str()),
            Event::Enroll { factor: FactorKind::Authenticator, .. } => Some("enroll_authenticator"),
            Event::Enroll { factor: FactorKind::Email, .. } => Some("enroll_email"),
            Event::Enroll { factor: FactorKind::Phone, .. } => Some("enroll_phone"),
            Event::Enroll { factor: FactorKind::Passkey, .. } => Some("enroll_passkey"),
            Event::Postpone => Some("postpone"),
            Event::StepUp(proof) => Some(proof.method().as_str()),
            Event::SendCode(_) | Event::StartEnrollment(_) | Event::Reauthenticate(_) | Event::ConfirmFactor { .. } => {
                None
            }
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Event::Password { .. } => EventKind::Password,
            Event::PasskeyOptions(_) => EventKind::PasskeyOptions,
            Event::PasskeySignIn(_) => EventKind::PasskeySignIn,
            Event::PasskeySecondFactor(_) => EventKind::PasskeySecondFactor,
            Event::EnrollPasskey(_) => EventKind::EnrollPasskey,
            Event::AddPasskey(_) => EventKind::AddPasskey,
            Event::ReauthenticatePasskey(_) => EventKind::ReauthenticatePasskey,
            Event::SendCode(_) => EventKind::SendCode,
            Event::SecondFactor(_) => EventKind::SecondFactor,
            Event::StartEnrollment(_) => EventKind::StartEnrollment,
            Event::Enroll { .. } => EventKind::Enroll,
            Event::Postpone => EventKind::Postpone,
            Event::Reauthenticate(_) => EventKind::Reauthenticate,
            Event::ConfirmFactor { .. } => EventKind::ConfirmFactor,
            Event::StepUp(_) => EventKind::StepUp,
        }
    }
}

/// The transition table: which events each state admits. Everything else is refused
/// before any work is done, as an expired sign-in.
pub const fn admits(stage: Stage, event: EventKind) -> bool {
    matches!(
        (stage, event),
        (_, EventKind::PasskeyOptions)
            | (Stage::AwaitingPassword, EventKind::Password | EventKind::PasskeySignIn)
            | (
                Stage::AwaitingSecondFactor,
                EventKind::SendCode | EventKind::SecondFactor | EventKind::PasskeySecondFactor
            )
            | (
                Stage::AwaitingEnrollment,
                EventKind::StartEnrollment | EventKind::Enroll | EventKind::Postpone | EventKind::EnrollPasskey
            )
            | (
                Stage::Complete,
                EventKind::SendCode
                    | EventKind::Reauthenticate
                    | EventKind::ConfirmFactor
                    | EventKind::StepUp
                    | EventKind::AddPasskey
                    | EventKind::ReauthenticatePasskey
            )
    )
}

/// Where an event led.
#[derive(Debug)]
pub enum Outcome {
    /// The password was right; a second factor is next.
    SecondFactorRequired {
        attempt_token: String,
        user: Box<UserRow>,
        providers: Vec<ProviderOffer>,
        recovery_code_available: bool,
        policy: EffectivePolicy,
    },
    /// The password was right; the user must enrol a factor first.
    EnrollmentRequired {
        attempt_token: String,
        user: Box<UserRow>,
        policy: EffectivePolicy,
        grace_until: Option<i64>,
        can_postpone: bool,
    },
    CodeSent(SendCodeResponse),
    EnrollmentStarted(AuthenticatorEnrollment),
    /// The first half of a WebAuthn ceremony.
    PasskeyChallenge(PasskeyChallenge),
    /// A new session.
    SignedIn(Completed),
    /// The existing session is fresh again.
    Reauthenticated,
    /// The existing session proved a second factor again (its method).
    SteppedUp(M),
    /// A factor was added on the account page; recovery codes when it was the first.
    FactorAdded(Option<Vec<String>>),
}

fn unexpected(outcome: &Outcome) -> AppError {
    AppError::Internal(anyhow::anyhow!("the sign-in machine answered {outcome:?} where it could not"))
}

impl Outcome {
    /// The metrics label of where a step led.
    fn label(&self) -> &'static str {
        match self {
            Outcome::SignedIn(_) => "signed_in",
            Outcome::SecondFactorRequired { .. } => "second_factor_required",
            Outcome::EnrollmentRequired { .. } => "enrollment_required",
            Outcome::CodeSent(_) => "code_sent",
            Outcome::EnrollmentStarted(_) => "enrollment_started",
            Outcome::PasskeyChallenge(_) => "passkey_challenge",
            Outcome::Reauthenticated => "reauthenticated",
            Outcome::SteppedUp(_) => "stepped_up",
            Outcome::FactorAdded(_) => "factor_added",
        }
    }

    pub fn into_completed(self) -> AppResult<Completed> {
        match self {
            Outcome::SignedIn(done) => Ok(done),
            other => Err(unexpected(&other)),
        }
    }

    pub fn into_sent(self) -> AppResult<SendCodeResponse> {
        match self {
            Outcome::CodeSent(sent) => Ok(sent),
            other => Err(unexpected(&other)),
        }
    }
}

/// The only way to move a sign-in (or a session) forward. Sign-in steps are counted
/// by factor and outcome.
pub async fn advance(app: &AppState, state: State, event: Event, client: &ClientInfo) -> AppResult<Outcome> {
    let factor = event.sign_in_factor();
    let result = transition(app, state, event, client).await;
    if let Some(factor) = factor {
        crate::metrics::sign_in(factor, crate::metrics::outcome_of(&result, Outcome::label));
    }
    result
}

async fn transition(app: &AppState, state: State, event: Event, client: &ClientInfo) -> AppResult<Outcome> {
    if !admits(state.stage(), event.kind()) {
        return Err(AppError::SignInExpired);
    }
    match (state, event) {
        (state, Event::PasskeyOptions(start)) => {
            passkey_options(app, state, start).await.map(Outcome::PasskeyChallenge)
        }
        (State::AwaitingPassword, Event::PasskeySignIn(finish)) => passwordless(app, finish, client).await,
        (State::AwaitingSecondFactor(p), Event::PasskeySecondFactor(finish)) => {
            app.limits().by_account(Class::Verify, &p.user.id, app.now())?;
            if !factors::usable_providers(app, &p.policy.allowed_providers).passkey || p.user.passkey_count == 0 {
                return Err(AppError::bad_request(
                    ErrorCode::ProviderUnavailable,
                    "this provider is not available for this account",
                ));
            }
            let proven = prove_passkey(app, &p.user, &p.attempt.id, &finish).await?;
            let remember = finish.remember_browser && session::may_remember(&p.policy);
            let how = session::Finish { methods: "pwd+passkey", proven: Some(proven), enrolled: None, remember };
            session::finish(app, *p, how, client).await.map(Outcome::SignedIn)
        }
        (State::AwaitingEnrollment(p), Event::EnrollPasskey(finish)) => {
            app.limits().by_account(Class::Verify, &p.user.id, app.now())?;
            if !factors::usable_providers(app, &p.policy.allowed_providers).passkey {
                return Err(AppError::bad_request(ErrorCode::ProviderUnavailable, "passkeys are not allowed here"));
            }
            let registered = factors::passkey::finish_registration(app, &p.user, &p.attempt.id, &finish).await?;
            session::finish_with_passkey(app, *p, registered, client).await.map(Outcome::SignedIn)
        }
        (State::Complete(who), Event::AddPasskey(finish)) => {
            who.require_fresh(app)?;
            let registered = factors::passkey::finish_registration(app, &who.user, &who.token_hash, &finish).await?;
            let mut tx = app.db().begin_write().await?;
            tx.touches(crate::db::Touches::user(&who.user.id));
            let codes =
                lifecycle::add(&mut tx, app, &who.user, NewFactor::Passkey(&registered), Some(&who.token_hash)).await?;
            // Registering it proved the new passkey with user verification, bound to
            // this origin: the session's second factor is that passkey, as when an
            // authenticator is confirmed, so an application that asks for
            // `phishing_resistant` accepts the session without a second ceremony.
            fdb::mark_second_factor(&mut tx, &who.token_hash, app.now(), M::Passkey.as_str()).await?;
            tx.commit().await?;
            notify::send(app, &who.user, Notice::FactorAdded(FactorKind::Passkey));
            Ok(Outcome::FactorAdded(codes))
        }
        (State::AwaitingPassword, Event::Password { request, remember_cookie, known_cookie }) => {
            password::step(app, request, client, remember_cookie.as_deref(), known_cookie.as_deref()).await
        }
        (State::AwaitingSecondFactor(p), Event::SendCode(provider)) => {
            pending::send_sign_in_code(app, &p, provider).await.map(Outcome::CodeSent)
        }
        (State::AwaitingSecondFactor(mut p), Event::SecondFactor(req)) => {
            let counted = p.counted.take();
            let method = req.method;
            if let Err(refused) = code_allowed(app, &p, method) {
                if let Some(counted) = counted {
                    counted.release(app, &p.user).await?;
                }
                return Err(refused);
            }
            // On a SQLite file an authenticator code is counted, checked and settled in
            // one job on the writer; only when no attempt could be counted there does it
            // go the general way below, which waits for attempts still being checked
            // and says why it refuses.
            if method == M::Authenticator
                && counted.is_none()
                && app.db().writes_direct()
                && method.strength() >= p.policy.required_strength
            {
                let remember = req.remember_browser && session::may_remember(&p.policy);
                let attempt_id = p.attempt.id.clone();
                let refused = match session::authenticator_at_once(app, *p, &req.code, remember, client).await? {
                    session::AtOnce::SignedIn(completed) => return Ok(Outcome::SignedIn(completed)),
                    session::AtOnce::NotCounted(back) => Err(back),
                    session::AtOnce::Wrong(user, reservation) => {
                        Ok(lockout::failed(app, &user, reservation, method).await?)
                    }
                    session::AtOnce::Used(reservation) => Ok(lockout::not_a_guess(app, reservation)),
                    session::AtOnce::Expired => Ok(AppError::SignInExpired),
                };
                match refused {
                    Ok(refused) => return Err(lost_to_a_copy(app, &attempt_id, refused).await?),
                    Err(back) => p = back,
                }
            }
            let binding = &p.attempt.id;
            let check = match method {
                M::Authenticator => Check::Totp { pending: false },
                M::Email => Check::Code { purpose: CodePurpose::SignInEmail, binding },
                M::Sms => Check::Code { purpose: CodePurpose::SignInSms, binding },
                M::RecoveryCode | M::Passkey => Check::Recovery,
            };
            let proven = match prove(app, &p.user, method, check, &req.code, counted).await {
                Err(refused) => return Err(lost_to_a_copy(app, &p.attempt.id, refused).await?),
                Ok(proven) => proven,
            };
            if method.strength() < p.policy.required_strength {
                // Only a recovery code gets here: it buys an enrolment, not a session.
                return recovery_to_enrollment(app, *p, proven).await;
            }
            let remember = req.remember_browser && session::may_remember(&p.policy);
            let methods = format!("pwd+{}", method.as_str());
            session::finish(
                app,
                *p,
                session::Finish { methods: &methods, proven: Some(proven), enrolled: None, remember },
                client,
            )
            .await
            .map(Outcome::SignedIn)
        }
        (State::AwaitingEnrollment(p), Event::StartEnrollment(start)) => {
            pending::start_enrollment(app, &p, start).await
        }
        (State::AwaitingEnrollment(p), Event::Enroll { factor, code }) => {
            app.limits().by_account(Class::Verify, &p.user.id, app.now())?;
            let (method, check) = match factor {
                FactorKind::Authenticator => (M::Authenticator, Check::Totp { pending: true }),
                FactorKind::Email => {
                    (M::Email, Check::Code { purpose: CodePurpose::EnrollEmail, binding: &p.attempt.id })
                }
                FactorKind::Phone => {
                    (M::Sms, Check::Code { purpose: CodePurpose::EnrollPhone, binding: &p.attempt.id })
                }
                FactorKind::Passkey => return Err(passkey_not_typed()),
            };
            let proven = prove(app, &p.user, method, check, &code, None).await?;
            let methods = format!("pwd+enrolled_{}", method.as_str());
            session::finish(
                app,
                *p,
                session::Finish { methods: &methods, proven: Some(proven), enrolled: Some(factor), remember: false },
                client,
            )
            .await
            .map(Outcome::SignedIn)
        }
        (State::AwaitingEnrollment(p), Event::Postpone) => {
            // Postponing is for users without any factor; one sent here by a recovery
            // code (a passkey required, theirs lost) must enrol a new one now.
            if p.user.has_factor() {
                return Err(AppError::conflict(ErrorCode::GraceOver, "enrol a passkey to finish signing in"));
            }
            let now = app.now();
            let since = p.user.enrollment_required_since.unwrap_or(now);
            let until = since + i64::from(p.policy.enrollment_grace_days) * DAY_MS;
            if p.policy.enrollment_grace_days == 0 || now >= until {
                return Err(AppError::conflict(
                    ErrorCode::GraceOver,
                    "the enrolment grace period is over; enrol a second factor",
                ));
            }
            let finish = session::Finish { methods: "pwd+grace", proven: None, enrolled: None, remember: false };
            session::finish(app, *p, finish, client).await.map(Outcome::SignedIn)
        }
        (State::Complete(who), Event::SendCode(provider)) => {
            let u = &who.user;
            let (channel, destination) = match provider {
                Provider::Email if u.email_confirmed != 0 => (Channel::Email, u.email.clone()),
                Provider::Sms if u.phone_confirmed != 0 => (Channel::Sms, u.phone.clone()),
                _ => (Channel::Email, None),
            };
            let destination = destination
                .ok_or_else(|| AppError::bad_request(ErrorCode::ProviderUnavailable, "this provider is not set up"))?;
            ensure_not_locked(app, u)?;
            let purpose = CodePurpose::reauth(channel);
            factors::send_code(app, u, purpose, &who.token_hash, &destination, channel, None)
                .await
                .map(Outcome::CodeSent)
        }
        (State::Complete(who), Event::Reauthenticate(req)) => reauthenticate(app, &who, req, client).await,
        (State::Complete(who), Event::ReauthenticatePasskey(finish)) => {
            app.limits().by_account(Class::Verify, &who.user.id, app.now())?;
            let proven = prove_passkey(app, &who.user, &who.token_hash, &finish).await?;
            let mut tx = app.db().begin_write().await?;
            tx.touches(crate::db::Touches::user(&who.user.id));
            if !proven.consume(&mut tx, &who.user.id, app.now()).await? {
                drop(tx);
                return Err(proven.lost(app, &who.user).await?);
            }
            mark_fresh(tx, app, &who, Freshness::Factor(M::Passkey)).await
        }
        (State::Complete(who), Event::StepUp(req)) => step_up(app, &who, req).await,
        (State::Complete(who), Event::ConfirmFactor { factor, code }) => {
            let (method, check) = match factor {
                FactorKind::Authenticator => (M::Authenticator, Check::Totp { pending: true }),
                FactorKind::Email => {
                    (M::Email, Check::Code { purpose: CodePurpose::ConfirmEmail, binding: &who.user.id })
                }
                FactorKind::Phone => {
                    (M::Sms, Check::Code { purpose: CodePurpose::ConfirmPhone, binding: &who.user.id })
                }
                FactorKind::Passkey => return Err(passkey_not_typed()),
            };
            let proven = prove(app, &who.user, method, check, &code, None).await?;
            let mut tx = app.db().begin_write().await?;
            tx.touches(crate::db::Touches::user(&who.user.id));
            if !proven.consume(&mut tx, &who.user.id, app.now()).await? {
                drop(tx);
                return Err(proven.lost(app, &who.user).await?);
            }
            let new = new_factor(factor, &proven.spend);
            let codes = lifecycle::add(&mut tx, app, &who.user, new, Some(&who.token_hash)).await?;
            // Confirming the factor proved it: the session is as fresh as the new factor.
            fdb::mark_reauthenticated(&mut tx, &who.token_hash, app.now(), Freshness::Factor(method).as_str()).await?;
            fdb::mark_second_factor(&mut tx, &who.token_hash, app.now(), method.as_str()).await?;
            let user = db::get_user(&mut *tx, &who.user.id).await?.ok_or(AppError::Unauthenticated)?;
            tx.commit().await?;
            notify::send(app, &user, Notice::FactorAdded(factor));
            if factor == FactorKind::Email
                && who.user.email_confirmed != 0
                && let Some(old) = who.user.email.clone().filter(|old| user.email.as_ref() != Some(old))
            {
                notify::send(app, &user, Notice::EmailChanged { old });
            }
            Ok(Outcome::FactorAdded(codes))
        }
        (state, event) => Err(AppError::Internal(anyhow::anyhow!(
            "the transition table admits {:?} in {:?} but the machine has no arm for it",
            event.kind(),
            state.stage()
        ))),
    }
}

/// The answer to a code check of the pending sign-in `attempt_id` that was `refused`.
/// A copy of this request that won may have used the code between our reads: a double
/// submit ends as an expired sign-in, like the loser of the completing transaction
/// does, not as a wrong code.
async fn lost_to_a_copy(app: &AppState, attempt_id: &str, refused: AppError) -> AppResult<AppError> {
    if matches!(refused, AppError::InvalidCode { .. }) && pending::completed(app, attempt_id).await? {
        return Ok(AppError::SignInExpired);
    }
    Ok(refused)
}

/// Whether a pending sign-in may check a typed code of `method` now: the per-account
/// limit, and a provider its policy allows and the user can receive.
fn code_allowed(app: &AppState, p: &Pending, method: M) -> AppResult<()> {
    app.limits().by_account(Class::Verify, &p.user.id, app.now())?;
    let allowed = &factors::usable_providers(app, &p.policy.allowed_providers);
    let usable = match method {
        M::Authenticator => allowed.authenticator,
        M::Email => allowed.email && p.user.email_confirmed != 0,
        M::Sms => allowed.sms && p.user.phone_confirmed != 0,
        // A recovery code opens the door up to `app` only (DESIGN.md section 5);
        // where a passkey is required it leads to enrolling a new one.
        M::RecoveryCode => {
            method.strength() >= p.policy.required_strength
                || p.policy.required_strength == twofold_policy::Strength::PhishingResistant
        }
        // A passkey is proven through its own ceremony, never by a typed code.
        M::Passkey => false,
    };
    if !usable {
        return Err(AppError::bad_request(
            ErrorCode::ProviderUnavailable,
            "this provider is not available for this account",
        ));
    }
    Ok(())
}

/// The first half of a WebAuthn ceremony, bound to where the sign-in stands: nothing yet
/// (passwordless), the pending sign-in, or the session.
async fn passkey_options(app: &AppState, state: State, start: PasskeyStart) -> AppResult<PasskeyChallenge> {
    use factors::passkey;
    let name_of = |name: &str| {
        twofold_policy::wire::PasskeyName { name: name.to_owned() }
            .parse()
            .map(str::to_owned)
            .map_err(|m| AppError::invalid_field("name", m))
    };
    match (state, start) {
        (State::AwaitingPassword, PasskeyStart::Discover) => passkey::start_discovery(app).await,
        (State::AwaitingSecondFactor(p), PasskeyStart::Prove) => {
            ensure_not_locked(app, &p.user)?;
            if !factors::usable_providers(app, &p.policy.allowed_providers).passkey || p.user.passkey_count == 0 {
                return Err(AppError::bad_request(
                    ErrorCode::ProviderUnavailable,
                    "this provider is not available for this account",
                ));
            }
            passkey::start_authentication(app, &p.user, &p.attempt.id).await
        }
        (State::AwaitingEnrollment(p), PasskeyStart::Register(name)) => {
            if !factors::usable_providers(app, &p.policy.allowed_providers).passkey {
                return Err(AppError::bad_request(ErrorCode::ProviderUnavailable, "passkeys are not allowed here"));
            }
            passkey::start_registration(app, &p.user, &p.attempt.id, &name_of(&name)?).await
        }
        // Reauthentication on the account page: bound to the session, like its codes.
        (State::Complete(who), PasskeyStart::Prove) => {
            ensure_not_locked(app, &who.user)?;
            if who.user.passkey_count == 0 {
                return Err(AppError::bad_request(
                    ErrorCode::ProviderUnavailable,
                    "no passkey is set up for this account",
                ));
            }
            passkey::start_authentication(app, &who.user, &who.token_hash).await
        }
        (State::Complete(who), PasskeyStart::Register(name)) => {
            let name = name_of(&name)?;
            who.require_fresh(app)?;
            let policy = effective_policy(app, &who.user).await?;
            if !factors::usable_providers(app, &policy.allowed_providers).passkey {
                return Err(AppError::bad_request(ErrorCode::ProviderUnavailable, "passkeys are not allowed here"));
            }
            passkey::start_registration(app, &who.user, &who.token_hash, &name).await
        }
        // Any other pairing is a request from a page that is not where this sign-in is.
        _ => Err(AppError::SignInExpired),
    }
}

/// Proves one of `user`'s passkeys under a reserved lockout attempt.
async fn prove_passkey(app: &AppState, user: &UserRow, binding: &str, finish: &PasskeyFinish) -> AppResult<Proven> {
    let reservation = lockout::reserve(app, user).await?;
    let verdict = factors::passkey::check_assertion(app, user, binding, finish).await;
    settle_passkey(app, user, reservation, verdict).await
}

async fn settle_passkey(
    app: &AppState,
    user: &UserRow,
    reservation: lockout::Reservation,
    verdict: AppResult<factors::Verdict>,
) -> AppResult<Proven> {
    let verdict = match verdict {
        Ok(v) => v,
        Err(e) => {
            // A malformed body or an unavailable relying party is no guess.
            let _ = lockout::refund(app, user, reservation).await?;
            return Err(e);
        }
    };
    match lockout::settle(app, user, reservation, M::Passkey, verdict).await? {
        Ok((spend, reservation)) => Ok(Proven { method: M::Passkey, spend, reservation }),
        // A passkey has no attempts to count down in the answer: one refusal for all.
        Err(AppError::InvalidCode { .. }) => Err(AppError::PasskeyRefused),
        Err(e) => Err(e),
    }
}

/// A passwordless sign-in: a discoverable passkey with user verification is both
/// factors at once, at strength `phishing_resistant` (DESIGN.md section 5). Refused
/// alike for unknown passkeys, deactivated users, suspended tenants and scopes that do
/// not allow passkeys.
async fn passwordless(app: &AppState, finish: PasskeyFinish, client: &ClientInfo) -> AppResult<Outcome> {
    let Some(found) = factors::passkey::identify(app, &finish).await? else {
        return Err(AppError::PasskeyRefused);
    };
    let user = found.user.clone();
    app.limits().by_account(Class::Verify, &user.id, app.now())?;
    let suspended = match &user.tenant_id {
        Some(tid) => app.db().tenant(tid).await?.is_none_or(|t| t.suspended_at.is_some()),
        None => false,
    };
    let policy = effective_policy(app, &user).await?;
    if suspended || user.deactivated_at.is_some() || !factors::usable_providers(app, &policy.allowed_providers).passkey
    {
        factors::audit_user(app, &user, "sign_in.failed", serde_json::json!({ "factor": "passkey", "refused": true }))
            .await?;
        return Err(AppError::PasskeyRefused);
    }
    let reservation = lockout::reserve(app, &user).await?;
    let verdict = factors::passkey::check_discovered(app, found).await;
    let proven = settle_passkey(app, &user, reservation, verdict).await?;
    let remember = finish.remember_browser && session::may_remember(&policy);
    session::finish_passwordless(app, user, &policy, proven, remember, client).await.map(Outcome::SignedIn)
}

/// A recovery code where a passkey is required: the code is spent and the pending
/// sign-in moves to enrolment, where only a passkey can be enrolled (the policy offers
/// nothing weaker), never to a session.
async fn recovery_to_enrollment(app: &AppState, p: Pending, proven: Proven) -> AppResult<Outcome> {
    let mut tx = app.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&p.user.id));
    if !fdb::move_attempt_to_enrollment(&mut tx, &p.attempt.id).await? {
        drop(tx);
        let _ = lockout::refund(app, &p.user, proven.reservation).await?;
        return Err(AppError::SignInExpired);
    }
    if !proven.consume(&mut tx, &p.user.id, app.now()).await? {
        drop(tx);
        return Err(proven.lost(app, &p.user).await?);
    }
    tx.commit().await?;
    notify::send(app, &p.user, Notice::RecoveryCodeUsed);
    factors::audit_user(app, &p.user, "recovery_code.led_to_enrollment", serde_json::json!({ "factor": "passkey" }))
        .await?;
    // The attempt keeps its token: the browser's cookie now names an enrolment.
    Ok(Outcome::EnrollmentRequired {
        attempt_token: String::new(),
        user: Box::new(p.user),
        policy: p.policy,
        grace_until: None,
        can_postpone: false,
    })
}

fn passkey_not_typed() -> AppError {
    AppError::bad_request(ErrorCode::ProviderUnavailable, "a passkey is proven through its own ceremony, not a code")
}

/// The stored form of a factor just proven by its first code.
fn new_factor(kind: FactorKind, spend: &Spend) -> NewFactor<'_> {
    match (kind, spend.destination()) {
        (FactorKind::Email, Some(address)) => NewFactor::Email(address),
        (FactorKind::Phone, Some(number)) => NewFactor::Phone(number),
        // Passkeys are stored from their registration, never from a code.
        _ => NewFactor::Authenticator,
    }
}

/// A step-up of a signed-in session: the password, and the second factor when the user
/// has one. Success makes the session fresh, recording with what.
async fn reauthenticate(
    app: &AppState,
    who: &Authenticated,
    req: ReauthenticateRequest,
    client: &ClientInfo,
) -> AppResult<Outcome> {
    let u = &who.user;
    verify_password_of(app, u, req.password, client, "reauthentication.failed").await?;
    let mut tx;
    let freshness = if u.has_factor() {
        let Some(method) = req.method else {
            return Err(AppError::invalid_field("method", "give a second factor: method and code"));
        };
        let check = match method {
            M::Authenticator if u.has_authenticator != 0 => Check::Totp { pending: false },
            M::Email if u.email_confirmed != 0 => {
                Check::Code { purpose: CodePurpose::ReauthEmail, binding: &who.token_hash }
            }
            M::Sms if u.phone_confirmed != 0 => {
                Check::Code { purpose: CodePurpose::ReauthSms, binding: &who.token_hash }
            }
            M::RecoveryCode => Check::Recovery,
            M::Passkey => return Err(passkey_not_typed()),
            _ => return Err(AppError::invalid_field("method", "this second factor is not set up")),
        };
        let proven = prove(app, u, method, check, req.code.as_deref().unwrap_or(""), None).await?;
        tx = app.db().begin_write().await?;
        tx.touches(crate::db::Touches::user(&u.id));
        if !proven.consume(&mut tx, &u.id, app.now()).await? {
            drop(tx);
            return Err(proven.lost(app, u).await?);
        }
        Freshness::Factor(method)
    } else {
        tx = app.db().begin_write().await?;
        tx.touches(crate::db::Touches::user(&u.id));
        Freshness::Password
    };
    mark_fresh(tx, app, who, freshness).await
}

/// Records, in `tx` with the proof's consumption, that the session is fresh and with
/// what; audits it and commits.
async fn mark_fresh(mut tx: db::Tx, app: &AppState, who: &Authenticated, freshness: Freshness) -> AppResult<Outcome> {
    let u = &who.user;
    fdb::mark_reauthenticated(&mut tx, &who.token_hash, app.now(), freshness.as_str()).await?;
    if let Freshness::Factor(method) = freshness {
        fdb::mark_second_factor(&mut tx, &who.token_hash, app.now(), method.as_str()).await?;
    }
    db::insert_audit(
        &mut tx,
        &db::NewAudit {
            at: app.now(),
            actor_user_id: Some(&u.id),
            scope_key: &u.scope_key,
            action: "reauthentication.succeeded",
            target: &format!("user:{}", u.id),
            before: None,
            after: Some(serde_json::json!({ "method": freshness.as_str() })),
        },
    )
    .await?;
    tx.commit().await?;
    if freshness == Freshness::Factor(M::RecoveryCode) {
        notify::send(app, u, Notice::RecoveryCodeUsed);
    }
    Ok(Outcome::Reauthenticated)
}

/// A second factor proven again by a signed-in session (no password): the session
/// records when and with what, for applications whose rule its sign-in no longer meets.
/// Email and SMS codes are those sent for this session (`SendCode` on `Complete`).
async fn step_up(app: &AppState, who: &Authenticated, proof: StepUpProof) -> AppResult<Outcome> {
    let u = &who.user;
    app.limits().by_account(Class::Verify, &u.id, app.now())?;
    let method = proof.method();
    // Only the providers the user's scope allows now, as at sign-in.
    let policy = effective_policy(app, u).await?;
    let allowed = factors::usable_providers(app, &policy.allowed_providers);
    let proven = match proof {
        StepUpProof::Passkey(finish) => {
            if !allowed.passkey || u.passkey_count == 0 {
                return Err(AppError::bad_request(
                    ErrorCode::ProviderUnavailable,
                    "no passkey this account may use is set up",
                ));
            }
            prove_passkey(app, u, &who.token_hash, &finish).await?
        }
        StepUpProof::Code(req) => prove_step_up_code(app, who, &allowed, req).await?,
    };
    let mut tx = app.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&u.id));
    if !proven.consume(&mut tx, &u.id, app.now()).await? {
        drop(tx);
        return Err(proven.lost(app, u).await?);
    }
    fdb::mark_second_factor(&mut tx, &who.token_hash, app.now(), method.as_str()).await?;
    db::insert_audit(
        &mut tx,
        &db::NewAudit {
            at: app.now(),
            actor_user_id: Some(&u.id),
            scope_key: &u.scope_key,
            action: "step_up.succeeded",
            target: &format!("user:{}", u.id),
            before: None,
            after: Some(serde_json::json!({ "method": method.as_str() })),
        },
    )
    .await?;
    tx.commit().await?;
    if method == M::RecoveryCode {
        notify::send(app, u, Notice::RecoveryCodeUsed);
    }
    Ok(Outcome::SteppedUp(method))
}

/// Checks the typed code of a step-up, with the providers the scope allows now. Email
/// and SMS codes are those sent for this session.
async fn prove_step_up_code(
    app: &AppState,
    who: &Authenticated,
    allowed: &twofold_policy::ProviderSet,
    req: VerifyRequest,
) -> AppResult<Proven> {
    let u = &who.user;
    let check = match req.method {
        M::Authenticator if u.has_authenticator != 0 && allowed.authenticator => Check::Totp { pending: false },
        M::Email if u.email_confirmed != 0 && allowed.email => {
            Check::Code { purpose: CodePurpose::ReauthEmail, binding: &who.token_hash }
        }
        M::Sms if u.phone_confirmed != 0 && allowed.sms => {
            Check::Code { purpose: CodePurpose::ReauthSms, binding: &who.token_hash }
        }
        M::RecoveryCode if u.has_factor() => Check::Recovery,
        M::Passkey => return Err(passkey_not_typed()),
        _ => {
            return Err(AppError::bad_request(ErrorCode::ProviderUnavailable, "this second factor is not set up"));
        }
    };
    prove(app, u, req.method, check, &req.code, None).await
}

/// Which check a second factor gets.
#[derive(Debug, Clone, Copy)]
enum Check<'a> {
    Totp { pending: bool },
    Code { purpose: CodePurpose, binding: &'a str },
    Recovery,
}

/// A second factor that checked out under a reserved attempt, not yet consumed.
#[derive(Debug)]
#[must_use = "a proven factor must be consumed to count"]
pub(crate) struct Proven {
    pub method: M,
    spend: Spend,
    reservation: lockout::Reservation,
}

/// The one place a second factor is checked: reserve an attempt, check, settle.
/// Checks `code` under a reserved lockout attempt: the one `counted` with the pending
/// sign-in's read, or one reserved here.
async fn prove(
    app: &AppState,
    user: &UserRow,
    method: M,
    check: Check<'_>,
    code: &str,
    counted: Option<Counted>,
) -> AppResult<Proven> {
    let (reservation, verdict) = match check {
        Check::Totp { pending } => {
            let (reservation, authenticator) = lockout::reserve_for_authenticator(app, user, counted).await?;
            (reservation, factors::check_totp(app, user, authenticator, code, pending)?)
        }
        Check::Code { purpose, binding } => {
            let reservation = lockout::counted_or_reserve(app, user, counted).await?;
            (reservation, factors::check_code(app, purpose, binding, code).await?)
        }
        Check::Recovery => {
            let reservation = lockout::counted_or_reserve(app, user, counted).await?;
            (reservation, factors::check_recovery_code(app, user, code).await?)
        }
    };
    match lockout::settle(app, user, reservation, method, verdict).await? {
        Ok((spend, reservation)) => Ok(Proven { method, spend, reservation }),
        Err(e) => Err(e),
    }
}

impl Proven {
    /// The one place a factor is consumed, in the caller's transaction, together with
    /// resetting the failure counts. False when another request consumed it first.
    async fn consume(&self, conn: &mut sqlx::AnyConnection, user_id: &str, now: i64) -> AppResult<bool> {
        if !self.spend.consume(conn, now).await? {
            return Ok(false);
        }
        fdb::reset_failures(conn, user_id).await?;
        Ok(true)
    }

    /// [`Proven::consume`] for a sign-in that mints its session in the same
    /// transaction: the session's statement on the user row resets the failure counts
    /// (`db::record_sign_in`), which saves a statement on every sign-in.
    async fn consume_for_session(&self, conn: &mut impl crate::db::direct::Exec, now: i64) -> AppResult<bool> {
        Ok(self.spend.consume(conn, now).await?)
    }

    /// Another request consumed the factor first: no guess, so the attempt is given back.
    async fn lost(self, app: &AppState, user: &UserRow) -> AppResult<AppError> {
        lockout::refund(app, user, self.reservation).await
    }
}

/// A user's effective policy together with the group rules it was resolved from, which
/// its explanation needs (the policy names the deciding group by position only).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub policy: EffectivePolicy,
    pub groups: Vec<GroupRule>,
    /// The application a sign-in is for, when its rule took part.
    pub application: Option<ApplicationRule>,
}

impl Resolved {
    pub fn rules(&self) -> Rules<'_> {
        Rules { groups: &self.groups, application: self.application.as_ref() }
    }

    pub fn view(&self, user_id: String) -> EffectivePolicyView {
        EffectivePolicyView::new(user_id, &self.policy, self.rules())
    }

    /// The view for the user's own account page, which speaks to them.
    pub fn own_view(&self, user_id: String) -> EffectivePolicyView {
        EffectivePolicyView::for_self(user_id, &self.policy, self.rules())
    }
}

/// The effective policy of a user, from cached scope inputs and the user's group rules.
pub async fn resolved_policy(state: &AppState, user: &UserRow) -> AppResult<Resolved> {
    resolved_policy_for(state, user, None).await
}

/// The effective policy of a user signing in to `application` (an OpenID Connect
/// client of the user's scope), whose rule joins the user's group rules.
pub async fn resolved_policy_for(
    state: &AppState,
    user: &UserRow,
    application: Option<ApplicationRule>,
) -> AppResult<Resolved> {
    // The rules as the cache of policy inputs has them (see `cache`): as fresh as a read
    // of the database for every change made through this node, and for changes made
    // elsewhere as soon as the database's triggers are heard.
    let groups = state.cache().subject(state.db(), &user.id).await?.map(|subject| subject.groups).unwrap_or_default();
    resolved_with(state, user.tenant_id.as_deref(), user.two_factor_enabled != 0, groups, application).await
}

/// [`resolved_policy_for`] with the user's tenant, 2FA switch and group rules already
/// read.
pub async fn resolved_with(
    state: &AppState,
    tenant_id: Option<&str>,
    flag: bool,
    groups: Vec<GroupRule>,
    application: Option<ApplicationRule>,
) -> AppResult<Resolved> {
    let rules = Rules { groups: &groups, application: application.as_ref() };
    let policy = match tenant_id {
        None => {
            let settings = state.cache().settings(state.db(), HOST_SCOPE).await?;
            resolve(&PolicyInput { scope: Scope::Host { settings: &settings }, user_two_factor_enabled: flag, rules })
        }
        Some(tenant_id) => {
            let feature = state.cache().feature(state.db(), tenant_id).await?;
            let settings = state.cache().settings(state.db(), tenant_id).await?;
            resolve(&PolicyInput {
                scope: Scope::Tenant { feature, settings: &settings },
                user_two_factor_enabled: flag,
                rules,
            })
        }
    };
    Ok(Resolved { policy, groups, application })
}

/// The effective policy of a user, without the names its explanation needs.
pub async fn effective_policy(state: &AppState, user: &UserRow) -> AppResult<EffectivePolicy> {
    Ok(resolved_policy(state, user).await?.policy)
}

/// What the password step would answer for `user` after the right password, from a
/// browser that is not remembered: the same decisions in the same order as
/// [`password::step`], reading only, so an admin can ask without signing in. With
/// `application`, for a sign-in to it: its rule joins the others, as the authorization
/// endpoint adds it.
pub async fn what_if(state: &AppState, user: &UserRow, application: Option<ApplicationRule>) -> AppResult<WhatIf> {
    let resolved = resolved_policy_for(state, user, application).await?;
    let policy = resolved.policy;
    let now = state.now();
    let mut out = WhatIf {
        status: SignInStatus::SignedIn,
        providers: Vec::new(),
        recovery_code_available: false,
        enrollable: Vec::new(),
        can_postpone: false,
        grace_until: None,
        remember_browser_allowed: session::may_remember(&policy),
        lock: crate::routes::lock_view(state, user),
        policy: resolved.view(user.id.clone()),
        application: None,
    };
    if let Some(application) = &resolved.application {
        out.application = Some(crate::oidc::authorize::access_after_sign_in(state, user, &policy, application));
    }
    if !policy.required {
        return Ok(out);
    }
    let providers = offers(state, user, &policy);
    if providers.is_empty() {
        let since = user.enrollment_required_since.unwrap_or(now);
        let grace_until =
            (policy.enrollment_grace_days > 0).then(|| since + i64::from(policy.enrollment_grace_days) * DAY_MS);
        out.can_postpone = grace_until.is_some_and(|until| now < until);
        out.grace_until = grace_until.filter(|_| out.can_postpone).map(crate::clock::rfc3339);
        out.status = SignInStatus::RequiresEnrollment;
        out.enrollable = enrollable(state, &policy);
    } else {
        out.status = SignInStatus::RequiresTwoFactor;
        out.recovery_code_available =
            policy.required_strength <= twofold_policy::Strength::App && state.db().has_recovery_code(&user.id).await?;
        out.providers = providers;
    }
    Ok(out)
}

/// The factors a user can be offered at sign-in under `policy`: allowed, confirmed,
/// and for email and SMS, with a sender that can deliver the code.
pub fn offers(app: &AppState, user: &UserRow, policy: &EffectivePolicy) -> Vec<ProviderOffer> {
    user.usable_providers(&factors::usable_providers(app, &policy.allowed_providers))
        .into_iter()
        .map(|provider| ProviderOffer {
            provider,
            weaker: provider.is_weaker(),
            destination: match provider {
                Provider::Authenticator | Provider::Passkey => None,
                Provider::Email => user.email.as_deref().map(factors::mask_email),
                Provider::Sms => user.phone.as_deref().map(factors::mask_phone),
            },
        })
        .collect()
}

/// The strongest second factor `user` holds that the scope offers now ([`offers`]):
/// whether a step-up could meet a demand, or a factor must be enrolled first.
pub fn strongest_offered(app: &AppState, user: &UserRow, policy: &EffectivePolicy) -> Option<twofold_policy::Strength> {
    offers(app, user, policy).iter().map(|o| o.provider.strength()).max()
}

/// The providers a user may enrol at sign-in (email and SMS only where allowed and a
/// sender can deliver the code).
pub fn enrollable(app: &AppState, policy: &EffectivePolicy) -> Vec<Provider> {
    factors::usable_providers(app, &policy.allowed_providers).iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out: a new arm in [`admits`] must be added here too.
    #[test]
    fn the_transition_table_admits_exactly_these_events() {
        use EventKind as E;
        let expected: &[(Stage, &[EventKind])] = &[
            (Stage::AwaitingPassword, &[E::Password, E::PasskeySignIn, E::PasskeyOptions]),
            (Stage::AwaitingSecondFactor, &[E::SendCode, E::SecondFactor, E::PasskeySecondFactor, E::PasskeyOptions]),
            (
                Stage::AwaitingEnrollment,
                &[E::StartEnrollment, E::Enroll, E::Postpone, E::EnrollPasskey, E::PasskeyOptions],
            ),
            (
                Stage::Complete,
                &[
                    E::SendCode,
                    E::Reauthenticate,
                    E::ConfirmFactor,
                    E::StepUp,
                    E::AddPasskey,
                    E::ReauthenticatePasskey,
                    E::PasskeyOptions,
                ],
            ),
        ];
        for stage in Stage::ALL {
            let allowed = expected.iter().find(|(s, _)| *s == stage).map(|(_, e)| *e).unwrap_or(&[]);
            for event in EventKind::ALL {
                assert_eq!(admits(stage, event), allowed.contains(&event), "{stage:?} + {event:?}");
            }
        }
    }

    #[test]
    fn no_event_returns_to_the_password_or_skips_the_second_factor() {
        // Only the password leaves AwaitingPassword, and nothing but a second factor,
        // an enrolment or a postponement (checked against the grace period) completes
        // a pending sign-in.
        // Only the password or a passwordless passkey (both factors at once) leaves
        // AwaitingPassword; starting a ceremony stays where it is.
        for event in EventKind::ALL {
            let leaves = matches!(event, EventKind::Password | EventKind::PasskeySignIn | EventKind::PasskeyOptions);
            assert_eq!(admits(Stage::AwaitingPassword, event), leaves, "{event:?}");
        }
        assert!(!admits(Stage::AwaitingSecondFactor, EventKind::EnrollPasskey));
        assert!(!admits(Stage::AwaitingEnrollment, EventKind::PasskeySecondFactor));
        assert!(!admits(Stage::Complete, EventKind::PasskeySignIn));
        assert!(!admits(Stage::AwaitingSecondFactor, EventKind::Postpone));
        assert!(!admits(Stage::AwaitingSecondFactor, EventKind::Enroll));
        assert!(!admits(Stage::AwaitingEnrollment, EventKind::SecondFactor));
        assert!(!admits(Stage::Complete, EventKind::Password));
    }
}
