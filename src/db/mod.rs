//! PostgreSQL: the connection pool, database creation and embedded migrations.

pub mod columns;
mod error;
mod identity;
mod migrations;
pub mod reads;
pub mod replicas;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

pub use error::DbError;
pub use identity::{cache_namespace, database_number};
pub use migrations::{migrate, MIGRATIONS};

use crate::backoff::Backoff;
use crate::config::{DatabaseUrl, DbConfig};
use crate::ids::UserId;
use reads::{Fallback, PipelinedReads, ReadConn};
use replicas::Replicas;

/// Where a write records its event: nowhere (it is applied in process), or in the outbox under
/// the id of the request that made it. The domains' statements write the outbox row beside
/// their change, so that both commit together or not at all.
#[derive(Debug, Clone, Copy)]
pub enum EventRecord<'a> {
    None,
    Outbox { request_id: &'a str },
}

impl<'a> EventRecord<'a> {
    /// The request id to record the event under, when it is recorded.
    pub fn request_id(self) -> Option<&'a str> {
        match self {
            EventRecord::None => None,
            EventRecord::Outbox { request_id } => Some(request_id),
        }
    }
}

/// Records an event in the outbox, `payload` its JSON, beside a write of the same transaction.
#[tracing::instrument(name = "sql.record_event", skip(db, payload))]
pub async fn record_event(
    db: &impl deadpool_postgres::GenericClient,
    kind: &str,
    payload: &str,
    request_id: &str,
) -> Result<(), DbError> {
    let statement = db
        .prepare_cached(
            "insert into outbox (kind, payload, request_id) values ($1, $2::text::jsonb, $3)",
        )
        .await?;
    db.execute(&statement, &[&kind, &payload, &request_id])
        .await?;
    Ok(())
}

/// How long opening one connection may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the bounded pool of the primary. Connections are opened lazily.
pub fn build_pool(config: &DbConfig) -> anyhow::Result<Pool> {
    build_pool_on(config, &config.database_url)
}

/// A pool like the primary's, on the server at `url` (a replica).
fn build_pool_on(config: &DbConfig, url: &DatabaseUrl) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        connection_config_on(config, url),
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

/// The service's database: its pool, the shared connections that primary-key reads are
/// pipelined on (see [`reads`]), and the replicas reads may go to (see [`replicas`]). Cheap to
/// clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    reads: Option<Arc<PipelinedReads>>,
    replicas: Option<Arc<Replicas>>,
}

/// Which connection a read takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadKind {
    /// A primary-key lookup: pipelined on a shared connection when `DB_PIPELINED_READS` is on.
    Key,
    /// A read whose cost varies (a search, an SQL feed): pipelined, a slow one would hold up the
    /// reads queued behind it, so always pooled.
    Pooled,
}

