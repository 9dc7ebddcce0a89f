//! The HTTP shell: shared state, the router of every domain, and the middleware around it.

pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
mod ops;
pub mod request_id;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use deadpool_postgres::Pool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::auth::{PasswordHasher, TokenKeys};
use crate::config::Config;
use error::ApiError;

/// What every handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub db: Pool,
    pub tokens: TokenKeys,
    pub hasher: PasswordHasher,
    pub config: Arc<Config>,
}

/// The whole application: every domain's routes plus docs, operations and the middleware stack.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let api = Router::new()
        .merge(crate::users::routes::router())
        .merge(ops::router())
        .route_layer(middleware::from_fn(metrics::track_requests))
        .fallback(not_found)
        .with_state(state);
    with_middleware(api.merge(openapi::docs_router()), &config)
}

/// Wraps routes in the middleware every response goes through. Layers run outside in: the request
/// id and span first, so every later log line carries them; then error rendering, which must see
/// the panic catcher's and the timeout's responses.
pub fn with_middleware(routes: Router, config: &Config) -> Router {
    let request_timeout = config.request_timeout();
    let body_limit = config.body_limit_bytes;
    routes
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            enforce_timeout(request_timeout, request, next)
        }))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(error::render_errors))
        .layer(middleware::from_fn(request_id::request_span))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn enforce_timeout(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::Unavailable(format!("request took longer than {} ms", limit.as_millis()))
                .into_response()
        }
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::Internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}
