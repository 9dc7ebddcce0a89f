//! The one error type of the API, the one place where each layer's errors become HTTP statuses,
//! and the function that gives every error response the contract's body.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::{HashError, TokenError};
use crate::db::DbError;
use crate::input::Invalid;
use crate::limits::Limited;

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
    /// A rate limit refused the call; the client may retry after the given seconds.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// A part this deployment does not run (the unread counters without Redis): no retry helps.
    #[error("{0}")]
    NotImplemented(String),
    /// A dependency is down or saturated; the client may retry. `message` is the client's;
    /// `detail` (an address, a library's own error text) goes to the log only.
    #[error("{message}")]
    Unavailable {
        message: String,
        detail: Option<String>,
    },
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
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound(message.into())
    }

    /// 503 with a message written for the client.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::Unavailable {
            message: message.into(),
            detail: None,
        }
    }

    /// 503 for a dependency whose failure says more than a client should read (its address, a
    /// library's error text): the client is told that `what` is unavailable, the log has the
    /// detail.
    pub fn dependency_down(what: &str, detail: impl std::fmt::Display) -> Self {
        ApiError::Unavailable {
            message: format!("{what} is unavailable; retry later"),
            detail: Some(detail.to_string()),
        }
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
            ApiError::Unavailable { message, detail } => {
                match detail {
                    Some(detail) => {
                        tracing::warn!(reason = %message, %detail, "dependency unavailable")
                    }
                    None => tracing::warn!(reason = %message, "dependency unavailable"),
                }
                message.clone()
            }
            other => other.to_string(),
        };
        let mut response = status.into_response();
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response.extensions_mut().insert(ErrorMessage(message));
        response
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(reason) => ApiError::dependency_down("the database", reason),
            DbError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

/// 429 with `Retry-After`: whole seconds, rounded up, so a client that waits them is let in.
impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        let retry_after_secs =
            limited.retry_after.as_secs() + u64::from(limited.retry_after.subsec_nanos() > 0);
        ApiError::TooManyRequests {
            message: format!(
                "too many requests ({}); try again in {} s",
                limited.limit.name(),
                retry_after_secs.max(1)
            ),
            retry_after_secs: retry_after_secs.max(1),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(Invalid(message): Invalid) -> Self {
        ApiError::BadRequest(message)
    }
}

impl From<TokenError> for ApiError {
    fn from(TokenError(message): TokenError) -> Self {
        ApiError::Unauthorized(message)
    }
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Saturated | HashError::ShutDown => ApiError::unavailable(e.to_string()),
            HashError::Failed(cause) => ApiError::Internal(cause),
        }
    }
}

/// A body that is not JSON of the expected shape: 400; too large: 413; not `application/json`: 415.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(text),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
            _ => ApiError::BadRequest(text),
        }
    }
}

/// A path parameter that does not parse: 400, with the domain's own message when it gave one
/// (an id's `FromStr`), not wrapped in axum's "Invalid URL: …".
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        use axum::extract::path::ErrorKind;
        match &rejection {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::Message(message) => ApiError::BadRequest(message.clone()),
                _ => ApiError::BadRequest(rejection.body_text()),
            },
            _ => ApiError::BadRequest(rejection.body_text()),
        }
    }
}

/// A websocket handshake that is not one: 400.
impl From<WebSocketUpgradeRejection> for ApiError {
    fn from(rejection: WebSocketUpgradeRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
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
pub fn render_error_body(response: Response, request_id: &str) -> Response {
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
        request_id: request_id.to_owned(),
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
