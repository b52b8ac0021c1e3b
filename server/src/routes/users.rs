//! Users of the host and of tenants: listing, creation, the effective policy with its
//! explanation, the admin's 2FA switch, the tenant-admin role, and the lifecycle
//! (deactivate, reactivate, delete, sessions).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use twofold_policy::authz::{Action, Domain, Role, Target};
use twofold_policy::names::{EmailAddress, Username, check_new_password};
use twofold_policy::wire::{
    AdminPasswordReset, AdminPasswordResetResult, AssignRole, CreateUser, EffectivePolicyView, ErrorBody, SessionInfo,
    SetTwoFactor, User, UserPage,
};

use super::{ListParams, tenant_for, user_view};
use crate::app::{AppState, domain_of};
use crate::auth::{self, Authenticated};
use crate::changes::{self, Change};
use crate::db::{self, HOST_SCOPE, NewUser, UserRow};
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Path, Query, parse_id};
use crate::factors;
use crate::signin::{resolved_policy, resolved_with};
use twofold_policy::wire::ErrorCode;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/host/users", get(list_host_users).post(create_host_user))
        .route("/api/tenants/{tenant_id}/users", get(list_tenant_users).post(create_tenant_user))
        .route("/api/tenants/{tenant_id}/admins", post(assign_tenant_admin))
        .route("/api/tenants/{tenant_id}/admins/{user_id}", delete(revoke_tenant_admin))
        .route("/api/users/{user_id}", get(get_user).delete(delete_user))
        .route("/api/users/{user_id}/deactivate", post(deactivate_user))
        .route("/api/users/{user_id}/reactivate", post(reactivate_user))
        .route("/api/users/{user_id}/sessions", get(list_user_sessions))
        .route("/api/users/{user_id}/password-reset", post(reset_password))
        .route("/api/users/{user_id}/policy", get(get_user_policy))
        .route("/api/users/{user_id}/two-factor", put(set_user_two_factor))
        .route("/api/users/{user_id}/unlock", post(unlock_user))
        .route("/api/users/{user_id}/reset-second-factors", post(reset_second_factors))
        .route("/api/users/{user_id}/end-sessions", post(end_sessions))
}

/// Loads a user and checks the actor may perform `action` on them.
async fn user_for(state: &AppState, who: &Authenticated, raw_id: &str, action: Action) -> AppResult<UserRow> {
    let id = parse_id(raw_id, "user")?;
    let user = db::get_user(&state.db().pool, &id).await?.ok_or(AppError::NotFound("user"))?;
    state.authorize(who, action, Target::User { id: &user.id, domain: domain_of(&user.scope_key) })?;
    Ok(user)
}

/// An admin action that changes a user's security profile, aimed at the admin's own
/// account, needs the same fresh reauthentication as the account page: otherwise a
/// stale or stolen admin session would reach around it.
fn fresh_if_self(state: &AppState, who: &Authenticated, user: &UserRow) -> AppResult<()> {
    if who.user.id == user.id { who.require_fresh(state) } else { Ok(()) }
}

async fn list_scope(state: &AppState, scope_key: &str, params: &ListParams) -> AppResult<UserPage> {
    let (page, per_page, limit, offset) = params.window();
    let (rows, total) = db::list_users(&state.db().pool, scope_key, params.query(), limit, offset).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let roles = db::roles_of(&state.db().pool, &row.id).await?;
        items.push(user_view(state, row, &roles).await?);
    }
    Ok(UserPage { items, total: u64::try_from(total).unwrap_or(0), page, per_page })
}

