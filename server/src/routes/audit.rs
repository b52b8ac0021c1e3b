//! The audit trail: who changed what, from what to what, when; newest first.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
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
    Router::new().route("/api/audit", get(list_audit)).route("/api/audit/export", get(export_audit))
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
    /// An event type (`user.created`), or a family ending in a dot (`user.`).
    #[serde(default)]
    pub action: Option<String>,
    /// Events done by this user (id).
    #[serde(default)]
    pub actor: Option<String>,
    /// Events about this user (id).
    #[serde(default)]
    pub user: Option<String>,
    /// Events at or after this time (RFC 3339).
    #[serde(default)]
    pub from: Option<String>,
    /// Events before this time (RFC 3339).
    #[serde(default)]
    pub to: Option<String>,
    /// Events caused by requests from this client address.
    #[serde(default)]
    pub client_ip: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `csv` (the default) or `jsonl` (one JSON event per line).
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub client_ip: Option<String>,
}

/// Most events one export holds, newest first; narrow the filters for older ones.
const EXPORT_LIMIT: i64 = 100_000;

fn parse_json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

/// Which scope the reader asked for, once they may read it.
async fn scope_of(state: &AppState, who: &Authenticated, tenant_id: Option<&str>) -> AppResult<Option<String>> {
    match tenant_id {
        None => {
            state.authorize(who, Action::ReadAudit, Target::Domain(Domain::Host))?;
            Ok(None)
        }
        Some(HOST_SCOPE) => {
            state.authorize(who, Action::ReadAudit, Target::Domain(Domain::Host))?;
            Ok(Some(HOST_SCOPE.to_owned()))
        }
        Some(raw) => {
            let id = parse_id(raw, "tenant")?;
            db::get_tenant(&state.db().pool, &id).await?.ok_or(AppError::NotFound("tenant"))?;
            state.authorize(who, Action::ReadAudit, Target::Domain(Domain::Tenant(&id)))?;
            Ok(Some(id))
        }
    }
}

fn invalid(field: &str, message: &str) -> AppError {
    AppError::BadRequest { code: ErrorCode::InvalidQuery, message: message.to_owned(), field: Some(field.to_owned()) }
}

fn time_ms(field: &str, raw: Option<&str>) -> AppResult<Option<i64>> {
    raw.filter(|r| !r.is_empty())
        .map(|r| {
            time::OffsetDateTime::parse(r, &time::format_description::well_known::Rfc3339)
                .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
                .map_err(|_| invalid(field, "a time in RFC 3339, e.g. 2026-12-01T09:00:00Z"))
        })
        .transpose()
}

/// The filters both the page and the export take, checked.
struct Filters {
    action: Option<String>,
    actor: Option<String>,
    user: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    client_ip: Option<String>,
}