impl Db {
    /// The pool of `config`, and `DB_PIPELINED_READS` shared connections unless that is 0; the
    /// same for each of `DATABASE_READ_URLS`.
    pub fn new(config: &DbConfig) -> anyhow::Result<Self> {
        let pipelined = |url: &DatabaseUrl| match config.pipelined_reads() {
            0 => None,
            n => Some(PipelinedReads::new(connection_config_on(config, url), n)),
        };
        let replicas = match config.database_read_urls.as_slice() {
            [] => None,
            urls => {
                let nodes = urls
                    .iter()
                    .map(|url| {
                        let (host, port) = url.host_and_port();
                        Ok((
                            format!("{host}:{port}"),
                            build_pool_on(config, url)?,
                            pipelined(url),
                        ))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Some(Arc::new(Replicas::new(
                    nodes,
                    config.read_max_lag(),
                    config.replica_check(),
                )))
            }
        };
        Ok(Db {
            pool: build_pool(config)?,
            reads: pipelined(&config.database_url).map(Arc::new),
            replicas,
        })
    }

    /// A pooled connection to the primary: for writes, transactions, and reads that must see
    /// the latest commit.
    pub async fn get(&self) -> Result<deadpool_postgres::Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// A connection for a primary-key lookup by `reader` (`None`: anonymous), on a replica
    /// that serves them (see [`replicas`]) or on the primary.
    pub async fn key_read(&self, reader: Option<UserId>) -> Result<ReadConn, DbError> {
        self.read(reader, ReadKind::Key).await
    }

    /// A pooled connection for a read whose cost varies, by `reader`, on a replica that serves
    /// them or on the primary.
    pub async fn pooled_read(&self, reader: Option<UserId>) -> Result<ReadConn, DbError> {
        self.read(reader, ReadKind::Pooled).await
    }

    async fn read(&self, reader: Option<UserId>, kind: ReadKind) -> Result<ReadConn, DbError> {
        let pipelined = kind == ReadKind::Key;
        if let Some(node) = self.replicas.as_ref().and_then(|r| r.choose(reader)) {
            metrics::counter!("db_replica_reads", "replica" => node.name.clone()).increment(1);
            let fallback = Fallback {
                replica: node.clone(),
                primary: self.pool.clone(),
                primary_reads: self.reads.clone(),
                pipelined,
            };
            return ReadConn::on_replica(&node.pool, node.reads.as_ref(), fallback).await;
        }
        match kind {
            ReadKind::Key => ReadConn::get(&self.pool, self.reads.as_deref()).await,
            ReadKind::Pooled => ReadConn::pooled(&self.pool).await,
        }
    }

    /// Notes that `user`'s write has committed: their next reads see it (read-your-writes).
    /// Nothing without replicas.
    pub fn wrote(&self, user: UserId) {
        if let Some(replicas) = &self.replicas {
            replicas.wrote(user);
        }
    }

    /// Whether reads may go to replicas (`DATABASE_READ_URLS`).
    pub fn has_replicas(&self) -> bool {
        self.replicas.is_some()
    }

    pub fn replicas(&self) -> Option<&Arc<Replicas>> {
        self.replicas.as_ref()
    }

    /// The task that keeps the replicas' health and lag, when there are replicas.
    pub fn watch_replicas(&self) -> Option<tokio::task::JoinHandle<()>> {
        let replicas = self.replicas.clone()?;
        Some(tokio::spawn(replicas.watch(self.pool.clone())))
    }

    /// The primary's pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Waits until the server answers (for at most `wait`), then creates the application database if
/// needed. Start-up calls this so that a server and its database can be started together. Only
/// what waiting can mend is waited for (a server not listening yet, or starting); an answer that
/// will not change (no such role, a wrong password) ends it at once. Either way the error names
/// where it looked, and the setting that changes it.
pub async fn wait_and_ensure_database(url: &DatabaseUrl, wait: Duration) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let mut said = None::<tokio::time::Instant>;
    loop {
        match ensure_database(url).await {
            Ok(created) => return Ok(created),
            Err(e) => {
                let delay = backoff.next_delay();
                if !worth_waiting(&e) || tokio::time::Instant::now() + delay >= deadline {
                    return Err(e.context(where_it_looked(url)));
                }
                // Once, then every five seconds: not a line per retry.
                if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        waited_s = started.elapsed().as_secs(),
                        wait_s = wait.as_secs(),
                        "{}; waiting for it (DB_STARTUP_WAIT_SECS)",
                        where_it_looked(url)
                    );
                    said = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// "cannot reach PostgreSQL at host:port …": where start-up looked for the database.
fn where_it_looked(url: &DatabaseUrl) -> String {
    let (host, port) = url.host_and_port();
    format!(
        "cannot use PostgreSQL at {host}:{port} as user {} for database {} \
         (DATABASE_URL names them)",
        url.pg().get_user().unwrap_or("(none)"),
        url.database().unwrap_or("(none)"),
    )
}

/// Whether a failure to connect may pass by itself: no answer at all (refused, cut, timed out),
/// a server still starting, or one out of connections. A refusal of this role or password, or of
/// a database that cannot be made, will not.
fn worth_waiting(e: &anyhow::Error) -> bool {
    let code = e
        .chain()
        .find_map(|cause| cause.downcast_ref::<tokio_postgres::Error>())
        .and_then(tokio_postgres::Error::code);
    match code {
        None => true,
        Some(code) => {
            let code = code.code();
            // Connection trouble (08), too many connections (53), starting or shutting (57P).
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }
    }
}

/// How every connection of the service is opened: connect timeout, statement timeout, name.
pub fn connection_config(config: &DbConfig) -> tokio_postgres::Config {
    connection_config_on(config, &config.database_url)
}

/// The same, to the server at `url`.
fn connection_config_on(config: &DbConfig, url: &DatabaseUrl) -> tokio_postgres::Config {
    let mut pg = url.pg().clone();
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    // Added to the URL's own `options`, which are kept.
    let timeout = format!("-c statement_timeout={}", config.db_statement_timeout_ms);
    let options = match pg.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {timeout}"),
        _ => timeout,
    };
    pg.options(options);
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
    // Connecting to the target itself is the cheap common case; only a database that does not
    // exist yet is worth going on to the maintenance database for.
    match connect(url.pg()).await {
        Ok(_) => return Ok(false),
        Err(e) if !names_missing_database(&e) => return Err(e),
        Err(_) => {}
    }
    let client = connect(url.with_database("postgres").pg())
        .await
        .with_context(|| {
            format!("connecting to the server's `postgres` database to create `{name}`")
        })?;
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

/// Whether a connection failed because its database does not exist (SQLSTATE 3D000).
fn names_missing_database(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| *code == tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
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
