//! HTTP handlers of posts and the feed.

use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::events::PostEvent;
use super::sql::{self, Ownership};
use super::types::{within_page_bytes, Post, PostText, FEED_WINDOW};
use crate::api::{ApiError, AuthUser, ErrorBody, Json, Path, Query, Reader, RequestId, Writer};
use crate::db::EventRecord;
use crate::ids::PostId;
use crate::input::IdInput;
use crate::input::Whole;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_post))
        .routes(routes!(update_post))
        .routes(routes!(delete_post))
        .routes(routes!(get_post))
        .routes(routes!(feed))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePostRequest {
    /// 1 to 5000 characters.
    #[schema(
        example = "Привет, мир!",
        min_length = 1,
        max_length = 5000,
        pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f][^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
    )]
    pub text: String,
}

/// Publishes a post; followers see it in their feed and, if connected, on the live feed.
#[utoipa::path(
    post, path = "/post/create", tag = "posts",
    request_body = CreatePostRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new post's id", body = String, content_type = "application/json", example = json!("1024")),
        (status = 400, description = "Invalid text", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 413, description = "Body over BODY_LIMIT_BYTES", body = ErrorBody),
        (status = 415, description = "Body not sent as application/json", body = ErrorBody),
        (status = 429, description = "Over a write limit (RATE_WRITES_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn create_post(
    State(state): State<AppState>,
    Writer(me): Writer,
    request_id: RequestId,
    Json(request): Json<CreatePostRequest>,
) -> Result<axum::Json<String>, ApiError> {
    let text = PostText::parse(&request.text)?;
    let id = {
        let db = state.db.get().await?;
        sql::insert_post(&db, me, &text, event_record(&state, &request_id))
            .await?
            .ok_or_else(ApiError::unknown_token_user)?
    };
    state.db.wrote(me);
    state.events.written(|| PostEvent::Created {
        post_id: id.0,
        author_id: me.0,
        text: text.as_str().to_owned(),
    });
    Ok(axum::Json(id.to_string()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdatePostRequest {
    pub id: IdInput,
    /// 1 to 5000 characters.
    #[schema(
        example = "Исправленный текст",
        min_length = 1,
        max_length = 5000,
        pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f][^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
    )]
    pub text: String,
}

/// Replaces a post's text. Only its author may.
#[utoipa::path(
    put, path = "/post/update", tag = "posts",
    request_body = UpdatePostRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated"),
        (status = 400, description = "Invalid id or text", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Someone else's post", body = ErrorBody),
        (status = 404, description = "No such post", body = ErrorBody),
        (status = 413, description = "Body over BODY_LIMIT_BYTES", body = ErrorBody),
        (status = 415, description = "Body not sent as application/json", body = ErrorBody),
        (status = 429, description = "Over a write limit (RATE_WRITES_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn update_post(
    State(state): State<AppState>,
    Writer(me): Writer,
    request_id: RequestId,
    Json(request): Json<UpdatePostRequest>,
) -> Result<(), ApiError> {
    let id: PostId = request.id.into_text().parse()?;
    let text = PostText::parse(&request.text)?;
    {
        let db = state.db.get().await?;
        written(sql::update_post(&db, me, id, &text, event_record(&state, &request_id)).await?)?;
    }
    state.db.wrote(me);
    state.events.written(|| PostEvent::Updated {
        post_id: id.0,
        author_id: me.0,
    });
    Ok(())
}

/// Deletes a post. Only its author may; afterwards it is gone from `get` and from feeds.
#[utoipa::path(
    put, path = "/post/delete/{id}", tag = "posts",
    params(("id" = String, Path, description = "Post id", pattern = "^[1-9][0-9]{0,17}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Someone else's post", body = ErrorBody),
        (status = 404, description = "No such post", body = ErrorBody),
        (status = 429, description = "Over a write limit (RATE_WRITES_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn delete_post(
    State(state): State<AppState>,
    Writer(me): Writer,
    request_id: RequestId,
    Path(id): Path<PostId>,
) -> Result<(), ApiError> {
    {
        let db = state.db.get().await?;
        written(sql::delete_post(&db, me, id, event_record(&state, &request_id)).await?)?;
    }
    state.db.wrote(me);
    state.events.written(|| PostEvent::Deleted {
        post_id: id.0,
        author_id: me.0,
    });
    Ok(())
}

/// Where this instance's writes record their events (see [`crate::broker::PostEvents`]).
fn event_record<'a>(state: &AppState, request_id: &'a RequestId) -> EventRecord<'a> {
    if state.events.through_outbox() {
        EventRecord::Outbox {
            request_id: request_id.as_str(),
        }
    } else {
        EventRecord::None
    }
}

fn written(outcome: Ownership) -> Result<(), ApiError> {
    match outcome {
        Ownership::Done => Ok(()),
        Ownership::NotAuthor => Err(ApiError::Forbidden(
            "only the author may change a post".into(),
        )),
        Ownership::Missing => Err(ApiError::not_found("post not found")),
    }
}

/// A post. No token needed.
#[utoipa::path(
    get, path = "/post/get/{id}", tag = "posts",
    params(("id" = String, Path, description = "Post id", pattern = "^[1-9][0-9]{0,17}$")),
    responses(
        (status = 200, description = "The post", body = Post),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such post", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn get_post(
    State(state): State<AppState>,
    Reader(reader): Reader,
    Path(id): Path<PostId>,
) -> Result<axum::Json<Post>, ApiError> {
    let db = state.db.key_read(reader).await?;
    sql::find_post(&db, id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("post not found"))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Posts to skip (default 0).
    /// A whole number, however written (`10`, `10.0`, `1e1`).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset: Option<Whole>,
    /// Page size, at least 1 (default 10); past what is left of the feed's 1000 posts, what is
    /// left. A whole number, however written (`10`, `10.0`, `1e1`).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub limit: Option<Whole>,
}

/// Posts of the users the caller follows, newest first, from their latest 1000. A page holds
/// `limit` posts, or fewer when they are long: those that start within 1 MiB of text (at least
/// one); the next page starts at `offset` plus the posts received.
#[utoipa::path(
    get, path = "/post/feed", tag = "posts",
    params(FeedQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Newest first; past the 1000th post, nothing", body = Vec<Post>),
        (status = 400, description = "Invalid offset or limit", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn feed(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(query): Query<FeedQuery>,
) -> Result<axum::Json<Vec<Post>>, ApiError> {
    let offset = query.offset.map_or(0, |w| w.0);
    let limit = query.limit.map_or(10, |w| w.0);
    if offset < 0 {
        return Err(ApiError::bad_request("offset must be at least 0"));
    }
    if limit < 1 {
        return Err(ApiError::bad_request("limit must be at least 1"));
    }
    // The feed is the latest 1000 posts: a window past it is empty, one across it is cut.
    let limit = limit.min(FEED_WINDOW - offset.min(FEED_WINDOW));
    if limit == 0 {
        state.known_users.require(&state.db, me).await?;
        return Ok(axum::Json(Vec::new()));
    }
    let posts = within_page_bytes(state.feeds.read(me, limit, offset).await?);
    if posts.is_empty() {
        state.known_users.require(&state.db, me).await?;
    }
    Ok(axum::Json(posts))
}
