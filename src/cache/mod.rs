//! The feed cache in Redis: per reader, a list of the latest (up to 1000) post ids of the users
//! they follow, newest first; per post, its body as JSON.
//!
//! Keys: `{prefix}:feed:{user}` (list; a built feed always exists, an empty one holds only the
//! `end` marker) and `{prefix}:post:{id}` (string). Every call has a timeout and every caller
//! falls back to PostgreSQL on an error, so Redis going away slows feeds down but breaks nothing.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use crate::posts::{Post, FEED_WINDOW};
use crate::users::UserId;

/// Marks a built feed, so that an empty feed is not rebuilt on every read.
const END: &str = "end";

#[derive(Clone)]
pub struct FeedCache {
    redis: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

pub type CacheResult<T> = Result<T, CacheError>;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
    #[error("cached post is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
}

impl FeedCache {
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(timeout.max(Duration::from_millis(500)))
            .set_response_timeout(timeout)
            .set_number_of_retries(1);
        let redis = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("redis at {url} did not answer in 5 s"))??;
        Ok(FeedCache {
            redis,
            prefix: prefix.to_owned(),
            timeout,
        })
    }

    fn feed_key(&self, user: i64) -> String {
        format!("{}:feed:{user}", self.prefix)
    }

    fn post_key(&self, id: i64) -> String {
        format!("{}:post:{id}", self.prefix)
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> CacheResult<T> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| CacheError::Timeout)?
            .map_err(CacheError::from)
    }

    /// A page of a reader's feed, or `None` if the feed is not built (cold or evicted).
    pub async fn feed_page(
        &self,
        reader: UserId,
        offset: i64,
        limit: i64,
    ) -> CacheResult<Option<Vec<i64>>> {
        let key = self.feed_key(reader.0);
        let mut redis = self.redis.clone();
        let (exists, items): (bool, Vec<String>) = self
            .bounded(
                redis::pipe()
                    .exists(&key)
                    .lrange(&key, offset as isize, (offset + limit - 1) as isize)
                    .query_async(&mut redis),
            )
            .await?;
        if !exists {
            return Ok(None);
        }
        Ok(Some(items.iter().filter_map(|s| s.parse().ok()).collect()))
    }

    /// Replaces a reader's feed with these ids (newest first, at most 1000).
    pub async fn store_feed(&self, reader: UserId, ids: &[i64]) -> CacheResult<()> {
        let key = self.feed_key(reader.0);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key);
        if !ids.is_empty() {
            pipe.rpush(&key, ids);
        }
        pipe.rpush(&key, END).ignore();
        let mut redis = self.redis.clone();
        self.bounded(pipe.query_async::<()>(&mut redis)).await
    }

    /// Forgets a reader's feed; the next read rebuilds it (after a follow or an unfollow).
    pub async fn drop_feed(&self, reader: UserId) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        let key = self.feed_key(reader.0);
        self.bounded(redis.del::<_, ()>(key)).await
    }

    /// Puts a new post at the head of every *built* feed of these readers, trimmed to the window.
    /// Feeds that are not built are left alone: they are rebuilt from PostgreSQL, post included.
    pub async fn push_post(&self, post_id: i64, readers: &[i64]) -> CacheResult<()> {
        for chunk in readers.chunks(1_000) {
            let mut pipe = redis::pipe();
            for &reader in chunk {
                let key = self.feed_key(reader);
                pipe.lpush_exists(&key, post_id).ignore();
                pipe.ltrim(&key, 0, (FEED_WINDOW - 1) as isize).ignore();
            }
            let mut redis = self.redis.clone();
            self.bounded(pipe.query_async::<()>(&mut redis)).await?;
        }
        Ok(())
    }

    /// Removes ids of deleted posts from one reader's feed.
    pub async fn forget_in_feed(&self, reader: UserId, ids: &[i64]) -> CacheResult<()> {
        let key = self.feed_key(reader.0);
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.lrem(&key, 0, id).ignore();
        }
        let mut redis = self.redis.clone();
        self.bounded(pipe.query_async::<()>(&mut redis)).await
    }

    pub async fn store_posts(&self, posts: &[Post]) -> CacheResult<()> {
        if posts.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for post in posts {
            let id: i64 = post.id.parse().unwrap_or_default();
            pipe.set(self.post_key(id), serde_json::to_string(post)?)
                .ignore();
        }
        let mut redis = self.redis.clone();
        self.bounded(pipe.query_async::<()>(&mut redis)).await
    }

    pub async fn drop_post(&self, id: i64) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        let key = self.post_key(id);
        self.bounded(redis.del::<_, ()>(key)).await
    }

    /// Bodies of these posts, in order; `None` where the cache has none.
    pub async fn posts(&self, ids: &[i64]) -> CacheResult<Vec<Option<Post>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|&id| self.post_key(id)).collect();
        let mut redis = self.redis.clone();
        let raw: Vec<Option<String>> = self.bounded(redis.mget(keys)).await?;
        raw.into_iter()
            .map(|json| {
                json.map(|j| serde_json::from_str(&j))
                    .transpose()
                    .map_err(CacheError::from)
            })
            .collect()
    }
}
