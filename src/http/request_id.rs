//! `x-request-id`: taken from the request when sane, generated otherwise, echoed on the response,
//! and recorded in the span that every log line of the request carries.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// Accepts a client's id only if it is short and made of safe characters, so it can be logged
    /// and echoed as is; anything else is replaced by a fresh UUID.
    fn from_header(value: Option<&HeaderValue>) -> Self {
        let given = value
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                (1..=128).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            })
            .map(str::to_owned);
        RequestId(given.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()))
    }
}

/// Outermost middleware: assigns the id, opens the request span, logs the outcome once.
pub async fn request_span(mut request: Request, next: Next) -> Response {
    let id = RequestId::from_header(request.headers().get(&REQUEST_ID_HEADER));
    let span = tracing::info_span!(
        "request",
        request_id = %id.0,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let header = HeaderValue::from_str(&id.0).expect("request ids are visible ASCII");
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER.clone(), header.clone());
    request.extensions_mut().insert(id);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, duration_ms, "request finished");
        } else {
            tracing::debug!(status, duration_ms, "request finished");
        }
    });
    response
        .headers_mut()
        .insert(REQUEST_ID_HEADER.clone(), header);
    response
}
