//! Routes served by another service: the request goes on as it came (method, path, query, body
//! and the headers that mean something to the API), one hop, and its answer comes back as it
//! was given, its body streamed on as it arrives. The other service checks the token, the input and the limits itself, so both ways
//! in answer alike. It being down or slow is a 503 with Retry-After, never a hang or a 500.

use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::api::request_id::{RequestId, REQUEST_ID_HEADER};
use crate::api::ApiError;
use crate::upstream::Upstream;

/// The request headers passed on, besides `x-request-id` and `x-forwarded-for`; the others
/// (hop-by-hop ones, cookies, the client's own `Host`) stay here.
const PASSED_ON: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::USER_AGENT,
];
/// The answer's headers given back (the others, `x-request-id` among them, are this service's).
const GIVEN_BACK: [HeaderName; 3] = [header::CONTENT_TYPE, header::RETRY_AFTER, header::ALLOW];
static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A route layer: every request of the routes it wraps goes to `upstream`; the wrapped
/// handlers (which document the routes) are not called.
pub async fn forward(State(upstream): State<Upstream>, request: Request, _next: Next) -> Response {
    let (parts, body) = request.into_parts();
    // The body is already held to BODY_LIMIT_BYTES by the middleware.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return ApiError::PayloadTooLarge(e.to_string()).into_response(),
    };
    let mut onward = axum::http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone());
    for name in &PASSED_ON {
        for value in parts.headers.get_all(name) {
            onward = onward.header(name, value);
        }
    }
    // The request id the middleware took or made, which every log line of the request carries.
    if let Some(id) = parts.extensions.get::<RequestId>() {
        onward = onward.header(&REQUEST_ID_HEADER, id.header_value());
    }
    // The client as the other service's rate limits should see it (it trusts this one as a
    // proxy, TRUSTED_PROXIES): the chain so far, then the peer of this connection.
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>() {
        let peer = peer.ip().to_string();
        let chain = parts
            .headers
            .get_all(&FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .chain(std::iter::once(peer.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&chain) {
            onward = onward.header(&FORWARDED_FOR, value);
        }
    }
    let onward = match onward.body(body) {
        Ok(onward) => onward,
        Err(e) => return ApiError::bad_request(format!("cannot forward: {e}")).into_response(),
    };
    let started = Instant::now();
    let hop = tracing::info_span!("forward", service = upstream.name());
    match upstream.send(onward).instrument(hop).await {
        Ok(answer) => {
            let (their, body) = answer.into_parts();
            tracing::debug!(
                service = upstream.name(),
                status = their.status.as_u16(),
                duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                "forwarded"
            );
            // Streamed on as it arrives: a page is never held whole here.
            let mut response = Response::new(axum::body::Body::new(body));
            *response.status_mut() = their.status;
            for name in &GIVEN_BACK {
                if let Some(value) = their.headers.get(name) {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(e) => ApiError::dependency_down("the dialog service", e).into_response(),
    }
}
