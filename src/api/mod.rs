//! What every handler speaks: the API's error type (and the mapping of each layer's errors onto
//! it), the extractors that reject in the contract's shape, and JSON bodies written by hand.
//! The domains' routes build on this; the HTTP shell (`crate::http`) wraps them.

mod error;
mod extract;
pub mod request_id;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

pub use error::{render_error_body, ApiError, ErrorBody, ErrorMessage, RETRY_AFTER_SECS};
pub use extract::{AuthUser, ClientIp, Json, Path, Query, Reader, WebSocketUpgrade, Writer};
pub use request_id::RequestId;

/// A response with this JSON body, written by hand (see `crate::json`).
pub fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
