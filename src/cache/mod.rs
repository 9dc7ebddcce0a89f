//! The feed cache in Redis: per reader, the latest (up to 1000) post ids of the users they follow;
//! per post, its body as JSON.
//!
//! Keys (`{prefix}` is `REDIS_KEY_PREFIX`, then the name of the database cached, see
//! `FeedCache::from_config`): `{prefix}:feed:{user}` (list of post ids, highest first, kept in that order however
//! fan-outs arrive; a built feed always exists and, until full, ends with the marker `end`) and
//! `{prefix}:post:{id}` (string). Lists rather than sorted sets: a full feed is ~4 KB as a list,
//! ~100 KB as a sorted set past Redis' default compact-encoding limit of 128 entries.
//! Celebrities (authors with more followers than a threshold) are not pushed onto their
//! followers' feeds: `{prefix}:celebs` (set, with a version counter) names them,
//! `{prefix}:recent:{author}` holds each one's latest post ids (a list like a feed), and
//! `{prefix}:fceleb:{user}` which of them a reader follows; reads merge the two.
//! An edit or a delete leaves a short-lived fence: `{prefix}:post:{id}:stale` stops a read that
//! loaded the old body from caching it afterwards, `{prefix}:post:{id}:deleted` stops a late or
//! repeated creation event from pushing the id again.
//! Every call has a timeout and every caller falls back to PostgreSQL on an error, so Redis going
//! away slows feeds down but breaks nothing.

mod unread;

pub use unread::{Unread, UnreadCounters};

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::CacheConfig;
use crate::ids::UserId;

/// Ends a built feed (and a celebrity's built list) that is not full, so that an empty one is
/// not rebuilt on every read; it sorts below every id and is filtered out on reads.
const END: &str = "end";
/// How long an edit's or a delete's fence lasts: longer than any read or event in flight.
const FENCE_SECS: u64 = 60;
/// Feeds, recent lists and post bodies expire a day after they were (re)built, which bounds how
/// long an entry left stale by a race between a rebuild and a concurrent write can live, and
/// makes them the only evictable keys under `volatile-lru`: the celebrity set and its version
/// have no expiry and are never evicted.
const ENTRY_TTL_SECS: u64 = 24 * 3600;

/// The head of a built feed.
pub struct FeedHead {
    /// Newest first.
    pub ids: Vec<i64>,
    /// Celebrities the reader follows, if known for the current celebrity set.
    pub followed_celebs: Option<Vec<i64>>,
    pub celebs_version: u64,
}

/// What the cache keeps as a post's body: its JSON, under its id.
pub trait PostBody: Serialize + DeserializeOwned {
    fn id(&self) -> i64;
}

#[derive(Clone)]
pub struct FeedCache {
    redis: ConnectionManager,
    /// `REDIS_KEY_PREFIX`.
    base: Arc<str>,
    /// The keys' prefix: `base:namespace`, the namespace naming the database cached. Replaced,
    /// for every clone at once, when that database's identity changes (see `set_namespace`).
    prefix: Arc<std::sync::RwLock<Arc<str>>>,
    timeout: Duration,
    /// How many ids a feed or a recent list keeps, newest first.
    window: i64,
    push_script: Arc<redis::Script>,
    store_bodies_script: Arc<redis::Script>,
    celebrity_script: Arc<redis::Script>,
}

/// KEYS[1]: the celebrity set, KEYS[2]: its version; ARGV[1]: an author. One script, so the set
/// and its version never disagree.
const MARK_CELEBRITY: &str =
    "if redis.call('sadd', KEYS[1], ARGV[1]) == 1 then redis.call('incr', KEYS[2]) end";

/// KEYS[1]: the post's `deleted` fence; KEYS[2..]: lists, highest id first; ARGV[1]: the post id,
/// ARGV[2]: how many ids a list keeps. Puts the id in its place on every list that exists (a
/// missing one is rebuilt whole on its next read): at the head when it is the newest, as nearly
/// always; otherwise before the first smaller id, found by one scan. Idempotent: a list that
/// holds the id is left as it is. Nothing happens for a post deleted a moment ago.
const PUSH: &str = r"
if redis.call('exists', KEYS[1]) == 1 then return 0 end
local id = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
for i = 2, #KEYS do
  local key = KEYS[i]
  local head = redis.call('lindex', key, 0)
  if head then
    local newest = tonumber(head)
    if newest == nil or newest < id then
      redis.call('lpush', key, ARGV[1])
      redis.call('ltrim', key, 0, window - 1)
    elseif newest ~= id then
      local rest = redis.call('lrange', key, 1, window - 1)
      local pivot, present = nil, false
      for _, value in ipairs(rest) do
        local n = tonumber(value)
        if n == id then present = true break end
        if n == nil or n < id then pivot = value break end
      end
      if not present then
        if pivot then
          redis.call('linsert', key, 'BEFORE', pivot, ARGV[1])
        elseif #rest + 1 < window then
          redis.call('rpush', key, ARGV[1])
        end
        redis.call('ltrim', key, 0, window - 1)
      end
    end
  end
