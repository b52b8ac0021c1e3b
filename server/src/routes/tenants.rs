//! Tenants and their 2FA feature (the ceiling the host sets over each tenant), and their
//! lifecycle: suspension and deletion.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use twofold_policy::authz::{Action, Domain, Target};
use twofold_policy::names::TenantName;
use twofold_policy::wire::{CreateTenant, ErrorBody, Tenant, TenantPage};
use twofold_policy::{ScopeSettings, TenantFeature};

use super::{ListParams, tenant_for};
use crate::app::AppState;
use crate::auth::Authenticated;
use crate::changes::{self, Change};
use crate::clock::rfc3339;
use crate::db::{self, TenantRow};
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Path, Query};
use twofold_policy::wire::ErrorCode;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/tenants", get(list_tenants).post(create_tenant))
        .route("/api/tenants/{tenant_id}", get(get_tenant).delete(delete_tenant))
        .route("/api/tenants/{tenant_id}/suspend", post(suspend_tenant))
        .route("/api/tenants/{tenant_id}/resume", post(resume_tenant))
        .route("/api/tenants/{tenant_id}/feature", get(get_feature).put(put_feature))
}

fn view(t: &TenantRow) -> Tenant {
    Tenant {
        id: t.id.clone(),
        name: t.name.clone(),
        display_name: t.display_name.clone(),
        created_at: rfc3339(t.created_at),
        suspended_at: t.suspended_at.map(rfc3339),
    }
}

/// Tenants, searched by name and paged.
#[utoipa::path(get, path = "/api/tenants", tag = "tenants", params(ListParams),
    responses((status = 200, body = TenantPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    who: Authenticated,
    Query(params): Query<ListParams>,
) -> AppResult<Json<TenantPage>> {
    state.authorize(&who, Action::ListTenants, Target::Domain(Domain::Host))?;
    let (page, per_page, limit, offset) = params.window();
    let (rows, total) = db::list_tenants(&state.db().pool, params.query(), limit, offset).await?;
    Ok(Json(TenantPage {
        items: rows.iter().map(view).collect(),
        total: u64::try_from(total).unwrap_or(0),
        page,
        per_page,
    }))
}

/// Creates a tenant with the default feature (optional) and default settings.
#[utoipa::path(post, path = "/api/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    who: Authenticated,
    Json(req): Json<CreateTenant>,
) -> AppResult<(StatusCode, Json<Tenant>)> {
    state.authorize(&who, Action::CreateTenant, Target::Domain(Domain::Host))?;
    let name = TenantName::parse(&req.name).map_err(|e| AppError::invalid_field(e.field, e.message))?;
    let display_name = req.display_name.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(name.as_str());
    if display_name.chars().count() > 200 || display_name.chars().any(char::is_control) {
        return Err(AppError::invalid_field("display_name", "a display name has at most 200 printable characters"));
    }
    let row = TenantRow {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.as_str().to_owned(),
        display_name: display_name.to_owned(),
        feature_behaviour: TenantFeature::default().behaviour.as_str().to_owned(),
        created_at: state.now(),
        suspended_at: None,
    };
    let mut tx = state.db().begin_write().await?;
    if db::get_tenant_by_name(&mut *tx, &row.name).await?.is_some() {
        return Err(AppError::conflict(ErrorCode::NameTaken, "a tenant with this name exists"));
    }
    db::insert_tenant(&mut tx, &row).await?;
    db::store_settings(&mut tx, &row.id, &ScopeSettings::default(), row.created_at).await?;
    super::audit(
        &mut tx,
        &state,
        &who.user.id,
        &row.id,
        "tenant.created",
        &format!("tenant:{}", row.id),
        None,
        Some(serde_json::json!({ "name": row.name, "display_name": row.display_name })),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view(&row))))
}

/// One tenant.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_tenant(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
) -> AppResult<Json<Tenant>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::ReadTenant).await?;
    Ok(Json(view(&tenant)))
}

