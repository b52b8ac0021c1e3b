//! 2FA settings of the host and of each tenant, with the impact preview of a change.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, patch, post};
use twofold_policy::authz::{Action, Domain, Target};
use twofold_policy::wire::{ErrorBody, FeaturePreviewRequest, ImpactPreview, SettingsPreviewRequest, SettingsView};
use twofold_policy::{Behaviour, ScopeSettings, TenantFeature};

use super::tenant_for;
use crate::app::AppState;
use crate::auth::Authenticated;
use crate::changes;
use crate::db::{self, HOST_SCOPE};
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Path};
use crate::population::{GroupChange, ScopeInputs, impact};
use twofold_policy::wire::ErrorCode;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/host/settings", get(get_host_settings).put(put_host_settings).patch(patch_host_settings))
        .route("/api/host/settings/preview", post(preview_host_settings))
        .route("/api/tenants/{tenant_id}/settings", get(get_tenant_settings).put(put_tenant_settings))
        .route("/api/tenants/{tenant_id}/settings", patch(patch_tenant_settings))
        .route("/api/tenants/{tenant_id}/settings/preview", post(preview_tenant_settings))
        .route("/api/tenants/{tenant_id}/feature/preview", post(preview_feature))
}

fn validate(state: &AppState, s: &ScopeSettings) -> AppResult<()> {
    s.validate().map_err(|e| {
        let code = match e {
            // Its own code: the fields are each fine, their combination is not.
            twofold_policy::SettingsError::StrengthUnreachable(_) => ErrorCode::StrengthUnreachable,
            _ => ErrorCode::InvalidField,
        };
        AppError::BadRequest { code, message: e.to_string(), field: Some(e.field().to_owned()) }
    })?;
    // Allowed is not enough where this server cannot offer it: passkeys without a
    // relying party would leave a `phishing_resistant` scope with nothing to sign in with.
    let usable = crate::factors::usable_providers(state, &s.allowed_providers);
    if s.min_strength == twofold_policy::Strength::PhishingResistant && !usable.passkey {
        return Err(AppError::BadRequest {
            code: ErrorCode::StrengthUnreachable,
            message: "min_strength phishing_resistant needs passkeys, which this server does not offer \
                      (they need a public_url that names it by its domain)"
                .to_owned(),
            field: Some("min_strength".to_owned()),
        });
    }
    Ok(())
}

/// A change to a scope's settings: the whole object, or a JSON Merge Patch (RFC 7396)
/// applied to what is stored when the write transaction has locked it, so two partial
/// changes to different fields never undo each other.
enum Change {
    Replace(ScopeSettings),
    Merge(serde_json::Value),
}

impl Change {
    fn apply(self, state: &AppState, stored: &ScopeSettings) -> AppResult<ScopeSettings> {
        let new = match self {
            Change::Replace(new) => new,
            Change::Merge(patch) => {
                if !patch.is_object() {
                    return Err(AppError::bad_request(ErrorCode::InvalidBody, "a merge patch must be a JSON object"));
                }
                let mut merged = serde_json::to_value(stored).map_err(anyhow::Error::from)?;
                json_patch::merge(&mut merged, &patch);
                // The patched object must still be a whole, valid settings object: `null`
                // on a required field or an unknown field is refused, not guessed at.
                serde_json::from_value(merged).map_err(|e| {
                    AppError::bad_request(ErrorCode::InvalidBody, format!("the patched settings are invalid: {e}"))
                })?
            }
        };
        validate(state, &new)?;
        Ok(new)
    }
}

