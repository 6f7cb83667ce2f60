//! [`ApiError`]: the crate's [`Error`] as an HTTP answer, mapped once.

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{json, private};
use crate::error::{Error, ErrorCode};
use crate::scope::Scope;

/// An [`Error`] as an HTTP answer: the status that fits its code (the table in the [module docs](super)) and the
/// JSON body `{"error": {"code": …, "message": …, "advice": …}}`, with `Cache-Control: no-store`.
///
/// `missing_scopes` (an array of strings) is added for `AUTH_SCOPE_DENIED` and `MISSING_SCOPES` when known, and a
/// `Retry-After` header (seconds) when HubSpot gave one. For the server-side codes (`STORE_UNAVAILABLE`,
/// `INVALID_CLIENT`) the message is a fixed sentence; the error's own message goes to the log (`tracing`), never to
/// the user. No answer ever holds a token, a source error or a backtrace.
///
/// Use it in your own handlers too: `?` converts a [`crate::Error`].
///
/// ```
/// use axum::http::StatusCode;
/// use hubspot_connect::web::ApiError;
/// use hubspot_connect::ErrorCode;
///
/// assert_eq!(ApiError::status_of(ErrorCode::ConnectionNotFound), StatusCode::NOT_FOUND);
/// async fn handler(connections: hubspot_connect::TenantConnections) -> Result<String, ApiError> {
///     Ok(format!("{} connections", connections.list().await?.len()))
/// }
/// ```
pub struct ApiError(Error);

impl ApiError {
    /// The HTTP status for a code.
    pub const fn status_of(code: ErrorCode) -> StatusCode {
        match code {
            ErrorCode::AuthScopeDenied | ErrorCode::AccessDenied | ErrorCode::MissingScopes | ErrorCode::ReadOnly => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::PortalLimitReached | ErrorCode::PortalAlreadyConnected | ErrorCode::ReconnectRequired => {
                StatusCode::CONFLICT
            }
            ErrorCode::TokenExpired | ErrorCode::InvalidState | ErrorCode::InvalidConfig => StatusCode::BAD_REQUEST,
            ErrorCode::PortalMismatch | ErrorCode::WrongAccountType => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::HubspotUnavailable | ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InvalidClient => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ConnectionNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RequestRejected => StatusCode::BAD_GATEWAY,
        }
    }

    /// The error.
    pub fn error(&self) -> &Error {
        &self.0
    }

    /// The error, back.
    pub fn into_inner(self) -> Error {
        self.0
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ApiError").field(&self.0).finish()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'static str,
    message: &'a str,
    advice: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing_scopes: Vec<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = &self.0;
        let code = e.code();
        let message = match code {
            ErrorCode::StoreUnavailable => "the connection store is unavailable",
            ErrorCode::InvalidClient => "HubSpot refused this app's credentials",
            _ => e.message(),
        };
        if message != e.message() {
            tracing::warn!(code = code.as_str(), message = e.message(), "HubSpot connection route failed");
        } else {
            tracing::info!(code = code.as_str(), "HubSpot connection route refused");
        }
        let body = Body {
            error: Detail {
                code: code.as_str(),
                message,
                advice: code.advice(),
                missing_scopes: e.missing_scopes().iter().map(Scope::as_str).collect(),
            },
        };
        let mut response = json(Self::status_of(code), &body);
        if let Some(after) = e.retry_after() {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        private(response)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let e = Error::new(ErrorCode::RateLimited, "slow down").with_retry_after(Duration::from_millis(1500));
        let r = ApiError::from(e).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert!(
            ApiError::from(Error::new(ErrorCode::RateLimited, "x"))
                .into_response()
                .headers()
                .get("retry-after")
                .is_none()
        );
    }

    #[tokio::test]
    async fn missing_scopes_are_named() {
        let e =
            Error::new(ErrorCode::AuthScopeDenied, "x").with_missing_scopes(vec![Scope::new("crm.objects.deals.read")]);
        let r = ApiError::from(e).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["missing_scopes"], serde_json::json!(["crm.objects.deals.read"]));
        assert_eq!(body["error"]["code"], "AUTH_SCOPE_DENIED");
    }
}
