//! Every SQL statement of the friends domain.

use deadpool_postgres::GenericClient;

use crate::db::DbError;
use crate::ids::{PostId, UserId};

/// Outcome of a follow.
pub enum Follow {
    Added,
    AlreadyFollowing,
    /// The user to follow does not exist.
    UnknownUser,
    /// The follower does not exist (a token that outlived its user).
    UnknownFollower,
    /// The follower follows as many users as allowed already.
    AtCap,
}

/// How long follow changes are kept to correct late live routing (see `followers_at`).
const CHANGES_KEPT: &str = "1 day";

/// Follows, unless `user` follows `cap` users already, and records the change for the live
/// feed (see [`followers_at`]), in one statement. Two follows racing at the cap may both pass
/// it: the cap holds to within the follows one user makes at the same moment.
#[tracing::instrument(name = "sql.follow", skip(db))]
pub async fn follow(
    db: &impl GenericClient,
    user: UserId,
    friend: UserId,
    cap: i64,
) -> Result<Follow, DbError> {
    let statement = db
        .prepare_cached(&format!(
            "with added as (
                 insert into friends (user_id, friend_id)
                 select $1, $2 where (select count(*) from friends where user_id = $1) < $3
                 on conflict do nothing
                 returning user_id, friend_id
             ), logged as (
                 insert into follow_changes (friend_id, user_id, followed)
                 select friend_id, user_id, true from added
             ), pruned as (
                 delete from follow_changes where at < now() - interval '{CHANGES_KEPT}'
             )
             select (select count(*) from added),
                    exists (select 1 from friends where user_id = $1 and friend_id = $2)"
        ))
        .await?;
    match db.query_one(&statement, &[&user.0, &friend.0, &cap]).await {
        Ok(row) if row.get::<_, i64>(0) == 1 => Ok(Follow::Added),
        // The statement's snapshot: whether they followed before it.
        Ok(row) if row.get::<_, bool>(1) => Ok(Follow::AlreadyFollowing),
        Ok(_) => Ok(Follow::AtCap),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
            let follower_missing = e
                .as_db_error()
                .and_then(|db| db.constraint())
                .is_some_and(|constraint| constraint == "friends_user_id_fkey");
            Ok(if follower_missing {
                Follow::UnknownFollower
            } else {
                Follow::UnknownUser
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Unfollows, and records the change for the live feed; returns whether a follow existed.
#[tracing::instrument(name = "sql.unfollow", skip(db))]
pub async fn unfollow(
    db: &impl GenericClient,
    user: UserId,
    friend: UserId,
) -> Result<bool, DbError> {
    let statement = db
        .prepare_cached(&format!(
            "with gone as (
                 delete from friends where user_id = $1 and friend_id = $2
                 returning user_id, friend_id
             ), logged as (
                 insert into follow_changes (friend_id, user_id, followed)
                 select friend_id, user_id, false from gone
             ), pruned as (
                 delete from follow_changes where at < now() - interval '{CHANGES_KEPT}'
             )
             select count(*) from gone"
        ))
        .await?;
    Ok(db
        .query_one(&statement, &[&user.0, &friend.0])
        .await?
        .get::<_, i64>(0)
        > 0)
}

/// The users who followed `author` when the post `post` was made (among `candidates`, when
/// given): exactly the readers whose sockets get it live, however late it is routed.
///
/// Who follows now, corrected by each user's first follow change after the post: the posts' id
/// sequence stamps both, so a change made after the post was written has a larger clock. A first
/// change that is a follow means they did not follow yet; an unfollow means they did. One
/// statement: the followers' scan is the index-only scan of before, and the changes since the
/// post are an index range over the author's changes of the last moments (normally none).
#[tracing::instrument(name = "sql.followers_at", skip(db, candidates))]
pub async fn followers_at(
    db: &impl GenericClient,
    author: UserId,
    post: PostId,
    candidates: Option<&[i64]>,
) -> Result<Vec<i64>, DbError> {
    let rows = match candidates {
        None => {
            let statement = db
                .prepare_cached(
                    "select user_id, null::boolean from friends where friend_id = $1
                     union all
                     select * from (
                         select distinct on (user_id) user_id, followed from follow_changes
                         where friend_id = $1 and clock > $2
                         order by user_id, clock
                     ) first_change",
                )
                .await?;
            db.query(&statement, &[&author.0, &post.0]).await?
        }
        Some(candidates) => {
            let statement = db
                .prepare_cached(
                    "select user_id, null::boolean from friends
                     where friend_id = $1 and user_id = any($3)
                     union all
                     select * from (
                         select distinct on (user_id) user_id, followed from follow_changes
                         where friend_id = $1 and clock > $2 and user_id = any($3)
                         order by user_id, clock
                     ) first_change",
                )
                .await?;
            db.query(&statement, &[&author.0, &post.0, &candidates])
                .await?
        }
    };
    // Users with a change after the post followed exactly when their first change undid it.
    let mut now = Vec::with_capacity(rows.len());
    let mut changed = std::collections::HashMap::new();
    for row in &rows {
        let user: i64 = row.get(0);
        match row.get::<_, Option<bool>>(1) {
            None => now.push(user),
            Some(first_was_a_follow) => {
                changed.insert(user, first_was_a_follow);
            }
        }
    }
    if changed.is_empty() {
        return Ok(now);
    }
    now.retain(|user| !changed.contains_key(user));
    now.extend(
        changed
            .into_iter()
            .filter(|&(_, first_was_a_follow)| !first_was_a_follow)
            .map(|(user, _)| user),
    );
    Ok(now)
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

/// Whether `author` has more than `count` followers: reads at most `count` + 1 entries of the
/// followers index, however many there are.
#[tracing::instrument(name = "sql.has_more_followers_than", skip(db))]
pub async fn has_more_followers_than(
    db: &impl GenericClient,
    author: UserId,
    count: i64,
) -> Result<bool, DbError> {
    let statement = db
        .prepare_cached("select exists (select 1 from friends where friend_id = $1 offset $2)")
        .await?;
    Ok(db.query_one(&statement, &[&author.0, &count]).await?.get(0))
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
