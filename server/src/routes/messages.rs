//! How many emails and texts a scope sent this hour against its caps, and whether each
//! channel can send at all. Admins watch it for text pumping; the settings screen uses
//! it to say why email or SMS cannot be offered.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use twofold_policy::authz::{Action, Domain, Target};
use twofold_policy::wire::{ChannelUsage, ErrorBody, MessageUsage, SenderState};

use super::tenant_for;
use crate::app::AppState;
use crate::auth::Authenticated;
use crate::clock::rfc3339;
use crate::db::{HOST_SCOPE, messages};
use crate::error::AppResult;
use crate::extract::{Json, Path};
use crate::factors::Channel;
use crate::senders::{self, SenderKind};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/host/message-usage", get(host_message_usage))
        .route("/api/tenants/{tenant_id}/message-usage", get(tenant_message_usage))
}

/// Emails and texts sent to host users in the current clock hour, the caps, and which
/// channels can send. Host admins also see the counts and caps over every scope.
#[utoipa::path(get, path = "/api/host/message-usage", tag = "settings",
    responses((status = 200, body = MessageUsage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn host_message_usage(State(state): State<AppState>, who: Authenticated) -> AppResult<Json<MessageUsage>> {
    state.authorize(&who, Action::ReadMessageUsage, Target::Domain(Domain::Host))?;
    Ok(Json(usage(&state, &who, HOST_SCOPE).await?))
}

/// Emails and texts sent to a tenant's users in the current clock hour, the tenant's
/// caps, and which channels can send.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/message-usage", tag = "settings",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = MessageUsage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn tenant_message_usage(
    State(state): State<AppState>,
    who: Authenticated,
    Path(tenant_id): Path<String>,
) -> AppResult<Json<MessageUsage>> {
    let tenant = tenant_for(&state, &who, &tenant_id, Action::ReadMessageUsage).await?;
    Ok(Json(usage(&state, &who, &tenant.id).await?))
}

async fn usage(state: &AppState, who: &Authenticated, scope_key: &str) -> AppResult<MessageUsage> {
    let hour = messages::hour_start(state.now());
    // Totals over every scope say how busy other tenants are: host admins only.
    let host_admin = state.authorize(who, Action::ReadMessageUsage, Target::Domain(Domain::Host)).is_ok();
    let channel_usage = async |channel: Channel, sender: senders::Channel| -> AppResult<ChannelUsage> {
        let pool = &state.db().pool;
        let (per_scope, overall) = channel.caps(state.config());
        let all = if host_admin {
            Some(messages::sent(pool, messages::ALL_SCOPES, channel.as_str(), hour).await?)
        } else {
            None
        };
        Ok(ChannelUsage {
            sender: match state.senders().kind(sender) {
                SenderKind::Real => SenderState::Configured,
                SenderKind::Development => SenderState::Development,
                SenderKind::None => SenderState::NotConfigured,
            },
            sent_this_hour: messages::sent(pool, scope_key, channel.as_str(), hour).await?,
            cap_per_hour: per_scope,
            all_scopes_sent_this_hour: all,
            all_scopes_cap_per_hour: host_admin.then_some(overall),
        })
    };
    let email = channel_usage(Channel::Email, senders::Channel::Email).await?;
    let sms = channel_usage(Channel::Sms, senders::Channel::Sms).await?;
    Ok(MessageUsage { hour_start: rfc3339(hour), hour_end: rfc3339(hour + messages::HOUR_MS), email, sms })
}
