//! The admin API of applications (host admins: any scope; tenant admins: their own)
//! and the account API of a user's grants.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use twofold_policy::authz::{Action, Target};
use twofold_policy::wire::{
    AccountGrant, AccountGrantList, Application, ApplicationInput, ApplicationList, ApplicationWithSecret, ClientType,
    ErrorBody, ImpactPreview,
};
use twofold_policy::{ApplicationRule, Rule, Strength};

use super::Issuer;
use super::authorize::uris;
use crate::app::{AppState, domain_of};
use crate::auth::{self, Authenticated};
use crate::clock::rfc3339;
use crate::db::oidc::{self as odb, ApplicationRow};
use crate::db::{self, HOST_SCOPE};
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Path};
use crate::population::{self, GroupChange, LoadedScope};
use crate::routes::account::Caller;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/host/applications", get(list_host_applications).post(create_host_application))
        .route("/api/tenants/{tenant_id}/applications", get(list_tenant_applications).post(create_tenant_application))
        // One path, two calls: axum merges their methods.
        .route("/api/applications/{application_id}", get(get_application).put(put_application))
        .route("/api/applications/{application_id}", delete(delete_application))
        .route("/api/applications/{application_id}/secret", post(rotate_secret))
        .route("/api/applications/{application_id}/preview", post(preview_rule))
        .route("/api/account/applications", get(list_grants))
        .route("/api/account/applications/{grant_id}", delete(revoke_grant))
}

async fn view(state: &AppState, a: &ApplicationRow) -> AppResult<Application> {
    let issuer = Issuer::of_scope(state, &a.scope_key).await?;
    Ok(Application {
        id: a.id.clone(),
        client_id: a.id.clone(),
        tenant_id: (a.scope_key != HOST_SCOPE).then(|| a.scope_key.clone()),
        issuer: issuer.url,
        name: a.name.clone(),
        client_type: ClientType::parse(&a.client_type).unwrap_or(ClientType::Confidential),
        redirect_uris: uris(&a.redirect_uris),
        post_logout_redirect_uris: uris(&a.post_logout_redirect_uris),
        allowed_scopes: super::split_scopes(&a.allowed_scopes),
        first_party: a.first_party != 0,
        require_two_factor: a.require_two_factor != 0,
        min_strength: a.min_strength.as_deref().and_then(twofold_policy::Strength::parse),
        max_age_seconds: a.max_age_seconds.and_then(|s| u32::try_from(s).ok()),
        token_alg: twofold_policy::wire::TokenAlg::parse(&a.token_alg).unwrap_or_default(),
        created_at: rfc3339(a.created_at),
        updated_at: rfc3339(a.updated_at),
    })
}

/// A redirect URI Twofold will send codes to: absolute, no fragment, HTTPS, or plain
/// HTTP on a loopback address (native and development clients).
fn check_uri(field: &str, raw: &str) -> AppResult<()> {
    let bad = |m: &str| AppError::invalid_field(field, format!("{raw:?}: {m}"));
    let url = url::Url::parse(raw).map_err(|_| bad("not an absolute URL"))?;
    if url.fragment().is_some() || url.cannot_be_a_base() || url.as_str() != raw && format!("{raw}/") != url.as_str() {
        return Err(bad("must be an absolute URL without a fragment, written in normal form"));
    }
    let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
        || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(bad("must use https (http only on a loopback address)")),
    }
}

/// Checks an application's fields and turns them into its stored form.
fn validated(input: &ApplicationInput) -> AppResult<(String, String, String, String)> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AppError::invalid_field("name", "a name has 1 to 200 printable characters"));
    }
    if input.redirect_uris.is_empty() || input.redirect_uris.len() > 20 {
        return Err(AppError::invalid_field("redirect_uris", "give 1 to 20 redirect URIs"));
    }
    for u in &input.redirect_uris {
        check_uri("redirect_uris", u)?;
    }
    if input.post_logout_redirect_uris.len() > 20 {
        return Err(AppError::invalid_field("post_logout_redirect_uris", "give at most 20 URIs"));
    }
    for u in &input.post_logout_redirect_uris {
        check_uri("post_logout_redirect_uris", u)?;
    }
    for s in &input.allowed_scopes {
        if !super::SCOPES.contains(&s.as_str()) {
            return Err(AppError::invalid_field("allowed_scopes", format!("unknown scope {s:?}")));
        }
    }
    let scopes = super::split_scopes(&input.allowed_scopes.join(" "));
    if !scopes.iter().any(|s| s == "openid") {
        return Err(AppError::invalid_field("allowed_scopes", "openid is required"));
    }
    if input.max_age_seconds.is_some_and(|s| s == 0 || s > 31_536_000) {
        return Err(AppError::invalid_field("max_age_seconds", "between 1 second and a year"));
    }
    let json = |v: &Vec<String>| serde_json::to_string(v).map_err(|e| AppError::Internal(e.into()));
    Ok((
        name.to_owned(),
        json(&input.redirect_uris)?,
        json(&input.post_logout_redirect_uris)?,
        super::join_scopes(&scopes),
    ))
}

