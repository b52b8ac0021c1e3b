//! Groups of a scope with their 2FA rules and members (DESIGN.md section 5), the impact
//! preview of a rule or membership change, the adoption view of a scope and the what-if
//! of one user's next sign-in.
//!
//! A group belongs to one scope; it is reached through that scope's authorisation
//! (casbin's `groups` resource in the group's domain), so a tenant admin never sees
//! another tenant's groups, and a member must belong to the group's scope.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use twofold_policy::Rule;
use twofold_policy::authz::{Action, Domain, Target};
use twofold_policy::names::GroupName;
use twofold_policy::wire::{
    AddGroupMember, Adoption, ErrorBody, ErrorCode, Group, GroupMember, GroupRequest, GroupRulePreviewRequest,
    ImpactPreview, MembershipPreviewRequest, WhatIf,
};

use super::tenant_for;
use crate::app::{AppState, domain_of};
use crate::auth::Authenticated;
use crate::clock::rfc3339;
use crate::db::groups::{self as gdb, GroupRow, NewGroup};
use crate::db::{self, HOST_SCOPE, UserRow};
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Path, Query, parse_id};
use crate::population::{self, AdoptionFilter, GroupChange, LoadedScope};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/host/groups", get(list_host_groups).post(create_host_group))
        .route("/api/tenants/{tenant_id}/groups", get(list_tenant_groups).post(create_tenant_group))
        .route("/api/groups/{group_id}", get(get_group).put(update_group).delete(delete_group))
        .route("/api/groups/{group_id}/preview", post(preview_group_rule))
        .route("/api/groups/{group_id}/members", get(list_members).post(add_member))
        .route("/api/groups/{group_id}/members/preview", post(preview_membership))
        .route("/api/groups/{group_id}/members/{user_id}", delete(remove_member))
        .route("/api/host/adoption", get(host_adoption))
        .route("/api/host/adoption.csv", get(host_adoption_csv))
        .route("/api/tenants/{tenant_id}/adoption", get(tenant_adoption))
        .route("/api/tenants/{tenant_id}/adoption.csv", get(tenant_adoption_csv))
        .route("/api/users/{user_id}/what-if", get(what_if))
}

fn group_view(g: &GroupRow) -> AppResult<Group> {
    let rule = g.rule()?;
    Ok(Group {
        id: g.id.clone(),
        name: g.name.clone(),
        tenant_id: (g.scope_key != HOST_SCOPE).then(|| g.scope_key.clone()),
        rule: (!rule.is_empty()).then_some(rule),
        member_count: u64::try_from(g.member_count).unwrap_or(0),
        created_at: rfc3339(g.created_at),
    })
}

/// A rule as stored: one that asks for nothing is no rule. A strength no provider of the
/// scope reaches is refused, as DESIGN.md section 5 refuses it for a scope: members
/// could never sign in.
async fn checked_rule(state: &AppState, scope_key: &str, rule: Option<Rule>) -> AppResult<Rule> {
    let rule = rule.unwrap_or_default();
    if let Some(need) = rule.min_strength {
        let settings = state.cache().settings(state.db(), scope_key).await?;
        // What this server can offer: passkeys only with a relying party.
        let mut reach = settings.allowed_providers;
        reach.passkey = reach.passkey && state.webauthn().is_some();
        if reach.strongest().is_none_or(|top| top < need) {
            // The scope's own code for the same refusal: the rule is well formed, only
            // unreachable with what its scope allows.
            return Err(AppError::BadRequest {
                code: ErrorCode::StrengthUnreachable,
                message: format!("no provider this scope allows gives a factor of strength {}", need.as_str()),
                field: Some("rule.min_strength".to_owned()),
            });
        }
    }
    Ok(rule)
}

fn parse_name(name: &str) -> AppResult<GroupName> {
    GroupName::parse(name).map_err(|e| AppError::invalid_field(e.field, e.message))
}

fn name_taken() -> AppError {
    AppError::conflict(ErrorCode::NameTaken, "a group with this name exists in this scope")
}