async fn create_in_scope(state: &AppState, who: &Authenticated, scope_key: &str, req: CreateUser) -> AppResult<User> {
    let username = Username::parse(&req.username).map_err(|e| AppError::invalid_field(e.field, e.message))?;
    check_new_password(&req.password).map_err(|e| AppError::invalid_field(e.field, e.message))?;
    let email = match req.email.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(e) => Some(EmailAddress::parse(e).map_err(|e| AppError::invalid_field(e.field, e.message))?),
        None => None,
    };
    let phone = match req.phone.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(p) => {
            let phone = factors::parse_phone(p)?;
            factors::ensure_phone_country(state, scope_key, &phone).await?;
            Some(phone)
        }
        None => None,
    };
    let hash = auth::hash_password(req.password).await?;
    let now = state.now();
    let id = uuid::Uuid::now_v7().to_string();
    let tenant_id = (scope_key != HOST_SCOPE).then_some(scope_key);
    let mut tx = state.db().begin_write().await?;
    // A new user's row and an audit event: of the rows caches keep, only (none yet of)
    // the new user's own, so bulk provisioning leaves everyone else's in memory.
    tx.touches(db::Touches::user(&id));
    if db::find_user(&mut *tx, scope_key, username.key()).await?.is_some() {
        return Err(AppError::conflict(ErrorCode::UsernameTaken, "a user with this name exists in this scope"));
    }
    db::insert_user(
        &mut tx,
        &NewUser {
            id: &id,
            scope_key,
            tenant_id,
            username: username.as_str(),
            username_key: username.key(),
            email: email.as_ref().map(EmailAddress::as_str),
            phone: phone.as_deref(),
            password_hash: &hash,
            security_stamp: &auth::new_stamp(),
            created_at: now,
        },
    )
    .await?;
    super::audit(
        &mut tx,
        state,
        &who.user.id,
        scope_key,
        "user.created",
        &format!("user:{id}"),
        None,
        Some(serde_json::json!({
            "username": username.as_str(),
            "email": email.as_ref().map(EmailAddress::as_str),
            "phone": phone,
        })),
    )
    .await?;
    tx.commit().await?;
    let row = db::get_user(&state.db().pool, &id).await?.ok_or(AppError::NotFound("user"))?;
    user_view(state, &row, &[]).await
}

/// Host users, searched and paged.
#[utoipa::path(get, path = "/api/host/users", tag = "users", params(ListParams),
    responses((status = 200, body = UserPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_host_users(
    State(state): State<AppState>,
    who: Authenticated,
    Query(params): Query<ListParams>,
) -> AppResult<Json<UserPage>> {
    state.authorize(&who, Action::ListUsers, Target::Domain(Domain::Host))?;
    Ok(Json(list_scope(&state, HOST_SCOPE, &params).await?))
}

/// Creates a host user.
#[utoipa::path(post, path = "/api/host/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "User name taken", body = ErrorBody)))]
pub async fn create_host_user(
    State(state): State<AppState>,
    who: Authenticated,
    Json(req): Json<CreateUser>,
) -> AppResult<(StatusCode, Json<User>)> {
    state.authorize(&who, Action::CreateUser, Target::Domain(Domain::Host))?;
    Ok((StatusCode::CREATED, Json(create_in_scope(&state, &who, HOST_SCOPE, req).await?)))
}

/// A tenant's users, searched and paged.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/users", tag = "users",
    params(("tenant_id" = String, Path, description = "Tenant id"), ListParams),
    responses((status = 200, body = UserPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_tenant_users(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Query(params): Query<ListParams>,
) -> AppResult<Json<UserPage>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::ListUsers).await?;
    Ok(Json(list_scope(&state, &tenant.id, &params).await?))
}

/// Creates a user in a tenant.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/users", tag = "users", request_body = CreateUser,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "User name taken", body = ErrorBody)))]
pub async fn create_tenant_user(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Json(req): Json<CreateUser>,
) -> AppResult<(StatusCode, Json<User>)> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::CreateUser).await?;
    Ok((StatusCode::CREATED, Json(create_in_scope(&state, &who, &tenant.id, req).await?)))
}

/// One user.
#[utoipa::path(get, path = "/api/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
) -> AppResult<Json<User>> {
    let user = user_for(&state, &who, &user_id, Action::ReadUser).await?;
    let roles = db::roles_of(&state.db().pool, &user.id).await?;
    Ok(Json(user_view(&state, &user, &roles).await?))
}

/// The user's effective 2FA policy with the reasons, level by level.
#[utoipa::path(get, path = "/api/users/{user_id}/policy", tag = "users",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = EffectivePolicyView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_user_policy(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
) -> AppResult<Json<EffectivePolicyView>> {
    // A read only: the user's policy inputs may come from memory (see `cache`).
    let id = parse_id(&user_id, "user")?;
    let subject = state.cache().subject(state.db(), &id).await?.ok_or(AppError::NotFound("user"))?;
    state.authorize(&who, Action::ReadUser, Target::User { id: &id, domain: domain_of(subject.scope_key()) })?;
    let resolved =
        resolved_with(&state, subject.tenant_id.as_deref(), subject.two_factor_enabled, subject.groups, None).await?;
    Ok(Json(resolved.view(id)))
}