fn row_from(
    id: String,
    scope_key: String,
    input: &ApplicationInput,
    secret_hash: Option<String>,
    created_at: i64,
    now: i64,
) -> AppResult<ApplicationRow> {
    let (name, redirect_uris, post_logout_redirect_uris, allowed_scopes) = validated(input)?;
    Ok(ApplicationRow {
        id,
        scope_key,
        name,
        client_type: input.client_type.as_str().to_owned(),
        secret_hash,
        redirect_uris,
        post_logout_redirect_uris,
        allowed_scopes,
        first_party: db::b(input.first_party),
        require_two_factor: db::b(input.require_two_factor),
        min_strength: input.min_strength.map(|s| s.as_str().to_owned()),
        max_age_seconds: input.max_age_seconds.map(i64::from),
        token_alg: input.token_alg.as_str().to_owned(),
        created_at,
        updated_at: now,
    })
}

/// An application's 2FA rule as the policy resolves it (DESIGN.md section 5). The
/// authorization endpoint reads a `min_strength` alone as a demand for a second factor
/// of that strength (`twofold_policy::authorization::decide`), so the what-if and the preview read it so too.
pub fn application_rule(a: &ApplicationRow) -> ApplicationRule {
    ApplicationRule {
        id: a.id.clone(),
        name: a.name.clone(),
        rule: Rule {
            require_two_factor: a.require_two_factor != 0 || a.min_strength.is_some(),
            min_strength: a.min_strength.as_deref().and_then(Strength::parse),
        },
        max_age_seconds: a.max_age_seconds.and_then(|s| u32::try_from(s).ok()),
    }
}

/// The audit view of an application: every field but the secret's hash.
fn audited(a: &ApplicationRow) -> serde_json::Value {
    serde_json::json!({
        "name": a.name, "client_type": a.client_type, "redirect_uris": uris(&a.redirect_uris),
        "post_logout_redirect_uris": uris(&a.post_logout_redirect_uris), "allowed_scopes": a.allowed_scopes,
        "first_party": a.first_party != 0, "require_two_factor": a.require_two_factor != 0,
        "min_strength": a.min_strength, "max_age_seconds": a.max_age_seconds, "token_alg": a.token_alg,
    })
}

fn new_secret(client_type: ClientType) -> (Option<String>, Option<String>) {
    match client_type {
        ClientType::Confidential => {
            let secret = auth::new_token();
            let hash = super::token::secret_hash(&secret);
            (Some(secret), Some(hash))
        }
        ClientType::Public => (None, None),
    }
}

async fn list_in(state: &AppState, who: &Authenticated, scope_key: &str) -> AppResult<Json<ApplicationList>> {
    state.authorize(who, Action::ReadApplications, Target::Domain(domain_of(scope_key)))?;
    let mut items = Vec::new();
    for a in odb::list_applications(&state.db().pool, scope_key).await? {
        items.push(view(state, &a).await?);
    }
    Ok(Json(ApplicationList { items }))
}

async fn create_in(
    state: &AppState,
    who: &Authenticated,
    scope_key: &str,
    input: ApplicationInput,
) -> AppResult<(StatusCode, Json<ApplicationWithSecret>)> {
    state.authorize(who, Action::ManageApplications, Target::Domain(domain_of(scope_key)))?;
    let now = state.now();
    let (secret, hash) = new_secret(input.client_type);
    let row = row_from(uuid::Uuid::now_v7().to_string(), scope_key.to_owned(), &input, hash, now, now)?;
    let mut tx = state.db().begin_write().await?;
    odb::insert_application(&mut tx, &row).await?;
    crate::routes::audit(
        &mut tx,
        state,
        &who.user.id,
        scope_key,
        "application.created",
        &format!("application:{}", row.id),
        None,
        Some(audited(&row)),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(ApplicationWithSecret { application: view(state, &row).await?, client_secret: secret }),
    ))
}

/// An application the caller may act on; another scope's is answered as unknown.
pub async fn application_for(
    state: &AppState,
    who: &Authenticated,
    raw_id: &str,
    action: Action,
) -> AppResult<ApplicationRow> {
    let id = crate::extract::parse_id(raw_id, "application")?;
    let app = odb::get_application(&state.db().pool, &id).await?.ok_or(AppError::NotFound("application"))?;
    match state.authorize(who, action, Target::Domain(domain_of(&app.scope_key))) {
        Ok(()) => Ok(app),
        Err(_) => Err(AppError::NotFound("application")),
    }
}

