//! The tenant isolation sweep: every operation of the live OpenAPI document, sent by a
//! tenant admin of tenant A with every id, name and cursor it takes (in the path, the
//! query and the body) pointed at tenant B and at the host, must be refused and must leave
//! B's and the host's data as they were.
//!
//! The sweep knows nothing about individual routes except three explicit tables: what
//! class each operation is (tenant administration, host administration, the caller's own
//! account, or public), what each parameter and body field names, and a valid example
//! of each request body. Anything the document holds that these tables do not explain
//! fails the test with a message saying what to teach it, so a new route cannot slip past
//! unexamined; a second test checks that every route the router registers is in the
//! document.
//!
//! Refusals are only convincing if the same requests work where they should, so every
//! request the sweep expects refused is sent again aimed at tenant A (a positive
//! control): the tenant admin must get through for tenant operations, and a host admin
//! for host operations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::flows::{
    add_authenticator_in_account, admin_app, advance_seconds, assert_signed_in, create_user, next_totp, verify,
};
use crate::helpers::{Client, Options, PASSWORD, Resp, TestApp};

// ---------------------------------------------------------------- the tables

/// Who may call an operation, which decides what a correct refusal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Administration of one tenant: a tenant admin may do it in their own tenant only.
    /// Aimed at another tenant or the host: 403 or 404.
    Tenant,
    /// Administration of the host or of tenants as a whole: host admins only, so a
    /// tenant admin gets 403 (or 404 for an id that names no tenant) whatever it aims at.
    Host,
    /// The caller's own account and session. Allowed, but any object it names must be the
    /// caller's own (else 403 or 404), and nothing of B or the host may change.
    Own,
    /// Needs no session: probes and the sign-in pipeline. Allowed; names in the body are
    /// answered like a wrong password (401), since the sweep does not know B's passwords.
    Public,
}

/// Every operation of the document and its class. The test fails on an operation missing
/// here (teach the sweep) and on an entry the document does not have (a stale allow-list).
const OPERATIONS: &[(&str, Class)] = &[
    ("GET /health", Class::Public),
    ("GET /ready", Class::Public),
    ("POST /api/auth/sign-in", Class::Public),
    ("POST /api/auth/sign-in/send-code", Class::Public),
    ("POST /api/auth/sign-in/verify", Class::Public),
    ("POST /api/auth/enroll/authenticator", Class::Public),
    ("POST /api/auth/enroll/authenticator/confirm", Class::Public),
    ("POST /api/auth/enroll/email", Class::Public),
    ("POST /api/auth/enroll/email/confirm", Class::Public),
    ("POST /api/auth/enroll/phone", Class::Public),
    ("POST /api/auth/enroll/phone/confirm", Class::Public),
    ("POST /api/auth/enroll/postpone", Class::Public),
    ("POST /api/auth/enroll/passkey", Class::Public),
    ("POST /api/auth/enroll/passkey/confirm", Class::Public),
    ("POST /api/auth/passkey/options", Class::Public),
    ("POST /api/auth/passkey", Class::Public),
    ("POST /api/auth/sign-in/passkey/options", Class::Public),
    ("POST /api/auth/sign-in/passkey", Class::Public),
    ("POST /api/auth/password-reset", Class::Public),
    ("POST /api/auth/password-reset/confirm", Class::Public),
    ("POST /api/auth/sign-out", Class::Own),
    ("GET /api/auth/me", Class::Own),
    ("GET /api/auth/session", Class::Public),
    ("GET /api/account", Class::Own),
    ("PUT /api/account/two-factor", Class::Own),
    ("POST /api/account/reauthenticate", Class::Own),
    ("POST /api/account/reauthenticate/send-code", Class::Own),
    ("POST /api/account/reauthenticate/passkey/options", Class::Own),
    ("POST /api/account/reauthenticate/passkey", Class::Own),
    ("PUT /api/account/password", Class::Own),
    ("POST /api/account/authenticator", Class::Own),
    ("DELETE /api/account/authenticator", Class::Own),
    ("POST /api/account/authenticator/confirm", Class::Own),
    ("POST /api/account/recovery-codes", Class::Own),
    ("PUT /api/account/email", Class::Own),
    ("POST /api/account/email/confirm", Class::Own),
    ("PUT /api/account/phone", Class::Own),
    ("DELETE /api/account/phone", Class::Own),
    ("DELETE /api/account/email", Class::Own),
    ("POST /api/account/phone/confirm", Class::Own),
    ("GET /api/account/browsers", Class::Own),
    ("DELETE /api/account/browsers", Class::Own),
    ("DELETE /api/account/browsers/{browser_id}", Class::Own),
    ("GET /api/account/sessions", Class::Own),
    ("DELETE /api/account/sessions/{session_id}", Class::Own),
    ("POST /api/account/sessions/end-others", Class::Own),
    ("GET /api/account/passkeys", Class::Own),
    ("POST /api/account/passkeys", Class::Own),
    ("POST /api/account/passkeys/confirm", Class::Own),
    ("PATCH /api/account/passkeys/{passkey_id}", Class::Own),
    ("DELETE /api/account/passkeys/{passkey_id}", Class::Own),
    ("GET /api/host/settings", Class::Host),
    ("PUT /api/host/settings", Class::Host),
    ("PATCH /api/host/settings", Class::Host),
    ("POST /api/host/settings/preview", Class::Host),
    ("GET /api/host/message-usage", Class::Host),
    ("GET /api/host/users", Class::Host),
    ("POST /api/host/users", Class::Host),
    ("GET /api/tenants", Class::Host),
    ("POST /api/tenants", Class::Host),
    ("PUT /api/tenants/{tenant_id}/feature", Class::Host),
    ("POST /api/tenants/{tenant_id}/feature/preview", Class::Host),
    ("POST /api/tenants/{tenant_id}/suspend", Class::Host),
    ("POST /api/tenants/{tenant_id}/resume", Class::Host),
    ("DELETE /api/tenants/{tenant_id}", Class::Host),
    ("GET /api/tenants/{tenant_id}", Class::Tenant),
    ("GET /api/tenants/{tenant_id}/feature", Class::Tenant),
    ("GET /api/tenants/{tenant_id}/settings", Class::Tenant),
    ("PUT /api/tenants/{tenant_id}/settings", Class::Tenant),
    ("PATCH /api/tenants/{tenant_id}/settings", Class::Tenant),
    ("POST /api/tenants/{tenant_id}/settings/preview", Class::Tenant),
    ("GET /api/tenants/{tenant_id}/message-usage", Class::Tenant),
    ("GET /api/tenants/{tenant_id}/users", Class::Tenant),
    ("POST /api/tenants/{tenant_id}/users", Class::Tenant),
    ("POST /api/tenants/{tenant_id}/admins", Class::Tenant),
    ("DELETE /api/tenants/{tenant_id}/admins/{user_id}", Class::Tenant),
    ("GET /api/users/{user_id}", Class::Tenant),
    ("GET /api/users/{user_id}/policy", Class::Tenant),
    ("PUT /api/users/{user_id}/two-factor", Class::Tenant),
    ("POST /api/users/{user_id}/unlock", Class::Tenant),
    ("POST /api/users/{user_id}/reset-second-factors", Class::Tenant),
    ("POST /api/users/{user_id}/end-sessions", Class::Tenant),
    ("GET /api/users/{user_id}/sessions", Class::Tenant),
    ("POST /api/users/{user_id}/deactivate", Class::Tenant),
    ("POST /api/users/{user_id}/reactivate", Class::Tenant),
    ("DELETE /api/users/{user_id}", Class::Tenant),
    ("POST /api/users/{user_id}/password-reset", Class::Tenant),
    ("GET /api/audit", Class::Tenant),
    ("GET /api/host/groups", Class::Host),
    ("POST /api/host/groups", Class::Host),
    ("GET /api/host/adoption", Class::Host),
    ("GET /api/host/adoption.csv", Class::Host),
    ("GET /api/tenants/{tenant_id}/groups", Class::Tenant),
    ("POST /api/tenants/{tenant_id}/groups", Class::Tenant),
    ("GET /api/tenants/{tenant_id}/adoption", Class::Tenant),
    ("GET /api/tenants/{tenant_id}/adoption.csv", Class::Tenant),
    ("GET /api/groups/{group_id}", Class::Tenant),
    ("PUT /api/groups/{group_id}", Class::Tenant),
    ("DELETE /api/groups/{group_id}", Class::Tenant),
    ("POST /api/groups/{group_id}/preview", Class::Tenant),
    ("GET /api/groups/{group_id}/members", Class::Tenant),
    ("POST /api/groups/{group_id}/members", Class::Tenant),
    ("POST /api/groups/{group_id}/members/preview", Class::Tenant),
    ("DELETE /api/groups/{group_id}/members/{user_id}", Class::Tenant),
    ("GET /api/users/{user_id}/what-if", Class::Tenant),
    ("POST /api/auth/step-up", Class::Own),
    ("POST /api/auth/step-up/passkey/options", Class::Own),
    ("POST /api/auth/step-up/passkey", Class::Own),
    ("GET /api/account/applications", Class::Own),
    ("DELETE /api/account/applications/{grant_id}", Class::Own),
    ("GET /api/host/applications", Class::Host),
    ("POST /api/host/applications", Class::Host),
    ("GET /api/tenants/{tenant_id}/applications", Class::Tenant),
    ("POST /api/tenants/{tenant_id}/applications", Class::Tenant),
    ("GET /api/applications/{application_id}", Class::Tenant),
    ("PUT /api/applications/{application_id}", Class::Tenant),
    ("DELETE /api/applications/{application_id}", Class::Tenant),
    ("POST /api/applications/{application_id}/secret", Class::Tenant),
    ("POST /api/applications/{application_id}/preview", Class::Tenant),
    // A parked authorization request is reached by its unguessable handle alone.
    ("GET /api/oidc/requests/{handle}", Class::Public),
    ("POST /api/oidc/requests/{handle}", Class::Public),
    ("GET /api/audit/export", Class::Tenant),
];