/// Loads a group and checks the actor may perform `action` in its scope.
async fn group_for(state: &AppState, who: &Authenticated, raw_id: &str, action: Action) -> AppResult<GroupRow> {
    let id = parse_id(raw_id, "group")?;
    let group = gdb::get_group(&state.db().pool, &id).await?.ok_or(AppError::NotFound("group"))?;
    state.authorize(who, action, Target::Domain(domain_of(&group.scope_key)))?;
    Ok(group)
}

/// A user of the group's scope; users of other scopes are reported as unknown.
async fn member_of_scope(state: &AppState, scope_key: &str, raw_user_id: &str) -> AppResult<UserRow> {
    let id = parse_id(raw_user_id, "user")?;
    db::get_user(&state.db().pool, &id).await?.filter(|u| u.scope_key == scope_key).ok_or(AppError::NotFound("user"))
}

fn audit_value(g: &GroupRow) -> AppResult<serde_json::Value> {
    Ok(serde_json::json!({ "name": g.name, "rule": g.rule()? }))
}

async fn list_scope_groups(state: &AppState, scope_key: &str) -> AppResult<Vec<Group>> {
    gdb::list_groups(&state.db().pool, scope_key).await?.iter().map(group_view).collect()
}

async fn create_in_scope(
    state: &AppState,
    who: &Authenticated,
    scope_key: &str,
    req: GroupRequest,
) -> AppResult<Group> {
    let name = parse_name(&req.name)?;
    let rule = checked_rule(state, scope_key, req.rule).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = state.db().begin_write().await?;
    if gdb::name_taken(&mut tx, scope_key, name.key(), None).await? {
        return Err(name_taken());
    }
    let now = state.now();
    gdb::insert_group(&mut tx, &NewGroup { id: &id, scope_key, name: name.as_str(), name_key: name.key(), rule, now })
        .await?;
    super::audit(
        &mut tx,
        state,
        &who.user.id,
        scope_key,
        "group.created",
        &format!("group:{id}"),
        None,
        Some(serde_json::json!({ "name": name.as_str(), "rule": rule })),
    )
    .await?;
    tx.commit().await?;
    let row = gdb::get_group(&state.db().pool, &id).await?.ok_or(AppError::NotFound("group"))?;
    group_view(&row)
}

/// The host's groups of host users, by name.
#[utoipa::path(get, path = "/api/host/groups", tag = "groups",
    responses((status = 200, body = Vec<Group>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_host_groups(State(state): State<AppState>, who: Authenticated) -> AppResult<Json<Vec<Group>>> {
    state.authorize(&who, Action::ReadGroups, Target::Domain(Domain::Host))?;
    Ok(Json(list_scope_groups(&state, HOST_SCOPE).await?))
}

/// Creates a group of host users.
#[utoipa::path(post, path = "/api/host/groups", tag = "groups", request_body = GroupRequest,
    responses((status = 201, body = Group), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Group name taken", body = ErrorBody)))]
pub async fn create_host_group(
    State(state): State<AppState>,
    who: Authenticated,
    Json(req): Json<GroupRequest>,
) -> AppResult<(StatusCode, Json<Group>)> {
    state.authorize(&who, Action::UpdateGroups, Target::Domain(Domain::Host))?;
    Ok((StatusCode::CREATED, Json(create_in_scope(&state, &who, HOST_SCOPE, req).await?)))
}

/// A tenant's groups, by name.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/groups", tag = "groups",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Vec<Group>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_tenant_groups(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
) -> AppResult<Json<Vec<Group>>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::ReadGroups).await?;
    Ok(Json(list_scope_groups(&state, &tenant.id).await?))
}

/// Creates a group in a tenant.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/groups", tag = "groups", request_body = GroupRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = Group), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Group name taken", body = ErrorBody)))]
pub async fn create_tenant_group(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Json(req): Json<GroupRequest>,
) -> AppResult<(StatusCode, Json<Group>)> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::UpdateGroups).await?;
    Ok((StatusCode::CREATED, Json(create_in_scope(&state, &who, &tenant.id, req).await?)))
}

