//! The operations behind `socialnet shards …`: each is a few calls of Citus' own functions, with
//! clear output and progress where they take time.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_postgres::Client;

use super::DISTRIBUTED;

/// A node as `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: i32,
}

impl std::str::FromStr for Node {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (host, port) = s
            .rsplit_once(':')
            .with_context(|| format!("{s:?} is not HOST:PORT"))?;
        anyhow::ensure!(!host.is_empty(), "{s:?} has no host");
        let port: u16 = port
            .parse()
            .with_context(|| format!("{s:?}: the port is not a number"))?;
        Ok(Node {
            host: host.to_owned(),
            port: port.into(),
        })
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Fails with a clear message when the database has no Citus.
pub async fn require_citus(db: &Client) -> anyhow::Result<()> {
    let installed = db
        .query_one(
            "select exists (select 1 from pg_extension where extname = 'citus')",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    if !installed {
        bail!(
            "this database has no Citus: point DATABASE_URL at a Citus coordinator (with citus in \
             shared_preload_libraries; `socialnet migrate` creates the extension)"
        );
    }
    Ok(())
}

/// Active primary workers (the coordinator, group 0, excluded).
pub async fn active_workers(db: &Client) -> anyhow::Result<Vec<Node>> {
    Ok(db
        .query(
            "select nodename, nodeport from pg_dist_node
             where isactive and noderole = 'primary' and groupid <> 0
             order by nodename, nodeport",
            &[],
        )
        .await?
        .iter()
        .map(|row| Node {
            host: row.get(0),
            port: row.get(1),
        })
        .collect())
}

/// How Citus holds a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Hash-distributed over the workers.
    Distributed,
    /// A copy on every node.
    Reference,
    /// On the coordinator, in Citus' metadata (what Citus makes of a local table with a foreign
    /// key to a reference table).
    CoordinatorLocal,
}

/// How Citus holds a table; `None` for a plain PostgreSQL table.
pub async fn table_kind(db: &Client, table: &str) -> anyhow::Result<Option<TableKind>> {
    let row = db
        .query_opt(
            "select partmethod::text, repmodel::text from pg_dist_partition
             where logicalrelid = $1::text::regclass",
            &[&table],
        )
        .await?;
    Ok(row.map(|row| {
        match (
            row.get::<_, String>(0).as_str(),
            row.get::<_, String>(1).as_str(),
        ) {
            ("n", "t") => TableKind::Reference,
            ("n", _) => TableKind::CoordinatorLocal,
            _ => TableKind::Distributed,
        }
    }))
}

/// `shards status`: nodes, shards and rows per node, and the skew of rows across workers.
pub async fn status(db: &Client) -> anyhow::Result<String> {
    require_citus(db).await?;
    let mut out = String::new();
    let nodes = db
        .query(
            "select nodename, nodeport, groupid, isactive, shouldhaveshards
             from pg_dist_node where noderole = 'primary' order by groupid",
            &[],
        )
        .await?;
    writeln!(out, "nodes:")?;
    for row in &nodes {
        let group: i32 = row.get(2);
        writeln!(
            out,
            "  {}:{}  {}{}{}",
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            if group == 0 { "coordinator" } else { "worker" },
            if row.get::<_, bool>(3) {
                ""
            } else {
                ", inactive"
            },
            if row.get::<_, bool>(4) || group == 0 {
                ""
            } else {
                ", takes no shards (drained or draining)"
            },
        )?;
    }
    for table in DISTRIBUTED {
        match table_kind(db, table).await? {
            Some(TableKind::Distributed) => {}
            _ => {
                writeln!(
                    out,
                    "{table}: not distributed yet (add a worker: socialnet shards add-worker HOST:PORT)"
                )?;
                continue;
            }
        }
        let rows = db
            .query(
                "with counts as (
                     select shardid, result::bigint as row_count
                     from run_command_on_shards($1::text::regclass, 'select count(*) from %s')
                     where success
                 )
                 select s.nodename, s.nodeport, count(*)::bigint, coalesce(sum(s.shard_size), 0)::bigint,
                        coalesce(sum(c.row_count), 0)::bigint
                 from citus_shards s left join counts c using (shardid)
                 where s.table_name = $1::text::regclass
                 group by s.nodename, s.nodeport
                 order by s.nodename, s.nodeport",
                &[&table],
            )
            .await
            .with_context(|| format!("reading the shards of {table}"))?;
        let shard_count: i64 = rows.iter().map(|r| r.get::<_, i64>(2)).sum();
        writeln!(out, "{table}: {shard_count} shards")?;
        writeln!(
            out,
            "  {:<24} {:>7} {:>12} {:>12}",
            "node", "shards", "rows", "bytes"
        )?;
        let mut per_node = Vec::new();
        for row in &rows {
            let node = format!("{}:{}", row.get::<_, String>(0), row.get::<_, i32>(1));
            let (shards, bytes, count): (i64, i64, i64) = (row.get(2), row.get(3), row.get(4));
            per_node.push(count);
            writeln!(out, "  {node:<24} {shards:>7} {count:>12} {bytes:>12}")?;
        }
        if let Some(skew) = skew(&per_node) {
            writeln!(out, "  skew (busiest node's rows / mean): {skew:.2}")?;
        }
    }
    Ok(out)
}