/// What a parameter or body field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A tenant id (`host` names the host scope where the API accepts it).
    TenantId,
    UserId,
    /// A remembered browser's id.
    BrowserId,
    /// A group's id.
    GroupId,
    /// An OpenID Connect application's id (its client_id).
    ApplicationId,
    /// A user's grant to an application.
    GrantId,
    /// The handle of a parked authorization request: a bearer capability, not an id
    /// within anyone's reach, so the sweep sends one that names nothing.
    RequestHandle,
    /// A signed-in session's id.
    SessionId,
    /// A passkey's id.
    PasskeyId,
    /// A tenant's name, as the sign-in request takes it (absent for the host).
    TenantName,
    /// An existing user's name, as the sign-in request takes it.
    Username,
    /// A paging cursor: an audit event id that only says where a page starts.
    AuditCursor,
    /// Free search text; filled with another party's user names to catch leaks.
    SearchText,
    /// A user id that only narrows a list within the caller's reach (the audit's actor
    /// and user filters); filled with another party's user ids to catch leaks.
    UserFilter,
    /// Names nothing: passwords, codes, flags, settings, names of objects to create.
    Inert,
}

impl Kind {
    /// Whether the value selects an object the request acts on or reads, so that aiming
    /// it at another party must be refused. Cursors and search text only narrow a result
    /// within the caller's own reach, so they must not leak, but need not be refused.
    fn names_object(self) -> bool {
        matches!(
            self,
            Kind::TenantId
                | Kind::UserId
                | Kind::BrowserId
                | Kind::GroupId
                | Kind::ApplicationId
                | Kind::GrantId
                | Kind::SessionId
                | Kind::PasskeyId
                | Kind::TenantName
                | Kind::Username
        )
    }

    fn per_user(self) -> bool {
        matches!(self, Kind::UserId | Kind::Username | Kind::SearchText | Kind::UserFilter)
    }
}

/// Path and query parameters by name.
const PARAMETERS: &[(&str, Kind)] = &[
    ("tenant_id", Kind::TenantId),
    ("user_id", Kind::UserId),
    ("browser_id", Kind::BrowserId),
    ("group_id", Kind::GroupId),
    // Filters of the adoption view: they narrow the caller's own scope.
    ("required", Kind::Inert),
    ("ready", Kind::Inert),
    ("locked", Kind::Inert),
    ("application_id", Kind::ApplicationId),
    ("grant_id", Kind::GrantId),
    ("handle", Kind::RequestHandle),
    ("session_id", Kind::SessionId),
    ("passkey_id", Kind::PasskeyId),
    ("before", Kind::AuditCursor),
    ("q", Kind::SearchText),
    ("page", Kind::Inert),
    ("per_page", Kind::Inert),
    ("limit", Kind::Inert),
    ("format", Kind::Inert),
    ("action", Kind::Inert),
    ("actor", Kind::UserFilter),
    ("user", Kind::UserFilter),
    ("from", Kind::Inert),
    ("to", Kind::Inert),
    ("client_ip", Kind::Inert),
];

/// Request body fields, as `Schema.field` (nested objects are walked into, so their own
/// fields appear under their own schema).
const BODY_FIELDS: &[(&str, Kind)] = &[
    ("SignInRequest.tenant", Kind::TenantName),
    ("SignInRequest.username", Kind::Username),
    ("SignInRequest.password", Kind::Inert),
    ("SendCodeRequest.method", Kind::Inert),
    ("VerifyRequest.method", Kind::Inert),
    ("VerifyRequest.code", Kind::Inert),
    ("VerifyRequest.remember_browser", Kind::Inert),
    ("CodeRequest.code", Kind::Inert),
    // An address the caller wants to confirm for themselves: it is sent a code, it
    // does not select anyone's account.
    ("EmailRequest.email", Kind::Inert),
    ("PhoneRequest.phone", Kind::Inert),
    ("ReauthenticateRequest.password", Kind::Inert),
    ("ReauthenticateRequest.method", Kind::Inert),
    ("ReauthenticateRequest.code", Kind::Inert),
    ("ChangePassword.current_password", Kind::Inert),
    ("ChangePassword.new_password", Kind::Inert),
    ("SetTwoFactor.enabled", Kind::Inert),
    // The names of a tenant or user to be created, not of existing ones.
    ("CreateTenant.name", Kind::Inert),
    ("CreateTenant.display_name", Kind::Inert),
    ("CreateUser.username", Kind::Inert),
    ("CreateUser.password", Kind::Inert),
    ("CreateUser.email", Kind::Inert),
    ("CreateUser.phone", Kind::Inert),
    ("AssignRole.user_id", Kind::UserId),
    // The answer to "I forgot my password" is the same for every account (a test of
    // its own checks that), so these names select nothing the caller can reach.
    ("PasswordResetRequest.tenant", Kind::Inert),
    ("PasswordResetRequest.username", Kind::Inert),
    ("PasswordResetConfirm.token", Kind::Inert),
    ("PasswordResetConfirm.new_password", Kind::Inert),
    ("AdminPasswordReset.mode", Kind::Inert),
    ("ScopeSettings.behaviour", Kind::Inert),
    ("ScopeSettings.users_can_change", Kind::Inert),
    ("ScopeSettings.remember_browser", Kind::Inert),
    ("ScopeSettings.remember_browser_days", Kind::Inert),
    ("ScopeSettings.enrollment_grace_days", Kind::Inert),
    ("ScopeSettings.sms_allowed_country_codes", Kind::Inert),
    ("ProviderSet.authenticator", Kind::Inert),
    ("ProviderSet.email", Kind::Inert),
    ("ProviderSet.sms", Kind::Inert),
    ("ProviderSet.passkey", Kind::Inert),
    ("ScopeSettings.min_strength", Kind::Inert),
    ("ScopeSettings.passkey_aaguids", Kind::Inert),
    // The name of a passkey being registered or renamed; the passkey itself is chosen by
    // the path, among the caller's own.
    ("PasskeyName.name", Kind::Inert),
    // A ceremony is bound to the pending sign-in or session that started it (or, for a
    // passwordless sign-in, to nobody: the credential names the user and must sign the
    // challenge), so its id reaches nothing of anyone else's.
    ("PasskeyFinish.challenge_id", Kind::Inert),
    ("PasskeyFinish.credential", Kind::Inert),
    ("PasskeyFinish.remember_browser", Kind::Inert),
    ("TenantFeature.behaviour", Kind::Inert),
    // The name of a group to create or to rename one to, not of an existing one.
    ("GroupRequest.name", Kind::Inert),
    ("Rule.require_two_factor", Kind::Inert),
    ("Rule.min_strength", Kind::Inert),
    ("AddGroupMember.user_id", Kind::UserId),
    ("MembershipPreviewRequest.user_id", Kind::UserId),
    ("MembershipPreviewRequest.member", Kind::Inert),
    // An application to create or the new state of the caller's own.
    ("ApplicationInput.name", Kind::Inert),
    ("ApplicationInput.client_type", Kind::Inert),
    ("ApplicationInput.redirect_uris", Kind::Inert),
    ("ApplicationInput.post_logout_redirect_uris", Kind::Inert),
    ("ApplicationInput.allowed_scopes", Kind::Inert),
    ("ApplicationInput.first_party", Kind::Inert),
    ("ApplicationInput.require_two_factor", Kind::Inert),
    ("ApplicationInput.min_strength", Kind::Inert),
    ("ApplicationInput.max_age_seconds", Kind::Inert),
    ("ApplicationInput.token_alg", Kind::Inert),
    ("ResumeAuthorization.consent", Kind::Inert),
];