/// One group.
#[utoipa::path(get, path = "/api/groups/{group_id}", tag = "groups",
    params(("group_id" = String, Path, description = "Group id")),
    responses((status = 200, body = Group), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_group(
    State(state): State<AppState>,
    who: Authenticated,
    Path(group_id): Path<String>,
) -> AppResult<Json<Group>> {
    let group = group_for(&state, &who, &group_id, Action::ReadGroups).await?;
    Ok(Json(group_view(&group)?))
}

/// Renames a group and replaces its rule (absent or null: no rule).
#[utoipa::path(put, path = "/api/groups/{group_id}", tag = "groups", request_body = GroupRequest,
    params(("group_id" = String, Path, description = "Group id")),
    responses((status = 200, body = Group), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Group name taken", body = ErrorBody)))]
pub async fn update_group(
    State(state): State<AppState>,
    who: Authenticated,
    Path(group_id): Path<String>,
    Json(req): Json<GroupRequest>,
) -> AppResult<Json<Group>> {
    let group = group_for(&state, &who, &group_id, Action::UpdateGroups).await?;
    let name = parse_name(&req.name)?;
    let rule = checked_rule(&state, &group.scope_key, req.rule).await?;
    let mut tx = state.db().begin_write().await?;
    // Read again inside the write transaction, so the audit's "before" is the state this
    // write replaced even when another admin saved in between.
    let before = gdb::get_group(&mut *tx, &group.id).await?.ok_or(AppError::NotFound("group"))?;
    if gdb::name_taken(&mut tx, &group.scope_key, name.key(), Some(&group.id)).await? {
        return Err(name_taken());
    }
    gdb::update_group(&mut tx, &group.id, name.as_str(), name.key(), rule, state.now()).await?;
    super::audit(
        &mut tx,
        &state,
        &who.user.id,
        &group.scope_key,
        "group.updated",
        &format!("group:{}", group.id),
        Some(audit_value(&before)?),
        Some(serde_json::json!({ "name": name.as_str(), "rule": rule })),
    )
    .await?;
    tx.commit().await?;
    let row = gdb::get_group(&state.db().pool, &group.id).await?.ok_or(AppError::NotFound("group"))?;
    Ok(Json(group_view(&row)?))
}

/// Deletes a group; its members leave it and its rule stops applying.
#[utoipa::path(delete, path = "/api/groups/{group_id}", tag = "groups",
    params(("group_id" = String, Path, description = "Group id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_group(
    State(state): State<AppState>,
    who: Authenticated,
    Path(group_id): Path<String>,
) -> AppResult<StatusCode> {
    let group = group_for(&state, &who, &group_id, Action::UpdateGroups).await?;
    let mut tx = state.db().begin_write().await?;
    let Some(before) = gdb::get_group(&mut *tx, &group.id).await? else {
        return Err(AppError::NotFound("group"));
    };
    gdb::delete_group(&mut tx, &group.id).await?;
    let mut value = audit_value(&before)?;
    value["members"] = serde_json::json!(before.member_count);
    super::audit(
        &mut tx,
        &state,
        &who.user.id,
        &group.scope_key,
        "group.deleted",
        &format!("group:{}", group.id),
        Some(value),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What giving the group `rule` would do to the users of its scope, without saving.
/// `null` previews removing the rule, which is also what deleting the group does.
#[utoipa::path(post, path = "/api/groups/{group_id}/preview", tag = "groups", request_body = GroupRulePreviewRequest,
    params(("group_id" = String, Path, description = "Group id")),
    responses((status = 200, body = ImpactPreview), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn preview_group_rule(
    State(state): State<AppState>,
    who: Authenticated,
    Path(group_id): Path<String>,
    Json(req): Json<GroupRulePreviewRequest>,
) -> AppResult<Json<ImpactPreview>> {
    let group = group_for(&state, &who, &group_id, Action::ReadGroups).await?;
    let rule = checked_rule(&state, &group.scope_key, req.rule).await?;
    let inputs = LoadedScope::load(&state, &group.scope_key).await?;
    let change = GroupChange::Rule { group_id: &group.id, rule: Some(rule) };
    Ok(Json(population::impact(&state, &group.scope_key, inputs.scope(), inputs.scope(), change).await?))
}

/// The group's members, by name.
#[utoipa::path(get, path = "/api/groups/{group_id}/members", tag = "groups",
    params(("group_id" = String, Path, description = "Group id")),
    responses((status = 200, body = Vec<GroupMember>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    who: Authenticated,
    Path(group_id): Path<String>,
) -> AppResult<Json<Vec<GroupMember>>> {
    let group = group_for(&state, &who, &group_id, Action::ReadGroups).await?;
    let rows = gdb::list_members(&state.db().pool, &group.id).await?;
    Ok(Json(rows.into_iter().map(|m| GroupMember { user_id: m.user_id, username: m.username }).collect()))
}

/// Adds a user of the group's scope to the group (already a member: no change).
#[utoipa::path(post, path = "/api/groups/{group_id}/members", tag = "groups", request_body = AddGroupMember,
    params(("group_id" = String, Path, description = "Group id")),
    responses((status = 200, body = Vec<GroupMember>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_member(
    State(state): State<AppState>,
    who: Authenticated,
    Path(group_id): Path<String>,
    Json(req): Json<AddGroupMember>,
) -> AppResult<Json<Vec<GroupMember>>> {
    let group = group_for(&state, &who, &group_id, Action::UpdateGroups).await?;
    let user = member_of_scope(&state, &group.scope_key, &req.user_id).await?;
    let mut tx = state.db().begin_write().await?;
    if gdb::add_member(&mut tx, &group.id, &user.id, &group.scope_key, state.now()).await? {
        super::audit(
            &mut tx,
            &state,
            &who.user.id,
            &group.scope_key,
            "group.member_added",
            &format!("group:{}", group.id),
            None,
            Some(serde_json::json!({ "user_id": user.id, "username": user.username })),
        )
        .await?;
    }
    tx.commit().await?;
    list_members(State(state), who, Path(group.id)).await
}

/// Removes a user from the group (not a member: no change, like a second delete).
#[utoipa::path(delete, path = "/api/groups/{group_id}/members/{user_id}", tag = "groups",
    params(("group_id" = String, Path, description = "Group id"), ("user_id" = String, Path, description = "User id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    who: Authenticated,
    Path((group_id, user_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let group = group_for(&state, &who, &group_id, Action::UpdateGroups).await?;
    let user = member_of_scope(&state, &group.scope_key, &user_id).await?;
    let mut tx = state.db().begin_write().await?;
    if gdb::remove_member(&mut tx, &group.id, &user.id).await? {
        super::audit(
            &mut tx,
            &state,
            &who.user.id,
            &group.scope_key,
            "group.member_removed",
            &format!("group:{}", group.id),
            Some(serde_json::json!({ "user_id": user.id, "username": user.username })),
            None,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What adding a user to the group, or removing them, would change, without saving.
#[utoipa::path(post, path = "/api/groups/{group_id}/members/preview", tag = "groups", request_body = MembershipPreviewRequest,
    params(("group_id" = String, Path, description = "Group id")),
    responses((status = 200, body = ImpactPreview), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn preview_membership(
    State(state): State<AppState>,
    who: Authenticated,
    Path(group_id): Path<String>,
    Json(req): Json<MembershipPreviewRequest>,
) -> AppResult<Json<ImpactPreview>> {
    let group = group_for(&state, &who, &group_id, Action::ReadGroups).await?;
    let user = member_of_scope(&state, &group.scope_key, &req.user_id).await?;
    let inputs = LoadedScope::load(&state, &group.scope_key).await?;
    let change = GroupChange::Member { group_id: &group.id, user_id: &user.id, add: req.member };
    Ok(Json(population::impact(&state, &group.scope_key, inputs.scope(), inputs.scope(), change).await?))
}

async fn adoption_of(state: &AppState, scope_key: &str, filter: &AdoptionFilter) -> AppResult<Adoption> {
    let inputs = LoadedScope::load(state, scope_key).await?;
    population::adoption(state, scope_key, inputs.scope(), filter).await
}

fn csv(scope_key: &str, a: &Adoption) -> impl IntoResponse + use<> {
    let disposition = format!("attachment; filename=\"adoption-{scope_key}.csv\"");
    (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        population::adoption_csv(a),
    )
}

/// Who among host users is ready for two-factor sign-in: per user, whether it is
/// required and by what, their factors, last sign-in and lock; totals on top.
#[utoipa::path(get, path = "/api/host/adoption", tag = "groups", params(AdoptionFilter),
    responses((status = 200, body = Adoption), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn host_adoption(
    State(state): State<AppState>,
    who: Authenticated,
    Query(filter): Query<AdoptionFilter>,
) -> AppResult<Json<Adoption>> {
    state.authorize(&who, Action::ListUsers, Target::Domain(Domain::Host))?;
    Ok(Json(adoption_of(&state, HOST_SCOPE, &filter).await?))
}

/// The host's adoption view as CSV, with the same filters.
#[utoipa::path(get, path = "/api/host/adoption.csv", tag = "groups", params(AdoptionFilter),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn host_adoption_csv(
    State(state): State<AppState>,
    who: Authenticated,
    Query(filter): Query<AdoptionFilter>,
) -> AppResult<impl IntoResponse> {
    state.authorize(&who, Action::ListUsers, Target::Domain(Domain::Host))?;
    Ok(csv(HOST_SCOPE, &adoption_of(&state, HOST_SCOPE, &filter).await?))
}

/// Who among a tenant's users is ready for two-factor sign-in.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/adoption", tag = "groups",
    params(("tenant_id" = String, Path, description = "Tenant id"), AdoptionFilter),
    responses((status = 200, body = Adoption), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tenant_adoption(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Query(filter): Query<AdoptionFilter>,
) -> AppResult<Json<Adoption>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::ListUsers).await?;
    Ok(Json(adoption_of(&state, &tenant.id, &filter).await?))
}

/// A tenant's adoption view as CSV, with the same filters.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/adoption.csv", tag = "groups",
    params(("tenant_id" = String, Path, description = "Tenant id"), AdoptionFilter),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tenant_adoption_csv(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Query(filter): Query<AdoptionFilter>,
) -> AppResult<impl IntoResponse> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::ListUsers).await?;
    Ok(csv(&tenant.id, &adoption_of(&state, &tenant.id, &filter).await?))
}

/// The what-if's optional question: a sign-in to one application.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WhatIfQuery {
    /// An application (client_id) of the user's scope: the sign-in is to it, and its
    /// rule takes part (`decided_by` `application`, and a line of the trace).
    #[serde(default)]
    pub application_id: Option<String>,
}

/// What the user's next sign-in would ask for after the right password, with the
/// policy's trace, worked out without signing in and without changing anything.
#[utoipa::path(get, path = "/api/users/{user_id}/what-if", tag = "users",
    params(("user_id" = String, Path, description = "User id"), WhatIfQuery),
    responses((status = 200, body = WhatIf), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such user, or no such application in the user's scope", body = ErrorBody)))]
pub async fn what_if(
    State(state): State<AppState>,
    who: Authenticated,
    Path(user_id): Path<String>,
    Query(q): Query<WhatIfQuery>,
) -> AppResult<Json<WhatIf>> {
    let id = parse_id(&user_id, "user")?;
    let user = db::get_user(&state.db().pool, &id).await?.ok_or(AppError::NotFound("user"))?;
    state.authorize(&who, Action::ReadUser, Target::User { id: &user.id, domain: domain_of(&user.scope_key) })?;
    let application = match q.application_id {
        None => None,
        Some(raw) => {
            // Only an application the caller may read, of the user's own scope: another
            // scope's is as unknown here as anywhere.
            let app = crate::oidc::apps::application_for(&state, &who, &raw, Action::ReadApplications).await?;
            if app.scope_key != user.scope_key {
                return Err(AppError::NotFound("application"));
            }
            Some(crate::oidc::apps::application_rule(&app))
        }
    };
    Ok(Json(crate::signin::what_if(&state, &user, application).await?))
}