/// The busiest node's share against the mean: 1.0 is perfectly even.
pub fn skew(rows_per_node: &[i64]) -> Option<f64> {
    let total: i64 = rows_per_node.iter().sum();
    if rows_per_node.is_empty() || total == 0 {
        return None;
    }
    let mean = total as f64 / rows_per_node.len() as f64;
    Some(*rows_per_node.iter().max()? as f64 / mean)
}

/// `shards add-worker`: registers the nodes, then distributes the dialog tables over all workers
/// if they had waited for workers (so nodes added together share the shards from the start).
/// Shards that exist already land on new nodes only with `shards rebalance`.
pub async fn add_workers(
    db: &Client,
    nodes: &[Node],
    sharding: &super::Sharding,
) -> anyhow::Result<String> {
    require_citus(db).await?;
    super::ensure_coordinator_in_metadata(db, &sharding.coordinator).await?;
    for node in nodes {
        db.execute("select citus_add_node($1, $2)", &[&node.host, &node.port])
            .await
            .with_context(|| format!("adding {node}: is PostgreSQL with Citus listening there, and does it have this database with `create extension citus`?"))?;
    }
    let already = table_kind(db, DISTRIBUTED[0]).await? == Some(TableKind::Distributed);
    super::distribute(db, sharding).await?;
    let names: Vec<String> = nodes.iter().map(Node::to_string).collect();
    Ok(if already {
        format!(
            "{} joined. Move shards onto them with: socialnet shards rebalance",
            names.join(", ")
        )
    } else {
        format!(
            "{} joined; the dialog tables are distributed over the workers",
            names.join(", ")
        )
    })
}

/// The settings a rebalance needs on every node: online moves replicate shards with logical
/// replication, which needs `wal_level = logical`. Returns the nodes that lack it.
pub async fn nodes_without_logical_wal(db: &Client) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    let own: String = db.query_one("show wal_level", &[]).await?.get(0);
    if own != "logical" {
        missing.push(format!("the coordinator (wal_level = {own})"));
    }
    for row in db
        .query(
            "select nodename, nodeport, success, result
             from run_command_on_workers('show wal_level')",
            &[],
        )
        .await?
    {
        let result: String = row.get(3);
        if !row.get::<_, bool>(2) || result != "logical" {
            missing.push(format!(
                "{}:{} (wal_level = {result})",
                row.get::<_, String>(0),
                row.get::<_, i32>(1)
            ));
        }
    }
    Ok(missing)
}