/// The host's applications.
#[utoipa::path(get, path = "/api/host/applications", tag = "applications",
    responses((status = 200, body = ApplicationList), (status = 403, body = ErrorBody)))]
pub async fn list_host_applications(
    State(state): State<AppState>,
    who: Authenticated,
) -> AppResult<Json<ApplicationList>> {
    list_in(&state, &who, HOST_SCOPE).await
}

/// Registers an application that signs in host users. A confidential application's
/// secret is in the answer, once.
#[utoipa::path(post, path = "/api/host/applications", tag = "applications", request_body = ApplicationInput,
    responses((status = 201, body = ApplicationWithSecret), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_host_application(
    State(state): State<AppState>,
    who: Authenticated,
    Json(input): Json<ApplicationInput>,
) -> AppResult<(StatusCode, Json<ApplicationWithSecret>)> {
    create_in(&state, &who, HOST_SCOPE, input).await
}

/// A tenant's applications.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/applications", tag = "applications",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = ApplicationList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_tenant_applications(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
) -> AppResult<Json<ApplicationList>> {
    let tenant = crate::routes::tenant_for(&state, &who, &tenant_id, Action::ReadApplications).await?;
    list_in(&state, &who, &tenant.id).await
}

/// Registers an application that signs in the tenant's users.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/applications", tag = "applications", request_body = ApplicationInput,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = ApplicationWithSecret), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn create_tenant_application(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
    Json(input): Json<ApplicationInput>,
) -> AppResult<(StatusCode, Json<ApplicationWithSecret>)> {
    let tenant = crate::routes::tenant_for(&state, &who, &tenant_id, Action::ManageApplications).await?;
    create_in(&state, &who, &tenant.id, input).await
}

/// One application.
#[utoipa::path(get, path = "/api/applications/{application_id}", tag = "applications",
    params(("application_id" = String, Path, description = "Application id (client_id)")),
    responses((status = 200, body = Application), (status = 404, body = ErrorBody)))]
pub async fn get_application(
    State(state): State<AppState>,
    who: Authenticated,
    Path(id): Path<String>,
) -> AppResult<Json<Application>> {
    let app = application_for(&state, &who, &id, Action::ReadApplications).await?;
    Ok(Json(view(&state, &app).await?))
}

