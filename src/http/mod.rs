//! The HTTP shell: the router of every domain, the middleware around it, the OpenAPI document
//! and the operational endpoints.

mod forward;
pub mod metrics;
pub mod openapi;
mod ops;
pub mod serve;
mod unread_body;

use std::any::Any;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::api::request_id::{RequestId, REQUEST_ID_HEADER};
use crate::api::{render_error_body, ApiError};
use crate::config::{Config, Service};
use crate::state::AppState;
use crate::upstream::Upstream;

/// Every domain's routes and the operational ones, each with its OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    routes_with(true, None)
}

/// The main service's routes; the dialog routes forwarded to `dialog_service` when there is one.
fn routes_with(metrics: bool, dialog_service: Option<Upstream>) -> OpenApiRouter<AppState> {
    let dialogs = match dialog_service {
        Some(upstream) => {
            dialog_routes().route_layer(middleware::from_fn_with_state(upstream, forward::forward))
        }
        None => dialog_routes(),
    };
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(crate::users::routes::router())
        .merge(crate::friends::routes::router())
        .merge(crate::posts::routes::router())
        .merge(crate::live::routes::router())
        .merge(dialogs)
        .merge(ops::router(metrics))
}

/// The dialog API on its old paths: sending, listing, unread counts and read marks.
fn dialog_routes() -> OpenApiRouter<AppState> {
    crate::dialogs::routes::router().merge(crate::dialogs::unread::router())
}

/// The dialog service's routes (`serve --service dialogs`): the dialog API on the old paths and
/// its own versioned ones, and the operational routes.
pub fn dialog_service_routes() -> OpenApiRouter<AppState> {
    dialog_service_routes_with(true)
}

fn dialog_service_routes_with(metrics: bool) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::DialogServiceDoc::openapi())
        .merge(crate::dialogs::v2::router())
        .merge(dialog_routes())
        .merge(ops::router(metrics))
}

/// The whole application of the service `SERVICE` names: its routes plus docs, inside the
/// middleware stack. `/metrics` is among them unless `METRICS_BIND` gives it a listener of its
/// own ([`metrics_router`]).
pub fn router(state: AppState) -> App {
    let config = state.config.clone();
    let metrics = config.serve.metrics_bind.is_none();
    let routes = match config.serve.service {
        Service::All => routes_with(metrics, state.dialog_service.clone()),
        Service::Dialogs => dialog_service_routes_with(metrics),
    };
    let (api, doc) = routes.split_for_parts();
    let api = api
        .route_layer(middleware::from_fn(metrics::track_requests))
        .fallback(not_found)
        .with_state(state);
    let mut app = api
        .merge(openapi::docs_router(doc))
        // A visitor at the root is led to the documentation.
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Redirect::to("/docs") }),
        );
    // The live feed is the main service's.
    if config.serve.service == Service::All {
        app = app.merge(live_page_router());
    }
    with_middleware(app, &config)
}

/// The page of the live feed, `/demo/live`: sign in, follow, post, and watch followed users'
/// posts arrive over the websocket. One self-contained file: it loads nothing from elsewhere,
/// which its Content-Security-Policy also tells the browser.
fn live_page_router() -> Router {
    const PAGE: &str = include_str!("live.html");
    // No other site may frame it (a page that signs in is worth clickjacking).
    const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
                          style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; \
                          frame-ancestors 'none'";
    Router::new().route(
        "/demo/live",
        axum::routing::get(|| async {
            (
                [(axum::http::header::CONTENT_SECURITY_POLICY, POLICY)],
                axum::response::Html(PAGE),
            )
        }),
    )
}

/// `/metrics` alone, for the listener of `METRICS_BIND`.
pub fn metrics_router(state: AppState) -> App {
    let config = state.config.clone();
    let (routes, _) = OpenApiRouter::new()
        .merge(ops::metrics_only())
        .split_for_parts();
    with_middleware(routes.fallback(not_found).with_state(state), &config)
}

/// The served application: the routes inside the middleware stack.
pub type App = tower::util::BoxCloneSyncService<Request, Response, Infallible>;

/// Wraps routes in the middleware every response goes through: [`around_request`] outermost, so
/// its span covers everything and it sees the panic catcher's responses; body limits innermost.
///
/// The stack wraps the router once, as one service, rather than through `Router::layer`, which
/// wraps every route separately: each such layer cost every request a clone of the route's boxed
/// service (and of the state inside it) and a boxed future (docs/benchmarks/users.md).
pub fn with_middleware(routes: Router, config: &Config) -> App {
    let body_limit = config.body_limit_bytes;
    tower::util::BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(
                RequestLimits {
                    time: config.request_timeout(),
                    body_bytes: body_limit,
                },
                around_request,
            ))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(RequestBodyLimitLayer::new(body_limit))
            .layer(DefaultBodyLimit::max(body_limit))
            .service(routes),
    )
}

