//! Reading and maintaining feeds: from the Redis cache when one is configured, computed by SQL
//! otherwise, and by SQL again whenever the cache fails.

use std::collections::HashMap;

use super::events::PostEvent;
use super::sql;
use super::types::{Post, FEED_WINDOW};
use crate::cache::{CacheError, FeedCache};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::users::UserId;

/// A page of the reader's feed, newest first.
pub async fn read(
    state: &AppState,
    reader: UserId,
    limit: i64,
    offset: i64,
) -> Result<Vec<Post>, ApiError> {
    if let Some(cache) = &state.feed_cache {
        match from_cache(state, cache, reader, limit, offset).await {
            Ok(posts) => return Ok(posts),
            Err(FeedFailure::Api(e)) => return Err(e),
            Err(FeedFailure::Cache(e)) => {
                metrics::counter!("feed_cache_fallbacks").increment(1);
                tracing::warn!(error = %e, "feed cache failed; answering from PostgreSQL");
            }
        }
    }
    // A join over every followed author: too slow to share a pipelined connection.
    let db = crate::db::reads::ReadConn::Pooled(state.db.get().await?);
    sql::feed(&db, reader, limit, offset).await
}

/// Why the cache could not serve or apply something: the database, or the cache itself.
#[derive(Debug, thiserror::Error)]
pub enum FeedFailure {
    #[error(transparent)]
    Api(ApiError),
    #[error(transparent)]
    Cache(CacheError),
}

impl From<ApiError> for FeedFailure {
    fn from(e: ApiError) -> Self {
        FeedFailure::Api(e)
    }
}

impl From<deadpool_postgres::PoolError> for FeedFailure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        FeedFailure::Api(e.into())
    }
}

impl From<CacheError> for FeedFailure {
    fn from(e: CacheError) -> Self {
        FeedFailure::Cache(e)
    }
}

async fn from_cache(
    state: &AppState,
    cache: &FeedCache,
    reader: UserId,
    limit: i64,
    offset: i64,
) -> Result<Vec<Post>, FeedFailure> {
    let window = offset + limit;
    let (mut ids, followed) = match cache.feed_head(reader, window).await? {
        Some(head) => {
            metrics::counter!("feed_cache_hits").increment(1);
            let followed = match head.followed_celebs {
                Some(followed) => followed,
                None => followed_celebrities(state, cache, reader).await?,
            };
            (head.ids, followed)
        }
        None => {
            metrics::counter!("feed_cache_misses").increment(1);
            // Built from PostgreSQL just now: celebrities' posts are already in it.
            let ids = rebuild(state, cache, reader).await?;
            (ids.into_iter().take(window as usize).collect(), Vec::new())
        }
    };
    // Celebrities' posts are not pushed onto feeds: merge their recent lists in.
    if !followed.is_empty() {
        let lists = cache.recent_of(&followed, window).await?;
        for (&author, list) in followed.iter().zip(lists) {
            let list = match list {
                Some(list) => list,
                None => {
                    let db = state.db.get().await?;
                    let list = sql::recent_post_ids(&db, UserId(author), FEED_WINDOW).await?;
                    cache.store_recent(author, &list).await?;
                    list.into_iter().take(window as usize).collect()
                }
            };
            ids.extend(list.into_iter().filter(|&id| id > 0));
        }
    }
    // Newest first. Each set is ordered by id whatever order fan-outs arrived in, so its head is
    // its newest `offset + limit` ids, and merging the heads and sorting makes pages exact.
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    let ids: Vec<i64> = ids
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    let cached = cache.posts(&ids).await?;
    let missing: Vec<i64> = ids
        .iter()
        .zip(&cached)
        .filter(|(_, body)| body.is_none())
        .map(|(id, _)| *id)
        .collect();
    let mut fetched: HashMap<String, Post> = HashMap::new();
    if !missing.is_empty() {
        let db = state.db.get().await?;
        let found = sql::posts_by_ids(&db, &missing).await?;
        cache.store_posts(&found).await?;
        fetched = found.into_iter().map(|p| (p.id.clone(), p)).collect();
        // What the database no longer has was deleted: drop it from this feed too.
        let gone: Vec<i64> = missing
            .iter()
            .filter(|id| !fetched.contains_key(&id.to_string()))
            .copied()
            .collect();
        if !gone.is_empty() {
            cache.forget_gone(reader, &followed, &gone).await?;
        }
    }
    Ok(ids
        .iter()
        .zip(cached)
        .filter_map(|(id, body)| body.or_else(|| fetched.remove(&id.to_string())))
        .collect())
}

/// Which celebrities a reader follows, computed once per version of the celebrity set.
async fn followed_celebrities(
    state: &AppState,
    cache: &FeedCache,
    reader: UserId,
) -> Result<Vec<i64>, FeedFailure> {
    let (celebrities, version) = cache.celebrities().await?;
    let followed = if celebrities.is_empty() {
        Vec::new()
    } else {
        let db = state.db.get().await?;
        crate::friends::sql::followed_among(&db, reader, &celebrities).await?
    };
    cache
        .store_followed_celebs(reader, version, &followed)
        .await?;
    Ok(followed)
}

