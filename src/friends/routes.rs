//! `PUT /friend/set/{user_id}` and `PUT /friend/delete/{user_id}`.

use axum::extract::State;
use axum::routing::put;
use axum::Router;

use super::sql::{self, Follow};
use crate::auth::AuthUser;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::Path;
use crate::http::AppState;
use crate::users::UserId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/friend/set/{user_id}", put(set_friend))
        .route("/friend/delete/{user_id}", put(delete_friend))
}

/// Follows a user: their posts appear in the caller's feed. Idempotent.
#[utoipa::path(
    put, path = "/friend/set/{user_id}", tag = "friends",
    params(("user_id" = String, Path, description = "The user to follow")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Following"),
        (status = 400, description = "Invalid id, or the caller's own", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn set_friend(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(user_id): Path<String>,
) -> Result<(), ApiError> {
    let friend: UserId = user_id.parse()?;
    if friend == me {
        return Err(ApiError::bad_request("you cannot befriend yourself"));
    }
    let db = state.db.get().await?;
    match sql::follow(&db, me, friend).await? {
        Follow::Added => {
            crate::posts::feed::after_follow_change(&state, me).await;
            Ok(())
        }
        Follow::AlreadyFollowing => Ok(()),
        Follow::UnknownUser => Err(ApiError::not_found("user not found")),
    }
}

/// Stops following a user: their posts leave the caller's feed. Idempotent.
#[utoipa::path(
    put, path = "/friend/delete/{user_id}", tag = "friends",
    params(("user_id" = String, Path, description = "The user to unfollow")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Not following (any more)"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn delete_friend(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(user_id): Path<String>,
) -> Result<(), ApiError> {
    let friend: UserId = user_id.parse()?;
    let db = state.db.get().await?;
    if sql::unfollow(&db, me, friend).await? {
        crate::posts::feed::after_follow_change(&state, me).await;
    }
    Ok(())
}
