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

/// Where a read runs: on a pooled connection, or pipelined on a shared one.
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one request; boxing the pooled variant would only add an \
              allocation per request"
)]
pub enum ReadConn {
    Pooled(deadpool_postgres::Object),
    Shared(Arc<SharedClient>),
}

impl ReadConn {
    /// A shared connection when pipelined reads are on, a pooled one otherwise.
    pub async fn get(pool: &Pool, reads: Option<&PipelinedReads>) -> Result<Self, DbError> {
        Ok(match reads {
            Some(reads) => ReadConn::Shared(reads.client().await?),
            None => ReadConn::Pooled(pool.get().await?),
        })
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        Ok(match self {
            ReadConn::Pooled(client) => {
                let statement = client.prepare_cached(sql).await?;
                client.query(&statement, params).await?
            }
            ReadConn::Shared(shared) => {
                let statement = shared.statement(sql).await?;
                shared.client.query(&statement, params).await?
            }
        })
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }
}