/// Rebuilds a reader's cached feed from PostgreSQL; returns its ids.
async fn rebuild(
    state: &AppState,
    cache: &FeedCache,
    reader: UserId,
) -> Result<Vec<i64>, FeedFailure> {
    let ids = {
        let db = state.db.get().await?;
        sql::feed_ids(&db, reader, FEED_WINDOW).await?
    };
    cache.store_feed(reader, &ids).await?;
    followed_celebrities(state, cache, reader).await?;
    Ok(ids)
}

/// Brings the feed cache in line with a post event. Idempotent, so a redelivered event is harmless:
/// - created: the id goes onto the built feed of every follower that does not hold it yet, or,
///   for an author with more than `FEED_CELEBRITY_FOLLOWERS` followers, onto the author's own
///   recent list, merged into followers' feeds when they read. The body is not written here: the
///   first read loads it, so a late `created` can never bring back the body of a deleted post.
/// - updated: the cached body is dropped, and fenced off for a minute so that a read which loaded
///   the old text cannot cache it back; the next read loads the new text.
/// - deleted: the same, and the id leaves the author's recent list and may not be added to any
///   feed for a minute (a creation event applied late); feeds drop it when they next meet it.
///
/// Returns how many feed entries were written.
pub async fn apply_event(
    state: &AppState,
    cache: &FeedCache,
    event: &PostEvent,
) -> Result<usize, FeedFailure> {
    match *event {
        PostEvent::Created {
            post_id, author_id, ..
        } => {
            let author = UserId(author_id);
            let threshold = state.config.cache.feed_celebrity_followers;
            // One more than the threshold tells a celebrity apart in the same query.
            let followers = {
                // At most half the pool does fan-out at once, so a burst of posts cannot take
                // every database connection from requests.
                let _slot = state.fanout_slots.acquire().await;
                let client = state.db.get().await?;
                sql::followers(&client, author, threshold.max(0).saturating_add(1)).await?
            };
            if followers.len() as i64 > threshold {
                cache.mark_celebrity(author).await?;
                cache.push_recent(author, post_id).await?;
                Ok(1)
            } else {
                cache.push_post(post_id, &followers).await?;
                Ok(followers.len())
            }
        }
        PostEvent::Updated { post_id, .. } => {
            cache.invalidate_post(post_id).await?;
            Ok(0)
        }
        PostEvent::Deleted { post_id, author_id } => {
            cache.delete_post(UserId(author_id), post_id).await?;
            Ok(0)
        }
    }
}

/// Without a broker: applies the event to the cache in the background, right after the write.
/// A failure leaves feeds to be rebuilt (on expiry or by `socialnet feed rebuild`), never loses
/// the post, which is in PostgreSQL.
pub fn apply_in_background(state: &AppState, event: PostEvent) {
    let Some(cache) = state.feed_cache.clone() else {
        return;
    };
    let state = state.clone();
    tokio::spawn(async move {
        match apply_event(&state, &cache, &event).await {
            Ok(n) => metrics::counter!("feed_fanout_writes").increment(n as u64),
            Err(e) => tracing::warn!(error = %e, kind = event.kind(), "feed cache update failed"),
        }
    });
}

/// After a follow or unfollow: the reader's cached feed is rebuilt on its next read.
pub async fn after_follow_change(state: &AppState, reader: UserId) {
    if let Some(cache) = &state.feed_cache {
        if let Err(e) = cache.drop_feed(reader).await {
            tracing::warn!(error = %e, "dropping a cached feed failed");
        }
    }
}

/// Rebuilds one feed, or every feed of users who follow someone; returns how many were built.
pub async fn rebuild_feeds(state: &AppState, only: Option<UserId>) -> anyhow::Result<u64> {
    let cache = state.feed_cache.as_ref().ok_or_else(|| {
        anyhow::anyhow!("REDIS_URL is not set: there is no feed cache to rebuild")
    })?;
    let readers: Vec<i64> = match only {
        Some(user) => vec![user.0],
        None => {
            let db = state.db.get().await?;
            db.query("select distinct user_id from friends order by user_id", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        }
    };
    let mut built = 0u64;
    for reader in readers {
        match rebuild(state, cache, UserId(reader)).await {
            Ok(_) => built += 1,
            Err(FeedFailure::Api(e)) => anyhow::bail!("rebuilding the feed of {reader}: {e}"),
            Err(FeedFailure::Cache(e)) => anyhow::bail!("rebuilding the feed of {reader}: {e}"),
        }
        if built.is_multiple_of(10_000) {
            eprintln!("feed rebuild: {built} feeds");
        }
    }
    Ok(built)
}
