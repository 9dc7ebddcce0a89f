//! PostgreSQL: the connection pool, database creation and embedded migrations.

pub mod columns;
mod error;
mod identity;
mod migrations;
pub mod reads;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

pub use error::DbError;
pub use identity::cache_namespace;
pub use migrations::{migrate, MIGRATIONS};

use crate::backoff::Backoff;
use crate::config::{DatabaseUrl, DbConfig};
use reads::{PipelinedReads, ReadConn};

/// How long opening one connection may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the bounded pool of the primary. Connections are opened lazily.
pub fn build_pool(config: &DbConfig) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        connection_config(config),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(config.pool_size())
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(config.pool_timeout()),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        })
        .build()
        .context("building the database pool")?;
    Ok(pool)
}

/// The service's database: its pool, and the shared connections that primary-key reads are
/// pipelined on (see [`reads`]). Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    reads: Option<Arc<PipelinedReads>>,
}

impl Db {
    /// The pool of `config`, and `DB_PIPELINED_READS` shared connections unless that is 0.
    pub fn new(config: &DbConfig) -> anyhow::Result<Self> {
        let reads = match config.pipelined_reads() {
            0 => None,
            n => Some(Arc::new(PipelinedReads::new(connection_config(config), n))),
        };
        Ok(Db {
            pool: build_pool(config)?,
            reads,
        })
    }

    /// A pooled connection: for writes, transactions, and reads that may be slow.
    pub async fn get(&self) -> Result<deadpool_postgres::Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// A connection for a primary-key lookup: pipelined on a shared connection when
    /// `DB_PIPELINED_READS` is on, pooled otherwise.
    pub async fn key_read(&self) -> Result<ReadConn, DbError> {
        ReadConn::get(&self.pool, self.reads.as_deref()).await
    }

    /// A pooled connection for a read whose cost varies (a search, an SQL feed): pipelined, a
    /// slow one would hold up the reads queued behind it.
    pub async fn pooled_read(&self) -> Result<ReadConn, DbError> {
        Ok(ReadConn::Pooled(self.get().await?))
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Waits until the server answers (for at most `wait`), then creates the application database if
/// needed. Start-up calls this so that a server and its database can be started together.
pub async fn wait_and_ensure_database(url: &DatabaseUrl, wait: Duration) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match ensure_database(url).await {
            Ok(created) => return Ok(created),
            Err(e) => {
                let delay = backoff.next_delay();
                if tokio::time::Instant::now() + delay >= deadline {
                    return Err(e);
                }
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "database not ready");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// How every connection of the service is opened: connect timeout, statement timeout, name.
pub fn connection_config(config: &DbConfig) -> tokio_postgres::Config {
    let mut pg = config.database_url.pg().clone();
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    pg.options(format!(
        "-c statement_timeout={}",
        config.db_statement_timeout_ms
    ));
    if pg.get_application_name().is_none() {
        pg.application_name("socialnet");
    }
    pg
}

/// Creates the database named in `url` if it does not exist yet, by connecting to the
/// server's `postgres` maintenance database. Returns whether it was created.
pub async fn ensure_database(url: &DatabaseUrl) -> anyhow::Result<bool> {
    let Some(name) = url.database().map(str::to_owned) else {
        return Ok(false);
    };
    // Connecting to the target itself is the cheap common case.
    if connect(url.pg()).await.is_ok() {
        return Ok(false);
    }
    let client = connect(url.with_database("postgres").pg())
        .await
        .context("connecting to the `postgres` database to create the application database")?;
    let exists = client
        .query_opt("select 1 from pg_database where datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    let sql = format!("create database {}", quote_ident(&name));
    match client.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!(database = %name, "created database");
            Ok(true)
        }
        // Another instance created it at the same moment.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
            Ok(false)
        }
        Err(e) => Err(e).context(format!("creating database {name}")),
    }
}

/// Drops a database, disconnecting its sessions first. Used by tests and lab tools.
pub async fn drop_database(url: &DatabaseUrl) -> anyhow::Result<()> {
    let name = url.database().context("the URL names no database")?;
    let client = connect(url.with_database("postgres").pg()).await?;
    client
        .batch_execute(&format!(
            "drop database if exists {} with (force)",
            quote_ident(name)
        ))
        .await?;
    Ok(())
}

/// Opens one connection outside the pool, driving it on a background task.
pub async fn connect(config: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "maintenance connection closed");
        }
    });
    Ok(client)
}

/// Quotes an SQL identifier (doubling any embedded quote).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
