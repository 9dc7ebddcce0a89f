//! RabbitMQ nodes of a test's own (through `scripts/stack/rabbitmq-cluster.sh`), so that the test can
//! stop and start them without touching the broker other tests use. Stopped and deleted on drop.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

/// Nodes of a test's own; cheap to clone, stopped when the last clone is dropped.
#[derive(Clone)]
pub struct RabbitNodes(Arc<Nodes>);

struct Nodes {
    dir: PathBuf,
    name: String,
    port: u16,
    dist_port: u16,
    /// The first node's Prometheus port, when the plugin is on.
    metrics_port: Option<u16>,
    nodes: usize,
}

/// The distribution ports, and the Prometheus ports, are this far above the AMQP ports.
const DIST_OFFSET: u16 = 10_000;
const METRICS_OFFSET: u16 = 5_000;

/// A first port such that `count` ports from it, from it + `DIST_OFFSET` and from it +
/// `METRICS_OFFSET` are free.
fn free_ports(count: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + rand_u16() % 9_000;
        let all_free = (0..count).all(|i| {
            [0, DIST_OFFSET, METRICS_OFFSET]
                .iter()
                .all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset + i)).is_ok())
        });
        if all_free {
            return base;
        }
    }
    panic!("no free ports for RabbitMQ nodes");
}

fn rand_u16() -> u16 {
    (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16
}

impl RabbitNodes {
    /// Starts `nodes` clustered nodes and waits until all of them are up.
    pub async fn start(nodes: usize) -> RabbitNodes {
        Self::start_with(nodes, false).await
    }

    /// Nodes with RabbitMQ's Prometheus plugin on (see [`Self::metrics_address`]).
    pub async fn start_with_metrics(nodes: usize) -> RabbitNodes {
        Self::start_with(nodes, true).await
    }

    async fn start_with(nodes: usize, metrics: bool) -> RabbitNodes {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let port = free_ports(nodes as u16);
        let cluster = RabbitNodes(Arc::new(Nodes {
            dir: std::env::temp_dir().join(format!("socialnet-rabbit-{id}")),
            name: format!("sn{}", &id[..8]),
            port,
            dist_port: port + DIST_OFFSET,
            metrics_port: metrics.then_some(port + METRICS_OFFSET),
            nodes,
        }));
        cluster.run(vec!["start".into(), nodes.to_string()]).await;
        cluster
    }

    /// Every node's URL, comma-separated: node 1 first.
    pub fn urls(&self) -> String {
        (1..=self.0.nodes)
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn url(&self, node: usize) -> String {
        format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f",
            self.0.port + node as u16 - 1
        )
    }

    /// Where node `node`'s plugin answers (`host:port`), when it is on.
    pub fn metrics_address(&self, node: usize) -> Option<String> {
        self.0
            .metrics_port
            .map(|port| format!("127.0.0.1:{}", port + node as u16 - 1))
    }

    pub async fn stop_node(&self, node: usize) {
        self.run(vec!["stop-node".into(), node.to_string()]).await;
    }

    pub async fn start_node(&self, node: usize) {
        self.run(vec!["start-node".into(), node.to_string()]).await;
    }

    /// Runs the script off the async threads.
    async fn run(&self, args: Vec<String>) {
        let nodes = self.0.clone();
        tokio::task::spawn_blocking(move || nodes.run(&args))
            .await
            .unwrap();
    }
}

impl Nodes {
    fn run(&self, args: &[String]) {
        if let Err(e) = self.try_run(args) {
            panic!("{e}");
        }
    }

    fn try_run(&self, args: &[String]) -> Result<(), String> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/stack/rabbitmq-cluster.sh"
        );
        let mut command = Command::new(script);
        command
            .args(args)
            .env("RABBIT_DIR", &self.dir)
            .env("RABBIT_NAME", &self.name)
            .env("RABBIT_PORT", self.port.to_string())
            .env("RABBIT_DIST_PORT", self.dist_port.to_string());
        if let Some(port) = self.metrics_port {
            command.env("RABBIT_METRICS_PORT", port.to_string());
        }
        let status = command
            .status()
            .map_err(|e| format!("scripts/stack/rabbitmq-cluster.sh does not run: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("rabbitmq-cluster.sh {args:?} failed"))
        }
    }
}

impl Drop for Nodes {
    /// Never panics: it may run while a failed test unwinds, and a second panic would abort the
    /// whole test binary.
    fn drop(&mut self) {
        if let Err(e) = self.try_run(&["stop".to_owned()]) {
            eprintln!("stopping the test's RabbitMQ nodes: {e}");
        }
    }
}
