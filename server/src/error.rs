//! The one error type of the HTTP API and its JSON shape.
//!
//! Every failure a client can cause is answered with `{"error", "message"}` and a 4xx
//! status and is not logged as a server fault. Internal failures answer with a bare
//! `internal` code and go to the log in full; their details never reach the client.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use twofold_policy::wire::{ErrorBody, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String, field: Option<String> },
    #[error("authentication required")]
    Unauthenticated,
    #[error("the user name or password is incorrect")]
    InvalidCredentials,
    #[error("the password is incorrect")]
    WrongPassword,
    #[error("you are not allowed to do that")]
    Forbidden,
    #[error("state-changing requests must carry an X-Requested-With header")]
    CsrfHeaderMissing,
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this method is not allowed on this path; see the Allow header")]
    MethodNotAllowed,
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    #[error("the code is wrong, expired or already used")]
    InvalidCode { attempts_left: u32 },
    #[error("too many wrong codes: second-factor sign-in is locked for a while")]
    LockedOut { retry_after_ms: i64 },
    #[error("too many wrong codes in a row: second-factor sign-in is locked until an administrator unlocks it")]
    LockedUntilUnlocked,
    #[error("too many attempts; wait before trying again")]
    RateLimited { retry_after_ms: i64 },
    #[error("this change needs a fresh password and second-factor check")]
    ReauthenticationRequired,
    #[error("your password was set by an administrator: choose your own before anything else")]
    PasswordChangeRequired,
    #[error("this sign-in has expired or was already completed; start again with your password")]
    SignInExpired,
    #[error("the passkey was not accepted; try again")]
    PasskeyRefused,
    #[error("a message could not be sent; try again later")]
    SendFailed(#[source] anyhow::Error),
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError::BadRequest { code, message: message.into(), field: None }
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        AppError::BadRequest { code: ErrorCode::InvalidField, message: message.into(), field: Some(field.to_owned()) }
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError::Conflict { code, message: message.into() }
    }

    /// The stable error code the client sees (`invalid_code`, `locked_out`, ...).
    pub fn code(&self) -> &'static str {
        self.status_and_code().1.as_str()
    }

    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            AppError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code),
            AppError::Unauthenticated => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
            AppError::InvalidCredentials | AppError::WrongPassword => {
                (StatusCode::UNAUTHORIZED, ErrorCode::InvalidCredentials)
            }
            AppError::Forbidden => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            AppError::CsrfHeaderMissing => (StatusCode::FORBIDDEN, ErrorCode::CsrfHeaderMissing),
            AppError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::UnsupportedMediaType),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            AppError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed),
            AppError::Conflict { code, .. } => (StatusCode::CONFLICT, *code),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            AppError::InvalidCode { .. } => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidCode),
            AppError::LockedOut { .. } | AppError::LockedUntilUnlocked => (StatusCode::LOCKED, ErrorCode::LockedOut),
            AppError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            AppError::ReauthenticationRequired => (StatusCode::FORBIDDEN, ErrorCode::ReauthenticationRequired),
            AppError::PasswordChangeRequired => (StatusCode::FORBIDDEN, ErrorCode::PasswordChangeRequired),
            AppError::SignInExpired => (StatusCode::UNAUTHORIZED, ErrorCode::SignInExpired),
            AppError::PasskeyRefused => (StatusCode::UNAUTHORIZED, ErrorCode::PasskeyRefused),
            AppError::SendFailed(_) => (StatusCode::BAD_GATEWAY, ErrorCode::SendFailed),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }
}

