//! Extractors whose rejections are [`AppError`]s, so a malformed body, path or query
//! gets the API's one error shape instead of axum's plain-text default.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::AppError;

#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct Query<T>(pub T);

/// Checks that a path segment is a UUID, the form of every id Twofold issues. Anything
/// else cannot name an object, so it is answered like an unknown id.
pub fn parse_id(raw: &str, what: &'static str) -> Result<String, AppError> {
    uuid::Uuid::parse_str(raw).map(|u| u.hyphenated().to_string()).map_err(|_| AppError::NotFound(what))
}

/// The client's address: the TCP peer, or what a trusted reverse proxy says in
/// `X-Forwarded-For` (see [`crate::ratelimit::client_address`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("served without the peer address")))?;
        Ok(ClientAddr(crate::ratelimit::client_address(peer.ip(), &parts.headers, state.limits().trusted_proxies())))
    }
}
