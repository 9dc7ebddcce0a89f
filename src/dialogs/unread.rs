//! Unread messages: `GET /dialog/unread` and `PUT /dialog/{user_id}/read` (and their `/v2`
//! twins), and the reconciliation that keeps the counters whole.
//!
//! The truth is in the dialog store: the messages, and how far each party has read each dialog
//! (its read mark, which only grows). The counters in Redis (`crate::cache::UnreadCounters`) are
//! derived from it by the dialog events, a saga by choreography: the dialogs' write commits
//! (with its event in the outbox, when RabbitMQ carries them), and the counters' consumer reacts
//! to the event, with no coordinator between the two. The second step cannot refuse (a count is
//! a merge), so it is retried until it lands rather than compensated; the only compensation is a
//! repair: when an event could not be applied in process, or Redis lost its data, the counters
//! are rebuilt from the store (`socialnet counters rebuild`, or on its own by [`reconcile`]).

use std::time::Duration;

use axum::extract::State;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::events::DialogEvent;
use super::routes::{event_record, other_party};
use super::store::DialogStore;
use super::types::DialogKey;
use crate::api::{ApiError, AuthUser, ErrorBody, Json, Path, RequestId, Writer};
use crate::cache::{CacheError, UnreadCounters};
use crate::db::Db;
use crate::ids::UserId;
use crate::input::IdInput;
use crate::state::AppState;

/// The old API's paths, beside `/dialog/{user_id}/send` and `/list`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(unread))
        .routes(routes!(read))
}

