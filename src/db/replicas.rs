//! Reads on streaming replicas (`DATABASE_READ_URLS`): a pool per replica, a watcher that keeps
//! each one's health and lag, and the choice of where one read runs.
//!
//! **Lag** is measured against the primary's WAL position, which the watcher samples every
//! `REPLICA_CHECK_MS` before it asks each replica how far it has replayed. A replica that has
//! replayed the position of the sample taken at `t` holds every commit made before `t`, so
//! `now - t` (for the newest such sample) bounds how stale its reads can be. That bound is the
//! lag compared with `READ_MAX_LAG_MS`: it is zero for an idle, caught-up replica (unlike
//! `now() - pg_last_xact_replay_timestamp()`, which grows while nobody writes) and keeps growing
//! for one cut off from the primary (unlike a comparison of its received and replayed WAL).
//!
//! **Read-your-writes** uses the same samples: a write is noted with the instant after it
//! committed, and until a sample taken after that instant has been replayed by a replica, the
//! writer's reads go to the primary. It costs a write nothing but a map insert (no extra round
//! trip to learn the commit's WAL position), and a reader who wrote lately waits for no replica:
//! within one check interval of a write, and for as long as every replica is behind it, their
//! reads run on the primary. The notes are this instance's: both balancers keep a token on one
//! instance (hashing its `Authorization` header), so a writer's next read reaches the instance
//! that noted the write; only when that instance dies does the token move to one that knows
//! nothing of it (see docs/lab/replicas.md).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::reads::{PipelinedReads, ReplicaHealth};
use super::DbError;
use crate::ids::UserId;

/// Longest one health check may take before its replica counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// One replica: its pools and what the watcher last learned of it.
pub struct ReadNode {
    /// `host:port`, in logs, metrics and `/ready`.
    pub name: String,
    pub(super) pool: Pool,
    pub(super) reads: Option<PipelinedReads>,
    health: RwLock<Health>,
}

/// What the last check (or a failed read since) found.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// Not checked yet.
    Unknown,
    /// Answering, with its replay position and how far behind the primary that is.
    Up { replayed: u64, lag: Duration },
    /// Not answering, or answering with an error.
    Down(String),
    /// Answering and taking writes: promoted, it is a primary now (the primary pool finds it).
    NotReplica,
}

