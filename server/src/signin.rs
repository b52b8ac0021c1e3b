//! The sign-in pipeline: the only code that creates sessions.
//!
//! ```text
//! password ──> policy requires 2FA? ──no──> session
//!                │yes
//!                ├─ remembered browser valid? ──yes──> session
//!                ├─ no usable factor ──> Enrollment ──> session (or postpone in grace)
//!                └─ SecondFactor ──> [send code] ──> verify ──> session [+ remember]
//! ```
//!
//! A pending sign-in is a row bound to the user, their security stamp and a random
//! token held in an HttpOnly cookie; its stage (`second_factor` or `enrollment`) decides
//! which requests it admits. Every path ends in [`finish`], which completes the pending
//! sign-in exactly once and creates the session; [`insert_session`] is private to
//! this module, so no route can mint a session on a side path that skips the second
//! factor.

use base64::Engine;
use twofold_policy::names::{EmailAddress, Username};
use twofold_policy::wire::{
    AuthenticatorEnrollment, ProviderOffer, SecondFactorMethod, SendCodeResponse, SignInRequest, SignInStatus,
    VerifyRequest,
};
use twofold_policy::{EffectivePolicy, PolicyInput, Provider, ProviderSet, Scope, resolve};

use crate::app::AppState;
use crate::auth::{self, new_token, token_hash};
use crate::db::factors::{self as fdb, NewAttempt, NewBrowser};
use crate::db::{self, HOST_SCOPE, NewAudit, NewSession, UserRow};
use crate::error::{AppError, AppResult};
use crate::factors::{self, Channel};
use crate::ratelimit::Class;
use crate::totp;

const DAY_MS: i64 = 86_400_000;

/// Who is signing in from where; recorded with the session.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The stage of a pending sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The password was right; a second factor is next.
    SecondFactor,
    /// A second factor is required but the user has none: only enrolment is allowed.
    Enrollment,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::SecondFactor => "second_factor",
            Stage::Enrollment => "enrollment",
        }
    }
}

/// A finished sign-in: a new session, maybe a remembered browser.
#[derive(Debug)]
pub struct Completed {
    pub user: Box<UserRow>,
    pub session_token: String,
    /// The signed remember-browser token to set as a cookie, with its lifetime.
    pub remember: Option<(String, i64)>,
    /// Recovery codes, when this sign-in enrolled the user's first factor.
    pub recovery_codes: Option<Vec<String>>,
}

/// The result of the password step.
#[derive(Debug)]
pub enum PasswordOutcome {
    SignedIn(Completed),
    RequiresTwoFactor {
        attempt_token: String,
        providers: Vec<ProviderOffer>,
        recovery_code_available: bool,
        policy: EffectivePolicy,
    },
    RequiresEnrollment {
        attempt_token: String,
        policy: EffectivePolicy,
        grace_until: Option<i64>,
        can_postpone: bool,
    },
}

impl PasswordOutcome {
    pub fn status(&self) -> SignInStatus {
        match self {
            PasswordOutcome::SignedIn(_) => SignInStatus::SignedIn,
            PasswordOutcome::RequiresTwoFactor { .. } => SignInStatus::RequiresTwoFactor,
            PasswordOutcome::RequiresEnrollment { .. } => SignInStatus::RequiresEnrollment,
        }
    }
}

/// The effective policy of a user, from cached scope inputs.
pub async fn effective_policy(state: &AppState, user: &UserRow) -> AppResult<EffectivePolicy> {
    let flag = user.two_factor_enabled != 0;
    let policy = match &user.tenant_id {
        None => {
            let settings = state.cache().settings(state.db(), HOST_SCOPE).await?;
            resolve(&PolicyInput { scope: Scope::Host { settings: &settings }, user_two_factor_enabled: flag })
        }
        Some(tenant_id) => {
            let feature = state.cache().feature(state.db(), tenant_id).await?;
            let settings = state.cache().settings(state.db(), tenant_id).await?;
            resolve(&PolicyInput {
                scope: Scope::Tenant { feature, settings: &settings },
                user_two_factor_enabled: flag,
            })
        }
    };
    Ok(policy)
}

/// The factors a user can be offered at sign-in, given the providers that are
/// `usable` (allowed by the policy and, for email and SMS, with a sender).
pub fn offers(user: &UserRow, usable: &ProviderSet) -> Vec<ProviderOffer> {
    user.usable_providers(usable)
        .into_iter()
        .map(|provider| ProviderOffer {
            provider,
            weaker: provider.is_weaker(),
            destination: match provider {
                Provider::Authenticator => None,
                Provider::Email => user.email.as_deref().map(factors::mask_email),
                Provider::Sms => user.phone.as_deref().map(factors::mask_phone),
            },
        })
        .collect()
}

