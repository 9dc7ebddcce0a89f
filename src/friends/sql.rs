//! Every SQL statement of the friends domain.

use deadpool_postgres::GenericClient;

use crate::db::DbError;
use crate::ids::UserId;

/// Outcome of a follow.
pub enum Follow {
    Added,
    AlreadyFollowing,
    UnknownUser,
}

#[tracing::instrument(name = "sql.follow", skip(db))]
pub async fn follow(
    db: &impl GenericClient,
    user: UserId,
    friend: UserId,
) -> Result<Follow, DbError> {
    let statement = db
        .prepare_cached(
            "insert into friends (user_id, friend_id) values ($1, $2) on conflict do nothing",
        )
        .await?;
    match db.execute(&statement, &[&user.0, &friend.0]).await {
        Ok(1) => Ok(Follow::Added),
        Ok(_) => Ok(Follow::AlreadyFollowing),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
            Ok(Follow::UnknownUser)
        }
        Err(e) => Err(e.into()),
    }
}

/// Returns whether a follow existed.
#[tracing::instrument(name = "sql.unfollow", skip(db))]
pub async fn unfollow(
    db: &impl GenericClient,
    user: UserId,
    friend: UserId,
) -> Result<bool, DbError> {
    let statement = db
        .prepare_cached("delete from friends where user_id = $1 and friend_id = $2")
        .await?;
    Ok(db.execute(&statement, &[&user.0, &friend.0]).await? > 0)
}

/// Up to `limit` of the users who follow `author` (`i64::MAX` for all of them): the readers whose
/// cached feeds, or sockets anywhere, get a new post.
#[tracing::instrument(name = "sql.followers", skip(db))]
pub async fn followers(
    db: &impl GenericClient,
    author: UserId,
    limit: i64,
) -> Result<Vec<i64>, DbError> {
    let statement = db
        .prepare_cached("select user_id from friends where friend_id = $1 limit $2")
        .await?;
    Ok(db
        .query(&statement, &[&author.0, &limit])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The followers of `author` among `candidates` (the users connected to this instance).
#[tracing::instrument(name = "sql.followers_among", skip(db, candidates))]
pub async fn followers_among(
    db: &impl GenericClient,
    author: UserId,
    candidates: &[i64],
) -> Result<Vec<i64>, DbError> {
    let statement = db
        .prepare_cached("select user_id from friends where friend_id = $1 and user_id = any($2)")
        .await?;
    Ok(db
        .query(&statement, &[&author.0, &candidates])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Which of `candidates` the user follows.
#[tracing::instrument(name = "sql.followed_among", skip(db, candidates))]
pub async fn followed_among(
    db: &impl GenericClient,
    user: UserId,
    candidates: &[i64],
) -> Result<Vec<i64>, DbError> {
    let statement = db
        .prepare_cached("select friend_id from friends where user_id = $1 and friend_id = any($2)")
        .await?;
    Ok(db
        .query(&statement, &[&user.0, &candidates])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Every user who follows someone, ascending: the readers who have a feed.
#[tracing::instrument(name = "sql.readers", skip(db))]
pub async fn readers(db: &impl GenericClient) -> Result<Vec<i64>, DbError> {
    let statement = db
        .prepare_cached("select distinct user_id from friends order by user_id")
        .await?;
    Ok(db
        .query(&statement, &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}
