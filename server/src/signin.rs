//! The sign-in pipeline: the only code that creates sessions.
//!
//! Every way to a session passes through [`password_step`] and the states that follow
//! it; [`establish_session`] is private to this module so no route can mint a session
//! on a side path that skips the second factor. A password step ends in one of the
//! [`PasswordOutcome`]s; a user whose policy requires a second factor never receives a
//! session here.

use twofold_policy::names::Username;
use twofold_policy::wire::{SignInRequest, SignInStatus};
use twofold_policy::{EffectivePolicy, PolicyInput, Scope, resolve};

use crate::app::AppState;
use crate::auth::{self, new_token, token_hash};
use crate::db::{self, HOST_SCOPE, NewAudit, NewSession, UserRow};
use crate::error::{AppError, AppResult};

/// Who is signing in from where; recorded with the session.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The result of the password step.
#[derive(Debug)]
pub enum PasswordOutcome {
    /// No second factor is required: a session was created.
    SignedIn { user: Box<UserRow>, token: String },
    /// The password was right and a second factor is required.
    RequiresTwoFactor {
        user: Box<UserRow>,
        policy: EffectivePolicy,
    },
    /// A second factor is required and the user has none yet.
    RequiresEnrollment {
        user: Box<UserRow>,
        policy: EffectivePolicy,
    },
}

impl PasswordOutcome {
    pub fn status(&self) -> SignInStatus {
        match self {
            PasswordOutcome::SignedIn { .. } => SignInStatus::SignedIn,
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
            resolve(&PolicyInput {
                scope: Scope::Host {
                    settings: &settings,
                },
                user_two_factor_enabled: flag,
            })
        }
        Some(tenant_id) => {
            let feature = state.cache().feature(state.db(), tenant_id).await?;
            let settings = state.cache().settings(state.db(), tenant_id).await?;
            resolve(&PolicyInput {
                scope: Scope::Tenant {
                    feature,
                    settings: &settings,
                },
                user_two_factor_enabled: flag,
            })
        }
    };
    Ok(policy)
}

/// Checks user name and password. Unknown tenants, unknown users, malformed names and
/// wrong passwords all end in the same error after the same amount of hashing work.
pub async fn password_step(
    state: &AppState,
    req: SignInRequest,
    client: &ClientInfo,
) -> AppResult<PasswordOutcome> {
    let scope_key = match req
        .tenant
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        None => Some(HOST_SCOPE.to_owned()),
        Some(name) => db::get_tenant_by_name(&state.db().pool, &name.to_lowercase())
            .await?
            .map(|t| t.id),
    };
    let user = match (scope_key, Username::parse(&req.username)) {
        (Some(scope), Ok(name)) => db::find_user(&state.db().pool, &scope, name.key()).await?,
        _ => None,
    };
    let Some(user) = user else {
        // Spend the same hashing work as for a real user, so response time does not
        // reveal which user names exist.
        let _ = auth::verify_password(req.password, state.dummy_hash().to_owned()).await?;
        return Err(AppError::InvalidCredentials);
    };
    if !auth::verify_password(req.password, user.password_hash.clone()).await? {
        audit_sign_in(state, &user, "sign_in.failed", "password").await?;
        return Err(AppError::InvalidCredentials);
    }
    let policy = effective_policy(state, &user).await?;
    if policy.required {
        // Fail closed: a required second factor without a usable factor means
        // enrolment, never a silent sign-in.
        return Ok(if user.has_factor() {
            PasswordOutcome::RequiresTwoFactor {
                user: Box::new(user),
                policy,
            }
        } else {
            PasswordOutcome::RequiresEnrollment {
                user: Box::new(user),
                policy,
            }
        });
    }
    let token = establish_session(state, &user, "pwd", client).await?;
    Ok(PasswordOutcome::SignedIn {
        user: Box::new(user),
        token,
    })
}

async fn audit_sign_in(
    state: &AppState,
    user: &UserRow,
    action: &str,
    methods: &str,
) -> AppResult<()> {
    let mut conn = state.db().pool.acquire().await?;
    db::insert_audit(
        &mut conn,
        &NewAudit {
            at: state.now(),
            actor_user_id: Some(&user.id),
            scope_key: &user.scope_key,
            action,
            target: &format!("user:{}", user.id),
            before: None,
            after: Some(serde_json::json!({ "methods": methods })),
        },
    )
    .await?;
    Ok(())
}

/// Creates a session for a user who has passed every step the policy demands. The
/// token is new for every session (no fixation), and only its hash is stored.
async fn establish_session(
    state: &AppState,
    user: &UserRow,
    auth_methods: &str,
    client: &ClientInfo,
) -> AppResult<String> {
    let token = new_token();
    let hash = token_hash(&token);
    let now = state.now();
    let max_ms = i64::from(state.config().session_max_hours) * 3_600_000;
    let mut tx = state.db().begin_write().await?;
    db::insert_session(
        &mut tx,
        &NewSession {
            token_hash: &hash,
            user_id: &user.id,
            security_stamp: &user.security_stamp,
            auth_methods,
            now,
            expires_at: now + max_ms,
            user_agent: client.user_agent.as_deref(),
            client_ip: client.ip.as_deref(),
        },
    )
    .await?;
    db::insert_audit(
        &mut tx,
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
    tx.commit().await?;
    Ok(token)
}
