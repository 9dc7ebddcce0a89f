//! Unread-message counters in Redis: for each user, how many messages from each other user they
//! have not read, derived from the messages and the read marks kept with the dialogs.
//!
//! A dialog side is two counts, both kept by the store beside the messages, both only growing:
//! how many messages the other party has sent in the dialog (`sent`), and how many of those are
//! at or below the reader's mark (`seen`). Unread is their difference. The events carry the counts
//! as the store had them after the write, and Redis keeps, for each, the larger of what it holds
//! and what it is told: so an event applied twice, late or before an older one changes nothing
//! more, a difference read between two events may only be low for a moment (never below zero:
//! it is clamped), and once every event is in, it is exactly the messages above the mark. The
//! cost is one hash field per dialog side, whatever the number of messages (a set of message
//! numbers per dialog, the form before, cost Redis about 50 bytes per unread message and had
//! no bound: docs/lab/dialogs.md).
//!
//! Keys, under the same prefix as the feed cache (`REDIS_KEY_PREFIX`, then the database's
//! namespace), with the user in braces so that one user's key has its own Redis Cluster slot:
//! - `{prefix}:counts:{user}`: hash, other user → `sent:seen`;
//! - `{prefix}:counts-built`: present once the counters were built from the store. Redis runs
//!   without persistence here: after a restart it is missing, and the counters are rebuilt;
//! - `{prefix}:unread-stale`: set of dialogs (`low:high`) whose event a write could not record:
//!   the next reconciliation merges each from the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{bounded, CacheResult};

/// KEYS[1]: a user's counts; ARGV[1]: the other user, ARGV[2]: the other's sent count as told
/// (0: not told), ARGV[3]: how many of those the user has seen (0: not told). Keeps the larger
/// of each; whether anything changed.
const TELL: &str = r"
local held = redis.call('hget', KEYS[1], ARGV[1])
local sent, seen = 0, 0
if held then
  local a, b = string.match(held, '^(%d+):(%d+)$')
  sent, seen = tonumber(a) or 0, tonumber(b) or 0