/// The providers a user may enrol at sign-in, given the providers that are `usable`
/// (allowed by the policy and, for email and SMS, with a sender).
pub fn enrollable(usable: &ProviderSet) -> Vec<Provider> {
    usable.iter().collect()
}

/// Checks user name and password, then decides what comes next. Unknown tenants,
/// unknown users, malformed names and wrong passwords all end in the same error after
/// the same amount of hashing work.
pub async fn password_step(
    state: &AppState,
    req: SignInRequest,
    client: &ClientInfo,
    remember_cookie: Option<&str>,
) -> AppResult<PasswordOutcome> {
    let now = state.now();
    let tenant_name = req.tenant.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase);
    let account_key =
        format!("{}/{}", tenant_name.as_deref().unwrap_or(HOST_SCOPE), req.username.trim().to_lowercase());
    let address_key = client.ip.clone().unwrap_or_default();
    state.limits().by_account(Class::SignIn, &account_key, now)?;
    for (limiter, key) in [(state.account_limiter(), &account_key), (state.address_limiter(), &address_key)] {
        if let Some(ms) = limiter.blocked_for(key, now) {
            return Err(AppError::RateLimited { retry_after_ms: ms });
        }
    }
    let scope_key = match &tenant_name {
        None => Some(HOST_SCOPE.to_owned()),
        Some(name) => db::get_tenant_by_name(&state.db().pool, name).await?.map(|t| t.id),
    };
    let user = match (scope_key, Username::parse(&req.username)) {
        (Some(scope), Ok(name)) => db::find_user(&state.db().pool, &scope, name.key()).await?,
        _ => None,
    };
    let verified = match &user {
        Some(u) => auth::verify_password(req.password, u.password_hash.clone()).await?,
        None => {
            // Spend the same hashing work as for a real user, so response time does
            // not reveal which user names exist.
            let _ = auth::verify_password(req.password, state.dummy_hash().to_owned()).await?;
            false
        }
    };
    let user = match (user, verified) {
        (Some(u), true) => u,
        (user, _) => {
            state.account_limiter().record_failure(&account_key, now);
            state.address_limiter().record_failure(&address_key, now);
            if let Some(u) = &user {
                factors::audit_user(state, u, "sign_in.failed", serde_json::json!({ "factor": "password" })).await?;
            }
            return Err(AppError::InvalidCredentials);
        }
    };
    state.account_limiter().clear(&account_key);
    let policy = effective_policy(state, &user).await?;
    if !policy.required {
        return Ok(PasswordOutcome::SignedIn(finish_without_attempt(state, user, "pwd", client).await?));
    }
    factors::ensure_not_locked(state, &user)?;
    if let Some(cookie) = remember_cookie
        && remembered_browser_valid(state, &user, &policy, cookie).await?
    {
        {
            return Ok(PasswordOutcome::SignedIn(finish_without_attempt(state, user, "pwd+remembered", client).await?));
        }
    }
    let providers = offers(&user, &factors::usable_providers(state, &policy.allowed_providers));
    if providers.is_empty() {
        // Fail closed: a required second factor without a usable factor means
        // enrolment, never a silent sign-in.
        fdb::mark_enrollment_required(&state.db().pool, &user.id, now).await?;
        let since = user.enrollment_required_since.unwrap_or(now);
        let grace_until =
            (policy.enrollment_grace_days > 0).then(|| since + i64::from(policy.enrollment_grace_days) * DAY_MS);
        let can_postpone = grace_until.is_some_and(|until| now < until);
        let attempt_token = open_attempt(state, &user, Stage::Enrollment).await?;
        return Ok(PasswordOutcome::RequiresEnrollment {
            attempt_token,
            policy,
            grace_until: grace_until.filter(|_| can_postpone),
            can_postpone,
        });
    }
    let recovery_code_available = !fdb::unused_recovery_codes(&state.db().pool, &user.id).await?.is_empty();
    let attempt_token = open_attempt(state, &user, Stage::SecondFactor).await?;
    Ok(PasswordOutcome::RequiresTwoFactor { attempt_token, providers, recovery_code_available, policy })
}

