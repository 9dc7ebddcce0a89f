//! The dialog service's own API, `/v2/dialogs/{user_id}/messages`, for new clients: a send
//! answers the new message's id, a list is a page with the cursor of the next one. The same
//! store, checks and messages as `/dialog/{user_id}/send` and `/list` (the `routes` module),
//! which the service serves too, so both ways in see one dialog.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::routes::{list_messages, other_party, page_of, send_message, SendRequest};
use super::types::Message;
use crate::api::{ApiError, AuthUser, ErrorBody, Json, Path, Query, RequestId, Writer};
use crate::ids::UserId;
use crate::input::Whole;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send, list))
        .merge(super::unread::v2_router())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SentMessage {
    /// The message's number in its dialog: `before` of a list that starts below it.
    #[schema(example = "18")]
    pub id: String,
}

/// Sends a message to a user; answers its id.
#[utoipa::path(
    post, path = "/v2/dialogs/{user_id}/messages", tag = "dialogs",
    params(("user_id" = String, Path, description = "The recipient", pattern = "^[1-9][0-9]{0,17}$")),
    request_body = SendRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = SentMessage),
        (status = 400, description = "Invalid id or text, or the caller's own id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body over BODY_LIMIT_BYTES", body = ErrorBody),
        (status = 415, description = "Body not sent as application/json", body = ErrorBody),
        (status = 429, description = "Over a write limit (RATE_WRITES_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "The dialog store is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn send(
    State(state): State<AppState>,
    Writer(me): Writer,
    request_id: RequestId,
    Path(user_id): Path<UserId>,
    Json(request): Json<SendRequest>,
) -> Result<(StatusCode, axum::Json<SentMessage>), ApiError> {
    let id = send_message(&state, me, user_id, &request.text, &request_id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(SentMessage { id: id.to_string() }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1..=1000 (default 100). A page of long messages holds fewer: those that start
    /// within 1 MiB of text (at least one); `next` says where to go on.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<Whole>,
    /// Messages with ids below this one (the previous page's `next`); absent: the newest.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// Newest first.
    pub messages: Vec<Message>,
    /// `before` of the next page; absent on the last one.
    #[schema(example = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The caller's dialog with a user, a page at a time, newest first.
#[utoipa::path(
    get, path = "/v2/dialogs/{user_id}/messages", tag = "dialogs",
    params(("user_id" = String, Path, description = "The other party", pattern = "^[1-9][0-9]{0,17}$"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 400, description = "Invalid id, limit or cursor", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 503, description = "The dialog store is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(user_id): Path<UserId>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<MessagePage>, ApiError> {
    let other = other_party(me, user_id)?;
    let (limit, page) = page_of(query.limit, query.before.as_deref(), None)?;
    let messages = list_messages(&state, me, other, limit, page).await?;
    // The message ids are 1, 2, 3…, so the last page is known without asking: it ends at
    // message 1. Any other page has more below it, also one cut short of `limit` by its bytes.
    let next = match messages.last() {
        Some(last) if last.id != "1" => Some(last.id.clone()),
        _ => None,
    };
    Ok(axum::Json(MessagePage { messages, next }))
}
