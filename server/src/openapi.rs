//! The OpenAPI 3 document, generated from the route annotations and served at
//! `/api/openapi.json`.

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::extract::Json;
use crate::routes::{account, audit, auth, health, settings, tenants, users};

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
        auth::send_code,
        auth::verify,
        auth::enroll_authenticator,
        auth::enroll_authenticator_confirm,
        auth::enroll_email,
        auth::enroll_email_confirm,
        auth::enroll_phone,
        auth::enroll_phone_confirm,
        auth::postpone,
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
        users::unlock_user,
        users::reset_second_factors,
        users::end_sessions,
        account::get_account,
        account::set_two_factor,
        account::reauthenticate,
        account::reauth_send_code,
        account::change_password,
        account::start_authenticator,
        account::confirm_authenticator,
        account::remove_authenticator,
        account::regenerate_recovery_codes,
        account::change_email,
        account::confirm_email,
        account::change_phone,
        account::confirm_phone,
        account::remove_phone,
        account::list_browsers,
        account::forget_browser,
        account::forget_all_browsers,
        audit::list_audit,
    ),
    tags(
        (name = "auth", description = "Sign-in and sessions"),
        (name = "account", description = "The signed-in user's own two-factor settings"),
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
    Router::new().route("/api/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
