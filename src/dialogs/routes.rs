//! `POST /dialog/{user_id}/send` and `GET /dialog/{user_id}/list`.

use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::events::DialogEvent;
use super::sql::{Page, Sent};
use super::store::StoreError;
use super::types::{Message, MessageText, LIST_DEFAULT, LIST_MAX, LIST_MAX_DEPTH};
use crate::api::{ApiError, AuthUser, ErrorBody, Json, Path, Query, RequestId, Writer};
use crate::db::EventRecord;
use crate::ids::UserId;
use crate::input::{positive_id, Whole};
use crate::state::AppState;

/// A store that is down, slow or still loading is a 503, like the database; anything else it
/// says, a 500.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(e) => e.into(),
            StoreError::Tarantool(e) if e.is_transient() => {
                ApiError::dependency_down("the dialog store", e)
            }
            StoreError::Tarantool(e) => ApiError::Internal(e.into()),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(list))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SendRequest {
    /// 1 to 4000 characters.
    #[schema(
        example = "Привет! Как дела?",
        min_length = 1,
        max_length = 4000,
        pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f][^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
    )]
    pub text: String,
}

/// The other party of a dialog: a user who is not the caller.
pub(super) fn other_party(me: UserId, other: UserId) -> Result<UserId, ApiError> {
    if other == me {
        return Err(ApiError::bad_request("a dialog needs two different users"));
    }
    Ok(other)
}

/// Sends a message to a user.
#[utoipa::path(
    post, path = "/dialog/{user_id}/send", tag = "dialogs",
    params(("user_id" = String, Path, description = "The recipient", pattern = "^[1-9][0-9]{0,17}$")),
    request_body = SendRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Sent"),
        (status = 400, description = "Invalid id or text, or the caller's own id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body over BODY_LIMIT_BYTES", body = ErrorBody),
        (status = 415, description = "Body not sent as application/json", body = ErrorBody),
        (status = 429, description = "Over a write limit (RATE_WRITES_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "The database (or the dialog store) is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn send(
    State(state): State<AppState>,
    Writer(me): Writer,
    request_id: RequestId,
    Path(user_id): Path<UserId>,
    Json(request): Json<SendRequest>,
) -> Result<(), ApiError> {
    send_message(&state, me, user_id, &request.text, &request_id)
        .await
        .map(|_| ())
}

/// Stores a message from the caller, then tells the unread counters; its number in the dialog.
/// Both APIs send through here.
pub(super) async fn send_message(
    state: &AppState,
    me: UserId,
    to: UserId,
    text: &str,
    request_id: &RequestId,
) -> Result<i64, ApiError> {
    let to = other_party(me, to)?;
    let text = MessageText::parse(text)?;
    let record = event_record(state, request_id);
    match state.dialogs.send(&state.db, me, to, &text, record).await? {
        Sent::Message(stored) => {
            state
                .dialog_events
                .written(DialogEvent::MessageSent {
                    id: stored.id,
                    from: me.0,
                    to: to.0,
                    sent: stored.sent,
                })
                .await;
            Ok(stored.id)
        }
        Sent::UnknownRecipient => Err(ApiError::not_found("user not found")),
        Sent::UnknownSender => Err(ApiError::unknown_token_user()),
    }
}

/// Where this instance's dialog writes record their events (see
/// [`crate::broker::DialogEvents`]).
pub(super) fn event_record<'a>(state: &AppState, request_id: &'a RequestId) -> EventRecord<'a> {
    if state.dialog_events.through_outbox() {
        EventRecord::Outbox {
            request_id: request_id.as_str(),
        }
    } else {
        EventRecord::None
    }
}

/// The page a list asks for: its size and where it starts. Both APIs page through here.
pub(super) fn page_of(
    limit: Option<Whole>,
    cursor: Option<&str>,
    offset: Option<Whole>,
) -> Result<(i64, Page), ApiError> {
    let limit = limit.map_or(LIST_DEFAULT, |w| w.0);
    if !(1..=LIST_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {LIST_MAX}"
        )));
    }
    let page = match (cursor, offset.map(|w| w.0)) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give a cursor or an offset, not both",
            ))
        }
        (Some(cursor), None) => match positive_id(cursor) {
            Some(id) => Page::Before(id),
            None => return Err(ApiError::bad_request("invalid cursor")),
        },
        // Written so that no offset, however large, can overflow.
        (None, Some(offset)) if offset < 0 || offset > LIST_MAX_DEPTH - limit => {
            return Err(ApiError::bad_request(format!(
                "offset must be at least 0 and offset + limit at most {LIST_MAX_DEPTH}; \
                 page deeper with the cursor"
            )))
        }
        (None, offset) => Page::Offset(offset.unwrap_or(0)),
    };
    Ok((limit, page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1..=1000 (default 100).
    /// A whole number, however written (`10`, `10.0`, `1e1`).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<Whole>,
    /// The `id` of the last message of the previous page: this page starts below it.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
    /// Messages to skip instead of a cursor (offset + limit ≤ 10000).
    /// A whole number, however written (`10`, `10.0`, `1e1`).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 9999)]
    pub offset: Option<Whole>,
}

/// The caller's dialog with a user, newest first. Page with `cursor` (the last `id` seen), or
/// with `offset` for shallow pages. A page holds `limit` messages, or fewer when they are long:
/// those that start within 1 MiB of text (at least one); an empty page is the end.
#[utoipa::path(
    get, path = "/dialog/{user_id}/list", tag = "dialogs",
    params(("user_id" = String, Path, description = "The other party", pattern = "^[1-9][0-9]{0,17}$"), ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Messages, newest first", body = Vec<Message>),
        (status = 400, description = "Invalid id, limit, cursor or offset", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 503, description = "The database (or the dialog store) is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(user_id): Path<UserId>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Vec<Message>>, ApiError> {
    let other = other_party(me, user_id)?;
    let (limit, page) = page_of(query.limit, query.cursor.as_deref(), query.offset)?;
    list_messages(&state, me, other, limit, page)
        .await
        .map(axum::Json)
}

/// A page of the caller's dialog with `other`, newest first. Both APIs list through here.
pub(super) async fn list_messages(
    state: &AppState,
    me: UserId,
    other: UserId,
    limit: i64,
    page: Page,
) -> Result<Vec<Message>, ApiError> {
    let page = state
        .dialogs
        .list(&state.db, me, other, limit, page)
        .await?;
    // Nothing to show: perhaps nobody to show it to.
    if page.as_ref().is_none_or(Vec::is_empty) {
        state.known_users.require(&state.db, me).await?;
    }
    page.ok_or_else(|| ApiError::not_found("user not found"))
}