/// `shards rebalance`: starts Citus' background rebalancer (online: logical replication, writes
/// keep flowing) and reports its progress until it is done. `drain_only` moves shards only off
/// nodes marked as taking none.
pub async fn rebalance(
    db: &Client,
    drain_only: bool,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<String> {
    require_citus(db).await?;
    let missing = nodes_without_logical_wal(db).await?;
    if !missing.is_empty() {
        bail!(
            "an online rebalance copies shards with logical replication, which needs \
             wal_level = logical on every node; not so on: {}. Set `wal_level = logical` in \
             postgresql.conf (or `-c wal_level=logical`) and restart those nodes, then run this again",
            missing.join(", ")
        );
    }
    let job: Option<i64> = db
        .query_one(
            "select citus_rebalance_start(drain_only => $1, shard_transfer_mode => 'force_logical')",
            &[&drain_only],
        )
        .await
        .context("starting the rebalance")?
        .get(0);
    let Some(job) = job else {
        return Ok("already balanced: nothing to move".to_owned());
    };
    progress(&format!("rebalance job {job} started"));
    let mut last = String::new();
    loop {
        let row = db
            .query_one(
                "select state::text, coalesce(details::text, '{}')
                 from citus_rebalance_status() where job_id = $1",
                &[&job],
            )
            .await?;
        let state: String = row.get(0);
        let details: serde_json::Value = serde_json::from_str(&row.get::<_, String>(1))?;
        let line = describe_progress(&state, &details);
        if line != last {
            progress(&line);
            last = line;
        }
        match state.as_str() {
            "finished" => return Ok(format!("rebalance job {job} finished")),
            "failed" | "cancelled" | "failing" | "cancelling" => {
                bail!("rebalance job {job} {state}: {details}")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// One line of progress from `citus_rebalance_status()`'s details.
fn describe_progress(state: &str, details: &serde_json::Value) -> String {
    let counts = &details["task_state_counts"];
    let done = counts["done"].as_i64().unwrap_or(0);
    let total: i64 = counts
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_i64()).sum())
        .unwrap_or(0);
    let running: Vec<String> = details["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter(|t| t["state"] == "running")
                .filter_map(|t| t["command"].as_str().map(short_command))
                .collect()
        })
        .unwrap_or_default();
    let mut line = format!("{state}: {done}/{total} shard moves done");
    if !running.is_empty() {
        line.push_str(&format!("; now {}", running.join(", ")));
    }
    line
}

fn short_command(command: &str) -> String {
    command.chars().take(120).collect()
}

/// `shards drain`: the node takes no new shards, and its shards move to the others.
pub async fn drain(db: &Client, node: &Node, progress: impl FnMut(&str)) -> anyhow::Result<String> {
    require_citus(db).await?;
    db.execute(
        "select citus_set_node_property($1, $2, 'shouldhaveshards', false)",
        &[&node.host, &node.port],
    )
    .await
    .with_context(|| format!("marking {node}: is it a node of this cluster?"))?;
    rebalance(db, true, progress).await?;
    let left = placements_on(db, node).await?;
    if left > 0 {
        bail!("{node} still holds {left} shard placements");
    }
    Ok(format!(
        "{node} holds no shards now. Remove it with: socialnet shards remove {node}"
    ))
}

async fn placements_on(db: &Client, node: &Node) -> anyhow::Result<i64> {
    Ok(db
        .query_one(
            "select count(*) from citus_shards s
             where s.nodename = $1 and s.nodeport = $2 and s.citus_table_type = 'distributed'",
            &[&node.host, &node.port],
        )
        .await?
        .get(0))
}

/// `shards remove`: takes a drained node out of the cluster.
pub async fn remove(db: &Client, node: &Node) -> anyhow::Result<String> {
    require_citus(db).await?;
    let left = placements_on(db, node).await?;
    if left > 0 {
        bail!("{node} still holds {left} shards of distributed tables: run `socialnet shards drain {node}` first");
    }
    db.execute(
        "select citus_remove_node($1, $2)",
        &[&node.host, &node.port],
    )
    .await
    .with_context(|| format!("removing {node}"))?;
    Ok(format!("{node} removed from the cluster"))
}

/// `shards set-count`: re-creates the dialog tables' shards in a new count (Citus copies the rows;
/// writes to the tables wait while it does).
pub async fn set_shard_count(db: &Client, count: u32) -> anyhow::Result<String> {
    require_citus(db).await?;
    anyhow::ensure!(count > 0, "the shard count must be positive");
    let [leader, _] = DISTRIBUTED;
    if table_kind(db, leader).await? != Some(TableKind::Distributed) {
        bail!("the dialog tables are not distributed yet: add a worker first");
    }
    db.execute(
        "select alter_distributed_table($1::text::regclass, shard_count => $2, cascade_to_colocated => true)",
        &[&leader, &(count as i32)],
    )
    .await
    .context("changing the shard count")?;
    Ok(format!("the dialog tables now have {count} shards each"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_read_as_host_and_port() {
        let node: Node = "worker-1:5432".parse().unwrap();
        assert_eq!(node.host, "worker-1");
        assert_eq!(node.port, 5432);
        assert_eq!(node.to_string(), "worker-1:5432");
        for bad in ["worker", ":5432", "w:x", "w:70000"] {
            assert!(bad.parse::<Node>().is_err(), "{bad}");
        }
    }

    #[test]
    fn skew_is_the_busiest_node_against_the_mean() {
        assert_eq!(skew(&[100, 100]), Some(1.0));
        assert_eq!(skew(&[150, 50]), Some(1.5));
        assert_eq!(skew(&[0, 0]), None);
        assert_eq!(skew(&[]), None);
    }

    #[test]
    fn progress_lines_count_moves() {
        let details = serde_json::json!({
            "task_state_counts": {"done": 2, "runnable": 3, "running": 1},
            "tasks": [{"state": "running", "command": "SELECT citus_move_shard_placement(102008, ...)"}]
        });
        assert_eq!(
            describe_progress("running", &details),
            "running: 2/6 shard moves done; now SELECT citus_move_shard_placement(102008, ...)"
        );
    }
}