/// The host's 2FA settings, which apply to host users only.
#[utoipa::path(get, path = "/api/host/settings", tag = "settings",
    responses((status = 200, body = SettingsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_host_settings(State(state): State<AppState>, who: Authenticated) -> AppResult<Json<SettingsView>> {
    state.authorize(&who, Action::ReadSettings, Target::Domain(Domain::Host))?;
    Ok(Json(SettingsView::new(state.cache().settings(state.db(), HOST_SCOPE).await?, None)))
}

/// Replaces the host's 2FA settings.
#[utoipa::path(put, path = "/api/host/settings", tag = "settings", request_body = ScopeSettings,
    responses((status = 200, body = SettingsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_host_settings(
    State(state): State<AppState>,
    who: Authenticated,
    Json(new): Json<ScopeSettings>,
) -> AppResult<Json<SettingsView>> {
    state.authorize(&who, Action::UpdateSettings, Target::Domain(Domain::Host))?;
    validate(&state, &new)?;
    let saved = save_settings(&state, &who, HOST_SCOPE, None, Change::Replace(new)).await?;
    Ok(Json(SettingsView::new(saved, None)))
}

/// Changes some of the host's 2FA settings: a JSON Merge Patch (RFC 7396,
/// `Content-Type: application/merge-patch+json`) naming only the fields to change.
#[utoipa::path(patch, path = "/api/host/settings", tag = "settings",
    request_body(content = ScopeSettings, content_type = "application/merge-patch+json",
        description = "A JSON Merge Patch (RFC 7396): any subset of the settings' fields; those not named keep their stored values"),
    responses((status = 200, body = SettingsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn patch_host_settings(
    State(state): State<AppState>,
    who: Authenticated,
    Json(patch): Json<serde_json::Value>,
) -> AppResult<Json<SettingsView>> {
    state.authorize(&who, Action::UpdateSettings, Target::Domain(Domain::Host))?;
    let saved = save_settings(&state, &who, HOST_SCOPE, None, Change::Merge(patch)).await?;
    Ok(Json(SettingsView::new(saved, None)))
}

/// Saves in one transaction on the writer ([`crate::db::Db::on_writer`]), then drops
/// this node's cached copy.
async fn save_settings(
    state: &AppState,
    who: &Authenticated,
    scope_key: &str,
    feature: Option<TenantFeature>,
    change: Change,
) -> AppResult<ScopeSettings> {
    let job = {
        let (state, actor, scope) = (state.clone(), who.user.id.clone(), scope_key.to_owned());
        async move { store_settings(&state, &actor, &scope, feature, change).await }
    };
    let new = state.db().on_writer(job).await??;
    state.cache().invalidate_settings(scope_key);
    Ok(new)
}

async fn store_settings(
    state: &AppState,
    actor: &str,
    scope_key: &str,
    feature: Option<TenantFeature>,
    change: Change,
) -> AppResult<ScopeSettings> {
    let mut tx = state.db().begin().await?;
    // Settings, kept by their own cache, which `save_settings` and the change feed make
    // forget them, and an audit event: no row kept by the writes' stamps.
    tx.touches(crate::db::Touches::NothingKept);
    // One instant for the whole write: the row, its audit event and any defaults.
    let now = state.now();
    // Locked inside the write transaction so the ceiling check, a merge patch and the
    // audit's "before" cannot race another writer.
    let old = db::lock_settings(&mut tx, state.db().backend, scope_key, now).await?;
    let new = change.apply(state, &old)?;
    if let Some(feature) = feature
        && matches!(feature.behaviour, Behaviour::Forced | Behaviour::Disabled)
        && new.behaviour != old.behaviour
    {
        return Err(AppError::conflict(
            ErrorCode::BehaviourFixedByHost,
            format!(
                "the host has set this tenant's two-factor feature to {}, so the behaviour cannot be changed; the other settings can",
                feature.behaviour.as_str()
            ),
        ));
    }
    let action = if scope_key == HOST_SCOPE { "host_settings.updated" } else { "tenant_settings.updated" };
    let target = format!("settings:{scope_key}");
    let audit = db::NewAudit {
        at: now,
        actor_user_id: Some(actor),
        scope_key,
        action,
        target: &target,
        before: Some(serde_json::to_value(&old).map_err(anyhow::Error::from)?),
        after: Some(serde_json::to_value(&new).map_err(anyhow::Error::from)?),
    };
    let notice = changes::Change::Settings(scope_key).notice();
    db::save_settings_change(&mut tx, state.db().backend, scope_key, &new, now, &audit, notice).await?;
    tx.commit().await?;
    Ok(new)
}

/// What saving proposed host settings would do to host users, without saving.
#[utoipa::path(post, path = "/api/host/settings/preview", tag = "settings", request_body = SettingsPreviewRequest,
    responses((status = 200, body = ImpactPreview), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn preview_host_settings(
    State(state): State<AppState>,
    who: Authenticated,
    Json(req): Json<SettingsPreviewRequest>,
) -> AppResult<Json<ImpactPreview>> {
    state.authorize(&who, Action::ReadSettings, Target::Domain(Domain::Host))?;
    validate(&state, &req.settings)?;
    let old = state.cache().settings(state.db(), HOST_SCOPE).await?;
    let (old, new) = (ScopeInputs::Host(&old), ScopeInputs::Host(&req.settings));
    Ok(Json(impact(&state, HOST_SCOPE, old, new, GroupChange::Nothing).await?))
}

/// A tenant's own 2FA settings and the host's ceiling over them.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/settings", tag = "settings",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = SettingsView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_tenant_settings(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
) -> AppResult<Json<SettingsView>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::ReadSettings).await?;
    let feature = state.cache().feature(state.db(), &tenant.id).await?;
    let settings = state.cache().settings(state.db(), &tenant.id).await?;
    Ok(Json(SettingsView::new(settings, Some(feature))))
}

/// Replaces a tenant's 2FA settings. While the host's ceiling is forced or disabled the
/// behaviour cannot change (409); the other settings still can.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/settings", tag = "settings", request_body = ScopeSettings,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = SettingsView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Behaviour fixed by the host's ceiling", body = ErrorBody)))]
pub async fn put_tenant_settings(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Json(new): Json<ScopeSettings>,
) -> AppResult<Json<SettingsView>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::UpdateSettings).await?;
    validate(&state, &new)?;
    let feature = tenant.feature()?;
    let saved = save_settings(&state, &who, &tenant.id, Some(feature), Change::Replace(new)).await?;
    Ok(Json(SettingsView::new(saved, Some(feature))))
}

/// Changes some of a tenant's 2FA settings with a JSON Merge Patch (RFC 7396,
/// `Content-Type: application/merge-patch+json`); the ceiling rule of `PUT` holds.
#[utoipa::path(patch, path = "/api/tenants/{tenant_id}/settings", tag = "settings",
    request_body(content = ScopeSettings, content_type = "application/merge-patch+json",
        description = "A JSON Merge Patch (RFC 7396): any subset of the settings' fields; those not named keep their stored values"),
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = SettingsView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Behaviour fixed by the host's ceiling", body = ErrorBody)))]
pub async fn patch_tenant_settings(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Json(patch): Json<serde_json::Value>,
) -> AppResult<Json<SettingsView>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::UpdateSettings).await?;
    let feature = tenant.feature()?;
    let saved = save_settings(&state, &who, &tenant.id, Some(feature), Change::Merge(patch)).await?;
    Ok(Json(SettingsView::new(saved, Some(feature))))
}