impl Filters {
    /// The storage query for these filters in `scope`, from the page before `before`.
    fn query<'a>(&'a self, scope: Option<&'a str>, before: Option<&'a str>) -> db::AuditFilter<'a> {
        db::AuditFilter {
            scope_key: scope,
            before,
            action: self.action.as_deref(),
            actor: self.actor.as_deref(),
            target: self.user.as_deref(),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            client_ip: self.client_ip.as_deref(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn filters(
    action: Option<&str>,
    actor: Option<&str>,
    user: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    client_ip: Option<&str>,
) -> AppResult<Filters> {
    let action = action.filter(|a| !a.is_empty()).map(str::to_owned);
    if let Some(a) = &action
        && (a.len() > 64 || !a.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'))
    {
        return Err(invalid("action", "an event type such as user.created, or a family such as user."));
    }
    let id = |field: &str, raw: Option<&str>| -> AppResult<Option<String>> {
        raw.filter(|r| !r.is_empty())
            .map(|r| {
                uuid::Uuid::parse_str(r).map(|u| u.hyphenated().to_string()).map_err(|_| invalid(field, "a user id"))
            })
            .transpose()
    };
    let client_ip = client_ip
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<std::net::IpAddr>().map(|ip| ip.to_string()).map_err(|_| invalid("client_ip", "an IP address"))
        })
        .transpose()?;
    Ok(Filters {
        action,
        actor: id("actor", actor)?,
        user: id("user", user)?,
        from_ms: time_ms("from", from)?,
        to_ms: time_ms("to", to)?,
        client_ip,
    })
}

/// The events as the reader sees them: names resolved where the reader may see them
/// (a tenant admin sees the names of their tenant's users only).
async fn events(
    state: &AppState,
    who: &Authenticated,
    scope: Option<&str>,
    rows: Vec<db::AuditRow>,
) -> AppResult<Vec<AuditEvent>> {
    let mut ids: Vec<String> = rows
        .iter()
        .flat_map(|r| [r.actor_user_id.clone(), r.target.strip_prefix("user:").map(str::to_owned)])
        .flatten()
        .collect();
    ids.sort();
    ids.dedup();
    let reader_scope = who.user.scope_key.as_str();
    let mut names: HashMap<String, String> = HashMap::new();
    for (id, username, user_scope) in db::user_names(&state.db().pool, &ids).await? {
        // A host admin sees every name; anyone else the names of their own scope.
        if reader_scope == HOST_SCOPE || user_scope == reader_scope {
            names.insert(id, username);
        }
    }
    let mut tenants: HashMap<String, String> = HashMap::new();
    if scope.is_none() {
        let mut wanted: Vec<&str> = rows.iter().map(|r| r.scope_key.as_str()).filter(|s| *s != HOST_SCOPE).collect();
        wanted.sort_unstable();
        wanted.dedup();
        for id in wanted {
            if let Some(t) = db::get_tenant(&state.db().pool, id).await? {
                tenants.insert(t.id, t.name);
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let target_name = match r.target.split_once(':') {
                Some(("user", id)) => names.get(id).cloned(),
                Some(("tenant" | "settings", id)) => tenants.get(id).cloned(),
                _ => None,
            };
            AuditEvent {
                actor_name: r.actor_user_id.as_ref().and_then(|a| names.get(a).cloned()),
                tenant_name: tenants.get(&r.scope_key).cloned(),
                id: r.id,
                at: rfc3339(r.at),
                actor_user_id: r.actor_user_id,
                tenant_id: (r.scope_key != HOST_SCOPE).then_some(r.scope_key),
                action: r.action,
                target: r.target,
                target_name,
                client_ip: r.client_ip,
                before: parse_json(r.before_json),
                after: parse_json(r.after_json),
            }
        })
        .collect())
}

/// Audit events of one scope (or all, for host admins), newest first, paged by cursor,
/// filtered by event type, actor, user, time and client address.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    who: Authenticated,
    Query(params): Query<AuditParams>,
) -> AppResult<Json<AuditPage>> {
    let scope = scope_of(&state, &who, params.tenant_id.as_deref()).await?;
    let before = match params.before.as_deref() {
        Some(raw) => Some(
            uuid::Uuid::parse_str(raw)
                .map_err(|_| AppError::bad_request(ErrorCode::InvalidQuery, "before must be an event id"))?
                .hyphenated()
                .to_string(),
        ),
        None => None,
    };
    let f = filters(
        params.action.as_deref(),
        params.actor.as_deref(),
        params.user.as_deref(),
        params.from.as_deref(),
        params.to.as_deref(),
        params.client_ip.as_deref(),
    )?;
    let limit = params.limit.unwrap_or(50).clamp(1, 200);
    let filter = f.query(scope.as_deref(), before.as_deref());
    // One extra row tells whether another page exists without a count query.
    let mut rows = db::list_audit(&state.db().pool, &filter, i64::from(limit) + 1).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_before = if more { rows.last().map(|r| r.id.clone()) } else { None };
    let items = events(&state, &who, scope.as_deref(), rows).await?;
    Ok(Json(AuditPage { items, next_before }))
}

