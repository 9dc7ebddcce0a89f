//! Numbered `.sql` migrations, embedded in the binary and applied once each, in order.

use anyhow::Context;
use deadpool_postgres::Pool;

/// One migration: its number, its name and its SQL.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $name, ".sql")),
        }
    };
}

/// Every migration, in the order it is applied. Add new files at the end; never edit applied ones.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_users"),
    migration!(2, "0002_friends_posts"),
    migration!(3, "0003_outbox"),
    migration!(4, "0004_dialogs"),
    migration!(5, "0005_search_index_lowered_names"),
    migration!(6, "0006_optional_profile_fields"),
    migration!(7, "0007_server_secrets"),
    migration!(8, "0008_follow_changes"),
    migration!(9, "0009_database_identity"),
    migration!(10, "0010_outbox_request_id"),
    migration!(11, "0011_dialog_reads"),
    migration!(12, "0012_dialog_unread_counts"),
    migration!(13, "0013_send_counts_too"),
];

/// Any fixed number identifies the migration lock among advisory locks; this one spells "snet".
const MIGRATION_LOCK_KEY: i64 = 0x736e_6574;

/// Applies every migration not applied yet. Safe to run twice and from several instances at once:
/// a session-level advisory lock serialises them, and each migration commits with its bookkeeping row.
pub async fn migrate(pool: &Pool) -> anyhow::Result<Vec<i32>> {
    let mut client = pool
        .get()
        .await
        .context("getting a connection to run migrations")?;
    // Its NOTICE that the table is there already, at every start, tells nobody anything.
    client
        .batch_execute(
            "set client_min_messages to warning;
             create table if not exists schema_migrations (
                version integer primary key,
                name text not null,
                applied_at timestamptz not null default now()
             );
             reset client_min_messages",
        )
        .await
        .or_else(ignore_concurrent_create)?;
    client
        .execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = apply_pending(&mut client).await;
    client
        .execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    result
}

async fn apply_pending(client: &mut deadpool_postgres::Client) -> anyhow::Result<Vec<i32>> {
    let applied: Vec<i32> = client
        .query("select version from schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut newly = Vec::new();
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(migration.sql)
            .await
            .with_context(|| format!("applying migration {}", migration.name))?;
        tx.execute(
            "insert into schema_migrations (version, name) values ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        newly.push(migration.version);
    }
    Ok(newly)
}

/// `create table if not exists` can still fail when two sessions race on it; the loser can go on.
fn ignore_concurrent_create(e: tokio_postgres::Error) -> Result<(), tokio_postgres::Error> {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::DUPLICATE_TABLE => {
            Ok(())
        }
        _ => Err(e),
    }
}