/// Sets a user's 2FA switch as an admin. Only possible while the user's effective
/// behaviour is optional; under forced or disabled the switch would have no effect and
/// is refused (409) rather than stored silently.
#[utoipa::path(put, path = "/api/users/{user_id}/two-factor", tag = "users", request_body = SetTwoFactor,
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = EffectivePolicyView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Behaviour is not optional", body = ErrorBody)))]
pub async fn set_user_two_factor(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
    Json(req): Json<SetTwoFactor>,
) -> AppResult<Json<EffectivePolicyView>> {
    let user = user_for(&state, &who, &user_id, Action::UpdateUser).await?;
    fresh_if_self(&state, &who, &user)?;
    let resolved = resolved_policy(&state, &user).await?;
    let policy = resolved.policy;
    if !policy.admin_can_override {
        let why = match resolved.policy.deciding_group(resolved.rules()) {
            Some(g) => format!("the group \"{}\" requires two-factor sign-in for this user", g.name),
            None => format!("two-factor sign-in is {} for this user", policy.behaviour.as_str()),
        };
        return Err(AppError::conflict(ErrorCode::NotOptional, format!("{why}, so their switch cannot be set")));
    }
    let before = user.two_factor_enabled != 0;
    let mut tx = state.db().begin_write().await?;
    // The user's switch and security stamp (which ends their sessions and remembered
    // browsers), and an audit event: that user's rows alone.
    tx.touches(db::Touches::user(&user.id));
    db::factors::set_user_flag(&mut tx, &user.id, req.enabled).await?;
    db::factors::rotate_stamp(&mut tx, &user.id, &auth::new_stamp(), None).await?;
    super::audit(
        &mut tx,
        &state,
        &who.user.id,
        &user.scope_key,
        "user.two_factor_set",
        &format!("user:{}", user.id),
        Some(serde_json::json!({ "two_factor_enabled": before })),
        Some(serde_json::json!({ "two_factor_enabled": req.enabled })),
    )
    .await?;
    tx.commit().await?;
    let user = db::get_user(&state.db().pool, &user.id).await?.ok_or(AppError::NotFound("user"))?;
    if before && !req.enabled {
        crate::notify::send(&state, &user, crate::notify::Notice::TwoFactorTurnedOff);
    }
    Ok(Json(resolved_policy(&state, &user).await?.view(user.id.clone())))
}

/// Makes a user of the tenant one of its admins.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/admins", tag = "users", request_body = AssignRole,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn assign_tenant_admin(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Json(req): Json<AssignRole>,
) -> AppResult<Json<User>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::AssignRole).await?;
    let user = tenant_member(&state, &tenant.id, &req.user_id).await?;
    let mut tx = state.db().begin_write().await?;
    changes::publish(&mut tx, state.db().backend, Change::Roles).await?;
    if db::grant_role(&mut tx, &user.id, Role::TenantAdmin.as_str(), &tenant.id, state.now()).await? {
        super::audit(
            &mut tx,
            &state,
            &who.user.id,
            &tenant.id,
            "role.granted",
            &format!("user:{}", user.id),
            None,
            Some(serde_json::json!({ "role": "tenant_admin" })),
        )
        .await?;
    }
    tx.commit().await?;
    state.grant_in_memory(&user.id, Role::TenantAdmin, &tenant.id)?;
    let roles = db::roles_of(&state.db().pool, &user.id).await?;
    Ok(Json(user_view(&state, &user, &roles).await?))
}

