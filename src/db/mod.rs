//! PostgreSQL: the connection pool, database creation and embedded migrations.

pub mod columns;
mod migrations;
pub mod reads;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

pub use migrations::{migrate, MIGRATIONS};

use crate::config::DbConfig;

/// How long opening one connection may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the bounded pool of the primary. Connections are opened lazily.
pub fn build_pool(config: &DbConfig) -> anyhow::Result<Pool> {
    let pg = connection_config(config)?;
    let manager = Manager::from_config(
        pg,
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

/// Applies the migrations, then the Citus step when the database has Citus (see `crate::shards`).
pub async fn migrate_and_shard(pool: &Pool, config: &DbConfig) -> anyhow::Result<Vec<i32>> {
    let applied = migrate(pool).await?;
    let client = pool.get().await.context("connecting for the citus step")?;
    let layout =
        crate::shards::prepare(&client, &crate::shards::Sharding::from_config(config)?).await?;
    if layout != crate::shards::CitusLayout::Plain {
        tracing::info!(?layout, "citus");
    }
    Ok(applied)
}

/// Waits until the server answers (for at most `wait`), then creates the application database if
/// needed. Start-up calls this so that a server and its database can be started together.
pub async fn wait_and_ensure_database(database_url: &str, wait: Duration) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut delay = Duration::from_millis(100);
    loop {
        match ensure_database(database_url).await {
            Ok(created) => return Ok(created),
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "database not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// How every connection of the service is opened: connect timeout, statement timeout, name.
pub fn connection_config(config: &DbConfig) -> anyhow::Result<tokio_postgres::Config> {
    let mut pg = tokio_postgres::Config::from_str(&config.database_url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
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
    Ok(pg)
}

/// Creates the database named in `database_url` if it does not exist yet, by connecting to the
/// server's `postgres` maintenance database. Returns whether it was created.
pub async fn ensure_database(database_url: &str) -> anyhow::Result<bool> {
    let target = tokio_postgres::Config::from_str(database_url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let Some(name) = target.get_dbname().map(str::to_owned) else {
        return Ok(false);
    };
    // Connecting to the target itself is the cheap common case.
    if connect(&target).await.is_ok() {
        return Ok(false);
    }
    let mut maintenance = target.clone();
    maintenance.dbname("postgres");
    let client = connect(&maintenance)
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
pub async fn drop_database(database_url: &str) -> anyhow::Result<()> {
    let mut config = tokio_postgres::Config::from_str(database_url)?;
    let name = config
        .get_dbname()
        .context("the URL names no database")?
        .to_owned();
    config.dbname("postgres");
    let client = connect(&config).await?;
    client
        .batch_execute(&format!(
            "drop database if exists {} with (force)",
            quote_ident(&name)
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