/// Whether `e` means the database cannot be reached right now, as opposed to a fault in
/// a query. Besides pool timeouts and broken sockets, PostgreSQL itself says so with
/// SQLSTATE codes: class 08 (connection exception), 57P01-57P03 (the server is shutting
/// down, crashed or still starting; a restart or failover ends every in-flight query
/// with 57P01) and 53300 (too many connections).
pub(crate) fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")),
        _ => false,
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if database_unavailable(&e) { AppError::Unavailable(e.into()) } else { AppError::Internal(e.into()) }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        // Some storage helpers return anyhow (they also parse what they read); an
        // outage reaching a request through them is still an outage, not a 500.
        if e.chain().filter_map(|c| c.downcast_ref::<sqlx::Error>()).any(database_unavailable) {
            AppError::Unavailable(e)
        } else {
            AppError::Internal(e)
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let field = match &self {
            AppError::BadRequest { field, .. } => field.clone(),
            // Only a password was typed (reauthentication, a password change): saying
            // which field was wrong reveals nothing, and "user name or password" would
            // mislead.
            AppError::WrongPassword => Some("password".to_owned()),
            _ => None,
        };
        match &self {
            AppError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            AppError::Unavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            AppError::SendFailed(e) => tracing::warn!(error = %e, "sending a code failed"),
            _ => {}
        }
        let retry_after = match &self {
            AppError::Unavailable(_) => Some(1),
            AppError::LockedOut { retry_after_ms } | AppError::RateLimited { retry_after_ms } => {
                // Round up: "retry after 0 seconds" would invite an immediate retry.
                Some(u64::try_from((*retry_after_ms + 999) / 1000).unwrap_or(1).max(1))
            }
            _ => None,
        };
        let attempts_left = match &self {
            AppError::InvalidCode { attempts_left } => Some(*attempts_left),
            _ => None,
        };
        let body = ErrorBody {
            error: code.as_str().to_owned(),
            message: self.to_string(),
            field,
            retry_after_seconds: retry_after.filter(|_| !matches!(self, AppError::Unavailable(_))),
            attempts_left,
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        let code = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                return AppError::UnsupportedMediaType;
            }
            JsonRejection::JsonSyntaxError(_) => ErrorCode::MalformedJson,
            JsonRejection::JsonDataError(_) => ErrorCode::InvalidBody,
            _ => ErrorCode::InvalidBody,
        };
        // serde's message names the offending field and what it expected, which is
        // exactly what a client needs; it never echoes secret values.
        AppError::bad_request(code, r.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        AppError::bad_request(ErrorCode::InvalidPath, r.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::bad_request(ErrorCode::InvalidQuery, r.body_text())
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A database error with a given SQLSTATE, as PostgreSQL would send it.
    #[derive(Debug, thiserror::Error)]
    #[error("database error {0}")]
    struct Sqlstate(&'static str);

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "database error"
        }

        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn status(e: AppError) -> StatusCode {
        e.status_and_code().0
    }

    #[test]
    fn an_unreachable_database_is_unavailable_not_internal() {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        for code in ["57P01", "57P02", "57P03", "08006", "08001", "53300"] {
            let e = || sqlx::Error::Database(Box::new(Sqlstate(code)));
            assert_eq!(status(e().into()), unavailable, "{code}");
            // The same error after passing through an anyhow-returning helper.
            assert_eq!(status(anyhow::Error::from(e()).context("loading settings").into()), unavailable, "{code}");
        }
        assert_eq!(status(sqlx::Error::PoolTimedOut.into()), unavailable);
        assert_eq!(status(anyhow::Error::from(sqlx::Error::PoolTimedOut).into()), unavailable);
    }

    #[test]
    fn query_faults_stay_internal() {
        let internal = StatusCode::INTERNAL_SERVER_ERROR;
        // A unique violation and a syntax error are bugs or races to look at, not outages.
        for code in ["23505", "42601"] {
            assert_eq!(status(sqlx::Error::Database(Box::new(Sqlstate(code))).into()), internal, "{code}");
        }
        assert_eq!(status(sqlx::Error::RowNotFound.into()), internal);
        assert_eq!(status(anyhow::anyhow!("stored behaviour is not known").into()), internal);
    }
}