/// What one request may take: time, and body bytes.
#[derive(Clone, Copy)]
struct RequestLimits {
    time: Duration,
    body_bytes: usize,
}

/// One middleware for what every request needs, in one place (one layer is cheaper than three):
/// the request id (taken or made, echoed), the span that every log line of the request carries,
/// the time limit (503 past it), the JSON error body, one log line at the end, and the reading
/// of what the handler left of the body (`unread_body`: outside the time limit, and outside the
/// body limits, which refuse a body unread).
async fn around_request(
    State(limits): State<RequestLimits>,
    request: Request,
    next: Next,
) -> Response {
    let limit = limits.time;
    let (mut request, unread) = unread_body::watch(request, limits.body_bytes);
    let id = RequestId::from_header(request.headers().get(&REQUEST_ID_HEADER));
    let header = id.header_value();
    let span = tracing::info_span!(
        "request",
        request_id = %id.as_str(),
        method = %request.method(),
        path = %request.uri().path(),
    );
    crate::telemetry::join_request_trace(&span, id.as_str());
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER.clone(), header.clone());
    request.extensions_mut().insert(id.clone());
    let started = Instant::now();
    let response =
        match tokio::time::timeout(limit, next.run(request).instrument(span.clone())).await {
            Ok(response) => response,
            Err(_) => span.in_scope(|| {
                ApiError::unavailable(format!("request took longer than {} ms", limit.as_millis()))
                    .into_response()
            }),
        };
    let mut response = render_error_body(response, id.as_str());
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
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
    if let Some(unread) = unread {
        unread.finish(&mut response).await;
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
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
    use crate::api::AuthUser;
    use crate::auth::TokenKeys;
    use crate::ids::UserId;

    /// State whose pool never connects (pools open connections lazily), for routes that need none.
    fn offline_state() -> AppState {
        let mut config = Config::for_tests("postgres://nobody@127.0.0.1:1/none".parse().unwrap());
        config.db.db_pool_size = Some(1);
        config.db.db_pool_timeout_ms = 100;
        config.db.db_statement_timeout_ms = 100;

        config.auth.hash_concurrency = Some(1);
        config.auth.hash_queue_timeout_ms = 100;
        config.request_timeout_ms = 200;
        config.body_limit_bytes = 1024;
        let db = crate::db::Db::new(&config.db).unwrap();
        let tokens = TokenKeys::new(b"unit-secret", Duration::from_secs(60));
        crate::app::assemble(
            config,
            db,
            tokens,
            None,
            None,
            crate::limits::RateLimits::off(),
        )
        .unwrap()
        .0
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

    /// Answers at once, reading nothing of the body (as a bad token or path would).
    async fn refuse() -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn test_router(state: AppState) -> App {
        let config = state.config.clone();
        let routes = Router::new()
            .route("/refuse", axum::routing::post(refuse))
            .route("/whoami", get(whoami))
            .route("/boom", get(boom))
            .route("/slow", get(slow))
            .with_state(state);
        with_middleware(routes, &config)
    }

    async fn call(router: App, request: Request<Body>) -> (StatusCode, serde_json::Value) {
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

    /// Whether the answer to a POST of `body` to `/refuse` closes the connection.
    async fn refused_closes(body: Body, headers: &[(&str, &str)]) -> bool {
        let mut request = Request::post("/refuse");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = test_router(offline_state())
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        // 413 when the body limit refused the body by its size.
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::PAYLOAD_TOO_LARGE].contains(&response.status())
        );
        response
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|value| value == "close")
    }

    #[tokio::test]
    async fn a_body_left_unread_is_read_up_to_the_limit_or_the_answer_closes_the_connection() {
        // The test state's body limit is 1,024 bytes.
        assert!(!refused_closes(Body::from(vec![b'x'; 1_000]), &[]).await);
        assert!(refused_closes(Body::from(vec![b'x'; 5_000]), &[]).await);
        let declared = [("content-length", "5000")];
        assert!(refused_closes(Body::from(vec![b'x'; 10]), &declared).await);
        // A client waiting for `100 Continue` has sent nothing yet: asking for the body would
        // only make it send what the answer refused.
        let waiting = [("expect", "100-continue")];
        assert!(refused_closes(Body::from(vec![b'x'; 10]), &waiting).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_end_in_time_is_not_waited_for() {
        let (_sender, trickle) = tokio::sync::mpsc::channel::<Result<Vec<u8>, Infallible>>(1);
        let endless = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(trickle));
        assert!(refused_closes(endless, &[]).await);
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
