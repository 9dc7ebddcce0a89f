//! Unread-message counters in Redis: for each user, how many messages from each other user they
//! have not read, derived from the messages and the read marks kept with the dialogs.
//!
//! Keys, under the same prefix as the feed cache (`REDIS_KEY_PREFIX`, then the database's
//! namespace), with the user in braces so that one user's keys share a Redis Cluster slot:
//! - `{prefix}:unread:{user}`: hash, other user → how many of their messages are unread;
//! - `{prefix}:unread:{user}:{other}`: sorted set, the numbers of those messages (score =
//!   member = the message's number in its dialog);
//! - `{prefix}:read:{user}`: hash, other user → how far the user has read that dialog (a copy
//!   of the durable mark);
//! - `{prefix}:unread-built`: present once the counters were built from the messages. Redis
//!   runs without persistence here: after a restart it is missing, and the counters are rebuilt;
//! - `{prefix}:unread-stale`: set of dialogs (`low:high`) whose event a write could not record:
//!   the next reconciliation merges each from the store.
//!
//! Every change is a merge, done by one script so that the three keys never disagree: a message
//! is added to a set (a second time changes nothing), a mark only grows, and a message at or
//! below the mark is never counted. Events applied twice, late or out of order therefore end in
//! the same counters (exactly the messages above the mark), and a count never goes below zero.
//! The price is memory: one set entry per unread message (measured in `docs/lab/dialogs.md`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{bounded, CacheResult};