/// The tenant's 2FA feature: the ceiling over its own settings.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/feature", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantFeature), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_feature(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
) -> AppResult<Json<TenantFeature>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::ReadFeature).await?;
    Ok(Json(tenant.feature()?))
}

/// Sets the tenant's 2FA feature. Forced or disabled fixes the tenant's behaviour.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/feature", tag = "tenants", request_body = TenantFeature,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantFeature), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_feature(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Json(new): Json<TenantFeature>,
) -> AppResult<Json<TenantFeature>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::UpdateFeature).await?;
    let mut tx = state.db().begin_write().await?;
    // Locked, so the audit's "before" is the feature this write replaces even when
    // another write of the same tenant's feature runs at the same time.
    let old = db::lock_tenant(&mut tx, state.db().backend, &tenant.id)
        .await?
        .ok_or(AppError::NotFound("tenant"))?
        .feature()?;
    db::set_tenant_feature(&mut tx, &tenant.id, new.behaviour).await?;
    changes::publish(&mut tx, state.db().backend, Change::Feature(&tenant.id)).await?;
    super::audit(
        &mut tx,
        &state,
        &who.user.id,
        &tenant.id,
        "tenant_feature.updated",
        &format!("tenant:{}", tenant.id),
        Some(serde_json::to_value(old).map_err(anyhow::Error::from)?),
        Some(serde_json::to_value(new).map_err(anyhow::Error::from)?),
    )
    .await?;
    tx.commit().await?;
    state.cache().invalidate_feature(&tenant.id);
    Ok(Json(new))
}

/// Suspends a tenant: none of its users can sign in (they get the answer a wrong
/// password gets), and every session and pending sign-in of its users ends now.
/// Settings, users and factors stay as they are for a resume.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/suspend", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn suspend_tenant(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
) -> AppResult<StatusCode> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::UpdateTenant).await?;
    let mut tx = state.db().begin_write().await?;
    if db::set_tenant_suspended(&mut tx, &tenant.id, Some(state.now())).await? {
        let ended = db::end_tenant_sessions(&mut tx, &tenant.id).await?;
        super::audit(
            &mut tx,
            &state,
            &who.user.id,
            &tenant.id,
            "tenant.suspended",
            &format!("tenant:{}", tenant.id),
            None,
            Some(serde_json::json!({ "sessions": ended })),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a suspension: the tenant's users can sign in again.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/resume", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resume_tenant(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
) -> AppResult<StatusCode> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::UpdateTenant).await?;
    let mut tx = state.db().begin_write().await?;
    if db::set_tenant_suspended(&mut tx, &tenant.id, None).await? {
        super::audit(
            &mut tx,
            &state,
            &who.user.id,
            &tenant.id,
            "tenant.resumed",
            &format!("tenant:{}", tenant.id),
            None,
            None,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a tenant with its users (their factors, sessions and browsers), settings
/// and role assignments, in one transaction. Its audit trail stays for the host, with
/// the users' personal data erased.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
) -> AppResult<StatusCode> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::UpdateTenant).await?;
    let mut tx = state.db().begin_write().await?;
    let users = db::delete_tenant(&mut tx, &tenant.id).await?;
    changes::publish(&mut tx, state.db().backend, Change::Roles).await?;
    super::audit(
        &mut tx,
        &state,
        &who.user.id,
        &tenant.id,
        "tenant.deleted",
        &format!("tenant:{}", tenant.id),
        Some(serde_json::json!({ "name": tenant.name, "display_name": tenant.display_name })),
        Some(serde_json::json!({ "users": users })),
    )
    .await?;
    tx.commit().await?;
    state.reload_roles().await.map_err(AppError::Internal)?;
    state.cache().invalidate_settings(&tenant.id);
    state.cache().invalidate_feature(&tenant.id);
    Ok(StatusCode::NO_CONTENT)
}