/// What saving proposed tenant settings would do to the tenant's users, without saving.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/settings/preview", tag = "settings", request_body = SettingsPreviewRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = ImpactPreview), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn preview_tenant_settings(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Json(req): Json<SettingsPreviewRequest>,
) -> AppResult<Json<ImpactPreview>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::ReadSettings).await?;
    validate(&state, &req.settings)?;
    let feature = tenant.feature()?;
    let old = db::load_settings(&state.db().pool, &tenant.id).await?;
    let (old, new) = (ScopeInputs::Tenant(feature, &old), ScopeInputs::Tenant(feature, &req.settings));
    Ok(Json(impact(&state, &tenant.id, old, new, GroupChange::Nothing).await?))
}

/// What a proposed 2FA feature (ceiling) would do to the tenant's users, without saving.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/feature/preview", tag = "tenants", request_body = FeaturePreviewRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = ImpactPreview), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn preview_feature(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Json(req): Json<FeaturePreviewRequest>,
) -> AppResult<Json<ImpactPreview>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::UpdateFeature).await?;
    let settings = db::load_settings(&state.db().pool, &tenant.id).await?;
    let (old, new) = (ScopeInputs::Tenant(tenant.feature()?, &settings), ScopeInputs::Tenant(req.feature, &settings));
    Ok(Json(impact(&state, &tenant.id, old, new, GroupChange::Nothing).await?))
}
