//! Reading and maintaining feeds: from the Redis cache when one is configured, computed by SQL
//! otherwise, and by SQL again whenever the cache fails.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::events::PostEvent;
use super::sql;
use super::types::{Post, FEED_WINDOW};
use crate::cache::{CacheError, FeedCache};
use crate::db::{Db, DbError};
use crate::friends;
use crate::ids::UserId;

/// Every user's news feed: what reads and post events need.
#[derive(Clone)]
pub struct Feeds {
    db: Db,
    /// The Redis feed cache, when `REDIS_URL` is set.
    cache: Option<FeedCache>,
    /// Fan-outs running at once (half the pool), so that a burst of posts cannot take every
    /// database connection from requests; shared with the live feed's fan-out.
    fanout_slots: Arc<Semaphore>,
    /// `FEED_CELEBRITY_FOLLOWERS`: authors with more followers are merged in at read time.
    celebrity_followers: i64,
}

/// Why the cache could not serve or apply something: the database, or the cache itself.
#[derive(Debug, thiserror::Error)]
pub enum FeedFailure {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl Feeds {
    pub fn new(
        db: Db,
        cache: Option<FeedCache>,
        fanout_slots: Arc<Semaphore>,
        celebrity_followers: i64,
    ) -> Self {
        Feeds {
            db,
            cache,
            fanout_slots,
            celebrity_followers,
        }
    }

    /// Whether feeds are cached (and post events have something to apply to).
    pub fn cached(&self) -> bool {
        self.cache.is_some()
    }

    /// A page of the reader's feed, newest first.
    pub async fn read(
        &self,
        reader: UserId,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Post>, DbError> {
        if let Some(cache) = &self.cache {
            match self.read_cached(cache, reader, limit, offset).await {
                Ok(posts) => return Ok(posts),
                Err(FeedFailure::Db(e)) => return Err(e),
                Err(FeedFailure::Cache(e)) => {
                    metrics::counter!("feed_cache_fallbacks").increment(1);
                    tracing::warn!(error = %e, "feed cache failed; answering from PostgreSQL");
                }
            }
        }
        // A join over every followed author: too slow to share a pipelined connection.
        let db = self.db.pooled_read(Some(reader)).await?;
        sql::feed(&db, reader, limit, offset).await
    }

    async fn read_cached(
        &self,
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
                    None => self.followed_celebrities(cache, reader).await?,
                };
                (head.ids, followed)
            }
            None => {
                metrics::counter!("feed_cache_misses").increment(1);
                // Built from PostgreSQL just now: celebrities' posts are already in it.
                let ids = self.rebuild(cache, reader).await?;
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
                        let db = self.db.get().await?;
                        let list = sql::recent_post_ids(&db, UserId(author), FEED_WINDOW).await?;
                        cache.store_recent(author, &list).await?;
                        list.into_iter().take(window as usize).collect()
                    }
                };
                ids.extend(list.into_iter().filter(|&id| id > 0));
            }
        }
        // Newest first. Each set is ordered by id whatever order fan-outs arrived in, so its head
        // is its newest `offset + limit` ids, and merging the heads and sorting makes pages exact.
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        let ids: Vec<i64> = ids
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        let cached: Vec<Option<Post>> = cache.posts(&ids).await?;
        let missing: Vec<i64> = ids
            .iter()
            .zip(&cached)
            .filter(|(_, body)| body.is_none())
            .map(|(id, _)| *id)
            .collect();
        let mut fetched: HashMap<String, Post> = HashMap::new();
        if !missing.is_empty() {
            let db = self.db.get().await?;
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
        &self,
        cache: &FeedCache,
        reader: UserId,
    ) -> Result<Vec<i64>, FeedFailure> {
        let (celebrities, version) = cache.celebrities().await?;
        let followed = if celebrities.is_empty() {
            Vec::new()
        } else {
            let db = self.db.get().await?;
            friends::sql::followed_among(&db, reader, &celebrities).await?
        };
        cache
            .store_followed_celebs(reader, version, &followed)
            .await?;
        Ok(followed)
    }

    /// Rebuilds a reader's cached feed from PostgreSQL; returns its ids.
    async fn rebuild(&self, cache: &FeedCache, reader: UserId) -> Result<Vec<i64>, FeedFailure> {
        let ids = {
            let db = self.db.get().await?;
            sql::feed_ids(&db, reader, FEED_WINDOW).await?
        };
        cache.store_feed(reader, &ids).await?;
        self.followed_celebrities(cache, reader).await?;
        Ok(ids)
    }

    /// Brings the feed cache in line with a post event, whichever road brought it (applied in
    /// process right after the write, or consumed from RabbitMQ). Idempotent, so a redelivered
    /// event is harmless:
    /// - created: the id goes onto the built feed of every follower that does not hold it yet,
    ///   or, for an author with more than `FEED_CELEBRITY_FOLLOWERS` followers, onto the
    ///   author's own recent list, merged into followers' feeds when they read. The body is not
    ///   written here: the first read loads it, so a late `created` can never bring back the
    ///   body of a deleted post.
    /// - updated: the cached body is dropped, and fenced off for a minute so that a read which
    ///   loaded the old text cannot cache it back; the next read loads the new text.
    /// - deleted: the same, and the id leaves the author's recent list and may not be added to
    ///   any feed for a minute (a creation event applied late); feeds drop it when they next
    ///   meet it.
    ///
    /// Returns how many feed entries were written (none without a cache).
    pub async fn apply_event(&self, event: &PostEvent) -> Result<usize, FeedFailure> {
        let Some(cache) = &self.cache else {
            return Ok(0);
        };
        match *event {
            PostEvent::Created {
                post_id, author_id, ..
            } => {
                let author = UserId(author_id);
                let threshold = self.celebrity_followers;
                // One more than the threshold tells a celebrity apart in the same query.
                let followers = {
                    let _slot = self.fanout_slots.acquire().await;
                    let client = self.db.get().await?;
                    friends::sql::followers(&client, author, threshold.max(0).saturating_add(1))
                        .await?
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

    /// After a follow or unfollow: the reader's cached feed is rebuilt on its next read.
    pub async fn after_follow_change(&self, reader: UserId) {
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.drop_feed(reader).await {
                tracing::warn!(error = %e, "dropping a cached feed failed");
            }
        }
    }

    /// Rebuilds one feed, or every feed of users who follow someone; returns how many were
    /// built.
    pub async fn rebuild_feeds(&self, only: Option<UserId>) -> anyhow::Result<u64> {
        let cache = self.cache.as_ref().ok_or_else(|| {
            anyhow::anyhow!("REDIS_URL is not set: there is no feed cache to rebuild")
        })?;
        let readers: Vec<i64> = match only {
            Some(user) => vec![user.0],
            None => {
                let db = self.db.get().await?;
                friends::sql::readers(&db).await?
            }
        };
        let mut built = 0u64;
        for reader in readers {
            self.rebuild(cache, UserId(reader))
                .await
                .map_err(|e| anyhow::anyhow!("rebuilding the feed of {reader}: {e}"))?;
            built += 1;
            if built.is_multiple_of(10_000) {
                eprintln!("feed rebuild: {built} feeds");
            }
        }
        Ok(built)
    }
}
