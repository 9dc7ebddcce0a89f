//! Operational endpoints: liveness, readiness and metrics. The API's `/ready` says what is up or
//! down and nothing about where or why; the detail (addresses, the errors' own text) is the
//! operators', on the listener of `METRICS_BIND` beside `/metrics`, and in the debug log.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiError, ErrorBody};
use crate::db::replicas::{Health, Replicas};
use crate::db::DbError;
use crate::state::AppState;
use crate::upstream::Upstream;

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

/// The operators' listener (`METRICS_BIND`): `/metrics`, and `/ready` in detail.
pub fn metrics_only() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .route("/ready", axum::routing::get(ready_in_detail))
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`; `read-only` when the primary does not answer but a replica serves reads;
    /// `degraded` when the dialog store (Tarantool) or the dialog service does not answer:
    /// everything else is served, dialogs answer 503.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// The dialog store of `DIALOG_STORE=tarantool` (absent with PostgreSQL's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialog_store: Option<StoreStatus>,
    /// The dialog service of `DIALOGS_URL`, asked for its own readiness (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialog_service: Option<ServiceStatus>,
    /// Each replica of `DATABASE_READ_URLS` as the last check found it (absent without them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreStatus {
    #[schema(example = "tarantool")]
    pub store: &'static str,
    /// Where it is: on the operators' listener only (`METRICS_BIND`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `up` or `down` (`down: why` on the operators' listener).
    #[schema(example = "up")]
    pub state: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceStatus {
    /// Where it is: on the operators' listener only (`METRICS_BIND`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `up` or `down` (`down: why` on the operators' listener).
    #[schema(example = "up")]
    pub state: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaStatus {
    /// Its address: on the operators' listener only (`METRICS_BIND`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `up`, `lagging` (further behind than `READ_MAX_LAG_MS`), `down`, `not a replica`
    /// (promoted) or `unknown` (not checked yet).
    #[schema(example = "up")]
    pub state: &'static str,
    /// How far behind the primary its reads may be, when it answers.
    #[schema(example = 0)]
    pub lag_ms: Option<u64>,
}

/// The database answers: the primary, or at least a replica for reads.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve (all of it, or reads)", body = Readiness),
        (status = 503, description = "A dependency is unreachable", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<axum::Json<Readiness>, ApiError> {
    readiness(&state, false).await.map(axum::Json)
}

/// `/ready` with where each dependency is and why one is down, for the operators' listener.
async fn ready_in_detail(State(state): State<AppState>) -> Result<axum::Json<Readiness>, ApiError> {
    readiness(&state, true).await.map(axum::Json)
}

/// What is up; with `detail`, where each part is and why one is down (else in the debug log).
async fn readiness(state: &AppState, detail: bool) -> Result<Readiness, ApiError> {
    let check = async {
        let db = state.db.get().await?;
        db.simple_query("select 1").await?;
        Ok::<_, DbError>(())
    };
    let primary = tokio::time::timeout(READY_TIMEOUT, check)
        .await
        .map_err(|_| ApiError::unavailable("the database did not answer in time"))
        .and_then(|answered| answered.map_err(ApiError::from));
    let replicas = state
        .db
        .replicas()
        .map_or_else(Vec::new, |r| replica_statuses(r, detail));
    let dialog_store = state
        .dialogs
        .check()
        .await
        .map(|(address, answer)| StoreStatus {
            store: state.dialogs.name(),
            state: told("dialog store", answer.map_err(|e| e.to_string()), detail),
            address: detail.then_some(address),
        });
    let dialog_service = match &state.dialog_service {
        Some(upstream) => Some(ServiceStatus {
            state: told("dialog service", service_state(upstream).await, detail),
            url: detail.then(|| upstream.url().to_owned()),
        }),
        None => None,
    };
    let status = match primary {
        Ok(()) if dialog_store.as_ref().is_some_and(|s| s.state != "up") => "degraded",
        Ok(()) if dialog_service.as_ref().is_some_and(|s| s.state != "up") => "degraded",
        Ok(()) => "ready",
        Err(_) if replicas.iter().any(|r| r.state == "up") => "read-only",
        Err(e) => return Err(e),
    };
    Ok(Readiness {
        status,
        dialog_store,
        dialog_service,
        replicas,
    })
}

/// A part's state as told: `up`, or `down` with why when `detail` (else why goes to the log).
fn told(part: &str, answer: Result<(), String>, detail: bool) -> String {
    match answer {
        Ok(()) => "up".to_owned(),
        Err(why) if detail => format!("down: {why}"),
        Err(why) => {
            tracing::debug!(part, %why, "readiness: down");
            "down".to_owned()
        }
    }
}

/// Whether a service answers its `/ready` with a success, within its time limit.
async fn service_state(upstream: &Upstream) -> Result<(), String> {
    let request = axum::http::Request::get("/ready")
        .body(bytes::Bytes::new())
        .map_err(|e| e.to_string())?;
    match upstream.send(request).await {
        Ok(answer) if answer.status().is_success() => Ok(()),
        Ok(answer) => Err(format!("/ready answered {}", answer.status())),
        Err(e) => Err(e.to_string()),
    }
}

fn replica_statuses(replicas: &Replicas, detail: bool) -> Vec<ReplicaStatus> {
    replicas
        .nodes()
        .iter()
        .map(|node| {
            let (state, lag) = match node.health() {
                Health::Up { lag, .. } if lag > replicas.max_lag() => ("lagging", Some(lag)),
                Health::Up { lag, .. } => ("up", Some(lag)),
                Health::Down(_) => ("down", None),
                Health::NotReplica => ("not a replica", None),
                Health::Unknown => ("unknown", None),
            };
            ReplicaStatus {
                name: detail.then(|| node.name.clone()),
                state,
                lag_ms: lag.map(|lag| lag.as_millis().min(u128::from(u64::MAX)) as u64),
            }
        })
        .collect()
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    pool_gauges("primary", state.db.pool());
    for node in state.db.replicas().map_or(&[][..], |r| r.nodes()) {
        pool_gauges(&node.name, node.pool());
    }
    let hashing = state.hasher.load();
    metrics::gauge!("password_hash_busy").set(hashing.busy as f64);
    metrics::gauge!("password_hash_waiting").set(hashing.waiting as f64);
    if state.events.through_outbox() || state.dialog_events.through_outbox() {
        outbox_gauges(&state).await;
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        super::metrics::handle().render(),
    )
}

/// Longest the outbox's backlog query may take at a scrape.
const BACKLOG_TIMEOUT: Duration = Duration::from_millis(500);

/// The outbox's backlog: rows waiting and the age of the oldest. Left as they were when the
/// database does not answer in time: a scrape never waits on it for long.
async fn outbox_gauges(state: &AppState) {
    let backlog = tokio::time::timeout(BACKLOG_TIMEOUT, async {
        crate::broker::outbox_backlog(&state.db.get().await?).await
    })
    .await;
    match backlog {
        Ok(Ok((rows, oldest))) => {
            metrics::gauge!("outbox_rows").set(rows as f64);
            metrics::gauge!("outbox_oldest_seconds").set(oldest);
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "outbox backlog not read"),
        Err(_) => tracing::debug!("outbox backlog not read in time"),
    }
}

/// The gauges of one pool, labelled `primary` or with the replica's name.
fn pool_gauges(name: &str, pool: &deadpool_postgres::Pool) {
    let status = pool.status();
    let name = name.to_owned();
    metrics::gauge!("db_pool_max_size", "pool" => name.clone()).set(status.max_size as f64);
    metrics::gauge!("db_pool_connections", "pool" => name.clone()).set(status.size as f64);
    metrics::gauge!("db_pool_available", "pool" => name.clone()).set(status.available as f64);
    metrics::gauge!("db_pool_waiting", "pool" => name).set(status.waiting as f64);
}