/// The dialog service's paths.
pub fn v2_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(unread_v2))
        .routes(routes!(read_v2))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCounts {
    /// Unread messages in all the caller's dialogs.
    #[schema(example = 3)]
    pub total: i64,
    /// The dialogs with unread messages, by the other party's id.
    pub dialogs: Vec<DialogUnread>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DialogUnread {
    /// The other party.
    #[schema(example = "42")]
    pub user_id: String,
    /// Their messages the caller has not read.
    #[schema(example = 3)]
    pub unread: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReadRequest {
    /// The newest message read: it and every message before it in the dialog are read. A
    /// number past the dialog's last message means all of them.
    pub up_to: IdInput,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadMark {
    /// How far the caller has read the dialog now ("0" while it has no message). Marks only
    /// grow: an older one than this changes nothing.
    #[schema(example = "18")]
    pub read_up_to: String,
}

/// The caller's unread messages, in total and per dialog.
///
/// Counts follow the messages within moments: at once in process, after the relay through
/// RabbitMQ.
#[utoipa::path(
    get, path = "/dialog/unread", tag = "dialogs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unread messages", body = UnreadCounts),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 501, description = "The counters are off on this deployment (no REDIS_URL)", body = ErrorBody),
        (status = 503, description = "Redis is down; retry later", body = ErrorBody),
    )
)]
pub async fn unread(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<axum::Json<UnreadCounts>, ApiError> {
    unread_counts(&state, me).await.map(axum::Json)
}

/// The caller's unread messages, in total and per dialog.
#[utoipa::path(
    get, path = "/v2/dialogs/unread", tag = "dialogs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unread messages", body = UnreadCounts),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 501, description = "The counters are off on this deployment (no REDIS_URL)", body = ErrorBody),
        (status = 503, description = "Redis is down; retry later", body = ErrorBody),
    )
)]
pub async fn unread_v2(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<axum::Json<UnreadCounts>, ApiError> {
    unread_counts(&state, me).await.map(axum::Json)
}

async fn unread_counts(state: &AppState, me: UserId) -> Result<UnreadCounts, ApiError> {
    let counters = state.counters.as_ref().ok_or_else(|| {
        ApiError::NotImplemented("unread counters are off: this service has no REDIS_URL".into())
    })?;
    let unread = counters.unread(me.0).await.map_err(unavailable)?;
    if unread.total == 0 {
        state.known_users.require(&state.db, me).await?;
    }
    Ok(UnreadCounts {
        total: unread.total,
        dialogs: unread
            .dialogs
            .into_iter()
            .map(|(user, unread)| DialogUnread {
                user_id: user.to_string(),
                unread,
            })
            .collect(),
    })
}

fn unavailable(e: CacheError) -> ApiError {
    ApiError::dependency_down("the unread counters", e)
}

/// Marks the caller's dialog with a user read up to a message (and every message before it).
#[utoipa::path(
    put, path = "/dialog/{user_id}/read", tag = "dialogs",
    params(("user_id" = String, Path, description = "The other party", pattern = "^[1-9][0-9]{0,17}$")),
    request_body = ReadRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Read up to here", body = ReadMark),
        (status = 400, description = "Invalid id or up_to, or the caller's own id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body over BODY_LIMIT_BYTES", body = ErrorBody),
        (status = 415, description = "Body not sent as application/json", body = ErrorBody),
        (status = 429, description = "Over a write limit (RATE_WRITES_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "The dialog store is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    Writer(me): Writer,
    request_id: RequestId,
    Path(user_id): Path<UserId>,
    Json(request): Json<ReadRequest>,
) -> Result<axum::Json<ReadMark>, ApiError> {
    mark_read(&state, me, user_id, request.up_to, &request_id)
        .await
        .map(axum::Json)
}

/// Marks the caller's dialog with a user read up to a message (and every message before it).
#[utoipa::path(
    put, path = "/v2/dialogs/{user_id}/read", tag = "dialogs",
    params(("user_id" = String, Path, description = "The other party", pattern = "^[1-9][0-9]{0,17}$")),
    request_body = ReadRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Read up to here", body = ReadMark),
        (status = 400, description = "Invalid id or up_to, or the caller's own id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body over BODY_LIMIT_BYTES", body = ErrorBody),
        (status = 415, description = "Body not sent as application/json", body = ErrorBody),
        (status = 429, description = "Over a write limit (RATE_WRITES_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "The dialog store is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn read_v2(
    State(state): State<AppState>,
    Writer(me): Writer,
    request_id: RequestId,
    Path(user_id): Path<UserId>,
    Json(request): Json<ReadRequest>,
) -> Result<axum::Json<ReadMark>, ApiError> {
    mark_read(&state, me, user_id, request.up_to, &request_id)
        .await
        .map(axum::Json)
}

/// Raises the caller's read mark in the store, then tells the counters.
async fn mark_read(
    state: &AppState,
    me: UserId,
    other: UserId,
    up_to: IdInput,
    request_id: &RequestId,
) -> Result<ReadMark, ApiError> {
    let other = other_party(me, other)?;
    let up_to = up_to
        .positive()
        .ok_or_else(|| ApiError::bad_request("up_to must be a message id (a positive integer)"))?;
    let record = event_record(state, request_id);
    let mark = state
        .dialogs
        .mark_read(&state.db, me, other, up_to, record)
        .await?;
    if mark.now == 0 {
        // No message in the dialog: perhaps no such user at all, on either side.
        state.known_users.require(&state.db, me).await?;
        if !crate::users::sql::user_exists(&state.db.get().await?, other).await? {
            return Err(ApiError::not_found("user not found"));
        }
    } else if mark.raised {
        state
            .dialog_events
            .written(DialogEvent::Read {
                reader: me.0,
                other: other.0,
                up_to: mark.now,
                seen: mark.seen,
            })
            .await;
    }
    Ok(ReadMark {
        read_up_to: mark.now.to_string(),
    })
}

/// What a rebuild found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Dialog sides with a message sent to them.
    pub sides: u64,
    /// Unread messages counted.
    pub unread: u64,
}

/// Dialogs read from the store per batch, and dialog sides merged into Redis at once.
const REBUILD_BATCH: i64 = 200;
const REBUILD_CONCURRENCY: usize = 16;

/// Builds the counters from the store: every dialog's marks and the messages above them, merged
/// into what Redis holds (`from_scratch`: after clearing it). Events applied meanwhile merge too,
/// so traffic may go on. Ends by marking the counters built.
pub async fn rebuild(
    store: &DialogStore,
    db: &Db,
    counters: &UnreadCounters,
    from_scratch: bool,
) -> anyhow::Result<Rebuilt> {
    if from_scratch {
        counters.clear().await?;
    } else {
        counters.forget_earlier_form().await?;
    }
    let mut rebuilt = Rebuilt::default();
    let mut after = i64::MIN;
    loop {
        let (sides, next) = store.unread_sides(db, after, REBUILD_BATCH).await?;
        rebuilt.sides += sides.len() as u64;
        rebuilt.unread += sides
            .iter()
            .map(|s| (s.sent - s.seen).max(0) as u64)
            .sum::<u64>();
        futures_util::stream::iter(sides.iter().map(Ok::<_, CacheError>))
            .try_for_each_concurrent(REBUILD_CONCURRENCY, |side| {
                counters.merge(side.user, side.other, side.sent, side.seen)
            })
            .await?;
        match next {
            Some(key) => after = key,
            None => break,
        }
    }
    counters.mark_built().await?;
    Ok(rebuilt)
}

/// The longest a rebuild may hold the right to rebuild before another instance may take it.
const REBUILD_HOLD: Duration = Duration::from_secs(600);

/// Dialogs marked stale that one reconciliation repairs at most (the rest wait for the next).
const REPAIR_BATCH: usize = 100;

/// Keeps the counters whole, every `every`: merges the dialogs marked stale (a write whose
/// event could not be recorded) from the store; rebuilds them all (merging) when Redis has lost
/// them (a restart: their `built` mark is gone) or when this process failed to apply an event,
/// one instance at a time. Runs until aborted.
pub async fn reconcile(store: DialogStore, db: Db, counters: UnreadCounters, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Keys of the counters' earlier form, which an instance of the version before may write
        // again during a rolling upgrade: gone at the next tick (one check when there are none).
        if let Err(e) = counters.forget_earlier_form().await {
            tracing::debug!(error = %e, "unread counters: cannot look for their earlier form");
        }
        repair_stale_dialogs(&store, &db, &counters).await;
        let stale = counters.take_stale();
        let needed = match counters.is_built().await {
            Ok(built) => !built || stale,
            Err(e) => {
                // Redis away: try again at the next tick.
                tracing::debug!(error = %e, "unread counters: cannot check them");
                if stale {
                    counters.mark_stale();
                }
                continue;
            }
        };
        if !needed {
            continue;
        }
        match counters.claim_rebuild(REBUILD_HOLD).await {
            Ok(true) => {}
            // Another instance rebuilds, or Redis went away: look again at the next tick.
            Ok(false) | Err(_) => {
                if stale {
                    counters.mark_stale();
                }
                continue;
            }
        }
        let started = std::time::Instant::now();
        match rebuild(&store, &db, &counters, false).await {
            Ok(rebuilt) => {
                metrics::counter!("unread_rebuilds").increment(1);
                tracing::info!(
                    sides = rebuilt.sides,
                    unread = rebuilt.unread,
                    ms = started.elapsed().as_millis() as u64,
                    stale,
                    "unread counters rebuilt from the messages"
                );
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "unread counters: rebuild failed; retrying");
                counters.mark_stale();
            }
        }
        if let Err(e) = counters.release_rebuild().await {
            tracing::debug!(error = %e, "unread counters: the rebuild's claim is left to expire");
        }
    }
}