end
local told_sent, told_seen = tonumber(ARGV[2]), tonumber(ARGV[3])
if held and told_sent <= sent and told_seen <= seen then return 0 end
if told_sent > sent then sent = told_sent end
if told_seen > seen then seen = told_seen end
redis.call('hset', KEYS[1], ARGV[1], string.format('%d:%d', sent, seen))
return 1
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
    tell: Arc<redis::Script>,
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
            tell: Arc::new(redis::Script::new(TELL)),
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
        format!("{}:counts:{{{user}}}", self.prefix)
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

    /// Up to `count` of the dialogs marked stale. They stay marked until
    /// [`UnreadCounters::repaired`] says so: a repair cut short (a crash, a failed merge) leaves
    /// them for the next one. Two instances may repair one dialog at once: a merge twice is one.
    pub async fn stale_dialogs(&self, count: usize) -> CacheResult<Vec<(i64, i64)>> {
        let mut redis = self.redis.clone();
        let marked: Vec<String> = bounded(
            self.timeout,
            redis.srandmember_multiple(self.stale_key(), count),
        )
        .await?;
        Ok(marked
            .iter()
            .filter_map(|pair| {
                let (low, high) = pair.split_once(':')?;
                Some((low.parse().ok()?, high.parse().ok()?))
            })
            .collect())
    }

    /// The dialog of `low` and `high` was merged from the store: no longer stale.
    pub async fn repaired(&self, low: i64, high: i64) -> CacheResult<()> {
        let mut redis = self.redis.clone();
        bounded(
            self.timeout,
            redis.srem::<_, _, ()>(self.stale_key(), format!("{low}:{high}")),
        )
        .await
    }

    fn built_key(&self) -> String {
        format!("{}:counts-built", self.prefix)
    }

    fn rebuilding_key(&self) -> String {
        format!("{}:unread-rebuilding", self.prefix)
    }

    /// Tells the counts of `user`'s side of their dialog with `other`, each kept if larger.
    async fn tell(&self, user: i64, other: i64, sent: i64, seen: i64) -> CacheResult<bool> {
        let mut redis = self.redis.clone();
        let mut invocation = self.tell.prepare_invoke();
        invocation
            .key(self.counts_key(user))
            .arg(other)
            .arg(sent.max(0))
            .arg(seen.max(0));
        let changed: i64 = bounded(self.timeout, invocation.invoke_async(&mut redis)).await?;
        Ok(changed == 1)
    }

    /// `from` has sent `sent` messages to `to` in their dialog, the one just stored among them;
    /// whether this told the counters something new.
    pub async fn message_sent(&self, to: i64, from: i64, sent: i64) -> CacheResult<bool> {
        self.tell(to, from, sent, 0).await
    }

    /// `reader`'s mark of their dialog with `other` now covers `seen` of the other's messages.
    pub async fn read(&self, reader: i64, other: i64, seen: i64) -> CacheResult<()> {
        self.tell(reader, other, 0, seen).await.map(drop)
    }

    /// Merges one side of a dialog as the store has it: `other` has sent `sent` messages to
    /// `user`, who has seen `seen` of them.
    pub async fn merge(&self, user: i64, other: i64, sent: i64, seen: i64) -> CacheResult<()> {
        self.tell(user, other, sent, seen).await.map(drop)
    }

    /// The unread messages of `user`.
    pub async fn unread(&self, user: i64) -> CacheResult<Unread> {
        let mut redis = self.redis.clone();
        let counts: Vec<(i64, String)> =
            bounded(self.timeout, redis.hgetall(self.counts_key(user))).await?;
        let mut dialogs: Vec<(i64, i64)> = counts
            .into_iter()
            .filter_map(|(other, counts)| {
                let (sent, seen) = counts.split_once(':')?;
                let unread = sent.parse::<i64>().ok()? - seen.parse::<i64>().ok()?;
                (unread > 0).then_some((other, unread))
            })
            .collect();
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

    /// Forgets every counter (before a rebuild from scratch); how many keys it removed. Keys of
    /// the counters' earlier form (a set of message numbers per dialog) go too.
    pub async fn clear(&self) -> CacheResult<u64> {
        let mut removed = 0;
        for pattern in ["counts:*", "unread:*", "read:*"] {
            removed += self
                .delete_matching(&format!("{}:{pattern}", self.prefix))
                .await?;
        }
        let mut redis = self.redis.clone();
        let markers = [
            self.built_key(),
            self.stale_key(),
            format!("{}:unread-built", self.prefix),
        ];
        bounded(self.timeout, redis.del::<_, u64>(&markers)).await?;
        Ok(removed)
    }

    /// Removes the keys of the counters' earlier form (`unread:*` sets and counts, `read:*`
    /// marks, `unread-built`), which a deployment upgraded with its Redis still holds; how many.
    /// A Redis without them pays one check.
    pub async fn forget_earlier_form(&self) -> CacheResult<u64> {
        let earlier_built = format!("{}:unread-built", self.prefix);
        let mut redis = self.redis.clone();
        if !bounded(self.timeout, redis.exists(&earlier_built)).await? {
            return Ok(0);
        }
        let mut removed = 0;
        for pattern in [
            format!("{}:unread:*", self.prefix),
            format!("{}:read:*", self.prefix),
        ] {
            removed += self.delete_matching(&pattern).await?;
        }
        let mut redis = self.redis.clone();
        bounded(self.timeout, redis.del::<_, u64>(&earlier_built)).await?;
        Ok(removed)
    }

    /// Deletes the keys matching `pattern`, 500 at a time; how many.
    async fn delete_matching(&self, pattern: &str) -> CacheResult<u64> {
        let mut redis = self.redis.clone();
        let keys: Vec<String> = {
            let mut scan = bounded(self.timeout, redis.scan_match::<_, String>(pattern)).await?;
            let mut keys = Vec::new();
            while let Some(key) = futures_util::StreamExt::next(&mut scan).await {
                keys.push(key);
            }
            keys
        };
        let mut removed = 0;
        for chunk in keys.chunks(500) {
            let mut redis = self.redis.clone();
            removed += bounded(self.timeout, redis.del::<_, u64>(chunk)).await?;
        }
        Ok(removed)
    }
}