/// A rule that changes nothing for the members, so the positive controls that follow
/// still find A's users' switches theirs to set.
fn example_rule() -> Value {
    json!({ "require_two_factor": false, "min_strength": "out_of_band" })
}

/// Settings that differ from every scope's defaults in each field but keep the
/// behaviour optional, so a write that got through would show, and the positive
/// controls that follow still find tenant A optional.
fn example_settings() -> Value {
    json!({
        "behaviour": "optional",
        "users_can_change": false,
        "remember_browser": false,
        "remember_browser_days": 7,
        "enrollment_grace_days": 3,
        "allowed_providers": { "authenticator": true, "email": true, "sms": false },
        "sms_allowed_country_codes": ["44"]
    })
}

/// A valid body for each request schema; fields that name objects are overwritten with
/// the sweep's targets. Wrong passwords and codes are deliberate: the caller's own
/// account must come through the sweep unchanged enough to keep working.
fn example_body(schema: &str) -> Option<Value> {
    Some(match schema {
        "SignInRequest" => json!({ "tenant": "", "username": "", "password": "not the password" }),
        "SendCodeRequest" => json!({ "method": "email" }),
        "VerifyRequest" => json!({ "method": "authenticator", "code": "000000", "remember_browser": false }),
        "CodeRequest" => json!({ "code": "000000" }),
        "EmailRequest" => json!({ "email": "someone@example.com" }),
        "PhoneRequest" => json!({ "phone": "+14155550100" }),
        "ReauthenticateRequest" => {
            json!({ "password": "not the password", "method": "authenticator", "code": "000000" })
        }
        "ChangePassword" => {
            json!({ "current_password": "not the password", "new_password": "another long enough password" })
        }
        "SetTwoFactor" => json!({ "enabled": true }),
        "CreateTenant" => json!({ "name": "newtenant", "display_name": "New tenant" }),
        "CreateUser" => json!({
            "username": "newcomer", "password": PASSWORD, "email": "newcomer@example.com", "phone": "+447700900123",
        }),
        "AssignRole" => json!({ "user_id": "" }),
        "PasswordResetRequest" => json!({ "tenant": "alpha", "username": "plain" }),
        "PasswordResetConfirm" => json!({ "token": "not-a-token", "new_password": "a new long password" }),
        "AdminPasswordReset" => json!({ "mode": "temporary_password" }),
        "SettingsPreviewRequest" => json!({ "settings": example_settings() }),
        "FeaturePreviewRequest" => json!({ "feature": { "behaviour": "disabled" } }),
        "ScopeSettings" => example_settings(),
        "TenantFeature" => json!({ "behaviour": "disabled" }),
        "GroupRequest" => json!({ "name": "Finance", "rule": example_rule() }),
        "GroupRulePreviewRequest" => json!({ "rule": example_rule() }),
        // An application's rule to preview.
        "Rule" => example_rule(),
        "AddGroupMember" => json!({ "user_id": "" }),
        "MembershipPreviewRequest" => json!({ "user_id": "", "member": true }),
        "ApplicationInput" => json!({
            "name": "Swept", "client_type": "confidential", "redirect_uris": ["https://app.example/cb"],
            "post_logout_redirect_uris": ["https://app.example/"], "allowed_scopes": ["openid", "email"],
            "first_party": false, "require_two_factor": true, "min_strength": "app", "max_age_seconds": 600,
            "token_alg": "ES256",
        }),
        "ResumeAuthorization" => json!({ "consent": true }),
        "PasskeyName" => json!({ "name": "Swept key" }),
        // A ceremony that does not exist: refused like any answer to an unknown challenge.
        "PasskeyFinish" => json!({ "challenge_id": "no-such-challenge", "credential": {}, "remember_browser": false }),
        _ => return None,
    })
}

/// Positive controls that may answer something other than 2xx, with the reason. A
/// positive control refused with 403 or 404 always fails the test.
const POSITIVE_CONTROL_NON_2XX: &[(&str, u16, &str, &str)] = &[(
    "POST /api/tenants/{tenant_id}/groups",
    409,
    "name_taken",
    "the positive control of PUT /api/groups/{group_id} may already have renamed A's group to the example's name",
)];

// ---------------------------------------------------------------- the document

/// Where a value goes in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Path(String),
    Query(String),
    /// A JSON pointer into the body.
    Body(String),
}

#[derive(Debug, Clone)]
struct Slot {
    place: Place,
    kind: Kind,
}

#[derive(Debug, Clone)]
struct Operation {
    /// `METHOD /path/{template}`.
    key: String,
    method: Method,
    path: String,
    class: Class,
    slots: Vec<Slot>,
    body: Option<Value>,
}

fn lookup<T: Copy>(table: &[(&str, T)], key: &str) -> Option<T> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The schema a `$ref` names, with its name.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> Option<(String, &'a Value)> {
    let r = schema["$ref"].as_str()?;
    let name = r.strip_prefix("#/components/schemas/")?;
    Some((name.to_owned(), &doc["components"]["schemas"][name]))
}

/// The object schema a property holds, directly or as one alternative of a nullable.
fn object_schema<'a>(doc: &'a Value, schema: &'a Value) -> Option<(String, &'a Value)> {
    let candidates =
        std::iter::once(schema).chain(["oneOf", "anyOf", "allOf"].iter().flat_map(|k| schema[*k].as_array()).flatten());
    candidates.filter_map(|s| resolve(doc, s)).find(|(_, s)| s["properties"].is_object())
}

