//! The OpenAPI 3 document, generated from the route annotations and served at
//! `/api/openapi.json`.

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::extract::Json;
use crate::routes::{audit, auth, health, settings, tenants, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Twofold",
        description = "Multi-tenant two-factor-authentication policy and sign-in service. \
            State-changing requests must carry an `X-Requested-With` header.",
    ),
    paths(
        health::health,
        health::ready,
        auth::sign_in,
        auth::sign_out,
        auth::me,
        settings::get_host_settings,
        settings::put_host_settings,
        settings::preview_host_settings,
        settings::get_tenant_settings,
        settings::put_tenant_settings,
        settings::preview_tenant_settings,
        settings::preview_feature,
        tenants::list_tenants,
        tenants::create_tenant,
        tenants::get_tenant,
        tenants::get_feature,
        tenants::put_feature,
        users::list_host_users,
        users::create_host_user,
        users::list_tenant_users,
        users::create_tenant_user,
        users::get_user,
        users::get_user_policy,
        users::set_user_two_factor,
        users::assign_tenant_admin,
        users::revoke_tenant_admin,
        audit::list_audit,
    ),
    tags(
        (name = "auth", description = "Sign-in and sessions"),
        (name = "settings", description = "2FA settings of the host and of tenants"),
        (name = "tenants", description = "Tenants and their 2FA feature (ceiling)"),
        (name = "users", description = "Users, their effective policy and roles"),
        (name = "audit", description = "The audit trail"),
        (name = "health", description = "Probes"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
