//! The password step, and every other check of a user's password (reauthentication, a
//! password change): all of them count wrong guesses in the same limits.
//!
//! Unknown tenants, unknown users, malformed names and wrong passwords end in the same
//! error after the same work: the same lookups, one password hash, one audit write.

use twofold_policy::names::Username;
use twofold_policy::wire::SignInRequest;

use super::{ClientInfo, DAY_MS, Outcome, Stage, lockout, offers, opened, pending, resolved_policy, session};
use crate::app::AppState;
use crate::auth;
use crate::db::factors as fdb;
use crate::db::{HOST_SCOPE, NewAudit, UserRow};
use crate::error::{AppError, AppResult};
use crate::ratelimit::Class;

/// Scope and user keys that match no row, so that a malformed name or an unknown
/// tenant costs the same lookup as a real one.
const NO_SCOPE: &str = "-";
const NO_USER: &str = "-";

/// What a typed tenant and user name find: the scope (`None` for an unknown tenant),
/// whether that tenant is suspended, the user, and, where the database read them with the
/// user (PostgreSQL), their confirmed authenticator's secret as stored, whether they
/// have a recovery code left and whether they are in any group.
#[derive(Debug)]
pub struct Named {
    pub scope: Option<String>,
    pub suspended: bool,
    pub user: Option<UserRow>,
    pub authenticator: Option<String>,
    pub recovery_code: Option<bool>,
    pub in_groups: Option<bool>,
}

/// The tenant named `tenant_name` (the host when `None`, already trimmed and lowercased)
/// and the user `username` in it. Every input takes the same lookups, a tenant by name
/// (or none for the host) and a user by scope and name, with keys that match nothing when
/// the input cannot: the password step and the password reset request answer unknown
/// tenants and users after the same work as known ones.
pub async fn find_named(state: &AppState, tenant_name: Option<&str>, username: &str) -> AppResult<Named> {
    let name = Username::parse(username).ok();
    let crate::db::Named { tenant, user, authenticator, recovery_code, in_groups } =
        state.db().named(tenant_name, NO_SCOPE, name.as_ref().map_or(NO_USER, |n| n.key())).await?;
    let (scope, suspended) = match (tenant, tenant_name) {
        (_, None) => (Some(HOST_SCOPE.to_owned()), false),
        (Some(t), Some(_)) => (Some(t.id), t.suspended_at.is_some()),
        (None, Some(_)) => (None, false),
    };
    Ok(Named { scope, suspended, user, authenticator, recovery_code, in_groups })
}

/// Prefix of a known-browser token, so it can never pass for another signed token.
const KNOWN_PREFIX: &str = "known.";

/// A short tag of the user's security stamp: a known-browser cookie from before a
/// password or factor change stops counting, like every other credential of that time.
fn stamp_tag(stamp: &str) -> String {
    auth::token_hash(stamp)[..16].to_owned()
}

/// The signed value of the cookie that marks this browser as one where `user` typed
/// the right password: the user, when, and under which security stamp.
pub fn known_browser_token(state: &AppState, user: &UserRow) -> String {
    let tag = stamp_tag(&user.security_stamp);
    state.keys().sign_token(&format!("{KNOWN_PREFIX}{}.{}.{tag}", user.id, state.now()))
}