/// The filtered events as a file: CSV (one row per event, `before` and `after` as JSON
/// text) or JSON lines. At most 100,000 events, newest first.
#[utoipa::path(get, path = "/api/audit/export", tag = "audit", params(ExportParams),
    responses((status = 200, description = "The events as an attachment",
            content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export_audit(
    State(state): State<AppState>,
    who: Authenticated,
    Query(params): Query<ExportParams>,
) -> AppResult<Response> {
    let csv = match params.format.as_deref().unwrap_or("csv") {
        "csv" => true,
        "jsonl" => false,
        _ => return Err(invalid("format", "csv or jsonl")),
    };
    let scope = scope_of(&state, &who, params.tenant_id.as_deref()).await?;
    let f = filters(
        params.action.as_deref(),
        params.actor.as_deref(),
        params.user.as_deref(),
        params.from.as_deref(),
        params.to.as_deref(),
        params.client_ip.as_deref(),
    )?;
    let filter = f.query(scope.as_deref(), None);
    let rows = db::list_audit(&state.db().pool, &filter, EXPORT_LIMIT).await?;
    let items = events(&state, &who, scope.as_deref(), rows).await?;
    let (body, content_type, extension) = if csv {
        (to_csv(&items), "text/csv; charset=utf-8", "csv")
    } else {
        let mut out = String::new();
        for e in &items {
            out.push_str(&serde_json::to_string(e).map_err(|e| AppError::Internal(e.into()))?);
            out.push('\n');
        }
        (out, "application/x-ndjson", "jsonl")
    };
    let disposition = format!("attachment; filename=\"twofold-audit.{extension}\"");
    Ok(([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response())
}

/// RFC 4180 CSV. A cell a spreadsheet would run as a formula (starting with `=`, `+`,
/// `-`, `@`) is prefixed with `'`: user names and typed values are attacker-chosen.
fn to_csv(items: &[AuditEvent]) -> String {
    fn cell(raw: &str) -> String {
        let guarded =
            if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{raw}") } else { raw.to_owned() };
        if guarded.contains([',', '"', '\n', '\r']) { format!("\"{}\"", guarded.replace('"', "\"\"")) } else { guarded }
    }
    let mut out = String::from(
        "id,at,tenant_id,tenant_name,actor_user_id,actor_name,action,target,target_name,client_ip,before,after\r\n",
    );
    for e in items {
        let json = |v: &Option<serde_json::Value>| v.as_ref().map(ToString::to_string).unwrap_or_default();
        let fields = [
            e.id.clone(),
            e.at.clone(),
            e.tenant_id.clone().unwrap_or_default(),
            e.tenant_name.clone().unwrap_or_default(),
            e.actor_user_id.clone().unwrap_or_default(),
            e.actor_name.clone().unwrap_or_default(),
            e.action.clone(),
            e.target.clone(),
            e.target_name.clone().unwrap_or_default(),
            e.client_ip.clone().unwrap_or_default(),
            json(&e.before),
            json(&e.after),
        ];
        out.push_str(&fields.iter().map(|f| cell(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let e = AuditEvent {
            id: "1".into(),
            at: "2026-12-01T00:00:00Z".into(),
            actor_user_id: None,
            actor_name: Some("=HYPERLINK(\"x\")".into()),
            tenant_id: None,
            tenant_name: None,
            action: "user.created".into(),
            target: "user:2".into(),
            target_name: Some("a,b".into()),
            client_ip: None,
            before: None,
            after: Some(serde_json::json!({ "username": "x" })),
        };
        let csv = to_csv(&[e]);
        let row = csv.lines().nth(1).unwrap_or_default();
        assert!(row.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{row}");
        assert!(row.contains("\"a,b\""), "{row}");
        assert!(row.ends_with("\"{\"\"username\"\":\"\"x\"\"}\""), "{row}");
    }
}
