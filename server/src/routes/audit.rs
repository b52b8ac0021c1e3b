//! The audit trail: who changed what, from what to what, when; newest first.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use twofold_policy::authz::{Action, Domain, Target};
use twofold_policy::wire::{AuditEvent, AuditPage, ErrorBody};
use utoipa::IntoParams;

use crate::app::AppState;
use crate::auth::Authenticated;
use crate::clock::rfc3339;
use crate::db::{self, HOST_SCOPE};
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Query, parse_id};
use twofold_policy::wire::ErrorCode;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/audit", get(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
// The handler takes the crate's own `Query` wrapper, which utoipa cannot see through;
// without this the parameters are documented as path parameters.
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// A tenant id, or `host` for the host's own events. Without it a host admin sees
    /// every event; a tenant admin must name their tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The `next_before` of the previous page.
    #[serde(default)]
    pub before: Option<String>,
    /// Events per page, 1 to 200 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

fn parse_json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

/// Audit events of one scope (or all, for host admins), newest first, paged by cursor.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    who: Authenticated,
    Query(params): Query<AuditParams>,
) -> AppResult<Json<AuditPage>> {
    let scope = match params.tenant_id.as_deref() {
        None => {
            state.authorize(&who, Action::ReadAudit, Target::Domain(Domain::Host))?;
            None
        }
        Some(HOST_SCOPE) => {
            state.authorize(&who, Action::ReadAudit, Target::Domain(Domain::Host))?;
            Some(HOST_SCOPE.to_owned())
        }
        Some(raw) => {
            let id = parse_id(raw, "tenant")?;
            db::get_tenant(&state.db().pool, &id).await?.ok_or(AppError::NotFound("tenant"))?;
            state.authorize(&who, Action::ReadAudit, Target::Domain(Domain::Tenant(&id)))?;
            Some(id)
        }
    };
    let before = match params.before.as_deref() {
        Some(raw) => Some(
            uuid::Uuid::parse_str(raw)
                .map_err(|_| AppError::bad_request(ErrorCode::InvalidQuery, "before must be an event id"))?
                .hyphenated()
                .to_string(),
        ),
        None => None,
    };
    let limit = params.limit.unwrap_or(50).clamp(1, 200);
    // One extra row tells whether another page exists without a count query.
    let mut rows = db::list_audit(&state.db().pool, scope.as_deref(), before.as_deref(), i64::from(limit) + 1).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_before = if more { rows.last().map(|r| r.id.clone()) } else { None };
    let items = rows
        .into_iter()
        .map(|r| AuditEvent {
            id: r.id,
            at: rfc3339(r.at),
            actor_user_id: r.actor_user_id,
            tenant_id: (r.scope_key != HOST_SCOPE).then_some(r.scope_key),
            action: r.action,
            target: r.target,
            before: parse_json(r.before_json),
            after: parse_json(r.after_json),
        })
        .collect();
    Ok(Json(AuditPage { items, next_before }))
}