async fn open_attempt(state: &AppState, user: &UserRow, stage: Stage) -> AppResult<String> {
    let token = new_token();
    let now = state.now();
    fdb::insert_attempt(
        &state.db().pool,
        &NewAttempt {
            token_hash: &token_hash(&token),
            id: &uuid::Uuid::now_v7().to_string(),
            user_id: &user.id,
            stage: stage.as_str(),
            security_stamp: &user.security_stamp,
            created_at: now,
            expires_at: now + i64::from(state.config().pending_sign_in_minutes) * 60_000,
        },
    )
    .await?;
    Ok(token)
}

/// A pending sign-in that is still open, with its user and their current policy.
#[derive(Debug)]
pub struct Pending {
    pub attempt: fdb::AttemptRow,
    pub user: UserRow,
    pub policy: EffectivePolicy,
}

/// Loads the pending sign-in of `token` in `stage`. Expired, completed, wrong-stage or
/// stale (the user's security stamp changed) sign-ins are all refused alike.
pub async fn pending(state: &AppState, token: Option<&str>, stage: Stage) -> AppResult<Pending> {
    let token = token.ok_or(AppError::SignInExpired)?;
    let attempt = fdb::find_attempt(&state.db().pool, &token_hash(token)).await?.ok_or(AppError::SignInExpired)?;
    let now = state.now();
    if attempt.completed_at.is_some() || attempt.expires_at <= now || attempt.stage != stage.as_str() {
        return Err(AppError::SignInExpired);
    }
    let user = db::get_user(&state.db().pool, &attempt.user_id).await?.ok_or(AppError::SignInExpired)?;
    if !auth::stamps_equal(&attempt.security_stamp, &user.security_stamp) {
        return Err(AppError::SignInExpired);
    }
    let policy = effective_policy(state, &user).await?;
    Ok(Pending { attempt, user, policy })
}

/// Sends a sign-in code by email or SMS, to a confirmed destination only.
pub async fn send_sign_in_code(
    state: &AppState,
    token: Option<&str>,
    provider: Provider,
) -> AppResult<SendCodeResponse> {
    let p = pending(state, token, Stage::SecondFactor).await?;
    state.limits().by_account(Class::SendCode, &p.user.id, state.now())?;
    factors::ensure_not_locked(state, &p.user)?;
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
        return Err(AppError::bad_request("provider_unavailable", "this provider is not available for this account"));
    };
    let purpose = sign_in_purpose(channel);
    factors::send_code(state, &p.user, purpose, &p.attempt.id, &destination, channel, Some(&p.attempt)).await
}

fn sign_in_purpose(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "sign_in_email",
        Channel::Sms => "sign_in_sms",
    }
}

/// Checks the second factor of a pending sign-in and, when right, completes it.
pub async fn verify_step(
    state: &AppState,
    token: Option<&str>,
    req: VerifyRequest,
    client: &ClientInfo,
) -> AppResult<Completed> {
    let p = pending(state, token, Stage::SecondFactor).await?;
    state.limits().by_account(Class::Verify, &p.user.id, state.now())?;
    factors::ensure_not_locked(state, &p.user)?;
    let allowed = &factors::usable_providers(state, &p.policy.allowed_providers);
    let spend = match req.method {
        SecondFactorMethod::Authenticator if allowed.authenticator => {
            factors::check_totp(state, &p.user, &req.code, false).await?
        }
        SecondFactorMethod::Email if allowed.email && p.user.email_confirmed != 0 => {
            factors::check_code(state, "sign_in_email", &p.attempt.id, &req.code).await?
        }
        SecondFactorMethod::Sms if allowed.sms && p.user.phone_confirmed != 0 => {
            factors::check_code(state, "sign_in_sms", &p.attempt.id, &req.code).await?
        }
        SecondFactorMethod::RecoveryCode => factors::check_recovery_code(state, &p.user, &req.code).await?,
        _ => {
            return Err(AppError::bad_request(
                "provider_unavailable",
                "this provider is not available for this account",
            ));
        }
    };
    let method = factors::method_name(req.method);
    let Some(spend) = spend else {
        // A copy of this request that won may have spent the code between our reads:
        // a double submit is not a wrong code and must not count towards a lockout.
        let hash = token.map(token_hash).unwrap_or_default();
        if fdb::find_attempt(&state.db().pool, &hash).await?.is_none_or(|a| a.completed_at.is_some()) {
            return Err(AppError::SignInExpired);
        }
        return Err(factors::second_factor_failed(state, &p.user, method).await?);
    };
    let remember = req.remember_browser && p.policy.remember_browser_allowed;
    finish(state, p, &format!("pwd+{method}"), client, remember, None, Some((&spend, method))).await
}

