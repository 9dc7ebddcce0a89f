//! `PUT /friend/set/{user_id}` and `PUT /friend/delete/{user_id}`.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sql::{self, Follow};
use crate::api::{ApiError, ErrorBody, Path, Writer};
use crate::ids::UserId;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(set_friend))
        .routes(routes!(delete_friend))
}

/// Follows a user: their posts appear in the caller's feed. Idempotent.
#[utoipa::path(
    put, path = "/friend/set/{user_id}", tag = "friends",
    params(("user_id" = String, Path, description = "The user to follow", pattern = "^[1-9][0-9]{0,17}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Following"),
        (status = 400, description = "Invalid id, the caller's own, or the caller follows MAX_FOLLOWS users already", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 429, description = "Over a write limit (RATE_WRITES_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn set_friend(
    State(state): State<AppState>,
    Writer(me): Writer,
    Path(friend): Path<UserId>,
) -> Result<(), ApiError> {
    if friend == me {
        return Err(ApiError::bad_request("you cannot befriend yourself"));
    }
    let db = state.db.get().await?;
    let cap = state.config.max_follows;
    match sql::follow(&db, me, friend, cap).await? {
        Follow::Added => {
            state.db.wrote(me);
            state.feeds.after_follow_change(me).await;
            Ok(())
        }
        Follow::AlreadyFollowing => Ok(()),
        Follow::UnknownUser => Err(ApiError::not_found("user not found")),
        Follow::UnknownFollower => Err(ApiError::unknown_token_user()),
        Follow::AtCap => Err(ApiError::bad_request(format!(
            "you follow {cap} users, the most allowed: unfollow someone first"
        ))),
    }
}

/// Stops following a user: their posts leave the caller's feed. Idempotent.
#[utoipa::path(
    put, path = "/friend/delete/{user_id}", tag = "friends",
    params(("user_id" = String, Path, description = "The user to unfollow", pattern = "^[1-9][0-9]{0,17}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Not following (any more)"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 429, description = "Over a write limit (RATE_WRITES_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn delete_friend(
    State(state): State<AppState>,
    Writer(me): Writer,
    Path(friend): Path<UserId>,
) -> Result<(), ApiError> {
    let unfollowed = sql::unfollow(&state.db.get().await?, me, friend).await?;
    if unfollowed {
        state.db.wrote(me);
        state.feeds.after_follow_change(me).await;
    } else {
        state.known_users.require(&state.db, me).await?;
    }
    Ok(())
}
