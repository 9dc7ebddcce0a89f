//! Reads that are one statement each can share a few connections: tokio-postgres pipelines the
//! queries that concurrent requests send on one connection, so a burst of them costs a handful of
//! socket writes and reads on both sides instead of one round trip per pooled connection each
//! (the gain at 10 and 100 connections: docs/benchmarks/users.md). Writes and transactions
//! always use the pool.
//!
//! The price is head-of-line blocking: a slow statement delays the ones queued behind it on the
//! same connection (bounded by `statement_timeout`). Searches measurably suffered, so only
//! primary-key lookups come here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use super::DbError;

/// A few shared connections for pipelined single-statement reads.
pub struct PipelinedReads {
    slots: Vec<Slot>,
    next: AtomicUsize,
    config: tokio_postgres::Config,
}

/// One shared connection: taken under a plain read lock on every request; (re)opened by one
/// request at a time while the others wait on the async lock instead of connecting too.
#[derive(Default)]
struct Slot {
    open: RwLock<Option<Arc<SharedClient>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<Arc<SharedClient>> {
        self.open
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .filter(|c| !c.client.is_closed())
            .cloned()
    }
}

/// One shared connection and the statements prepared on it.
pub struct SharedClient {
    client: tokio_postgres::Client,
    /// By SQL text. Only a couple of statements come here (the key lookups), so a scan that
    /// compares lengths first beats hashing the whole text on every request.
    statements: Mutex<Vec<(String, Statement)>>,
}

impl PipelinedReads {
    pub fn new(config: tokio_postgres::Config, connections: usize) -> Self {
        PipelinedReads {
            slots: (0..connections.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            config,
        }
    }

    /// The next connection in turn, (re)opened if it is not open.
    async fn client(&self) -> Result<Arc<SharedClient>, DbError> {
        let slot = match self.slots.as_slice() {
            [only] => only,
            slots => &slots[self.next.fetch_add(1, Ordering::Relaxed) % slots.len()],
        };
        if let Some(client) = slot.current() {
            return Ok(client);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(client) = slot.current() {
            return Ok(client);
        }
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| DbError::Unavailable(format!("database unreachable: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "shared read connection closed");
            }
        });
        let client = Arc::new(SharedClient {
            client,
            statements: Mutex::new(Vec::new()),
        });
        *slot
            .open
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(client.clone());
        Ok(client)
    }
}

impl SharedClient {
    async fn statement(&self, sql: &str) -> Result<Statement, DbError> {
        let cached = self
            .statements
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .find(|(text, _)| text == sql)
            .map(|(_, statement)| statement.clone());
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((sql.to_owned(), statement.clone()));
        Ok(statement)
    }
}

/// Where a read runs: on a pooled connection, or pipelined on a shared one; on the primary or on
/// a replica, from which it falls back to the primary if the replica fails under it.
pub struct ReadConn {
    conn: Conn,
    fallback: Option<Fallback>,
}

#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one request; boxing the pooled variant would only add an \
              allocation per request"
)]
enum Conn {
    Pooled(deadpool_postgres::Object),
    Shared(Arc<SharedClient>),
}

/// Told when a replica fails under a read (its health, kept in `replicas`).
pub(super) trait ReplicaHealth: Send + Sync {
    fn failed(&self, why: &str);
}

/// What a read on a replica needs to run again on the primary.
pub(super) struct Fallback {
    pub replica: Arc<dyn ReplicaHealth>,
    pub primary: Pool,
    pub primary_reads: Option<Arc<PipelinedReads>>,
    pub pipelined: bool,
}

impl Fallback {
    /// The replica failed as a dead server fails (`why`): skip it until its next check, and
    /// connect to the primary instead.
    async fn primary(&self, why: &str) -> Result<ReadConn, DbError> {
        self.replica.failed(why);
        metrics::counter!("db_replica_fallbacks").increment(1);
        let reads = self.primary_reads.as_deref().filter(|_| self.pipelined);
        ReadConn::get(&self.primary, reads).await
    }
}

impl ReadConn {
    /// A shared connection when pipelined reads are on, a pooled one otherwise.
    pub async fn get(pool: &Pool, reads: Option<&PipelinedReads>) -> Result<Self, DbError> {
        let conn = match reads {
            Some(reads) => Conn::Shared(reads.client().await?),
            None => Conn::Pooled(pool.get().await?),
        };
        Ok(ReadConn {
            conn,
            fallback: None,
        })
    }

    /// A pooled connection from `pool`.
    pub async fn pooled(pool: &Pool) -> Result<Self, DbError> {
        ReadConn::get(pool, None).await
    }

    /// A connection to a replica (its `pool`, or its pipelined `reads` when the read is a key
    /// lookup), or to the primary of `fallback` if the replica does not give one.
    pub(super) async fn on_replica(
        pool: &Pool,
        reads: Option<&PipelinedReads>,
        fallback: Fallback,
    ) -> Result<Self, DbError> {
        let reads = reads.filter(|_| fallback.pipelined);
        match ReadConn::get(pool, reads).await {
            Ok(conn) => Ok(ReadConn {
                fallback: Some(fallback),
                ..conn
            }),
            Err(DbError::Unavailable(why)) => fallback.primary(&why).await,
            Err(e) => Err(e),
        }
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        match (self.conn.query(sql, params).await, &self.fallback) {
            (Err(DbError::Unavailable(why)), Some(fallback)) => {
                fallback.primary(&why).await?.conn.query(sql, params).await
            }
            (result, _) => result,
        }
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }
}

impl Conn {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        Ok(match self {
            Conn::Pooled(client) => {
                let statement = client.prepare_cached(sql).await?;
                client.query(&statement, params).await?
            }
            Conn::Shared(shared) => {
                let statement = shared.statement(sql).await?;
                shared.client.query(&statement, params).await?
            }
        })
    }
}