/// Removes the tenant-admin role from a user of the tenant.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/admins/{user_id}", tag = "users",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_tenant_admin(
    State(state): State<AppState>,
    who: Authenticated,
    Path((tenant_id, user_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::AssignRole).await?;
    let user = tenant_member(&state, &tenant.id, &user_id).await?;
    let mut tx = state.db().begin_write().await?;
    changes::publish(&mut tx, state.db().backend, Change::Roles).await?;
    if db::revoke_role(&mut tx, &user.id, Role::TenantAdmin.as_str(), &tenant.id).await? {
        super::audit(
            &mut tx,
            &state,
            &who.user.id,
            &tenant.id,
            "role.revoked",
            &format!("user:{}", user.id),
            Some(serde_json::json!({ "role": "tenant_admin" })),
            None,
        )
        .await?;
    }
    tx.commit().await?;
    state.revoke_in_memory(&user.id, Role::TenantAdmin, &tenant.id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user of the given tenant; users of other scopes are reported as unknown.
async fn tenant_member(state: &AppState, tenant_id: &str, raw_user_id: &str) -> AppResult<UserRow> {
    let id = parse_id(raw_user_id, "user")?;
    db::get_user(&state.db().pool, &id)
        .await?
        .filter(|u| u.tenant_id.as_deref() == Some(tenant_id))
        .ok_or(AppError::NotFound("user"))
}

/// Runs an admin action on a user with its audit event, in one transaction. `apply`
/// writes that user's rows and no one else's: the caches of this node keep everyone
/// else's ([`db::Touches::user`]).
async fn admin_user_action(
    state: &AppState,
    who: &Authenticated,
    user: &UserRow,
    action: &str,
    apply: impl AsyncFnOnce(&mut sqlx::AnyConnection) -> Result<serde_json::Value, sqlx::Error>,
) -> AppResult<()> {
    let mut tx = state.db().begin_write().await?;
    tx.touches(db::Touches::user(&user.id));
    let after = apply(&mut tx).await?;
    super::audit(
        &mut tx,
        state,
        &who.user.id,
        &user.scope_key,
        action,
        &format!("user:{}", user.id),
        None,
        Some(after),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Lifts a second-factor lockout now, including one that lasts until unlocked, and
/// starts every failure count again.
#[utoipa::path(post, path = "/api/users/{user_id}/unlock", tag = "users",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unlock_user(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
) -> AppResult<StatusCode> {
    let user = user_for(&state, &who, &user_id, Action::UpdateUser).await?;
    fresh_if_self(&state, &who, &user)?;
    let id = user.id.clone();
    admin_user_action(&state, &who, &user, "user.unlocked", async move |tx| {
        crate::db::factors::reset_failures(tx, &id).await.map(|_| serde_json::json!({}))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every second factor of a user: authenticator, recovery codes, confirmed
/// email and phone, remembered browsers and sessions. The admin never sees a secret;
/// under a forced policy the user enrols again at the next sign-in.
#[utoipa::path(post, path = "/api/users/{user_id}/reset-second-factors", tag = "users",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reset_second_factors(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
) -> AppResult<StatusCode> {
    let user = user_for(&state, &who, &user_id, Action::UpdateUser).await?;
    fresh_if_self(&state, &who, &user)?;
    let id = user.id.clone();
    admin_user_action(&state, &who, &user, "user.second_factors_reset", async move |tx| {
        crate::db::factors::reset_second_factors(tx, &id).await?;
        crate::db::factors::rotate_stamp(tx, &id, &auth::new_stamp(), None).await?;
        Ok(serde_json::json!({}))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of a user (remembered browsers stay; reset factors to drop those).
#[utoipa::path(post, path = "/api/users/{user_id}/end-sessions", tag = "users",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn end_sessions(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
) -> AppResult<StatusCode> {
    let user = user_for(&state, &who, &user_id, Action::UpdateUser).await?;
    let id = user.id.clone();
    admin_user_action(&state, &who, &user, "user.sessions_ended", async move |tx| {
        let n = crate::db::factors::delete_sessions(tx, &id).await?;
        Ok(serde_json::json!({ "sessions": n }))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Refuses an action that would shut the acting admin out of their own account.
fn not_on_yourself(who: &Authenticated, user: &UserRow, what: &str) -> AppResult<()> {
    if who.user.id == user.id {
        return Err(AppError::conflict(
            ErrorCode::NotOnYourself,
            format!("you cannot {what} your own account; another admin can"),
        ));
    }
    Ok(())
}

/// Deactivates a user: sign-in is refused (with the answer a wrong password gets) and
/// every session, pending sign-in and remembered browser ends. Reversible.
#[utoipa::path(post, path = "/api/users/{user_id}/deactivate", tag = "users",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Your own account", body = ErrorBody)))]
pub async fn deactivate_user(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
) -> AppResult<StatusCode> {
    let user = user_for(&state, &who, &user_id, Action::UpdateUser).await?;
    not_on_yourself(&who, &user, "deactivate")?;
    let id = user.id.clone();
    let now = state.now();
    let mut tx = state.db().begin_write().await?;
    // The user's row, stamp and sessions, and an audit event: that user's rows alone.
    tx.touches(db::Touches::user(&id));
    if db::set_user_deactivated(&mut tx, &id, Some(now)).await? {
        // A new stamp ends sessions, pending sign-ins and remembered browsers, and
        // keeps them ended after a reactivation.
        crate::db::factors::rotate_stamp(&mut tx, &id, &auth::new_stamp(), None).await?;
        crate::db::factors::delete_sessions(&mut tx, &id).await?;
        super::audit(
            &mut tx,
            &state,
            &who.user.id,
            &user.scope_key,
            "user.deactivated",
            &format!("user:{id}"),
            None,
            None,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lets a deactivated user sign in again (with their password and factors as they were).
#[utoipa::path(post, path = "/api/users/{user_id}/reactivate", tag = "users",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reactivate_user(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
) -> AppResult<StatusCode> {
    let user = user_for(&state, &who, &user_id, Action::UpdateUser).await?;
    let mut tx = state.db().begin_write().await?;
    tx.touches(db::Touches::user(&user.id));
    if db::set_user_deactivated(&mut tx, &user.id, None).await? {
        super::audit(
            &mut tx,
            &state,
            &who.user.id,
            &user.scope_key,
            "user.reactivated",
            &format!("user:{}", user.id),
            None,
            None,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a user for good: the account, its factors, sessions, browsers and roles.
/// The audit trail keeps its events under the user's (random) id, with personal data
/// (name, addresses, browser) erased.
#[utoipa::path(delete, path = "/api/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Your own account", body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
) -> AppResult<StatusCode> {
    let user = user_for(&state, &who, &user_id, Action::UpdateUser).await?;
    not_on_yourself(&who, &user, "delete")?;
    let roles = db::roles_of(&state.db().pool, &user.id).await?;
    let mut tx = state.db().begin_write().await?;
    if db::delete_user(&mut tx, &user.id).await? {
        if !roles.is_empty() {
            changes::publish(&mut tx, state.db().backend, Change::Roles).await?;
        }
        super::audit(
            &mut tx,
            &state,
            &who.user.id,
            &user.scope_key,
            "user.deleted",
            &format!("user:{}", user.id),
            None,
            None,
        )
        .await?;
    }
    tx.commit().await?;
    for role in &roles {
        if let Some(r) = Role::parse(&role.role) {
            state.revoke_in_memory(&user.id, r, &role.scope_key)?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A user's signed-in sessions, most recently used first (end them with
/// `POST /api/users/{user_id}/end-sessions`).
#[utoipa::path(get, path = "/api/users/{user_id}/sessions", tag = "users",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = Vec<SessionInfo>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_user_sessions(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
) -> AppResult<Json<Vec<SessionInfo>>> {
    let user = user_for(&state, &who, &user_id, Action::ReadUser).await?;
    Ok(Json(super::live_sessions(&state, &user, who.sid.as_deref()).await?))
}

/// Resets a user's password: a single-use link for the admin to pass on, or a temporary
/// password that works at once (the user's sessions end) and must be changed at the
/// next sign-in. Shown once; the second factor is still asked for at sign-in.
#[utoipa::path(post, path = "/api/users/{user_id}/password-reset", tag = "users", request_body = AdminPasswordReset,
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = AdminPasswordResetResult), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Your own account: use the account page", body = ErrorBody)))]
pub async fn reset_password(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
    Json(req): Json<AdminPasswordReset>,
) -> AppResult<Json<AdminPasswordResetResult>> {
    let user = user_for(&state, &who, &user_id, Action::UpdateUser).await?;
    not_on_yourself(&who, &user, "reset the password of")?;
    Ok(Json(crate::reset::by_admin(&state, &who, &user, req.mode).await?))
}