/// Starts authenticator enrolment in a pending sign-in: a new secret, shown once.
pub async fn enroll_authenticator_start(state: &AppState, token: Option<&str>) -> AppResult<AuthenticatorEnrollment> {
    let p = pending(state, token, Stage::Enrollment).await?;
    if !p.policy.allowed_providers.authenticator {
        return Err(AppError::bad_request("provider_unavailable", "authenticator apps are not allowed here"));
    }
    begin_authenticator(state, &p.user).await
}

/// Creates a pending (unconfirmed) authenticator for `user` and returns its secret.
pub async fn begin_authenticator(state: &AppState, user: &UserRow) -> AppResult<AuthenticatorEnrollment> {
    let secret = totp::generate_secret();
    let enc = state.keys().encrypt_secret(&secret, &user.id);
    let mut tx = state.db().begin_write().await?;
    if !fdb::put_pending_authenticator(&mut tx, &user.id, &enc, state.now()).await? {
        return Err(AppError::conflict(
            "authenticator_exists",
            "an authenticator is already set up; remove it before adding a new one",
        ));
    }
    tx.commit().await?;
    let account = match &user.tenant_id {
        Some(tid) => {
            let tenant = db::get_tenant(&state.db().pool, tid).await?.map(|t| t.name).unwrap_or_default();
            format!("{}@{}", user.username, tenant)
        }
        None => user.username.clone(),
    };
    let uri = totp::otpauth_uri(&secret, &state.config().totp_issuer, &account)?;
    let png = totp::qr_png(&uri)?;
    Ok(AuthenticatorEnrollment {
        secret: totp::secret_base32(&secret),
        otpauth_uri: uri,
        qr_png_base64: base64::engine::general_purpose::STANDARD.encode(png),
    })
}

/// Confirms a pending authenticator with its first code; records the accepted step.
/// Returns recovery codes when this is the user's first factor.
pub async fn confirm_authenticator(state: &AppState, user: &UserRow, code: &str) -> AppResult<Option<Vec<String>>> {
    factors::ensure_not_locked(state, user)?;
    if !factors::take_totp(state, user, code, true).await? {
        return Err(factors::second_factor_failed(state, user, "authenticator").await?);
    }
    factor_added(state, user, "authenticator", None, |tx, id| Box::pin(fdb::confirm_authenticator(tx, id))).await
}