/// Replaces an application's settings. Turning a public application confidential
/// creates a secret (in the answer, once); the other way removes it.
#[utoipa::path(put, path = "/api/applications/{application_id}", tag = "applications", request_body = ApplicationInput,
    params(("application_id" = String, Path, description = "Application id (client_id)")),
    responses((status = 200, body = ApplicationWithSecret), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_application(
    State(state): State<AppState>,
    who: Authenticated,
    Path(id): Path<String>,
    Json(input): Json<ApplicationInput>,
) -> AppResult<Json<ApplicationWithSecret>> {
    let old = application_for(&state, &who, &id, Action::ManageApplications).await?;
    let (secret, hash) = match (ClientType::parse(&old.client_type), input.client_type) {
        (Some(ClientType::Confidential), ClientType::Confidential) => (None, old.secret_hash.clone()),
        (_, t) => new_secret(t),
    };
    let row = row_from(old.id.clone(), old.scope_key.clone(), &input, hash, old.created_at, state.now())?;
    let mut tx = state.db().begin_write().await?;
    odb::put_application(&mut tx, &row).await?;
    crate::routes::audit(
        &mut tx,
        &state,
        &who.user.id,
        &row.scope_key,
        "application.updated",
        &format!("application:{}", row.id),
        Some(audited(&old)),
        Some(audited(&row)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(ApplicationWithSecret { application: view(&state, &row).await?, client_secret: secret }))
}

/// Deletes an application with its grants, codes and tokens.
#[utoipa::path(delete, path = "/api/applications/{application_id}", tag = "applications",
    params(("application_id" = String, Path, description = "Application id (client_id)")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_application(
    State(state): State<AppState>,
    who: Authenticated,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let old = application_for(&state, &who, &id, Action::ManageApplications).await?;
    let mut tx = state.db().begin_write().await?;
    for sql in [
        "DELETE FROM oidc_refresh_tokens WHERE application_id = $1",
        "DELETE FROM oidc_token_families WHERE application_id = $1",
        "DELETE FROM oidc_authorization_codes WHERE application_id = $1",
        "DELETE FROM oidc_auth_requests WHERE application_id = $1",
        "DELETE FROM oidc_grants WHERE application_id = $1",
    ] {
        sqlx::query(sql).bind(&old.id).execute(&mut *tx).await?;
    }
    odb::delete_application(&mut tx, &old.id).await?;
    crate::routes::audit(
        &mut tx,
        &state,
        &who.user.id,
        &old.scope_key,
        "application.deleted",
        &format!("application:{}", old.id),
        Some(audited(&old)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a confidential application's secret; the new one is in the answer, once.
/// The old secret stops working at once.
#[utoipa::path(post, path = "/api/applications/{application_id}/secret", tag = "applications",
    params(("application_id" = String, Path, description = "Application id (client_id)")),
    responses((status = 200, body = ApplicationWithSecret), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    who: Authenticated,
    Path(id): Path<String>,
) -> AppResult<Json<ApplicationWithSecret>> {
    let mut app = application_for(&state, &who, &id, Action::ManageApplications).await?;
    if app.client_type != ClientType::Confidential.as_str() {
        return Err(AppError::invalid_field("client_type", "public applications have no secret"));
    }
    let (secret, hash) = new_secret(ClientType::Confidential);
    app.secret_hash = hash;
    app.updated_at = state.now();
    let mut tx = state.db().begin_write().await?;
    odb::put_application(&mut tx, &app).await?;
    crate::routes::audit(
        &mut tx,
        &state,
        &who.user.id,
        &app.scope_key,
        "application.secret_rotated",
        &format!("application:{}", app.id),
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(ApplicationWithSecret { application: view(&state, &app).await?, client_secret: secret }))
}

/// The applications the signed-in user has granted access to.
#[utoipa::path(get, path = "/api/account/applications", tag = "account",
    responses((status = 200, body = AccountGrantList)))]
pub async fn list_grants(State(state): State<AppState>, caller: Caller) -> AppResult<Json<AccountGrantList>> {
    let who = &caller.who;
    state.authorize(
        who,
        Action::ReadOwnAccount,
        Target::User { id: &who.user.id, domain: domain_of(&who.user.scope_key) },
    )?;
    let items = odb::grants_of(&state.db().pool, &who.user.id)
        .await?
        .into_iter()
        .map(|g| AccountGrant {
            id: g.id,
            application_id: g.application_id,
            application: g.name,
            scopes: super::split_scopes(&g.scopes),
            created_at: rfc3339(g.created_at),
            last_used_at: rfc3339(g.last_used_at),
        })
        .collect();
    Ok(Json(AccountGrantList { items }))
}

/// Revokes a grant: its refresh tokens and access tokens stop working, and the next
/// sign-in to the application asks for consent again.
#[utoipa::path(delete, path = "/api/account/applications/{grant_id}", tag = "account",
    params(("grant_id" = String, Path, description = "Grant id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(grant_id): Path<String>,
) -> AppResult<StatusCode> {
    let who = &caller.who;
    state.authorize(
        who,
        Action::UpdateOwnAccount,
        Target::User { id: &who.user.id, domain: domain_of(&who.user.scope_key) },
    )?;
    let id = crate::extract::parse_id(&grant_id, "grant")?;
    let mut tx = state.db().begin_write().await?;
    if !odb::delete_grant(&mut tx, &who.user.id, &id).await? {
        return Err(AppError::NotFound("grant"));
    }
    crate::routes::audit(
        &mut tx,
        &state,
        &who.user.id,
        &who.user.scope_key,
        "oidc.grant_revoked",
        &format!("grant:{id}"),
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What giving the application `rule` would do to the users of its scope as they sign
/// in to it, without saving: who would newly be asked for a second factor (and how many
/// of them have none, or none strong enough), who no longer would. A rule the scope's
/// `disabled` behaviour overrides asks nobody anything (and the application's sign-ins
/// end with `unmet_authentication_requirements`).
#[utoipa::path(post, path = "/api/applications/{application_id}/preview", tag = "applications", request_body = Rule,
    params(("application_id" = String, Path, description = "Application id (client_id)")),
    responses((status = 200, body = ImpactPreview), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn preview_rule(
    State(state): State<AppState>,
    who: Authenticated,
    Path(id): Path<String>,
    Json(rule): Json<Rule>,
) -> AppResult<Json<ImpactPreview>> {
    let app = application_for(&state, &who, &id, Action::ReadApplications).await?;
    let before = application_rule(&app);
    let rule = Rule { require_two_factor: rule.require_two_factor || rule.min_strength.is_some(), ..rule };
    let after = ApplicationRule { rule, ..before.clone() };
    let loaded = LoadedScope::load(&state, &app.scope_key).await?;
    let scope = loaded.scope();
    let change = GroupChange::Application { before: &before, after: &after };
    Ok(Json(population::impact(&state, &app.scope_key, scope, scope, change).await?))
}