/// The leaves of an object schema: (JSON pointer, `Schema.field`, required all the way
/// down).
fn leaves(
    doc: &Value,
    name: &str,
    schema: &Value,
    prefix: &str,
    required: bool,
    out: &mut Vec<(String, String, bool)>,
) {
    let req: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for (field, sub) in schema["properties"].as_object().into_iter().flatten() {
        let pointer = format!("{prefix}/{field}");
        let is_required = required && req.contains(&field.as_str());
        match object_schema(doc, sub) {
            Some((sub_name, sub_schema)) => leaves(doc, &sub_name, sub_schema, &pointer, is_required, out),
            None => out.push((pointer, format!("{name}.{field}"), is_required)),
        }
    }
}

/// The leaf pointers of a JSON value (objects are walked into).
fn value_leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v.as_object() {
        Some(map) => {
            for (k, sub) in map {
                value_leaves(sub, &format!("{prefix}/{k}"), out);
            }
        }
        None => out.push(prefix.to_owned()),
    }
}

/// Reads every operation of the document into what the sweep needs, or says what the
/// tables do not cover.
fn operations(doc: &Value) -> Result<Vec<Operation>, Vec<String>> {
    const TEACH: &str = "teach the isolation sweep (server/tests/api/isolation.rs)";
    let mut ops = Vec::new();
    let mut gaps = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let key = format!("{} {path}", method.to_uppercase());
            seen.insert(key.clone());
            let Some(class) = lookup(OPERATIONS, &key) else {
                gaps.push(format!("{key}: no class in OPERATIONS; {TEACH}"));
                continue;
            };
            let mut slots = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().expect("parameter name");
                let Some(kind) = lookup(PARAMETERS, name) else {
                    gaps.push(format!("{key}: parameter `{name}` has no kind in PARAMETERS; {TEACH}"));
                    continue;
                };
                let place = match p["in"].as_str() {
                    Some("path") => Place::Path(name.to_owned()),
                    Some("query") => Place::Query(name.to_owned()),
                    other => {
                        gaps.push(format!("{key}: parameter `{name}` is in {other:?}; {TEACH}"));
                        continue;
                    }
                };
                if matches!(place, Place::Path(_)) && kind == Kind::Inert {
                    gaps.push(format!("{key}: path parameter `{name}` is Inert, so the sweep has no value; {TEACH}"));
                }
                if kind != Kind::Inert {
                    slots.push(Slot { place, kind });
                }
            }
            let mut body = None;
            if let Some(content) = op["requestBody"]["content"].as_object() {
                // A merge patch (RFC 7396) is documented with the schema it patches.
                let json = content.get("application/json").or_else(|| content.get("application/merge-patch+json"));
                let schema = &json.unwrap_or(&Value::Null)["schema"];
                let Some((name, schema)) = resolve(doc, schema) else {
                    gaps.push(format!("{key}: the request body is not a named JSON schema; {TEACH}"));
                    continue;
                };
                let Some(example) = example_body(&name) else {
                    gaps.push(format!("{key}: no example body for schema {name} in example_body; {TEACH}"));
                    continue;
                };
                let mut fields = Vec::new();
                leaves(doc, &name, schema, "", true, &mut fields);
                for (pointer, field, required) in &fields {
                    match lookup(BODY_FIELDS, field) {
                        None => gaps.push(format!("{key}: body field {field} has no kind in BODY_FIELDS; {TEACH}")),
                        Some(Kind::Inert) => {}
                        Some(kind) => slots.push(Slot { place: Place::Body(pointer.clone()), kind }),
                    }
                    if *required && example.pointer(pointer).is_none() {
                        gaps.push(format!("{key}: the example {name} lacks the required field {pointer}; {TEACH}"));
                    }
                }
                let mut present = Vec::new();
                value_leaves(&example, "", &mut present);
                for pointer in present {
                    if !fields.iter().any(|(p, _, _)| *p == pointer) {
                        gaps.push(format!("{key}: the example {name} has {pointer}, which the schema lacks; {TEACH}"));
                    }
                }
                body = Some(example);
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
            ops.push(Operation { key, method, path: path.clone(), class, slots, body });
        }
    }
    for (key, _) in OPERATIONS {
        if !seen.contains(*key) {
            gaps.push(format!("OPERATIONS names {key}, which the document does not have; remove it"));
        }
    }
    if gaps.is_empty() { Ok(ops) } else { Err(gaps) }
}

// ---------------------------------------------------------------- the parties

/// The part a user plays, so a request aimed at B's user can be mirrored onto A's user
/// of the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Admin,
    Plain,
    WithFactor,
}

const ROLES: [Role; 3] = [Role::Admin, Role::Plain, Role::WithFactor];

#[derive(Debug, Clone)]
struct Member {
    role: Role,
    id: String,
    username: String,
}

/// Tenant A, tenant B or the host, with one object of every kind the sweep aims at.
#[derive(Debug, Clone)]
struct Party {
    label: &'static str,
    tenant_id: String,
    /// The sign-in name; null for the host.
    tenant_name: Value,
    /// For A these are the users other than the caller, so that no positive control
    /// acts on the caller's own account.
    members: Vec<Member>,
    browser_id: String,
    /// A group of the party's scope, whose members are the party's users.
    group_id: String,
    /// A session of the party's admin (for A: a second one of the caller, so ending it
    /// leaves the sweep's own session alone).
    session_id: String,
    audit_event_id: String,
    application_id: String,
    /// A grant of the party's admin (A: the caller) to the party's application.
    grant_id: String,
    /// A passkey of the party's admin (A: the caller).
    passkey_id: String,
}

impl Party {
    fn member(&self, role: Role) -> &Member {
        self.members.iter().find(|m| m.role == role).expect("every party has every role")
    }

    fn value(&self, kind: Kind, role: Role) -> Value {
        match kind {
            Kind::TenantId => json!(self.tenant_id),
            Kind::UserId => json!(self.member(role).id),
            Kind::BrowserId => json!(self.browser_id),
            Kind::GroupId => json!(self.group_id),
            Kind::ApplicationId => json!(self.application_id),
            Kind::GrantId => json!(self.grant_id),
            Kind::RequestHandle => json!("no-such-request"),
            Kind::SessionId => json!(self.session_id),
            Kind::PasskeyId => json!(self.passkey_id),
            Kind::TenantName => self.tenant_name.clone(),
            Kind::Username | Kind::SearchText => json!(self.member(role).username),
            Kind::UserFilter => json!(self.member(role).id),
            Kind::AuditCursor => json!(self.audit_event_id),
            Kind::Inert => Value::Null,
        }
    }
}

/// One concrete request.
#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

impl Request {
    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.method, self.path);
        if !self.query.is_empty() {
            let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = write!(s, "?{}", q.join("&"));
        }
        if let Some(b) = &self.body {
            let _ = write!(s, " {b}");
        }
        s
    }

    async fn send(&self, client: &Client) -> Resp {
        let mut rb = client.raw(self.method.clone(), &self.path).header("X-Requested-With", "test");
        if !self.query.is_empty() {
            rb = rb.query(&self.query);
        }
        if let Some(b) = &self.body {
            rb = rb.json(b);
        }
        client.send(rb).await
    }
}

/// The request of `op` with each slot filled from the party chosen for it.
fn render(op: &Operation, aims: &[&Party], role: Role) -> Request {
    let mut path = op.path.clone();
    let mut query = Vec::new();
    let mut body = op.body.clone();
    for (slot, party) in op.slots.iter().zip(aims) {
        let value = party.value(slot.kind, role);
        match &slot.place {
            Place::Path(name) => {
                path = path.replace(&format!("{{{name}}}"), value.as_str().expect("path values are strings"));
            }
            Place::Query(name) => {
                query.push((name.clone(), value.as_str().expect("query values are strings").to_owned()))
            }
            Place::Body(pointer) => {
                *body.as_mut().and_then(|b| b.pointer_mut(pointer)).expect("the example has every slot") = value;
            }
        }
    }
    Request { method: op.method.clone(), path, query, body }
}