end
return 1
";

/// KEYS: pairs of (body key, its `stale` fence); ARGV[1]: seconds to keep, ARGV[2..]: bodies.
/// Caches each body unless its post was edited or deleted a moment ago.
const STORE_BODIES: &str = r"
for i = 1, #KEYS, 2 do
  if redis.call('exists', KEYS[i + 1]) == 0 then
    redis.call('set', KEYS[i], ARGV[(i + 1) / 2 + 1], 'EX', ARGV[1])
  end
end
";

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

/// A connection to Redis that reconnects by itself, each command answered within `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout.max(Duration::from_millis(500)))
        .set_response_timeout(timeout)
        .set_number_of_retries(1);
    tokio::time::timeout(
        Duration::from_secs(5),
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| anyhow::anyhow!("redis at {url} did not answer in 5 s"))?
    .map_err(anyhow::Error::from)
}

/// `work`, given up after `timeout`.
async fn bounded<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> CacheResult<T> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| CacheError::Timeout)?
        .map_err(CacheError::from)
}

impl FeedCache {
    /// Connects when `REDIS_URL` is set. A Redis that cannot be reached at start-up is reported
    /// and left out: the service runs on PostgreSQL alone rather than not at all.
    /// Lists keep `window` ids.
    /// The cache of `config`, its keys under `REDIS_KEY_PREFIX` and then `namespace`, the name
    /// of the database it caches (`db::cache_namespace`): entries made for another database, or
    /// for this one before it was recreated, restored or failed over, are never read.
    pub async fn from_config(
        config: &CacheConfig,
        window: i64,
        namespace: &str,
    ) -> Option<FeedCache> {
        let url = config.redis_url.as_deref().filter(|u| !u.is_empty())?;
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        match FeedCache::connect(url, &config.redis_key_prefix, timeout, window).await {
            Ok(cache) => {
                cache.set_namespace(namespace);
                tracing::info!("feed cache: Redis connected");
                Some(cache)
            }
            Err(e) => {
                tracing::error!(error = %e, "feed cache: Redis unreachable at start-up; feeds come from PostgreSQL");
                None
            }
        }
    }

    pub async fn connect(
        url: &str,
        prefix: &str,
        timeout: Duration,
        window: i64,
    ) -> anyhow::Result<Self> {
        let redis = connect(url, timeout).await?;
        Ok(FeedCache {
            redis,
            base: prefix.into(),
            prefix: Arc::new(std::sync::RwLock::new(prefix.into())),
            timeout,
            window,
            push_script: Arc::new(redis::Script::new(PUSH)),
            store_bodies_script: Arc::new(redis::Script::new(STORE_BODIES)),
            celebrity_script: Arc::new(redis::Script::new(MARK_CELEBRITY)),
        })
    }

    /// Keys the cache under `namespace` from now on (the name of the database cached, see
    /// `db::cache_namespace`); whether that changed it. Entries under the old one are left to
    /// expire: they describe another database (a restored or promoted one that may have lost
    /// writes) and are never read again.
    pub fn set_namespace(&self, namespace: &str) -> bool {
        let wanted = format!("{}:{namespace}", self.base);
        let mut prefix = self
            .prefix
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if **prefix == *wanted {
            return false;
        }
        *prefix = wanted.into();
        true
    }