/// Merges from the store the dialogs marked stale, and unmarks each once merged; one that cannot
/// be merged now stays marked for the next time.
async fn repair_stale_dialogs(store: &DialogStore, db: &Db, counters: &UnreadCounters) {
    let pairs = match counters.stale_dialogs(REPAIR_BATCH).await {
        Ok(pairs) => pairs,
        Err(e) => {
            tracing::debug!(error = %e, "unread counters: cannot read the dialogs to repair");
            return;
        }
    };
    for (low, high) in pairs {
        let key = DialogKey::of(UserId(low), UserId(high));
        let repaired = async {
            for side in store.unread_sides_of(db, key).await? {
                counters
                    .merge(side.user, side.other, side.sent, side.seen)
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        match repaired {
            Ok(()) => {
                metrics::counter!("unread_repairs").increment(1);
                tracing::info!(
                    low,
                    high,
                    "unread counters: a dialog that lost an event merged from the store"
                );
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), low, high, "unread counters: a dialog to repair was not merged; trying again");
                if counters.mark_dialog_stale(low, high).await.is_err() {
                    counters.mark_stale();
                }
            }
        }
    }
}

/// `socialnet counters rebuild`: from scratch, once no instance is rebuilding (waits for one
/// that is).
pub async fn rebuild_now(
    store: &DialogStore,
    db: &Db,
    counters: &UnreadCounters,
) -> anyhow::Result<Rebuilt> {
    let deadline = std::time::Instant::now() + REBUILD_HOLD;
    let mut said = false;
    while !counters.claim_rebuild(REBUILD_HOLD).await? {
        if !said {
            eprintln!("another instance is rebuilding the counters; waiting for it to finish");
            said = true;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "another instance has been rebuilding the counters for too long"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let outcome = rebuild(store, db, counters, true).await;
    let released = counters.release_rebuild().await;
    let rebuilt = outcome?;
    released?;
    Ok(rebuilt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_to_is_a_string_or_a_number() {
        let text: ReadRequest = serde_json::from_str(r#"{"up_to": "18"}"#).unwrap();
        assert!(matches!(text.up_to, IdInput::Text(ref t) if t == "18"));
        let number: ReadRequest = serde_json::from_str(r#"{"up_to": 18}"#).unwrap();
        assert!(matches!(number.up_to, IdInput::Number(18)));
        assert!(serde_json::from_str::<ReadRequest>(r#"{"up_to": -1}"#).is_err());
        assert!(serde_json::from_str::<ReadRequest>(r#"{}"#).is_err());
    }
}