/// The requests aimed at `target` (B or the host): every slot at the target; each
/// object-naming slot alone at the target with the rest at A (an object of B reached
/// through the caller's own tenant); and only the cursors and search texts at the target.
/// Each comes with whether it names an object outside A.
fn variants(op: &Operation, a: &Party, target: &Party) -> Vec<(Request, Role, bool)> {
    let n = op.slots.len();
    let roles: &[Role] = if op.slots.iter().any(|s| s.kind.per_user()) { &ROLES } else { &ROLES[..1] };
    let refs: Vec<usize> = (0..n).filter(|&i| op.slots[i].kind.names_object()).collect();
    let mut out: Vec<(Request, Role, bool)> = Vec::new();
    for &role in roles {
        let mut choices: Vec<Vec<bool>> = vec![vec![true; n]];
        if refs.len() >= 2 {
            for &r in &refs {
                choices.push((0..n).map(|i| i == r).collect());
            }
        }
        if !refs.is_empty() && refs.len() < n {
            choices.push((0..n).map(|i| !op.slots[i].kind.names_object()).collect());
        }
        for choice in choices {
            let aims: Vec<&Party> = choice.iter().map(|&t| if t { target } else { a }).collect();
            let elsewhere = refs.iter().any(|&r| choice[r]);
            let req = render(op, &aims, role);
            if !out.iter().any(|(o, _, _)| o.describe() == req.describe()) {
                out.push((req, role, elsewhere));
            }
        }
        // An optional tenant in the query, left out, means the host (or every scope).
        if target.tenant_id == "host" {
            for slot in &op.slots {
                if let (Place::Query(name), Kind::TenantId) = (&slot.place, slot.kind) {
                    let mut req = render(op, &vec![target; n], role);
                    req.query.retain(|(k, _)| k != name);
                    if !out.iter().any(|(o, _, _)| o.describe() == req.describe()) {
                        out.push((req, role, true));
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------- checks

/// Whether `resp` is a refusal in the API's error shape: 403 `forbidden` or 404
/// `not_found` (401 `invalid_credentials` for the public sign-in).
fn refusal_problem(resp: &Resp, class: Class) -> Option<String> {
    let allowed: &[(StatusCode, &str)] = match class {
        Class::Public => &[(StatusCode::UNAUTHORIZED, "invalid_credentials")],
        _ => &[(StatusCode::FORBIDDEN, "forbidden"), (StatusCode::NOT_FOUND, "not_found")],
    };
    let ct = resp.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let code = body["error"].as_str().unwrap_or("");
    let shape_ok = ct.starts_with("application/json")
        && body["message"].as_str().is_some_and(|m| !m.is_empty())
        && body.as_object().is_some_and(|o| o.keys().all(|k| ["error", "message", "field"].contains(&k.as_str())));
    if shape_ok && allowed.iter().any(|(s, c)| *s == resp.status && *c == code) {
        None
    } else {
        Some(format!("expected a refusal {allowed:?}, got {} {}", resp.status, resp.text()))
    }
}

/// Ids and addresses of B and the host that tenant A must never be shown. The host
/// admin's id is not among them: A's own audit trail rightly names the host admin who
/// created A's users.
fn secrets_of(parties: &[&Party], emails: &[String], events: &[String], host_admin_id: &str) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = emails.iter().cloned().collect();
    out.extend(events.iter().cloned());
    for p in parties {
        if p.tenant_id != "host" {
            out.insert(p.tenant_id.clone());
        }
        out.insert(p.browser_id.clone());
        out.insert(p.group_id.clone());
        out.insert(p.application_id.clone());
        out.insert(p.grant_id.clone());
        out.insert(p.passkey_id.clone());
        out.extend(p.members.iter().map(|m| m.id.clone()).filter(|id| id != host_admin_id));
    }
    out
}

fn leaks(resp: &Resp, secrets: &BTreeSet<String>) -> Vec<String> {
    let text = resp.text();
    secrets.iter().filter(|s| text.contains(s.as_str())).cloned().collect()
}

// ---------------------------------------------------------------- setup

/// A group "staff" of a scope (`None`: the host) with the given members, made by the host
/// admin; returns its id.
async fn staff_group(app: &TestApp, tenant_id: Option<&str>, members: &[&str]) -> String {
    let path = match tenant_id {
        Some(t) => format!("/api/tenants/{t}/groups"),
        None => "/api/host/groups".to_owned(),
    };
    let g = app.post_json(&path, &json!({ "name": "staff" })).await.assert_status(StatusCode::CREATED).json();
    let id = g["id"].as_str().expect("id").to_owned();
    for user in members {
        app.post_json(&format!("/api/groups/{id}/members"), &json!({ "user_id": user }))
            .await
            .assert_status(StatusCode::OK);
    }
    id
}

/// A user who signs in with password and authenticator and has this browser
/// remembered: returns the signed-in client, the authenticator secret and the browser id.
async fn with_remembered_browser(app: &TestApp, tenant: Option<&str>, username: &str) -> (Client, String, String) {
    let c = app.new_client();
    c.sign_in_ok(tenant, username, PASSWORD).await;
    let secret = add_authenticator_in_account(app, &c).await.secret;
    c.put_json("/api/account/two-factor", &json!({ "enabled": true })).await.assert_status(StatusCode::OK);
    c.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let body = c.sign_in(tenant, username, PASSWORD).await.assert_status(StatusCode::OK).json();
    assert_eq!(body["status"], "requires_two_factor", "{body}");
    assert_signed_in(&verify(&c, "authenticator", &next_totp(app, &secret), true).await);
    let list = c.get("/api/account/browsers").await.assert_status(StatusCode::OK).json();
    let id = list[0]["id"].as_str().expect("a remembered browser").to_owned();
    (c, secret, id)
}

/// A passkey row of `user_id`, stored directly: the sweep aims at its id, and a
/// registration ceremony would only add a software authenticator to every party. The
/// user's passkey count is left alone, so the factors the sweep signs in with stay the
/// strongest and reauthentication by authenticator code still reaches changes.
async fn stored_passkey(app: &TestApp, user_id: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_id, passkey_enc, name, aaguid, sign_count, backup_eligible, \
         backup_state, created_at) VALUES ($1, $2, $3, 'not a key', 'Swept key', \
         '00000000-0000-0000-0000-000000000000', 0, 0, 0, 0)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(format!("credential-{id}"))
    .execute(&app.running.state.db().pool)
    .await
    .expect("insert a passkey");
    id
}

/// An application of `scope` (a tenant id or `host`), created by the host admin, and a
/// grant of `user_id` to it, stored as a sign-in through it would leave it.
async fn application_with_grant(app: &TestApp, scope: &str, user_id: &str) -> (String, String) {
    let path = if scope == "host" {
        "/api/host/applications".to_owned()
    } else {
        format!("/api/tenants/{scope}/applications")
    };
    let body = json!({
        "name": format!("App of {scope}"), "client_type": "confidential", "redirect_uris": ["https://app.example/cb"],
        "allowed_scopes": ["openid"],
    });
    let created = app.post_json(&path, &body).await.assert_status(StatusCode::CREATED).json();
    let application_id = created["application"]["id"].as_str().expect("id").to_owned();
    let grant_id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO oidc_grants (id, user_id, application_id, scopes, created_at, last_used_at) \
         VALUES ($1, $2, $3, 'openid', 0, 0)",
    )
    .bind(&grant_id)
    .bind(user_id)
    .bind(&application_id)
    .execute(&app.running.state.db().pool)
    .await
    .expect("a grant");
    (application_id, grant_id)
}

/// The id of the session `client` is signed in with.
async fn current_session(client: &Client) -> String {
    let list = client.get("/api/account/sessions").await.assert_status(StatusCode::OK).json();
    let current = list.as_array().expect("a list").iter().find(|s| s["current"] == true).expect("a current session");
    current["id"].as_str().expect("an id").to_owned()
}

/// Another session of the caller (A's admin), from a browser of its own.
async fn second_session(app: &TestApp, secret: &str) -> String {
    let other = app.new_client();
    sign_in_caller(app, &other, secret).await;
    current_session(&other).await
}

/// Controls that destroy what later controls aim at run last, each group in this order:
/// a group's member removed, then users, groups and applications deleted, after every
/// other control that uses them; tenant A suspended, then deleted, after every other
/// host control.
fn destroys(key: &str) -> u8 {
    match key {
        // A group's member goes before the group, and before the user.
        "DELETE /api/groups/{group_id}/members/{user_id}" | "POST /api/tenants/{tenant_id}/suspend" => 1,
        // The passkey is renamed before it is removed.
        "DELETE /api/account/passkeys/{passkey_id}" => 1,
        "DELETE /api/users/{user_id}"
        | "DELETE /api/groups/{group_id}"
        | "DELETE /api/applications/{application_id}" => 2,
        "DELETE /api/tenants/{tenant_id}" => 3,
        _ => 0,
    }
}

async fn latest_event(app: &TestApp, scope: &str) -> String {
    let page = app.get(&format!("/api/audit?tenant_id={scope}&limit=1")).await.assert_status(StatusCode::OK).json();
    page["items"][0]["id"].as_str().expect("an audit event").to_owned()
}

/// Ends the freshness of a sign-in, so that the caller's sensitive account changes
/// (removing a factor, turning 2FA off) stay refused during the sweep, as they would be
/// for anyone who did not just prove both factors.
fn outlast_reauthentication(app: &TestApp) {
    advance_seconds(app, 6 * 60);
}

/// Signs the caller (A's tenant admin) in again after the sweep's own sign-out: with the
/// remembered browser if it is still there, else with the authenticator.
async fn sign_in_caller(app: &TestApp, caller: &Client, secret: &str) {
    let body = caller.sign_in(Some("alpha"), "admin", PASSWORD).await.assert_status(StatusCode::OK).json();
    if body["status"] != "signed_in" {
        assert_eq!(body["status"], "requires_two_factor", "{body}");
        assert_signed_in(&verify(caller, "authenticator", &next_totp(app, secret), true).await);
    }
    outlast_reauthentication(app);
}

/// What the host admin sees of B and the host, and what B's and host users see of their
/// own accounts, in one comparable map.
async fn snapshot(app: &TestApp, b: &Party, witnesses: &[(String, Client)]) -> BTreeMap<String, Value> {
    let mut s = BTreeMap::new();
    for (label, path) in [
        ("tenants", "/api/tenants?per_page=100".to_owned()),
        ("tenant B", format!("/api/tenants/{}", b.tenant_id)),
        ("settings of B", format!("/api/tenants/{}/settings", b.tenant_id)),
        ("host settings", "/api/host/settings".to_owned()),
        ("users of B", format!("/api/tenants/{}/users?per_page=100", b.tenant_id)),
        ("host users", "/api/host/users?per_page=100".to_owned()),
        ("groups of B", format!("/api/tenants/{}/groups", b.tenant_id)),
        ("host groups", "/api/host/groups".to_owned()),
    ] {
        s.insert(label.to_owned(), app.get(&path).await.assert_status(StatusCode::OK).json());
    }
    let mut ids = Vec::new();
    for scope in ["users of B", "host users"] {
        for u in s[scope]["items"].as_array().expect("items") {
            ids.push(u["id"].as_str().expect("id").to_owned());
        }
    }
    for id in ids {
        let resp = app.get(&format!("/api/users/{id}/policy")).await.assert_status(StatusCode::OK);
        s.insert(format!("policy of {id}"), resp.json());
    }
    for (scope, key) in [("groups of B", "members of B's groups"), ("host groups", "members of host groups")] {
        let mut members = Vec::new();
        for g in s[scope].as_array().expect("groups") {
            let id = g["id"].as_str().expect("id");
            members.push(app.get(&format!("/api/groups/{id}/members")).await.assert_status(StatusCode::OK).json());
        }
        s.insert(key.to_owned(), Value::Array(members));
    }
    for (scope, key) in [(b.tenant_id.as_str(), "audit of B"), ("host", "audit of the host")] {
        let page =
            app.get(&format!("/api/audit?tenant_id={scope}&limit=200")).await.assert_status(StatusCode::OK).json();
        assert!(page["next_before"].is_null(), "more than one page of audit events");
        s.insert(key.to_owned(), page["items"].clone());
    }
    for (who, client) in witnesses {
        // Sessions must survive: an ended session answers 401 here.
        let resp = client.get("/api/account").await;
        let mut body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        // Freshness runs out with the clock, whatever the sweep does.
        if let Some(o) = body.as_object_mut() {
            o.remove("reauthenticated_until");
        }
        s.insert(format!("account of {who}"), json!({ "status": resp.status.as_u16(), "body": body }));
        let resp = client.get("/api/account/browsers").await;
        s.insert(format!("browsers of {who}"), json!({ "status": resp.status.as_u16(), "body": resp.text() }));
    }
    s
}

/// Compares two audit trails: nothing removed or altered, and the only new events are
/// the `sign_in.failed` events the sweep's own wrong-password sign-ins caused, which the
/// sign-in records by design for any caller.
fn audit_problems(label: &str, before: &Value, after: &Value, expected_failures: &mut Vec<String>) -> Vec<String> {
    let before = before.as_array().expect("events");
    let after = after.as_array().expect("events");
    let mut problems = Vec::new();
    for e in before {
        if !after.contains(e) {
            problems.push(format!("{label}: the event {e} was removed or altered"));
        }
    }
    for e in after.iter().filter(|e| !before.contains(e)) {
        let target = e["target"].as_str().unwrap_or("");
        let pos = expected_failures.iter().position(|t| *t == target);
        match pos {
            Some(i) if e["action"] == "sign_in.failed" => {
                expected_failures.remove(i);
            }
            _ => problems.push(format!("{label}: a new event {e}")),
        }
    }
    problems
}

// ---------------------------------------------------------------- the sweep

#[tokio::test]
async fn tenant_admin_cannot_reach_another_tenant_or_the_host_through_any_route() {
    // Wrong codes in the sweep's example bodies must not lock the caller out.
    let app = admin_app(Options { lockout_max_failures: Some(1000), ..Options::default() }).await;
    let host_admin_id = app.me().await.assert_status(StatusCode::OK).json()["id"].as_str().unwrap().to_owned();
    // What the sweep cannot cover fails before any setup.
    let doc = app.get("/api/openapi.json").await.assert_status(StatusCode::OK).json();
    let ops = operations(&doc).unwrap_or_else(|gaps| panic!("the sweep cannot cover the API:\n{}", gaps.join("\n")));

    // Two tenants built alike: an admin (in A: the caller, and a second admin), a plain
    // user and a user with a confirmed second factor.
    let mut tenants = Vec::new();
    for name in ["alpha", "bravo"] {
        let t = app.create_tenant(name).await;
        let admin = create_user(&app, &t.id, "admin", Some(&format!("admin@{name}.test"))).await;
        app.make_tenant_admin(&t.id, &admin.id).await;
        let admin2 = create_user(&app, &t.id, "admin2", None).await;
        app.make_tenant_admin(&t.id, &admin2.id).await;
        let plain = create_user(&app, &t.id, "plain", None).await;
        let factor = create_user(&app, &t.id, "factor", Some(&format!("factor@{name}.test"))).await;
        app.give_factor(&factor.id).await;
        tenants.push((t, admin, admin2, plain, factor));
    }
    let mut host_members = Vec::new();
    for (username, role) in [("hostplain", Role::Plain), ("hostfactor", Role::WithFactor)] {
        let body = json!({ "username": username, "password": PASSWORD, "email": format!("{username}@host.test") });
        let u: twofold_policy::wire::User =
            app.post_json("/api/host/users", &body).await.assert_status(StatusCode::CREATED).typed();
        if role == Role::WithFactor {
            app.give_factor(&u.id).await;
        }
        host_members.push(Member { role, id: u.id, username: username.to_owned() });
    }
    host_members.push(Member { role: Role::Admin, id: host_admin_id.clone(), username: "admin".to_owned() });

    // Browsers remembered for the caller, for B's admin and for a host user; the caller's
    // session is the sweep's.
    let (caller, caller_secret, caller_browser) = with_remembered_browser(&app, Some("alpha"), "admin").await;
    let (b_admin, _, b_browser) = with_remembered_browser(&app, Some("bravo"), "admin").await;
    let (host_plain, _, host_browser) = with_remembered_browser(&app, None, "hostplain").await;
    let mut witnesses = vec![("bravo/admin".to_owned(), b_admin), ("host/hostplain".to_owned(), host_plain)];
    for (tenant, username) in [(Some("bravo"), "plain"), (Some("bravo"), "factor"), (None, "hostfactor")] {
        let c = app.new_client();
        c.sign_in_ok(tenant, username, PASSWORD).await;
        witnesses.push((format!("{}/{username}", tenant.unwrap_or("host")), c));
    }

    let [(ta, _, a_admin2, a_plain, a_factor), (tb, b_admin_user, _, b_plain, b_factor)] =
        <[_; 2]>::try_from(tenants).expect("two tenants");
    let member =
        |role: Role, u: &twofold_policy::wire::User| Member { role, id: u.id.clone(), username: u.username.clone() };
    let caller_id = caller.me().await.assert_status(StatusCode::OK).json()["id"].as_str().unwrap().to_owned();
    let (a_app, a_grant) = application_with_grant(&app, &ta.id, &caller_id).await;
    let (b_app, b_grant) = application_with_grant(&app, &tb.id, &b_admin_user.id).await;
    let hostplain_id = host_members.iter().find(|m| m.role == Role::Plain).expect("a plain host user").id.clone();
    let (host_app, host_grant) = application_with_grant(&app, "host", &hostplain_id).await;
    let mut a = Party {
        label: "A",
        tenant_id: ta.id.clone(),
        tenant_name: json!("alpha"),
        members: vec![
            member(Role::Admin, &a_admin2),
            member(Role::Plain, &a_plain),
            member(Role::WithFactor, &a_factor),
        ],
        browser_id: caller_browser,
        group_id: staff_group(&app, Some(&ta.id), &[&a_admin2.id, &a_plain.id, &a_factor.id]).await,
        session_id: second_session(&app, &caller_secret).await,
        audit_event_id: latest_event(&app, &ta.id).await,
        application_id: a_app,
        grant_id: a_grant,
        passkey_id: stored_passkey(&app, &caller_id).await,
    };
    let b = Party {
        label: "B",
        tenant_id: tb.id.clone(),
        tenant_name: json!("bravo"),
        members: vec![
            member(Role::Admin, &b_admin_user),
            member(Role::Plain, &b_plain),
            member(Role::WithFactor, &b_factor),
        ],
        browser_id: b_browser,
        group_id: staff_group(&app, Some(&tb.id), &[&b_admin_user.id, &b_plain.id, &b_factor.id]).await,
        session_id: current_session(&witnesses[0].1).await,
        audit_event_id: latest_event(&app, &tb.id).await,
        application_id: b_app,
        grant_id: b_grant,
        passkey_id: stored_passkey(&app, &b_admin_user.id).await,
    };
    let host_ids: Vec<String> = host_members.iter().map(|m| m.id.clone()).collect();
    let host_ids: Vec<&str> = host_ids.iter().map(String::as_str).collect();
    let host_group = staff_group(&app, None, &host_ids).await;
    let host = Party {
        label: "host",
        tenant_id: "host".to_owned(),
        tenant_name: Value::Null,
        members: host_members,
        browser_id: host_browser,
        group_id: host_group,
        session_id: current_session(&witnesses[1].1).await,
        audit_event_id: latest_event(&app, "host").await,
        application_id: host_app,
        grant_id: host_grant,
        passkey_id: stored_passkey(&app, &hostplain_id).await,
    };
    outlast_reauthentication(&app);

    let before = snapshot(&app, &b, &witnesses).await;
    // A witness that was already signed out, or a browser list already empty, would
    // compare equal after any damage.
    for (who, _) in &witnesses {
        assert_eq!(before[&format!("account of {who}")]["status"], 200, "{who} is not signed in");
    }
    for (who, browser) in [("bravo/admin", &b.browser_id), ("host/hostplain", &host.browser_id)] {
        let list = &before[&format!("browsers of {who}")]["body"];
        assert!(list.as_str().is_some_and(|l| l.contains(browser.as_str())), "{who}: {list}");
    }
    let mut events = Vec::new();
    for key in ["audit of B", "audit of the host"] {
        events.extend(before[key].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    }
    let emails: Vec<String> = ["admin@bravo.test", "factor@bravo.test", "hostplain@host.test", "hostfactor@host.test"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let secrets = secrets_of(&[&b, &host], &emails, &events, &host_admin_id);

    // The sweep.
    let mut problems: Vec<String> = Vec::new();
    let mut expected_failures: Vec<String> = Vec::new();
    let mut controls: Vec<(&Operation, Role)> = Vec::new();
    let mut refused_per_op: BTreeMap<&str, usize> = BTreeMap::new();
    let mut sent = 0;
    for op in &ops {
        for target in [&b, &host] {
            // An operation that takes no ids is the same request whatever it aims at.
            if op.slots.is_empty() && target.label == "host" {
                continue;
            }
            for (req, role, elsewhere) in variants(op, &a, target) {
                let resp = req.send(&caller).await;
                sent += 1;
                let what = format!("{} (aimed at {}): {}", op.key, target.label, req.describe());
                if resp.status.is_server_error() {
                    problems.push(format!("{what}: server error {} {}", resp.status, resp.text()));
                }
                let leaked = leaks(&resp, &secrets);
                if !leaked.is_empty() {
                    problems.push(format!("{what}: the answer shows {leaked:?} of B or the host: {}", resp.text()));
                }
                let must_refuse = op.class == Class::Host || elsewhere;
                if must_refuse {
                    match refusal_problem(&resp, op.class) {
                        Some(p) => problems.push(format!("{what}: {p}")),
                        None => *refused_per_op.entry(op.key.as_str()).or_default() += 1,
                    }
                    if op.class != Class::Public && !controls.iter().any(|(o, r)| o.key == op.key && *r == role) {
                        controls.push((op, role));
                    }
                } else if op.class == Class::Tenant && matches!(resp.status.as_u16(), 401 | 403 | 404) {
                    problems
                        .push(format!("{what}: only a cursor or search text points outside A, yet {}", resp.text()));
                }
                if op.class == Class::Public
                    && elsewhere
                    && let Some(body) = &req.body
                {
                    // A wrong password for an existing user of B or the host is recorded
                    // in that user's own trail; one for a name nobody has, against the
                    // scope as `user:unknown`: every failing sign-in costs one audit write.
                    let refused_password =
                        serde_json::from_slice::<Value>(&resp.body).is_ok_and(|v| v["error"] == "invalid_credentials");
                    for (tenant_name, list) in [(&b.tenant_name, "users of B"), (&host.tenant_name, "host users")] {
                        if body["tenant"] != *tenant_name {
                            continue;
                        }
                        let mut matched = false;
                        for u in before[list]["items"].as_array().expect("items") {
                            if body["username"] == u["username"] {
                                expected_failures.push(format!("user:{}", u["id"].as_str().expect("id")));
                                matched = true;
                            }
                        }
                        if !matched && refused_password {
                            expected_failures.push("user:unknown".to_owned());
                        }
                    }
                }
                // The sweep's own sign-out (or anything else) may end the caller's session;
                // sign in again so later refusals are about access, not a missing session.
                if caller.me().await.status == StatusCode::UNAUTHORIZED {
                    assert!(op.class == Class::Own, "{what} ended the caller's session");
                    sign_in_caller(&app, &caller, &caller_secret).await;
                }
            }
        }
        if op.class != Class::Own && op.class != Class::Public && !refused_per_op.contains_key(op.key.as_str()) {
            problems.push(format!("{}: no request aimed at B or the host was refused", op.key));
        }
    }

    // Nothing of B or the host changed.
    let after = snapshot(&app, &b, &witnesses).await;
    for (key, was) in &before {
        let now = after.get(key).unwrap_or(&Value::Null);
        if key.starts_with("audit of") {
            problems.extend(audit_problems(key, was, now, &mut expected_failures));
        } else if was != now {
            problems.push(format!("{key} changed:\n  before {was}\n  after  {now}"));
        }
    }
    if !expected_failures.is_empty() {
        problems.push(format!("failed sign-ins that left no audit event: {expected_failures:?}"));
    }
    for key in after.keys().filter(|k| !before.contains_key(*k)) {
        problems.push(format!("{key} is new: {}", after[key]));
    }

    // Positive controls: the same requests aimed at A. Tenant and own-account operations
    // must get through for the caller; host operations must be refused to the caller even
    // in A and get through for a host admin. They run after the comparison because they
    // change A and, for host operations, the host.
    let caller_browsers = caller.get("/api/account/browsers").await.assert_status(StatusCode::OK).json();
    a.browser_id = match caller_browsers[0]["id"].as_str() {
        Some(id) => id.to_owned(),
        // The sweep's own "forget all browsers" took it: remember this browser again.
        None => {
            caller.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
            let body = caller.sign_in(Some("alpha"), "admin", PASSWORD).await.assert_status(StatusCode::OK).json();
            assert_eq!(body["status"], "requires_two_factor", "{body}");
            assert_signed_in(&verify(&caller, "authenticator", &next_totp(&app, &caller_secret), true).await);
            let list = caller.get("/api/account/browsers").await.assert_status(StatusCode::OK).json();
            list[0]["id"].as_str().expect("a remembered browser").to_owned()
        }
    };
    // The sweep's "end other sessions" may have taken the caller's second session.
    let caller_sessions = caller.get("/api/account/sessions").await.assert_status(StatusCode::OK).json();
    if !caller_sessions.as_array().is_some_and(|l| l.iter().any(|s| s["id"] == a.session_id.as_str())) {
        a.session_id = second_session(&app, &caller_secret).await;
    }
    // Removing one's own passkey needs a fresh session, as every factor removal does.
    crate::flows::reauthenticate(&app, &caller, &caller_secret).await;
    // Tenant and own-account controls first: the host's (a new ceiling for A, then its
    // suspension and deletion) come last, and within each, what destroys comes last.
    controls.sort_by_key(|(op, _)| (op.class == Class::Host, destroys(&op.key)));
    // Host operations must be refused to A's admin even aimed at A. All are tried before
    // any host control runs: one of those suspends A, which ends the caller's session.
    for (op, role) in controls.iter().filter(|(op, _)| op.class == Class::Host) {
        let req = render(op, &vec![&a; op.slots.len()], *role);
        let refused = req.send(&caller).await;
        if let Some(p) = refusal_problem(&refused, op.class) {
            problems.push(format!("positive control {} (aimed at A), sent by A's tenant admin: {p}", op.key));
        }
    }
    let mut seen = BTreeSet::new();
    let mut summary = Vec::new();
    for (op, role) in controls {
        let aims = vec![&a; op.slots.len()];
        let req = render(op, &aims, role);
        if !seen.insert(req.describe()) {
            continue;
        }
        let what = format!("positive control {} (aimed at A): {}", op.key, req.describe());
        let resp = if op.class == Class::Host { req.send(&app.client).await } else { req.send(&caller).await };
        let status = resp.status.as_u16();
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let code = body["error"].as_str().unwrap_or("").to_owned();
        summary.push(format!("{status} {}", op.key));
        if matches!(status, 401 | 403 | 404) || resp.status.is_server_error() {
            problems.push(format!("{what}: refused {status} {}", resp.text()));
        } else if !resp.status.is_success()
            && !POSITIVE_CONTROL_NON_2XX.iter().any(|(k, s, c, _)| *k == op.key && *s == status && *c == code)
        {
            problems.push(format!(
                "{what}: {status} {}; if this is right, list it in POSITIVE_CONTROL_NON_2XX with the reason",
                resp.text()
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "tenant isolation sweep ({sent} requests aimed at B and the host): {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The sweep must have done real work: a sweep that sent nothing would pass the above.
    let admin_ops = ops.iter().filter(|o| matches!(o.class, Class::Tenant | Class::Host)).count();
    assert!(admin_ops >= 20 && sent >= 100, "{admin_ops} administration operations, {sent} requests");
    assert!(summary.len() >= admin_ops, "positive controls: {summary:?}");
}

/// A route the router serves but the document lacks would escape the sweep, which works
/// from the document. The router cannot list its routes, so this reads the `.route(..)`
/// calls of the route modules.
#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/openapi.json").await.assert_status(StatusCode::OK).json();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().expect("item").keys().map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> =
        std::fs::read_dir(src.join("routes")).expect("routes").map(|e| e.expect("entry").path()).collect();
    files.push(src.join("openapi.rs"));
    files.extend(std::fs::read_dir(src.join("oidc")).expect("oidc").map(|e| e.expect("entry").path()));
    let mut served = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(\"") {
            rest = &rest[at + 8..];
            let end = rest.find('"').expect("a closing quote");
            let path = &rest[..end];
            // The OpenID Connect protocol endpoints (discovery, authorize, token, ...)
            // are specified by OpenID Connect, not by this API's document.
            if path.starts_with("/oauth2/") || path.starts_with("/.well-known/") {
                continue;
            }
            // The handlers of one route: up to the end of the `.route(..)` call's line.
            let line = rest[end..].lines().next().unwrap_or("");
            let mut found = 0;
            for method in ["get", "post", "put", "delete", "patch"] {
                let ident = |i: usize| line.as_bytes().get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
                for (i, _) in line.match_indices(&format!("{method}(")) {
                    if i == 0 || !ident(i - 1) {
                        served.insert(format!("{} {path}", method.to_uppercase()));
                        found += 1;
                    }
                }
            }
            assert!(found > 0, "{}: cannot read the methods of route {path}: {line}", file.display());
        }
    }
    // The document itself is not an operation of the API.
    served.remove("GET /api/openapi.json");
    assert!(served.len() >= 50, "only {} routes read from the source: {served:?}", served.len());
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(missing.is_empty(), "routes not in the OpenAPI document (add them to openapi.rs): {missing:?}");
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(unserved.is_empty(), "documented operations no route serves: {unserved:?}");
}
