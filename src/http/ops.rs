//! Operational endpoints: liveness, readiness and metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiError, ErrorBody};
use crate::db::DbError;
use crate::state::AppState;

const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Health and readiness, and `/metrics` when `with_metrics` (unless it has a listener of its
/// own, see `METRICS_BIND`).
pub fn router(with_metrics: bool) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready));
    if with_metrics {
        router.routes(routes!(metrics))
    } else {
        router
    }
}

/// `/metrics` alone.
pub fn metrics_only() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = Status)))]
pub async fn health() -> axum::Json<Status> {
    axum::Json(Status { status: "ok" })
}

/// Every dependency answers.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Status),
        (status = 503, description = "A dependency is unreachable", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<axum::Json<Status>, ApiError> {
    let check = async {
        let db = state.db.get().await?;
        db.simple_query("select 1").await?;
        Ok::<_, DbError>(())
    };
    tokio::time::timeout(READY_TIMEOUT, check)
        .await
        .map_err(|_| ApiError::Unavailable("database did not answer in time".into()))??;
    Ok(axum::Json(Status { status: "ready" }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let pool = state.db.pool().status();
    metrics::gauge!("db_pool_max_size").set(pool.max_size as f64);
    metrics::gauge!("db_pool_connections").set(pool.size as f64);
    metrics::gauge!("db_pool_available").set(pool.available as f64);
    metrics::gauge!("db_pool_waiting").set(pool.waiting as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        super::metrics::handle().render(),
    )
}
