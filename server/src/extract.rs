//! Extractors whose rejections are [`AppError`]s, so a malformed body, path or query
//! gets the API's one error shape instead of axum's plain-text default.

use axum::extract::{FromRequest, FromRequestParts};
use axum::response::{IntoResponse, Response};

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