    /// The keys' prefix now.
    pub fn prefix(&self) -> Arc<str> {
        self.prefix
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn feed_key(&self, user: i64) -> String {
        format!("{}:feed:{user}", self.prefix())
    }

    fn stale_key(&self, id: i64) -> String {
        format!("{}:post:{id}:stale", self.prefix())
    }

    fn deleted_key(&self, id: i64) -> String {
        format!("{}:post:{id}:deleted", self.prefix())
    }

    fn post_key(&self, id: i64) -> String {
        format!("{}:post:{id}", self.prefix())
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> CacheResult<T> {
        bounded(self.timeout, work).await
    }

    fn followed_celebs_key(&self, user: i64) -> String {
        format!("{}:fceleb:{user}", self.prefix())
    }

    fn recent_key(&self, author: i64) -> String {
        format!("{}:recent:{author}", self.prefix())
    }

    fn celebs_key(&self) -> String {
        format!("{}:celebs", self.prefix())
    }

    fn celebs_version_key(&self) -> String {
        format!("{}:celebs:version", self.prefix())
    }

    /// The newest `count` ids of a reader's built feed and the celebrities they follow, or `None`
    /// if the feed is not built (cold or evicted).
    pub async fn feed_head(&self, reader: UserId, count: i64) -> CacheResult<Option<FeedHead>> {
        let key = self.feed_key(reader.0);
        let mut redis = self.redis.clone();
        let (exists, items, followed, version): (bool, Vec<String>, Option<String>, Option<u64>) =
            self.bounded(
                redis::pipe()
                    .atomic()
                    .exists(&key)
                    .lrange(&key, 0, (count - 1) as isize)
                    .get(self.followed_celebs_key(reader.0))
                    .get(self.celebs_version_key())
                    .query_async(&mut redis),
            )
            .await?;
        if !exists {
            return Ok(None);
        }
        let version = version.unwrap_or(0);
        // Stored as "<celebrity-set version>:<id>,<id>,…"; stale when the set has changed since.
        let followed_celebs = followed.and_then(|value| {
            let (stored, ids) = value.split_once(':')?;
            (stored.parse::<u64>().ok()? == version)
                .then(|| ids.split(',').filter_map(|id| id.parse().ok()).collect())
        });
        Ok(Some(FeedHead {
            ids: items.iter().filter_map(|s| s.parse().ok()).collect(),
            followed_celebs,
            celebs_version: version,
        }))
    }

    /// Every author currently treated as a celebrity (not fanned out on write).
    pub async fn celebrities(&self) -> CacheResult<(Vec<i64>, u64)> {
        let mut redis = self.redis.clone();
        let (members, version): (Vec<i64>, Option<u64>) = self
            .bounded(
                redis::pipe()
                    .smembers(self.celebs_key())
                    .get(self.celebs_version_key())
                    .query_async(&mut redis),
            )
            .await?;
        Ok((members, version.unwrap_or(0)))
    }

    /// Records which celebrities a reader follows, valid for this version of the celebrity set.
    pub async fn store_followed_celebs(
        &self,
        reader: UserId,
        version: u64,
        celebs: &[i64],
    ) -> CacheResult<()> {
        let ids: Vec<String> = celebs.iter().map(i64::to_string).collect();
        let mut redis = self.redis.clone();
        let key = self.followed_celebs_key(reader.0);
        let value = format!("{version}:{}", ids.join(","));
        self.bounded(redis.set_ex::<_, _, ()>(key, value, ENTRY_TTL_SECS))
            .await
    }

    /// Adds an author to the celebrity set; a newcomer bumps the set's version, which makes every
    /// reader's stored list of followed celebrities stale (recomputed on their next read).
    pub async fn mark_celebrity(&self, author: UserId) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        self.bounded(
            self.celebrity_script
                .key(self.celebs_key())
                .key(self.celebs_version_key())
                .arg(author.0)
                .invoke_async::<()>(&mut redis),
        )
        .await
    }

    /// A celebrity's new post, on their own set of recent posts instead of on every follower's
    /// feed. Only onto a set that exists: a missing (evicted) one is reloaded whole from
    /// PostgreSQL on the next read, rather than restarted with just this post. Idempotent.
    pub async fn push_recent(&self, author: UserId, post_id: i64) -> CacheResult<()> {
        self.push(&[self.recent_key(author.0)], post_id).await
    }

    /// The newest `count` post ids of each author; `None` where the list is not built.
    pub async fn recent_of(
        &self,
        authors: &[i64],
        count: i64,
    ) -> CacheResult<Vec<Option<Vec<i64>>>> {
        let mut pipe = redis::pipe();
        for &author in authors {
            let key = self.recent_key(author);
            pipe.exists(&key).lrange(&key, 0, (count - 1) as isize);
        }
        let mut redis = self.redis.clone();
        let raw: Vec<redis::Value> = self.bounded(pipe.query_async(&mut redis)).await?;
        let mut out = Vec::with_capacity(authors.len());
        for pair in raw.chunks(2) {
            let exists: bool = redis::from_redis_value(&pair[0])?;
            let items: Vec<String> = redis::from_redis_value(&pair[1])?;
            out.push(exists.then(|| items.iter().filter_map(|s| s.parse().ok()).collect()));
        }
        Ok(out)
    }

    /// Replaces an author's list of recent posts.
    pub async fn store_recent(&self, author: i64, ids: &[i64]) -> CacheResult<()> {
        self.replace_list(self.recent_key(author), ids).await
    }

    /// Replaces a reader's feed with these ids (at most 1000).
    pub async fn store_feed(&self, reader: UserId, ids: &[i64]) -> CacheResult<()> {
        self.replace_list(self.feed_key(reader.0), ids).await
    }

    /// A list of exactly these ids (highest first, as given) and the end marker, expiring in a day.
    async fn replace_list(&self, key: String, ids: &[i64]) -> CacheResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        if !ids.is_empty() {
            pipe.rpush(&key, ids).ignore();
        }
        pipe.rpush(&key, END).ignore();
        pipe.expire(&key, ENTRY_TTL_SECS as i64).ignore();
        let mut redis = self.redis.clone();
        self.bounded(pipe.query_async::<()>(&mut redis)).await
    }

