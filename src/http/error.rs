//! The one error type of the API and the middleware that renders every error in the contract's shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::request_id::RequestId;

/// Seconds a client is told to wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

/// What a handler can fail with. Each variant is one status of the contract.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency is down or saturated; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the cause is logged, the client gets a generic message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The message an error response carries until [`render_error_body`] writes its body,
/// which needs the request id that only the middleware knows.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound(message.into())
    }

    /// A valid token of a user who no longer exists (say, the database was reset): 401, so the
    /// client logs in again.
    pub fn unknown_token_user() -> Self {
        ApiError::Unauthorized("the token's user does not exist".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed");
                "internal server error".to_owned()
            }
            ApiError::Unavailable(reason) => {
                tracing::warn!(reason = %reason, "dependency unavailable");
                reason.clone()
            }
            other => other.to_string(),
        };
        let mut response = status.into_response();
        response.extensions_mut().insert(ErrorMessage(message));
        response
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Timeout(_) => {
                ApiError::Unavailable("database busy: no free connection in time".into())
            }
            PoolError::Backend(e) => ApiError::Unavailable(format!("database unreachable: {e}")),
            other => ApiError::Internal(anyhow::Error::new(other).context("database pool")),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        let io_failure = std::error::Error::source(&e)
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some());
        match e.code() {
            // No SQLSTATE and a closed or failing socket: the server is gone or the network cut.
            None if e.is_closed() || io_failure => {
                ApiError::Unavailable(format!("database connection lost: {e}"))
            }
            // No SQLSTATE otherwise: a client-side error (a parameter that does not serialise…).
            None => ApiError::Internal(anyhow::Error::new(e).context("database client")),
            // Retryable conditions: connection trouble (08), insufficient resources (53),
            // operator intervention and statement timeouts (57), a replica that became read-only
            // (25006), serialization failures and deadlocks (40001, 40P01).
            Some(code)
                if ["08", "53", "57"]
                    .iter()
                    .any(|class| code.code().starts_with(class))
                    || ["25006", "40001", "40P01"].contains(&code.code()) =>
            {
                ApiError::Unavailable(format!("database unavailable: {}", code.code()))
            }
            Some(_) => ApiError::Internal(anyhow::Error::new(e).context("database query")),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub message: String,
    /// The `x-request-id` of the failed request, to find its log lines.
    pub request_id: String,
    /// The HTTP status code again.
    pub code: u16,
}

/// Gives an error response the contract's JSON body, whoever produced it: [`ApiError`]s, the
/// router's 404/405, body-limit rejections, the panic catcher. 503s get a `Retry-After` header.
/// Other responses pass through untouched.
pub fn render_error_body(response: Response, request_id: &RequestId) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let message = match response.extensions().get::<ErrorMessage>() {
        Some(ErrorMessage(message)) => message.clone(),
        None if is_json(&response) => return response,
        None => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    let body = ErrorBody {
        message,
        request_id: request_id.as_str().to_owned(),
        code: status.as_u16(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE && !parts.headers.contains_key(header::RETRY_AFTER)
    {
        parts
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(json))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
