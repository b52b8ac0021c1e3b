//! The OpenAPI 3 document, generated from the route annotations and served at
//! `/api/openapi.json`.
//!
//! The annotations list what each handler itself answers. The answers every operation of a
//! kind shares (no session, a missing `X-Requested-With` header, a body that is not JSON,
//! an id that names nothing, the database being down) come from the extractors and the
//! middleware, not the handlers, so [`SharedResponses`] adds them here by rule rather than
//! repeating them on every route, where one would sooner or later be forgotten.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Header, HeaderBuilder, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::app::AppState;
use crate::extract::Json;
use crate::oidc::{apps, authorize};
use crate::routes::{account, audit, auth, groups, health, messages, passkeys, settings, tenants, users};

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
        auth::step_up,
        auth::request_password_reset,
        auth::confirm_password_reset,
        auth::sign_out,
        auth::me,
        auth::session,
        settings::get_host_settings,
        settings::put_host_settings,
        settings::patch_host_settings,
        settings::preview_host_settings,
        settings::get_tenant_settings,
        settings::put_tenant_settings,
        settings::patch_tenant_settings,
        settings::preview_tenant_settings,
        settings::preview_feature,
        messages::host_message_usage,
        messages::tenant_message_usage,
        tenants::list_tenants,
        tenants::create_tenant,
        tenants::get_tenant,
        tenants::suspend_tenant,
        tenants::resume_tenant,
        tenants::delete_tenant,
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
        users::list_user_sessions,
        users::deactivate_user,
        users::reactivate_user,
        users::delete_user,
        users::reset_password,
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
        account::remove_email,
        account::confirm_email,
        account::change_phone,
        account::confirm_phone,
        account::remove_phone,
        account::list_browsers,
        account::forget_browser,
        account::forget_all_browsers,
        account::list_sessions,
        account::end_session,
        account::end_other_sessions,
        passkeys::passwordless_options,
        passkeys::passwordless,
        passkeys::second_factor_options,
        passkeys::second_factor,
        passkeys::enroll_options,
        passkeys::enroll_confirm,
        passkeys::list,
        passkeys::add_options,
        passkeys::add_confirm,
        passkeys::rename,
        passkeys::remove,
        passkeys::reauth_options,
        passkeys::reauthenticate,
        passkeys::step_up_options,
        passkeys::step_up,
        audit::list_audit,
        groups::list_host_groups,
        groups::create_host_group,
        groups::list_tenant_groups,
        groups::create_tenant_group,
        groups::get_group,
        groups::update_group,
        groups::delete_group,
        groups::preview_group_rule,
        groups::list_members,
        groups::add_member,
        groups::remove_member,
        groups::preview_membership,
        groups::host_adoption,
        groups::host_adoption_csv,
        groups::tenant_adoption,
        groups::tenant_adoption_csv,
        groups::what_if,
        apps::list_host_applications,
        apps::create_host_application,
        apps::list_tenant_applications,
        apps::create_tenant_application,
        apps::get_application,
        apps::put_application,
        apps::delete_application,
        apps::rotate_secret,
        apps::preview_rule,
        apps::list_grants,
        apps::revoke_grant,
        authorize::request_state,
        authorize::resume,
        audit::export_audit,
    ),
    modifiers(&RateLimited, &SharedResponses),
    // Every operation needs a session unless its annotation says `security(())`.
    security(("session" = [])),
    tags(
        (name = "auth", description = "Sign-in and sessions"),
        (name = "account", description = "The signed-in user's own two-factor settings"),
        (name = "settings", description = "2FA settings of the host and of tenants"),
        (name = "tenants", description = "Tenants and their 2FA feature (ceiling)"),
        (name = "users", description = "Users, their effective policy and roles"),
        (name = "groups", description = "Groups with 2FA rules, and who in a scope is ready for 2FA"),
        (name = "audit", description = "The audit trail"),
        (name = "applications", description = "OpenID Connect applications (clients) of the host and of tenants"),
        (name = "oidc", description = "Authorization requests waiting for the web app's sign-in, step-up or consent"),
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
    "/api/auth/step-up",
    "/api/auth/step-up/passkey/options",
    "/api/auth/step-up/passkey",
    "/api/auth/password-reset",
    "/api/auth/password-reset/confirm",
];