    /// Forgets a reader's feed; the next read rebuilds it (after a follow or an unfollow).
    pub async fn drop_feed(&self, reader: UserId) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        let keys = [self.feed_key(reader.0), self.followed_celebs_key(reader.0)];
        self.bounded(redis.del::<_, ()>(&keys)).await
    }

    /// Adds a new post to every *built* feed of these readers, trimmed to the window. Feeds that
    /// are not built are left alone: they are rebuilt from PostgreSQL, post included.
    /// Idempotent: a feed that already holds the id is unchanged, so an event delivered twice
    /// neither shows a post twice nor pushes an older one out; a post deleted a moment ago is not
    /// added at all.
    pub async fn push_post(&self, post_id: i64, readers: &[i64]) -> CacheResult<()> {
        for chunk in readers.chunks(1_000) {
            let keys: Vec<String> = chunk.iter().map(|&reader| self.feed_key(reader)).collect();
            self.push(&keys, post_id).await?;
        }
        Ok(())
    }

    async fn push(&self, sets: &[String], post_id: i64) -> CacheResult<()> {
        let mut invocation = self.push_script.prepare_invoke();
        invocation.key(self.deleted_key(post_id));
        for key in sets {
            invocation.key(key);
        }
        invocation.arg(post_id).arg(self.window);
        let mut redis = self.redis.clone();
        self.bounded(invocation.invoke_async::<()>(&mut redis))
            .await
    }

    /// Removes ids of posts that no longer exist from a reader's feed and from the recent lists of
    /// the celebrities they follow (where a deleted post may linger when its deletion was applied
    /// before its creation).
    pub async fn forget_gone(
        &self,
        reader: UserId,
        celebrities: &[i64],
        ids: &[i64],
    ) -> CacheResult<()> {
        let mut pipe = redis::pipe();
        for &id in ids {
            pipe.lrem(self.feed_key(reader.0), 0, id).ignore();
            for &author in celebrities {
                pipe.lrem(self.recent_key(author), 0, id).ignore();
            }
        }
        let mut redis = self.redis.clone();
        self.bounded(pipe.query_async::<()>(&mut redis)).await
    }

    /// Caches bodies read from PostgreSQL, except those of posts edited or deleted in the last
    /// minute (the read may have loaded them just before the change).
    pub async fn store_posts(&self, posts: &[impl PostBody]) -> CacheResult<()> {
        if posts.is_empty() {
            return Ok(());
        }
        let mut invocation = self.store_bodies_script.prepare_invoke();
        invocation.arg(ENTRY_TTL_SECS);
        for post in posts {
            let id = post.id();
            invocation
                .key(self.post_key(id))
                .key(self.stale_key(id))
                .arg(serde_json::to_string(post)?);
        }
        let mut redis = self.redis.clone();
        self.bounded(invocation.invoke_async::<()>(&mut redis))
            .await
    }

    /// After an edit: the body leaves the cache, and no read caches the old one for a minute.
    pub async fn invalidate_post(&self, id: i64) -> CacheResult<()> {
        let mut pipe = redis::pipe();
        pipe.del(self.post_key(id))
            .ignore()
            .set_ex(self.stale_key(id), 1, FENCE_SECS)
            .ignore();
        let mut redis = self.redis.clone();
        self.bounded(pipe.query_async::<()>(&mut redis)).await
    }

    /// After a delete: as after an edit, and the id leaves the author's recent list; for a minute
    /// no event can add it to a feed again. Feeds drop it when they next meet it.
    pub async fn delete_post(&self, author: UserId, id: i64) -> CacheResult<()> {
        let mut pipe = redis::pipe();
        pipe.del(self.post_key(id))
            .ignore()
            .set_ex(self.stale_key(id), 1, FENCE_SECS)
            .ignore()
            .set_ex(self.deleted_key(id), 1, FENCE_SECS)
            .ignore()
            .lrem(self.recent_key(author.0), 0, id)
            .ignore();
        let mut redis = self.redis.clone();
        self.bounded(pipe.query_async::<()>(&mut redis)).await
    }

    /// Bodies of these posts, in order; `None` where the cache has none.
    pub async fn posts<P: PostBody>(&self, ids: &[i64]) -> CacheResult<Vec<Option<P>>> {
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
