//! Sharding the dialogs with Citus: detection and distribution at start-up, and the operations of
//! `socialnet shards …`, all through Citus' own functions.
//!
//! When the database has Citus loaded (`shared_preload_libraries`), start-up creates the extension
//! and, once the cluster has at least one worker, makes `users` a reference table (a copy on every
//! node, so dialogs can reference it) and distributes `dialogs` and `dialog_messages` by
//! `dialog_id`, co-located, in `CITUS_SHARD_COUNT` shards. Everything else stays on the
//! coordinator. Without Citus nothing here runs and the same schema serves from one PostgreSQL.

pub mod ops;

use anyhow::Context;
use tokio_postgres::Client;

use ops::TableKind;

/// The tables distributed by the dialog key, the first one leading the co-location group.
pub const DISTRIBUTED: [&str; 2] = ["dialogs", "dialog_messages"];
/// Sends and read marks run on the worker that holds the dialog: Citus delegates calls by their
/// first argument. `send_dialog_message` is the older send (migration 0012), for a server not
/// upgraded yet.
pub const DELEGATED_FUNCTIONS: [&str; 3] = [
    "store_dialog_message(bigint,bigint,bigint,bigint,bigint,text)",
    "read_dialog(bigint,bigint,bigint,boolean,bigint)",
    "send_dialog_message(bigint,bigint,bigint,bigint,bigint,text)",
];
/// The table copied to every node.
pub const REFERENCE: &str = "users";
/// Points follow_changes' clock at posts' id sequence, as migration 0008 does.
const FOLLOW_CLOCK: &str = "do $$ begin
     execute format('alter table follow_changes alter column clock set default nextval(%L)',
                    pg_get_serial_sequence('posts', 'id'));
     end $$";

/// How the dialog tables are to be sharded, from the configuration.
#[derive(Debug, Clone)]
pub struct Sharding {
    pub shard_count: u32,
    /// Where workers reach the coordinator.
    pub coordinator: ops::Node,
}

impl Sharding {
    pub fn from_config(config: &crate::config::DbConfig) -> anyhow::Result<Self> {
        let coordinator = match &config.citus_coordinator {
            Some(node) if node.contains(':') => node.parse()?,
            Some(host) => ops::Node {
                host: host.clone(),
                port: 5432,
            },
            None => {
                let (host, port) = config.database_url.host_and_port();
                ops::Node {
                    host,
                    port: port.into(),
                }
            }
        };
        Ok(Sharding {
            shard_count: config.citus_shard_count,
            coordinator,
        })
    }
}

/// What start-up found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CitusLayout {
    /// No Citus on this database: one PostgreSQL serves everything.
    Plain,
    /// Citus is loaded but has no worker yet: tables stay on the coordinator until
    /// `socialnet shards add-worker`.
    NoWorkers,
    /// Dialogs are distributed over the workers.
    Distributed,
}

/// Whether this server has Citus loaded (it can only be, through `shared_preload_libraries`).
pub async fn citus_loaded(db: &Client) -> anyhow::Result<bool> {
    let row = db
        .query_one(
            "select coalesce(current_setting('shared_preload_libraries', true), '') ~ '(^|,| )citus($|,| )'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Start-up's Citus step (after the migrations): the extension, then the distribution of the
/// dialog tables if there are workers to distribute them over. Safe to run again.
pub async fn prepare(db: &Client, sharding: &Sharding) -> anyhow::Result<CitusLayout> {
    if !citus_loaded(db).await? {
        return Ok(CitusLayout::Plain);
    }
    db.batch_execute("create extension if not exists citus")
        .await
        .context("creating the citus extension")?;
    if ops::active_workers(db).await?.is_empty() {
        tracing::warn!(
            "citus is loaded but has no worker: dialogs stay on the coordinator until \
             `socialnet shards add-worker HOST:PORT`"
        );
        return Ok(CitusLayout::NoWorkers);
    }
    distribute(db, sharding).await?;
    Ok(CitusLayout::Distributed)
}

/// Makes `users` a reference table and distributes the dialog tables, each only if not done yet.
pub async fn distribute(db: &Client, sharding: &Sharding) -> anyhow::Result<()> {
    let shard_count = sharding.shard_count;
    // Local tables (friends, posts) keep their foreign keys to users: Citus needs the coordinator
    // in its metadata for that.
    ensure_coordinator_in_metadata(db, &sharding.coordinator).await?;
    if ops::table_kind(db, REFERENCE).await? != Some(TableKind::Reference) {
        // Citus turns the local tables that reference users (posts, friends…) into "Citus local
        // tables", recreating them, and with them posts' id sequence, which the clock of
        // follow_changes draws from (migration 0008): that default is set aside meanwhile and
        // pointed at the sequence posts has afterwards, in one transaction.
        db.batch_execute(&format!(
            "begin;
             alter table follow_changes alter column clock drop default;
             select create_reference_table('{REFERENCE}');
             {FOLLOW_CLOCK};
             commit;"
        ))
        .await
        .context("making users a reference table")?;
        tracing::info!("citus: users is a reference table");
    }
    let [leader, follower] = DISTRIBUTED;
    if ops::table_kind(db, leader).await? != Some(TableKind::Distributed) {
        db.execute(
            "select create_distributed_table($1::text::regclass, 'dialog_id', shard_count => $2)",
            &[&leader, &(shard_count as i32)],
        )
        .await
        .with_context(|| format!("distributing {leader}"))?;
    }
    if ops::table_kind(db, follower).await? != Some(TableKind::Distributed) {
        db.execute(
            "select create_distributed_table($1::text::regclass, 'dialog_id', colocate_with => $2)",
            &[&follower, &leader],
        )
        .await
        .with_context(|| format!("distributing {follower}"))?;
        tracing::info!(shard_count, "citus: dialogs distributed by dialog_id");
    }
    for function in DELEGATED_FUNCTIONS {
        let delegated = db
            .query_one(
                "select exists (select 1 from pg_dist_object
                                where objid = $1::text::regprocedure and distribution_argument_index is not null)",
                &[&function],
            )
            .await?
            .get::<_, bool>(0);
        if !delegated {
            db.execute(
                "select create_distributed_function($1::text::regprocedure, 'p_dialog_id', colocate_with => $2)",
                &[&function, &leader],
            )
            .await
            .with_context(|| format!("delegating {function} to the workers"))?;
        }
    }
    Ok(())
}

/// Registers the coordinator (node group 0) at the address workers reach it at, if it is not yet:
/// Citus needs it for local tables that reference a reference table, and refuses workers while
/// the coordinator is known as `localhost`.
pub async fn ensure_coordinator_in_metadata(db: &Client, at: &ops::Node) -> anyhow::Result<()> {
    let known: Option<String> = db
        .query_opt("select nodename from pg_dist_node where groupid = 0", &[])
        .await?
        .map(|row| row.get(0));
    if known
        .as_deref()
        .is_none_or(|host| host == "localhost" && at.host != "localhost")
    {
        db.execute(
            "select citus_set_coordinator_host($1, $2)",
            &[&at.host, &at.port],
        )
        .await
        .with_context(|| format!("registering the coordinator as {at}"))?;
    }
    Ok(())
}