impl ReadNode {
    pub fn health(&self) -> Health {
        self.health
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_health(&self, health: Health) {
        let mut current = self
            .health
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let (Health::Up { .. }, Health::Down(why)) = (&*current, &health) {
            tracing::warn!(replica = %self.name, reason = %why, "replica down; its reads go elsewhere");
        }
        if let (Health::Down(_) | Health::Unknown, Health::Up { .. }) = (&*current, &health) {
            tracing::info!(replica = %self.name, "replica up");
        }
        *current = health;
    }

    /// A read on this replica failed as a dead server fails: skip it until the next check.
    pub fn failed(&self, why: &str) {
        self.set_health(Health::Down(why.to_owned()));
    }

    /// Whether its position covers `needed` and its lag is within `max_lag`.
    fn serves(&self, max_lag: Duration, needed: Option<u64>) -> bool {
        match *self
            .health
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            Health::Up { replayed, lag } => {
                lag <= max_lag && needed.is_none_or(|position| replayed >= position)
            }
            _ => false,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl ReplicaHealth for ReadNode {
    fn failed(&self, why: &str) {
        ReadNode::failed(self, why);
    }
}

/// The replicas, the primary's sampled positions and the recent writers.
pub struct Replicas {
    nodes: Vec<Arc<ReadNode>>,
    max_lag: Duration,
    check_every: Duration,
    /// The primary's WAL position by when it was read, oldest first.
    primary: Mutex<VecDeque<(Instant, u64)>>,
    /// Users whose latest write committed lately, and when.
    writers: Mutex<HashMap<UserId, Instant>>,
    next: AtomicUsize,
}

impl Replicas {
    pub(super) fn new(
        nodes: Vec<(String, Pool, Option<PipelinedReads>)>,
        max_lag: Duration,
        check_every: Duration,
    ) -> Self {
        Replicas {
            nodes: nodes
                .into_iter()
                .map(|(name, pool, reads)| {
                    Arc::new(ReadNode {
                        name,
                        pool,
                        reads,
                        health: RwLock::new(Health::Unknown),
                    })
                })
                .collect(),
            max_lag,
            check_every,
            primary: Mutex::new(VecDeque::new()),
            writers: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
        }
    }

    pub fn nodes(&self) -> &[Arc<ReadNode>] {
        &self.nodes
    }

    pub fn max_lag(&self) -> Duration {
        self.max_lag
    }

    /// Notes that `user`'s write has committed.
    pub fn wrote(&self, user: UserId) {
        self.writers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(user, Instant::now());
    }

    /// A replica for a read by `reader` (anonymous: `None`), taking turns among those that
    /// serve; `None` when the read must go to the primary.
    pub fn choose(&self, reader: Option<UserId>) -> Option<&Arc<ReadNode>> {
        let wrote_at = reader.and_then(|user| {
            self.writers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(&user)
                .copied()
        });
        let needed = match wrote_at {
            None => None,
            // The first position sampled after the write covers it; none yet: the primary.
            Some(at) => Some(
                self.primary
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .iter()
                    .find(|(sampled, _)| *sampled > at)
                    .map(|(_, position)| *position)?,
            ),
        };
        let count = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|k| &self.nodes[(start + k) % count])
            .find(|node| node.serves(self.max_lag, needed))
    }

    /// Checks every replica each `REPLICA_CHECK_MS`, until the task is aborted.
    pub async fn watch(self: Arc<Self>, primary: Pool) {
        let mut ticks = tokio::time::interval(self.check_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.check(&primary).await;
        }
    }

    /// One round: the primary's position first, then each replica's, all at once.
    pub async fn check(&self, primary: &Pool) {
        let primary_answered =
            match tokio::time::timeout(CHECK_TIMEOUT, primary_position(primary)).await {
                Ok(Ok(position)) => {
                    self.sampled(Instant::now(), position);
                    true
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot read the primary's WAL position");
                    false
                }
                Err(_) => {
                    tracing::debug!("the primary's WAL position did not come in time");
                    false
                }
            };
        let checks = self.nodes.iter().map(|node| async move {
            let health =
                match tokio::time::timeout(CHECK_TIMEOUT, replay_position(&node.pool)).await {
                    Ok(Ok(Some(replayed))) => Health::Up {
                        replayed,
                        lag: match node.health() {
                            // With the primary away (dead, or failing over), a replica cannot
                            // fall further behind a primary that writes nothing: its lag stays
                            // what it was, and replicas that were serving go on serving reads.
                            Health::Up { lag, .. } if !primary_answered => lag,
                            _ => self.lag(replayed, Instant::now()),
                        },
                    },
                    Ok(Ok(None)) => Health::NotReplica,
                    Ok(Err(e)) => Health::Down(e.to_string()),
                    Err(_) => Health::Down("no answer within a second".into()),
                };
            node.set_health(health);
        });
        futures_util::future::join_all(checks).await;
        self.forget_old_writes();
        self.record_metrics();
    }

    fn sampled(&self, at: Instant, position: u64) {
        let mut samples = self
            .primary
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        samples.push_back((at, position));
        // Enough history to tell a lag of twice the limit; beyond it a replica is just "too far".
        let keep = 2 * self.max_lag + 10 * self.check_every;
        while samples.len() > 1 && samples.front().is_some_and(|(t, _)| at - *t > keep) {
            samples.pop_front();
        }
    }

    /// How stale a replica that has replayed `replayed` may be, at `now`.
    fn lag(&self, replayed: u64, now: Instant) -> Duration {
        let samples = self
            .primary
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match samples
            .iter()
            .rev()
            .find(|(_, position)| *position <= replayed)
        {
            // Caught up with the newest sample: nothing written before it is missing.
            Some((at, _)) if Some(at) == samples.back().map(|(t, _)| t) => Duration::ZERO,
            Some((at, _)) => now - *at,
            // Behind every sample kept: at least as stale as the oldest.
            None => samples
                .front()
                .map_or(Duration::MAX, |(at, _)| now - *at + self.check_every),
        }
    }

    /// A write older than this is covered by any replica whose lag is within the limit.
    fn forget_old_writes(&self) {
        let keep = self.max_lag + 2 * self.check_every + CHECK_TIMEOUT;
        let now = Instant::now();
        self.writers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|_, at| now - *at <= keep);
    }

    fn record_metrics(&self) {
        for node in &self.nodes {
            let name = node.name.clone();
            let (up, lag) = match node.health() {
                Health::Up { lag, .. } => (1.0, lag.as_secs_f64()),
                _ => (0.0, f64::NAN),
            };
            metrics::gauge!("db_replica_up", "replica" => name.clone()).set(up);
            metrics::gauge!("db_replica_lag_seconds", "replica" => name).set(lag);
        }
    }
}

/// The primary's current WAL position, as bytes from the start.
async fn primary_position(primary: &Pool) -> Result<u64, DbError> {
    let client = primary.get().await?;
    let row = client
        .query_one("select (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8", &[])
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// How far a replica has replayed; `None` when it is not a replica any more. A node promoted by
/// an HA manager but still read-only (pg_auto_failover keeps a promoted standby read-only until
/// the old primary is known to be demoted, against a split brain) counts as a replica that is
/// up to date: it holds every commit the old primary acknowledged, and no primary takes writes
/// yet, so it serves reads while the primary pool finds nobody.
async fn replay_position(replica: &Pool) -> Result<Option<u64>, DbError> {
    let client = replica.get().await?;
    let row = client
        .query_one(
            "select pg_is_in_recovery() or current_setting('transaction_read_only')::bool,
                    (case when pg_is_in_recovery() then coalesce(pg_last_wal_replay_lsn(), '0/0')
                          else pg_current_wal_lsn() end - '0/0'::pg_lsn)::int8",
            &[],
        )
        .await?;
    Ok(row.get::<_, bool>(0).then(|| row.get::<_, i64>(1) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas() -> Replicas {
        Replicas::new(
            Vec::new(),
            Duration::from_secs(1),
            Duration::from_millis(100),
        )
    }

    #[test]
    fn a_replica_at_the_newest_sample_has_no_lag_and_one_behind_is_as_stale_as_what_it_holds() {
        let replicas = replicas();
        let t0 = Instant::now();
        replicas.sampled(t0, 100);
        replicas.sampled(t0 + Duration::from_millis(100), 200);
        replicas.sampled(t0 + Duration::from_millis(200), 300);
        let now = t0 + Duration::from_millis(250);
        assert_eq!(replicas.lag(300, now), Duration::ZERO);
        assert_eq!(replicas.lag(350, now), Duration::ZERO);
        // It holds everything before the sample at 100 ms, and maybe nothing after.
        assert_eq!(replicas.lag(250, now), Duration::from_millis(150));
        assert_eq!(replicas.lag(200, now), Duration::from_millis(150));
        // Behind every sample: staler than the oldest.
        assert!(replicas.lag(50, now) > Duration::from_millis(250));
    }

    #[test]
    fn samples_older_than_twice_the_limit_are_dropped_but_the_newest_stays() {
        let replicas = replicas();
        let t0 = Instant::now();
        for i in 0..100u64 {
            replicas.sampled(t0 + Duration::from_millis(100 * i), i);
        }
        let samples = replicas.primary.lock().unwrap();
        let span = samples.back().unwrap().0 - samples.front().unwrap().0;
        assert!(span <= Duration::from_secs(3), "{span:?}");
        assert_eq!(samples.back().unwrap().1, 99);
    }
}