/// Records a new factor in one transaction: the change itself, a new security stamp,
/// recovery codes when it is the first factor, and the audit event.
pub async fn factor_added<F>(
    state: &AppState,
    user: &UserRow,
    factor: &str,
    keep_session: Option<&str>,
    apply: F,
) -> AppResult<Option<Vec<String>>>
where
    F: for<'c> FnOnce(
        &'c mut sqlx::AnyConnection,
        &'c str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>,
{
    let first = !user.has_factor();
    let mut tx = state.db().begin_write().await?;
    apply(&mut tx, &user.id).await?;
    fdb::rotate_stamp(&mut tx, &user.id, &auth::new_stamp(), keep_session).await?;
    fdb::reset_failures(&mut tx, &user.id).await?;
    let codes = if first { Some(factors::issue_recovery_codes(&mut tx, state, &user.id).await?) } else { None };
    db::insert_audit(
        &mut tx,
        &NewAudit {
            at: state.now(),
            actor_user_id: Some(&user.id),
            scope_key: &user.scope_key,
            action: "factor.added",
            target: &format!("user:{}", user.id),
            before: None,
            after: Some(serde_json::json!({ "factor": factor, "recovery_codes_issued": first })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(codes)
}

/// Confirms the enrolment authenticator and completes the sign-in.
pub async fn enroll_authenticator_confirm(
    state: &AppState,
    token: Option<&str>,
    code: &str,
    client: &ClientInfo,
) -> AppResult<Completed> {
    let p = pending(state, token, Stage::Enrollment).await?;
    state.limits().by_account(Class::Verify, &p.user.id, state.now())?;
    let codes = confirm_authenticator(state, &p.user, code).await?;
    finish(state, p, "pwd+enrolled_authenticator", client, false, codes, None).await
}

/// Sends a confirmation code to the user's email (or a new address) during enrolment.
pub async fn enroll_contact_start(
    state: &AppState,
    token: Option<&str>,
    channel: Channel,
    destination: Option<&str>,
) -> AppResult<SendCodeResponse> {
    let p = pending(state, token, Stage::Enrollment).await?;
    state.limits().by_account(Class::SendCode, &p.user.id, state.now())?;
    factors::ensure_not_locked(state, &p.user)?;
    if !p.policy.allowed_providers.allows(channel.provider()) {
        return Err(AppError::bad_request("provider_unavailable", "this provider is not allowed here"));
    }
    factors::ensure_sender(state, channel)?;
    let destination = match (channel, destination) {
        (Channel::Email, Some(e)) => {
            EmailAddress::parse(e).map_err(|e| AppError::invalid_field(e.field, e.message))?.as_str().to_owned()
        }
        (Channel::Email, None) => {
            p.user.email.clone().ok_or_else(|| AppError::invalid_field("email", "give the address to confirm"))?
        }
        (Channel::Sms, Some(n)) => factors::parse_phone(n)?,
        (Channel::Sms, None) => {
            p.user.phone.clone().ok_or_else(|| AppError::invalid_field("phone", "give the number to confirm"))?
        }
    };
    let purpose = enroll_purpose(channel);
    factors::send_code(state, &p.user, purpose, &p.attempt.id, &destination, channel, Some(&p.attempt)).await
}

fn enroll_purpose(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "enroll_email",
        Channel::Sms => "enroll_phone",
    }
}

/// Confirms the enrolment email or phone with its code and completes the sign-in.
pub async fn enroll_contact_confirm(
    state: &AppState,
    token: Option<&str>,
    channel: Channel,
    code: &str,
    client: &ClientInfo,
) -> AppResult<Completed> {
    let p = pending(state, token, Stage::Enrollment).await?;
    state.limits().by_account(Class::Verify, &p.user.id, state.now())?;
    factors::ensure_not_locked(state, &p.user)?;
    let Some(destination) = factors::take_code(state, enroll_purpose(channel), &p.attempt.id, code).await? else {
        return Err(factors::second_factor_failed(state, &p.user, factors::method_name(method_of(channel))).await?);
    };
    let codes = contact_confirmed(state, &p.user, channel, &destination, None).await?;
    let methods = match channel {
        Channel::Email => "pwd+enrolled_email",
        Channel::Sms => "pwd+enrolled_sms",
    };
    finish(state, p, methods, client, false, codes, None).await
}

fn method_of(channel: Channel) -> SecondFactorMethod {
    match channel {
        Channel::Email => SecondFactorMethod::Email,
        Channel::Sms => SecondFactorMethod::Sms,
    }
}

/// Stores a confirmed email or phone as a factor.
pub async fn contact_confirmed(
    state: &AppState,
    user: &UserRow,
    channel: Channel,
    destination: &str,
    keep_session: Option<&str>,
) -> AppResult<Option<Vec<String>>> {
    let destination = destination.to_owned();
    let factor = match channel {
        Channel::Email => "email",
        Channel::Sms => "phone",
    };
    factor_added(state, user, factor, keep_session, move |tx, id| {
        Box::pin(async move {
            match channel {
                Channel::Email => fdb::confirm_email(tx, id, &destination).await,
                Channel::Sms => fdb::confirm_phone(tx, id, &destination).await,
            }
        })
    })
    .await
}

/// Signs in without enrolling while the grace period runs.
pub async fn postpone_enrollment(state: &AppState, token: Option<&str>, client: &ClientInfo) -> AppResult<Completed> {
    let p = pending(state, token, Stage::Enrollment).await?;
    let now = state.now();
    let since = p.user.enrollment_required_since.unwrap_or(now);
    let until = since + i64::from(p.policy.enrollment_grace_days) * DAY_MS;
    if p.policy.enrollment_grace_days == 0 || now >= until {
        return Err(AppError::conflict("grace_over", "the enrolment grace period is over; enrol a second factor"));
    }
    finish(state, p, "pwd+grace", client, false, None, None).await
}

/// Whether the remember-browser cookie lets this user skip the second factor now.
async fn remembered_browser_valid(
    state: &AppState,
    user: &UserRow,
    policy: &EffectivePolicy,
    cookie: &str,
) -> AppResult<bool> {
    if !policy.remember_browser_allowed {
        return Ok(false);
    }
    let Some(token) = state.keys().verify_signed_token(cookie) else {
        return Ok(false);
    };
    let Some(row) = fdb::find_browser(&state.db().pool, &token_hash(&token)).await? else {
        return Ok(false);
    };
    let now = state.now();
    // The current policy's lifetime applies even to browsers remembered under a longer
    // one, so shortening it takes effect at once.
    let policy_end = row.created_at + i64::from(policy.remember_browser_days) * DAY_MS;
    let valid = row.user_id == user.id
        && auth::stamps_equal(&row.security_stamp, &user.security_stamp)
        && now < row.expires_at
        && now < policy_end;
    if valid {
        let mut tx = state.db().begin_write().await?;
        fdb::touch_browser(&mut tx, &row.id, now).await?;
        tx.commit().await?;
    }
    Ok(valid)
}

/// Completes a pending sign-in exactly once and creates the session.
async fn finish(
    state: &AppState,
    p: Pending,
    methods: &str,
    client: &ClientInfo,
    remember: bool,
    recovery_codes: Option<Vec<String>>,
    spend: Option<(&factors::Spend, &str)>,
) -> AppResult<Completed> {
    let now = state.now();
    // One transaction: the factor is consumed, the attempt completed, the session and
    // the remembered browser created together, or none of it happens.
    let mut tx = state.db().begin_write().await?;
    // The attempt first: a double submit of one sign-in finds it completed and ends as
    // an expired sign-in, not as a failure that counts towards a lockout.
    if !fdb::complete_attempt(&mut tx, &p.attempt.id, now).await? {
        return Err(AppError::SignInExpired);
    }
    if let Some((spend, method)) = spend
        && !spend.consume(&mut tx, now).await?
    {
        // Another sign-in consumed this code first: to this one it is a replay.
        drop(tx);
        return Err(factors::second_factor_failed(state, &p.user, method).await?);
    }
    fdb::reset_failures(&mut tx, &p.user.id).await?;
    // Reload: enrolment may just have rotated the stamp.
    let user = db::get_user(&mut *tx, &p.user.id).await?.ok_or(AppError::SignInExpired)?;
    let session_token = insert_session(&mut tx, state, &user, methods, client, true).await?;
    let remember = if remember {
        let token = new_token();
        let lifetime = i64::from(p.policy.remember_browser_days) * DAY_MS;
        fdb::insert_browser(
            &mut tx,
            &NewBrowser {
                id: &uuid::Uuid::now_v7().to_string(),
                token_hash: &token_hash(&token),
                user_id: &user.id,
                security_stamp: &user.security_stamp,
                created_at: now,
                expires_at: now + lifetime,
                user_agent: client.user_agent.as_deref(),
            },
        )
        .await?;
        Some((state.keys().sign_token(&token), lifetime))
    } else {
        None
    };
    tx.commit().await?;
    Ok(Completed { user: Box::new(user), session_token, remember, recovery_codes })
}

async fn finish_without_attempt(
    state: &AppState,
    user: UserRow,
    methods: &str,
    client: &ClientInfo,
) -> AppResult<Completed> {
    let mut tx = state.db().begin_write().await?;
    let session_token = insert_session(&mut tx, state, &user, methods, client, !user.has_factor()).await?;
    tx.commit().await?;
    Ok(Completed { user: Box::new(user), session_token, remember: None, recovery_codes: None })
}

/// Creates a session, in the caller's transaction, for a user who has passed every step
/// the policy demands. The token is new for every session (no fixation), and only its
/// hash is stored. A session that just checked everything the user has counts as
/// freshly reauthenticated.
async fn insert_session(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    user: &UserRow,
    auth_methods: &str,
    client: &ClientInfo,
    fully_verified: bool,
) -> AppResult<String> {
    let token = new_token();
    let hash = token_hash(&token);
    let now = state.now();
    let max_ms = i64::from(state.config().session_max_hours) * 3_600_000;
    db::insert_session(
        &mut *conn,
        &NewSession {
            token_hash: &hash,
            user_id: &user.id,
            security_stamp: &user.security_stamp,
            auth_methods,
            now,
            expires_at: now + max_ms,
            user_agent: client.user_agent.as_deref(),
            client_ip: client.ip.as_deref(),
            reauthenticated_at: fully_verified.then_some(now),
        },
    )
    .await?;
    db::insert_audit(
        &mut *conn,
        &NewAudit {
            at: now,
            actor_user_id: Some(&user.id),
            scope_key: &user.scope_key,
            action: "sign_in.succeeded",
            target: &format!("user:{}", user.id),
            before: None,
            after: Some(serde_json::json!({ "methods": auth_methods })),
        },
    )
    .await?;
    Ok(token)
}
