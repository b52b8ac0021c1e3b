//! The OpenAPI 3 document, generated from the route annotations and served at
//! `/api/openapi.json`.

use axum::Router;
use axum::routing::get;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, HeaderBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

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
    modifiers(&RateLimited),
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

/// Paths, besides all of `/api/account`, whose requests are rate limited (see
/// `ratelimit::Class`). The document lists their 429 with its `Retry-After` header.
const LIMITED_AUTH_PATHS: &[&str] = &[
    "/api/auth/sign-in",
    "/api/auth/sign-in/send-code",
    "/api/auth/sign-in/verify",
    "/api/auth/enroll/authenticator/confirm",
    "/api/auth/enroll/email",
    "/api/auth/enroll/email/confirm",
    "/api/auth/enroll/phone",
    "/api/auth/enroll/phone/confirm",
];

/// Adds the 429 `rate_limited` answer to every rate-limited operation, and the
/// `Retry-After` header to every 429, in one place rather than in each annotation.
#[derive(Debug)]
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let retry_after = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
            .description(Some("Whole seconds to wait before trying again"))
            .build();
        for (path, item) in &mut openapi.paths.paths {
            let limited = path.starts_with("/api/account") || LIMITED_AUTH_PATHS.contains(&path.as_str());
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in operations.into_iter().flatten() {
                if limited {
                    op.responses.responses.entry("429".to_owned()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(
                                    "rate_limited: too many requests from this address or for this account, or too \
                                     many messages to this user",
                                )
                                .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                                .build(),
                        )
                    });
                }
                if let Some(RefOr::T(resp)) = op.responses.responses.get_mut("429") {
                    resp.headers.entry("Retry-After".to_owned()).or_insert_with(|| retry_after.clone());
                }
            }
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
