//! The HTTP API. Each area builds its own small router; this module merges them and
//! holds what they share (paging, audit writing, user views).

pub mod account;
pub mod audit;
pub mod auth;
pub mod groups;
pub mod health;
pub mod messages;
pub mod passkeys;
pub mod settings;
pub mod tenants;
pub mod users;

use axum::Router;
use serde::Deserialize;
use twofold_policy::wire::{LockState, RoleGrant, User};
use utoipa::IntoParams;

use crate::app::AppState;
use crate::clock::rfc3339;
use crate::db::{self, HOST_SCOPE, NewAudit, RoleRow, UserRow};
use crate::error::AppResult;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::routes())
        .merge(auth::routes())
        .merge(account::routes())
        .merge(passkeys::routes())
        .merge(settings::routes())
        .merge(tenants::routes())
        .merge(users::routes())
        .merge(groups::routes())
        .merge(audit::routes())
        .merge(messages::routes())
        .merge(crate::openapi::routes())
        .merge(crate::oidc::routes())
}

/// Search and paging of list endpoints.
#[derive(Debug, Clone, Deserialize, IntoParams)]
// The handlers take the crate's own `Query` wrapper, which utoipa cannot see through;
// without this the parameters are documented as path parameters.
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Text to search for in names.
    #[serde(default)]
    pub q: Option<String>,
    /// 1-based page number.
    #[serde(default)]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[serde(default)]
    pub per_page: Option<u32>,
}

impl ListParams {
    /// (page, per_page, limit, offset), clamped to sane bounds.
    pub fn window(&self) -> (u32, u32, i64, i64) {
        let page = self.page.unwrap_or(1).clamp(1, 1_000_000);
        let per_page = self.per_page.unwrap_or(20).clamp(1, 100);
        (page, per_page, i64::from(per_page), i64::from(page - 1) * i64::from(per_page))
    }

    pub fn query(&self) -> &str {
        self.q.as_deref().map(str::trim).unwrap_or("")
    }
}

pub fn role_grants(rows: &[RoleRow]) -> Vec<RoleGrant> {
    rows.iter()
        .map(|r| RoleGrant {
            role: r.role.clone(),
            tenant_id: (r.scope_key != HOST_SCOPE).then(|| r.scope_key.clone()),
        })
        .collect()
}

/// The sessions of `user` that still work: unexpired, not idle too long, and made
/// under the user's current security stamp. Listed for the user and for admins.
pub async fn live_sessions(
    state: &AppState,
    user: &UserRow,
    current: Option<&str>,
) -> AppResult<Vec<twofold_policy::wire::SessionInfo>> {
    let now = state.now();
    let idle_ms = i64::from(state.config().session_idle_minutes) * 60_000;
    let rows = db::list_sessions(&state.db().pool, &user.id, now).await?;
    Ok(rows
        .iter()
        .filter(|r| {
            now - r.last_seen_at < idle_ms && crate::auth::stamps_equal(&r.security_stamp, &user.security_stamp)
        })
        .map(|r| session_view(r, current))
        .collect())
}

/// A session as listed; `current` marks the caller's own.
pub fn session_view(r: &db::SessionListRow, current: Option<&str>) -> twofold_policy::wire::SessionInfo {
    twofold_policy::wire::SessionInfo {
        id: r.id.clone(),
        methods: r.auth_methods.clone(),
        created_at: rfc3339(r.created_at),
        last_seen_at: rfc3339(r.last_seen_at),
        expires_at: rfc3339(r.expires_at),
        user_agent: r.user_agent.clone(),
        client_ip: r.client_ip.clone(),
        current: current == Some(r.id.as_str()),
    }
}

/// A user's second-factor lockout as admins see it.
pub fn lock_view(state: &AppState, u: &UserRow) -> LockState {
    let lock = crate::signin::lock_state(state, u);
    let count = |n: i64| u32::try_from(n).unwrap_or(0);
    LockState {
        locked: lock.is_some(),
        locked_until: match lock {
            Some(crate::error::AppError::LockedOut { .. }) => u.locked_until.map(rfc3339),
            _ => None,
        },
        until_unlocked: matches!(lock, Some(crate::error::AppError::LockedUntilUnlocked)),
        failures: count(u.second_factor_failures),
        consecutive_failures: count(u.consecutive_failures),
        lockouts: count(u.lockouts),
    }
}

/// A user as admins see them: with what the effective policy asks of them (their groups
/// included), their factors and their lock.
pub async fn user_view(state: &AppState, u: &UserRow, roles: &[RoleRow]) -> AppResult<User> {
    let resolved = crate::signin::resolved_policy(state, u).await?;
    Ok(User {
        id: u.id.clone(),
        username: u.username.clone(),
        email: u.email.clone(),
        tenant_id: u.tenant_id.clone(),
        two_factor_enabled: u.two_factor_enabled != 0,
        has_factor: u.has_factor(),
        roles: role_grants(roles),
        created_at: rfc3339(u.created_at),
        lock: lock_view(state, u),
        policy: crate::population::brief(state, u, &resolved.policy, resolved.rules()),
        factors: crate::population::factors_of(u),
        deactivated_at: u.deactivated_at.map(rfc3339),
    })
}

/// Writes an audit event inside the caller's transaction.
// Each argument is one column of the event; a struct literal at every call site would
// only add noise.
#[allow(clippy::too_many_arguments)]
pub async fn audit(
    conn: &mut impl crate::db::direct::Exec,
    state: &AppState,
    actor: &str,
    scope_key: &str,
    action: &str,
    target: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> AppResult<()> {
    db::insert_audit(
        conn,
        &NewAudit { at: state.now(), actor_user_id: Some(actor), scope_key, action, target, before, after },
    )
    .await?;
    Ok(())
}

/// Loads a tenant and checks the actor may perform `action` in it.
pub async fn tenant_for(
    state: &AppState,
    who: &crate::auth::Authenticated,
    raw_id: &str,
    action: twofold_policy::authz::Action,
) -> AppResult<db::TenantRow> {
    use twofold_policy::authz::{Domain, Target};
    let id = crate::extract::parse_id(raw_id, "tenant")?;
    // Through the database's read path for hot rows: no pool checkout, no connection
    // thread (`Db::tenant`).
    let tenant = state.db().tenant(&id).await?.ok_or(crate::error::AppError::NotFound("tenant"))?;
    state.authorize(who, action, Target::Domain(Domain::Tenant(&tenant.id)))?;
    Ok(tenant)
}