/// Adds the 429 `rate_limited` answer to every rate-limited operation, in one place
/// rather than in each annotation.
#[derive(Debug)]
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            if !(path.starts_with("/api/account") || LIMITED_AUTH_PATHS.contains(&path.as_str())) {
                continue;
            }
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in operations.into_iter().flatten() {
                op.responses.responses.entry("429".to_owned()).or_insert_with(|| {
                    RefOr::T(error_response(
                        "rate_limited: too many requests from this address or for this account, too many \
                         messages to this user or destination, or the hourly message cap of the user's tenant or \
                         of the whole service reached",
                    ))
                });
            }
        }
    }
}

/// The name of the security scheme of the session cookie.
const SESSION: &str = "session";

/// The document as this server answers: the session cookie's name depends on
/// `cookie_secure`.
pub fn document(session_cookie: &str) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(SESSION, session_scheme(session_cookie));
    }
    doc
}

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/openapi.json",
        get(|State(state): State<AppState>| async move { Json(document(state.config().session_cookie_name())) }),
    )
}

fn session_scheme(cookie: &str) -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
        cookie,
        "The session cookie set by a completed sign-in (HttpOnly, SameSite=Strict).",
    )))
}

/// Adds the session cookie's security scheme and the responses shared by whole kinds of
/// operations (see the module docs).
#[derive(Debug)]
struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(SESSION, session_scheme("__Host-twofold_session"));
        let default_security = doc.security.clone().unwrap_or_default();
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/api/");
            let ops = [
                (false, item.get.as_mut()),
                (false, item.head.as_mut()),
                (true, item.post.as_mut()),
                (true, item.put.as_mut()),
                (true, item.patch.as_mut()),
                (true, item.delete.as_mut()),
            ];
            for (unsafe_method, op) in ops {
                if let Some(op) = op {
                    if api {
                        add_shared(op, unsafe_method, &default_security);
                    }
                    document_retry_after(op);
                }
            }
        }
    }
}

fn add_shared(op: &mut Operation, unsafe_method: bool, default_security: &[SecurityRequirement]) {
    let session = SecurityRequirement::new(SESSION, Vec::<String>::new());
    let needs_session = op.security.as_deref().unwrap_or(default_security).contains(&session);
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
    let has_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
    let has_body = op.request_body.is_some();
    let r = &mut op.responses.responses;
    let mut add = |status: &str, description: &str| {
        r.entry(status.to_owned()).or_insert_with(|| RefOr::T(error_response(description)));
    };
    if has_body || has_query || has_path {
        add(
            "400",
            "The body, query or path is malformed or invalid (`malformed_json`, `invalid_body`, `invalid_query`, `invalid_path`, `invalid_field`)",
        );
    }
    if needs_session {
        add("401", "No valid session (`unauthenticated`)");
    }
    if unsafe_method {
        add("403", "The `X-Requested-With` header is missing (`csrf_header_missing`)");
    }
    if has_path {
        add("404", "The id names nothing the caller can see (`not_found`)");
    }
    if has_body {
        add("415", "The body is not declared as JSON (`unsupported_media_type`)");
    }
    add("503", "The database is unavailable (`unavailable`); retry after `Retry-After` seconds");
}

/// Every answer that asks the client to wait says for how long.
fn document_retry_after(op: &mut Operation) {
    for status in ["423", "429", "503"] {
        if let Some(RefOr::T(resp)) = op.responses.responses.get_mut(status) {
            resp.headers.entry("Retry-After".to_owned()).or_insert_with(retry_after);
        }
    }
}

fn error_response(description: &str) -> Response {
    let mut resp = Response::new(description);
    resp.content.insert("application/json".to_owned(), Content::new(Some(Ref::from_schema_name("ErrorBody"))));
    resp
}

fn retry_after() -> Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
        .description(Some("Whole seconds to wait before trying again"))
        .build()
}
