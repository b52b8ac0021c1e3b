//! Liveness and readiness probes for load balancers and orchestrators.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::extract::Json;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready))
}

/// Liveness: the process answers. Never touches the database, so a database outage
/// does not get healthy nodes restarted.
#[utoipa::path(get, path = "/health", tag = "health", security(()), responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/ready", tag = "health", security(()),
    responses((status = 200, body = Health), (status = 503, body = twofold_policy::wire::ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> AppResult<Json<Health>> {
    state.db().ping().await.map_err(|e| AppError::Unavailable(e.into()))?;
    Ok(Json(Health { status: "ready" }))
}