/// Whether `cookie` is a genuine, unexpired known-browser token of `user` under their
/// current security stamp.
fn is_known_browser(state: &AppState, cookie: Option<&str>, user: &UserRow) -> bool {
    let Some(token) = cookie.and_then(|c| state.keys().verify_signed_token(c)) else {
        return false;
    };
    let mut parts = token.strip_prefix(KNOWN_PREFIX).unwrap_or("").split('.');
    let (Some(id), Some(issued), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let lifetime = i64::from(state.config().known_browser_days) * DAY_MS;
    let fresh = issued.parse::<i64>().is_ok_and(|at| state.now() < at.saturating_add(lifetime));
    fresh && auth::stamps_equal(id, &user.id) && auth::stamps_equal(tag, &stamp_tag(&user.security_stamp))
}

/// Checks a signed-in user's password (reauthentication, password change) under the
/// same limits as the password step; a wrong one is counted and audited as `action`.
pub async fn verify_password_of(
    state: &AppState,
    user: &UserRow,
    password: String,
    client: &ClientInfo,
    action: &str,
) -> AppResult<()> {
    let now = state.now();
    let address = client.ip.clone().unwrap_or_default();
    // The caller holds a session, which is not a browser the password was typed in:
    // stolen sessions guessing the password count account-wide too.
    state.passwords().check(&user.id, &address, false, now)?;
    if auth::verify_password(password, user.password_hash.clone()).await? {
        state.passwords().succeeded(&user.id, &address);
        return Ok(());
    }
    state.passwords().failed(&user.id, &address, false, now);
    let target = crate::factors::user_target(user);
    let event = crate::factors::user_event(user, now, action, &target, serde_json::json!({ "factor": "password" }));
    state.db().insert_audit_alone(&event).await?;
    Err(AppError::WrongPassword)
}

/// One audit write for a wrong password, whether or not the user exists.
async fn audit_failure(
    state: &AppState,
    scope_key: &str,
    user: Option<&UserRow>,
    typed: Option<&str>,
    refused: Option<&str>,
) -> AppResult<()> {
    let target = user.map_or_else(|| "user:unknown".to_owned(), crate::factors::user_target);
    let mut after = match typed {
        Some(name) => {
            serde_json::json!({ "factor": "password", "username": name.chars().take(64).collect::<String>() })
        }
        None => serde_json::json!({ "factor": "password" }),
    };
    if let Some(reason) = refused {
        after["refused"] = serde_json::json!(reason);
    }
    state
        .db()
        .insert_audit_alone(&NewAudit {
            at: state.now(),
            actor_user_id: user.map(|u| u.id.as_str()),
            scope_key,
            action: "sign_in.failed",
            target: &target,
            before: None,
            after: Some(after),
        })
        .await?;
    Ok(())
}

/// Checks user name and password, then decides what comes next.
pub(super) async fn step(
    state: &AppState,
    req: SignInRequest,
    client: &ClientInfo,
    remember_cookie: Option<&str>,
    known_cookie: Option<&str>,
) -> AppResult<Outcome> {
    let now = state.now();
    let tenant_name = req.tenant.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase);
    let typed_key = format!("{}/{}", tenant_name.as_deref().unwrap_or(HOST_SCOPE), req.username.trim().to_lowercase());
    let address = client.ip.clone().unwrap_or_default();
    state.limits().by_account(Class::SignIn, &typed_key, now)?;
    let Named { scope, suspended, user, authenticator, recovery_code, in_groups } =
        find_named(state, tenant_name.as_deref(), &req.username).await?;
    // Known users are counted by id, so every spelling of the name counts together.
    let account = user.as_ref().map_or_else(|| typed_key.clone(), |u| u.id.clone());
    let known = user.as_ref().is_some_and(|u| is_known_browser(state, known_cookie, u));
    state.passwords().check(&account, &address, known, now)?;
    let stored = user.as_ref().map_or_else(|| state.dummy_hash().to_owned(), |u| u.password_hash.clone());
    // An unknown user spends the same hashing work against a dummy hash, so response
    // time does not reveal which user names exist.
    let verified = auth::verify_password(req.password, stored).await? && user.is_some();
    // A deactivated user or a suspended tenant gets the answer a wrong password gets,
    // after the same work: nobody learns the account exists or that the password was
    // right. The audit (for admins) says why.
    let refused = if suspended {
        Some("tenant_suspended")
    } else {
        user.as_ref().and_then(|u| u.deactivated_at).map(|_| "deactivated")
    };
    let user = match user {
        Some(u) if verified && refused.is_none() => u,
        user => {
            state.passwords().failed(&account, &address, known, now);
            let typed = user.is_none().then_some(req.username.trim());
            let reason = refused.filter(|_| verified);
            audit_failure(state, scope.as_deref().unwrap_or(HOST_SCOPE), user.as_ref(), typed, reason).await?;
            return Err(AppError::InvalidCredentials);
        }
    };
    state.passwords().succeeded(&account, &address);
    let resolved = match in_groups {
        // Every input of the policy of a user in no group is on the row just read with
        // that answer (PostgreSQL): no statement reads them again.
        Some(false) => {
            super::resolved_with(state, user.tenant_id.as_deref(), user.two_factor_enabled != 0, Vec::new(), None)
                .await?
        }
        _ => resolved_policy(state, &user).await?,
    };
    let claim = opened::Claim::of(&user, !resolved.groups.is_empty());
    let policy = resolved.policy;
    if !policy.required {
        return session::finish_after_password(state, user, "pwd", client).await.map(Outcome::SignedIn);
    }
    lockout::ensure_not_locked(state, &user)?;
    if let Some(cookie) = remember_cookie
        && session::remembered_browser_valid(state, &user, &policy, cookie).await?
    {
        return session::finish_after_password(state, user, "pwd+remembered", client).await.map(Outcome::SignedIn);
    }
    let providers = offers(state, &user, &policy);
    if providers.is_empty() {
        // Fail closed: a required second factor without a usable factor means
        // enrolment, never a silent sign-in.
        let id = user.id.clone();
        state
            .db()
            .write_one_touching(crate::db::Touches::user(&user.id), move |c| {
                Box::pin(async move { fdb::mark_enrollment_required(c, &id, now).await })
            })
            .await?;
        let since = user.enrollment_required_since.unwrap_or(now);
        let grace_until =
            (policy.enrollment_grace_days > 0).then(|| since + i64::from(policy.enrollment_grace_days) * DAY_MS);
        let can_postpone = grace_until.is_some_and(|until| now < until);
        let attempt_token = pending::open(state, &user, Stage::AwaitingEnrollment, None, None).await?;
        return Ok(Outcome::EnrollmentRequired {
            attempt_token,
            user: Box::new(user),
            policy,
            grace_until: grace_until.filter(|_| can_postpone),
            can_postpone,
        });
    }
    // A recovery code proves `app` at most, so it is no way in where more is required.
    let recovery_code_available = policy.required_strength <= twofold_policy::Strength::App
        && match recovery_code {
            Some(left) => left,
            None => state.db().has_recovery_code(&user.id).await?,
        };
    let attempt_token =
        pending::open(state, &user, Stage::AwaitingSecondFactor, authenticator.as_deref(), claim.as_ref()).await?;
    Ok(Outcome::SecondFactorRequired {
        attempt_token,
        user: Box::new(user),
        providers,
        recovery_code_available,
        policy,
    })
}
