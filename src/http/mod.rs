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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::AuthUser;
    use crate::users::UserId;

    /// State whose pool never connects (pools open connections lazily), for routes that need none.
    fn offline_state() -> AppState {
        let config = Config {
            db: crate::config::DbConfig {
                database_url: "postgres://nobody@127.0.0.1:1/none".into(),
                db_pool_size: 1,
                db_pool_timeout_ms: 100,
                db_statement_timeout_ms: 100,
                db_startup_wait_secs: 0,
            },
            bind: "127.0.0.1:0".parse().unwrap(),
            auth: crate::config::AuthConfig {
                token_secret: Some("unit-secret".into()),
                token_ttl_secs: 60,
                hash_concurrency: Some(1),
                hash_queue_timeout_ms: 100,
                argon2_memory_kib: 1024,
                argon2_iterations: 1,
            },
            request_timeout_ms: 200,
            body_limit_bytes: 1024,
            log_format: crate::config::LogFormat::Text,
        };
        AppState {
            db: crate::db::build_pool(&config.db).unwrap(),
            tokens: crate::app::token_keys(&config.auth),
            hasher: crate::app::password_hasher(&config.auth).unwrap(),
            config: Arc::new(config),
        }
    }

    async fn whoami(AuthUser(user): AuthUser) -> String {
        user.to_string()
    }

    async fn boom() -> &'static str {
        panic!("boom")
    }

    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    }

    fn test_router(state: AppState) -> Router {
        let config = state.config.clone();
        let routes = Router::new()
            .route("/whoami", get(whoami))
            .route("/boom", get(boom))
            .route("/slow", get(slow))
            .with_state(state);
        with_middleware(routes, &config)
    }

    async fn call(router: Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    fn bearer(token: &str) -> Request<Body> {
        Request::get("/whoami")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_valid_token_identifies_the_caller() {
        let state = offline_state();
        let token = state.tokens.issue(UserId(7)).unwrap();
        let response = test_router(state).oneshot(bearer(&token)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), 64)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"7");
    }

    #[tokio::test]
    async fn missing_malformed_forged_and_expired_tokens_are_401() {
        let state = offline_state();
        let forged = crate::auth::TokenKeys::new(b"another-secret", Duration::from_secs(60))
            .issue(UserId(7))
            .unwrap();
        // Signed with the right secret but long expired.
        let expired_token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &crate::auth::Claims {
                sub: "7".into(),
                iat: 1,
                exp: 2,
            },
            &jsonwebtoken::EncodingKey::from_secret(b"unit-secret"),
        )
        .unwrap();
        let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiI3IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        let mut requests = vec![
            Request::get("/whoami").body(Body::empty()).unwrap(),
            Request::get("/whoami")
                .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
                .body(Body::empty())
                .unwrap(),
        ];
        for token in [
            "",
            "garbage",
            forged.as_str(),
            expired_token.as_str(),
            unsigned,
        ] {
            requests.push(bearer(token));
        }
        for request in requests {
            let (status, body) = call(test_router(state.clone()), request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert_eq!(body["code"], 401);
            assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
        }
    }

    #[tokio::test]
    async fn a_panic_becomes_a_json_500_with_a_generic_message() {
        let (status, body) = call(
            test_router(offline_state()),
            Request::get("/boom").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["message"], "internal server error");
        assert_eq!(body["code"], 500);
    }

    #[tokio::test]
    async fn a_request_over_the_time_limit_is_a_503_with_retry_after() {
        let response = test_router(offline_state())
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