/// KEYS[1]: the counts, KEYS[2]: the dialog's unread set, KEYS[3]: the marks; ARGV[1]: the
/// sender, ARGV[2]: the message's number. Counts the message unless it is read or counted.
const SENT: &str = r"
local mark = tonumber(redis.call('hget', KEYS[3], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= mark then return 0 end
if redis.call('zadd', KEYS[2], ARGV[2], ARGV[2]) == 0 then return 0 end
redis.call('hincrby', KEYS[1], ARGV[1], 1)
return 1
";

/// The same keys; ARGV[1]: the other user, ARGV[2]: the new mark. Raises the mark and forgets
/// the messages it covers; a lower mark than the one held changes nothing.
const READ: &str = r"
local mark = tonumber(redis.call('hget', KEYS[3], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= mark then return 0 end
redis.call('hset', KEYS[3], ARGV[1], ARGV[2])
redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[2])
local left = redis.call('zcard', KEYS[2])
if left == 0 then redis.call('hdel', KEYS[1], ARGV[1]) else redis.call('hset', KEYS[1], ARGV[1], left) end
return 1
";

/// The same keys; ARGV[1]: the other user, ARGV[2]: the durable mark, ARGV[3..]: numbers of
/// that user's messages above it. One dialog's side, as a rebuild finds it: READ, then SENT for
/// each message, in one call.
const MERGE: &str = r"
local mark = tonumber(redis.call('hget', KEYS[3], ARGV[1]) or '0')
local wanted = tonumber(ARGV[2])
if wanted > mark then
  redis.call('hset', KEYS[3], ARGV[1], ARGV[2])
  redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[2])
  mark = wanted
end
for i = 3, #ARGV do
  if tonumber(ARGV[i]) > mark then redis.call('zadd', KEYS[2], ARGV[i], ARGV[i]) end
end
local left = redis.call('zcard', KEYS[2])
if left == 0 then redis.call('hdel', KEYS[1], ARGV[1]) else redis.call('hset', KEYS[1], ARGV[1], left) end
return left
";

/// One user's unread messages: per other user, how many, and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unread {
    pub total: i64,
    /// (other user, unread messages from them), by other user; only those above zero.
    pub dialogs: Vec<(i64, i64)>,
}

/// The counters of one deployment. Cheap to clone.
#[derive(Clone)]
pub struct UnreadCounters {
    redis: ConnectionManager,
    /// `REDIS_KEY_PREFIX:namespace`.
    prefix: Arc<str>,
    timeout: Duration,
    sent: Arc<redis::Script>,
    read: Arc<redis::Script>,
    merge: Arc<redis::Script>,
    /// Set when this process failed to apply an event: the counters may miss it until the next
    /// rebuild.
    stale: Arc<AtomicBool>,
}

impl UnreadCounters {
    /// Counters on `url`, under `prefix` and then `namespace` (the database's, as the feed
    /// cache's: see `db::cache_namespace`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        namespace: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(UnreadCounters {
            redis: super::connect(url, timeout).await?,
            prefix: format!("{prefix}:{namespace}").into(),
            timeout,
            sent: Arc::new(redis::Script::new(SENT)),
            read: Arc::new(redis::Script::new(READ)),
            merge: Arc::new(redis::Script::new(MERGE)),
            stale: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Notes that an event could not be applied here: the next reconciliation rebuilds.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// Whether an event failed here since the last call.
    pub fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::SeqCst)
    }

    fn counts_key(&self, user: i64) -> String {
        format!("{}:unread:{{{user}}}", self.prefix)
    }

    fn set_key(&self, user: i64, other: i64) -> String {
        format!("{}:unread:{{{user}}}:{other}", self.prefix)
    }

    fn marks_key(&self, user: i64) -> String {
        format!("{}:read:{{{user}}}", self.prefix)
    }

    fn stale_key(&self) -> String {
        format!("{}:unread-stale", self.prefix)
    }

    /// Notes, for every instance, that the dialog of `low` and `high` lost an event: the next
    /// reconciliation merges it from the store.
    pub async fn mark_dialog_stale(&self, low: i64, high: i64) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        bounded(
            self.timeout,
            redis.sadd::<_, _, ()>(self.stale_key(), format!("{low}:{high}")),
        )
        .await
    }

    /// Takes up to `count` of the dialogs marked stale (each is taken by one caller).
    pub async fn take_stale_dialogs(&self, count: usize) -> CacheResult<Vec<(i64, i64)>> {
        let mut redis = self.redis.clone();
        let taken: Vec<String> = bounded(
            self.timeout,
            redis::cmd("SPOP")
                .arg(self.stale_key())
                .arg(count)
                .query_async(&mut redis),
        )
        .await?;
        Ok(taken
            .iter()
            .filter_map(|pair| {
                let (low, high) = pair.split_once(':')?;
                Some((low.parse().ok()?, high.parse().ok()?))
            })
            .collect())
    }

    fn built_key(&self) -> String {
        format!("{}:unread-built", self.prefix)
    }

    fn rebuilding_key(&self) -> String {
        format!("{}:unread-rebuilding", self.prefix)
    }

    fn keyed<'a>(
        &self,
        script: &'a redis::Script,
        user: i64,
        other: i64,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.counts_key(user))
            .key(self.set_key(user, other))
            .key(self.marks_key(user))
            .arg(other);
        invocation
    }

    /// Message `id` from `from` to `to` was stored; whether it was counted now (not before, and
    /// not read already).
    pub async fn message_sent(&self, to: i64, from: i64, id: i64) -> CacheResult<bool> {
        let mut redis = self.redis.clone();
        let mut invocation = self.keyed(&self.sent, to, from);
        invocation.arg(id);
        let counted: i64 = bounded(self.timeout, invocation.invoke_async(&mut redis)).await?;
        Ok(counted == 1)
    }

    /// `reader` has read their dialog with `other` up to message `up_to`.
    pub async fn read(&self, reader: i64, other: i64, up_to: i64) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        let mut invocation = self.keyed(&self.read, reader, other);
        invocation.arg(up_to);
        bounded(self.timeout, invocation.invoke_async::<i64>(&mut redis))
            .await
            .map(drop)
    }

    /// Merges one side of a dialog as the messages show it: `user` has read their dialog with
    /// `other` up to `mark`, and `unread` are the numbers of `other`'s messages above it.
    pub async fn merge(&self, user: i64, other: i64, mark: i64, unread: &[i64]) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        let mut invocation = self.keyed(&self.merge, user, other);
        invocation.arg(mark).arg(unread);
        bounded(self.timeout, invocation.invoke_async::<i64>(&mut redis))
            .await
            .map(drop)
    }

    /// The unread messages of `user`.
    pub async fn unread(&self, user: i64) -> CacheResult<Unread> {
        let mut redis = self.redis.clone();
        let counts: Vec<(i64, i64)> =
            bounded(self.timeout, redis.hgetall(self.counts_key(user))).await?;
        let mut dialogs: Vec<(i64, i64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        dialogs.sort_unstable();
        Ok(Unread {
            total: dialogs.iter().map(|(_, n)| n).sum(),
            dialogs,
        })
    }

    /// Whether the counters were built from the messages since Redis last lost its data.
    pub async fn is_built(&self) -> CacheResult<bool> {
        let mut redis = self.redis.clone();
        bounded(self.timeout, redis.exists(self.built_key())).await
    }

    pub async fn mark_built(&self) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        bounded(self.timeout, redis.set(self.built_key(), 1)).await
    }

    /// Takes the right to rebuild for `hold` (one instance rebuilds at a time); whether it was
    /// free.
    pub async fn claim_rebuild(&self, hold: Duration) -> CacheResult<bool> {
        let mut redis = self.redis.clone();
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(hold.as_secs().max(1)));
        let taken: Option<String> = bounded(
            self.timeout,
            redis.set_options(self.rebuilding_key(), std::process::id(), options),
        )
        .await?;
        Ok(taken.is_some())
    }

    pub async fn release_rebuild(&self) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        bounded(self.timeout, redis.del(self.rebuilding_key())).await
    }

    /// Forgets every counter and mark (before a rebuild from scratch); how many keys it removed.
    pub async fn clear(&self) -> CacheResult<u64> {
        let mut removed = 0;
        for pattern in [
            format!("{}:unread:*", self.prefix),
            format!("{}:read:*", self.prefix),
        ] {
            let mut redis = self.redis.clone();
            let keys: Vec<String> = {
                let mut scan =
                    bounded(self.timeout, redis.scan_match::<_, String>(&pattern)).await?;
                let mut keys = Vec::new();
                while let Some(key) = futures_util::StreamExt::next(&mut scan).await {
                    keys.push(key);
                }
                keys
            };
            for chunk in keys.chunks(500) {
                let mut redis = self.redis.clone();
                removed += bounded(self.timeout, redis.del::<_, u64>(chunk)).await?;
            }
        }
        let mut redis = self.redis.clone();
        bounded(
            self.timeout,
            redis.del::<_, u64>(&[self.built_key(), self.stale_key()]),
        )
        .await?;
        Ok(removed)
    }
}
