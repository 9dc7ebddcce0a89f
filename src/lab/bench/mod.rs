//! `socialnet bench`: loads a running server with one scenario at a time over a sweep of
//! connection counts, and writes JSON, a Markdown table and SVG plots; `compare` sets two runs
//! side by side with their ratios; `outage` counts what survives a failure under load.

mod burst;
mod fanout;
mod load;
pub mod outage;
pub mod plot;
pub mod report;
pub mod scenario;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::DbConfig;
use crate::db;
use load::StepPlan;
pub use report::{RunResult, ScenarioResult, StepResult};
pub use scenario::Scenario;

#[derive(Debug, Clone, Args)]
pub struct BenchRunArgs {
    /// The server to load. Only loopback addresses are accepted.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Scenarios to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "user-get,user-search")]
    pub scenarios: Vec<Scenario>,
    /// Connection counts of the sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    pub connections: Vec<usize>,
    /// Seconds of load before each step's measurement starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Seconds measured per step.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Open loop: send this many requests per second in total, on a fixed schedule, and measure
    /// latency from each request's scheduled time. Without it, each connection sends its next
    /// request as soon as the previous one is answered (closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// `ws-burst`: followers of the celebrity (`--connections` of them connect).
    #[arg(long, default_value_t = 1_000_000)]
    pub celebrity_followers: usize,
    /// Pid of the server, to report its CPU per request.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Another process to report the CPU per request of, with its children, as NAME=PID: a
    /// PostgreSQL node's postmaster, whose children are its backends (repeat for each node).
    #[arg(long = "node-pid", value_parser = parse_node)]
    pub node_pids: Vec<(String, u32)>,
    /// Folder under which the run's folder is created.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Name of the run (default: the scenarios); used in plots and comparisons.
    #[arg(long)]
    pub name: Option<String>,
    /// The server's database, from which ids and name prefixes are sampled.
    #[command(flatten)]
    pub db: DbConfig,
    /// The server's token secret, when it was given one: tokens for the scenarios that need
    /// them are then minted here. Without it, the secret the server keeps in the database is
    /// used; before a server has made one, those users log in through `/login` first (password
    /// of `socialnet fake users`).
    #[arg(long, env = "TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchCompareArgs {
    /// The baseline run (its folder or its result.json).
    pub a: PathBuf,
    /// The run compared with it.
    pub b: PathBuf,
    /// Where compare.md and the plots go (default: a `compare-…` folder beside B).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs the whole sweep and writes its files; returns the result and its folder.
pub async fn run(args: &BenchRunArgs) -> anyhow::Result<(RunResult, PathBuf)> {
    anyhow::ensure!(!args.scenarios.is_empty(), "no scenario given");
    anyhow::ensure!(
        !args.connections.is_empty() && args.connections.iter().all(|&c| c > 0),
        "connection counts must be positive"
    );
    anyhow::ensure!(args.duration_secs > 0.0, "--duration-secs must be positive");
    let (address, host) = loopback_target(&args.url).await?;
    let pool = db::build_pool(&args.db)?;
    let client = pool
        .get()
        .await
        .context("connecting to the database to sample request data")?;
    let secret = match &args.token_secret {
        Some(secret) if !secret.is_empty() => Some(secret.as_bytes().to_vec()),
        _ => crate::auth::secret::stored_secret(&**client).await?,
    };

    let name = args.name.clone().unwrap_or_else(|| {
        args.scenarios
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join("+")
    });
    let started_at = chrono::Utc::now();
    let mut result = RunResult {
        name: name.clone(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        target: args.url.clone(),
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .to_owned(),
        rate: args.rate,
        warmup_secs: args.warmup_secs,
        duration_secs: args.duration_secs,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        scenarios: Vec::new(),
    };
    let mut plan = StepPlan {
        address,
        host,
        connections: 1,
        warmup: Duration::from_secs_f64(args.warmup_secs.max(0.0)),
        duration: Duration::from_secs_f64(args.duration_secs),
        rate: args.rate,
    };
    load::probe(&plan).await?;
    for &scenario in &args.scenarios {
        if scenario == Scenario::WsBurst {
            let (other, burst) = burst_steps(args, &plan, &client, secret.as_deref()).await?;
            result.scenarios.push(ScenarioResult {
                scenario: scenario.name().to_owned(),
                steps: other,
            });
            result.scenarios.push(ScenarioResult {
                scenario: format!("{}-deliveries", scenario.name()),
                steps: burst,
            });
            continue;
        }
        if scenario == Scenario::WsFanout {
            let steps = fanout_steps(args, &plan, &client, secret.as_deref()).await?;
            result.scenarios.push(ScenarioResult {
                scenario: scenario.name().to_owned(),
                steps,
            });
            continue;
        }
        let mut workload = scenario::Workload::load(scenario, &client).await?;
        workload.tokens = tokens_for(workload.token_users(), &plan, secret.as_deref()).await?;
        let workload = Arc::new(workload);
        let mut steps = Vec::new();
        for &connections in &args.connections {
            plan.connections = connections;
            let clock = CpuClock::start(args.server_pid);
            let nodes = NodeClock::start(&args.node_pids);
            let (tally, measured) = load::run_step(&plan, workload.clone()).await;
            let (own, server) = clock.read();
            // CPU is read over warm-up and measurement alike; scale it to the measured share.
            let share = measured.as_secs_f64() / (measured + plan.warmup).as_secs_f64();
            let mut step = StepResult::from_tally(
                connections,
                &tally,
                measured.as_secs_f64(),
                own.unwrap_or(0.0) * share,
                server.map(|s| s * share),
            );
            step.nodes_cpu_us_per_request = nodes
                .read()
                .into_iter()
                .map(|(name, secs)| (name, secs * share * 1e6 / step.requests.max(1) as f64))
                .collect();
            eprintln!(
                "{scenario} c={connections}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, failed {}",
                step.throughput_rps, step.latency_ms.p50, step.latency_ms.p99, step.failed
            );
            if let Some(limited) = step.statuses.get("429") {
                eprintln!(
                    "  {limited} requests were refused by the server's rate limits: this measures \
                     the limiter, not the server. Start the server with RATE_LIMITS=off to \
                     measure it (the lab's scripts do)."
                );
            }
            steps.push(step);
        }
        result.scenarios.push(ScenarioResult {
            scenario: scenario.name().to_owned(),
            steps,
        });
    }
    let dir = args.out.join(format!(
        "{}-{}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        sanitize(&name)
    ));
    result.write(&dir)?;
    Ok((result, dir))
}

/// `ws-fanout`: per step, `connections` followers on websockets and their author posting.
async fn fanout_steps(
    args: &BenchRunArgs,
    plan: &StepPlan,
    client: &tokio_postgres::Client,
    secret: Option<&[u8]>,
) -> anyhow::Result<Vec<StepResult>> {
    let most = args.connections.iter().copied().max().unwrap_or(1);
    let (author, followers) = fanout::prepare(client, most).await?;
    let mut users = vec![author];
    users.extend(&followers);
    let tokens = tokens_for(&users, plan, secret).await?;
    let mut steps = Vec::new();
    for &connections in &args.connections {
        let mut plan = plan.clone();
        plan.connections = connections;
        let clock = CpuClock::start(args.server_pid);
        let (tally, measured) = fanout::run_step(&plan, &tokens[0], &tokens[1..]).await?;
        let (own, server) = clock.read();
        let step = StepResult::from_tally(
            connections,
            &tally,
            measured.as_secs_f64(),
            own.unwrap_or(0.0),
            server,
        );
        eprintln!(
            "ws-fanout followers={connections}: {} deliveries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, missing {}",
            step.requests - step.failed, step.latency_ms.p50, step.latency_ms.p99, step.latency_ms.max, step.failed
        );
        steps.push(step);
    }
    Ok(steps)
}

/// `ws-burst`: per step, `connections` of the celebrity's followers on websockets. Returns the
/// other author's post latency per step (`ws-burst`) and the burst's deliveries
/// (`ws-burst-deliveries`).
async fn burst_steps(
    args: &BenchRunArgs,
    plan: &StepPlan,
    client: &tokio_postgres::Client,
    secret: Option<&[u8]>,
) -> anyhow::Result<(Vec<StepResult>, Vec<StepResult>)> {
    let most = args.connections.iter().copied().max().unwrap_or(1);
    let cast = burst::prepare(client, args.celebrity_followers.max(most)).await?;
    let tokens = tokens_for(&cast.users(most), plan, secret).await?;
    let tokens = burst::Tokens {
        celebrity: &tokens[0],
        other: &tokens[1],
        reader: &tokens[2],
        fans: &tokens[3..],
    };
    let (mut other_steps, mut burst_steps) = (Vec::new(), Vec::new());
    for &connections in &args.connections {
        let mut plan = plan.clone();
        plan.connections = connections;
        let clock = CpuClock::start(args.server_pid);
        let measured = burst::run_step(&plan, &tokens).await?;
        let (own, server) = clock.read();
        let seconds = measured.seconds.as_secs_f64();
        // CPU over the whole step, on both: the burst and the other post share it.
        let other = StepResult::from_tally(
            connections,
            &measured.other,
            seconds,
            own.unwrap_or(0.0),
            server,
        );
        let burst = StepResult::from_tally(
            connections,
            &measured.burst,
            seconds,
            own.unwrap_or(0.0),
            server,
        );
        eprintln!(
            "ws-burst connected={connections} followers={}: {} rounds of {} posts; the other author's post p50 {:.2} ms, max {:.2} ms (missing {}); the burst's {} deliveries p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, missing {}",
            cast.fans.len(),
            measured.rounds,
            burst::BURST,
            other.latency_ms.p50,
            other.latency_ms.max,
            other.failed,
            burst.requests - burst.failed,
            burst.latency_ms.p50,
            burst.latency_ms.p99,
            burst.latency_ms.max,
            burst.failed,
        );
        other_steps.push(other);
        burst_steps.push(burst);
    }
    Ok((other_steps, burst_steps))
}

/// Tokens for the users a scenario acts as, obtained before any measurement.
async fn tokens_for(
    users: &[i64],
    plan: &StepPlan,
    secret: Option<&[u8]>,
) -> anyhow::Result<Vec<String>> {
    match secret {
        Some(secret) => {
            let keys = crate::auth::TokenKeys::new(secret, Duration::from_secs(24 * 3600));
            users
                .iter()
                .map(|&id| keys.issue(crate::ids::UserId(id)))
                .collect()
        }
        None => {
            let mut tokens = Vec::with_capacity(users.len());
            for &id in users {
                tokens.push(load::login(plan, id).await?);
            }
            Ok(tokens)
        }
    }
}

/// Compares two runs; returns the Markdown and the folder it was written to.
pub fn compare(args: &BenchCompareArgs) -> anyhow::Result<(String, PathBuf)> {
    let a = RunResult::read(&args.a)?;
    let b = RunResult::read(&args.b)?;
    let dir = args.out.clone().unwrap_or_else(|| {
        let b_dir = if args.b.is_dir() {
            args.b.clone()
        } else {
            args.b.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        b_dir.join(format!("compare-{}", sanitize(&a.name)))
    });
    let md = report::compare(&a, &b, &dir)?;
    Ok((md, dir))
}

/// Resolves `http://host:port` and refuses anything but a loopback address: load is only ever
/// sent to this machine.
async fn loopback_target(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let address = tokio::net::lookup_host(&with_port)
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority} resolves to nothing"))?;
    anyhow::ensure!(
        address.ip().is_loopback(),
        "refusing to load {address}: socialnet bench only sends traffic to loopback addresses"
    );
    Ok((address, authority.to_owned()))
}

/// CPU spent by this process and, when its pid is known, the server's, since `start`.
struct CpuClock {
    server_pid: Option<u32>,
    own: Option<f64>,
    server: Option<f64>,
}

impl CpuClock {
    fn start(server_pid: Option<u32>) -> Self {
        CpuClock {
            server_pid,
            own: cpu_seconds(None),
            server: server_pid.and_then(|pid| cpu_seconds(Some(pid))),
        }
    }

    /// Seconds of CPU since `start`: (this process, the server).
    fn read(&self) -> (Option<f64>, Option<f64>) {
        let own = cpu_seconds(None)
            .zip(self.own)
            .map(|(now, then)| now - then);
        let server = self
            .server_pid
            .and_then(|pid| cpu_seconds(Some(pid)))
            .zip(self.server)
            .map(|(now, then)| now - then);
        (own, server)
    }
}

/// CPU spent by other processes and their children (database nodes), since `start`.
struct NodeClock {
    nodes: Vec<(String, u32, f64)>,
}

impl NodeClock {
    fn start(nodes: &[(String, u32)]) -> Self {
        NodeClock {
            nodes: nodes
                .iter()
                .map(|(name, pid)| (name.clone(), *pid, tree_cpu_seconds(*pid)))
                .collect(),
        }
    }

    /// Seconds of CPU since `start`, by node. A child that exited in between takes its CPU
    /// with it: pooled database connections live through a run.
    fn read(&self) -> Vec<(String, f64)> {
        self.nodes
            .iter()
            .map(|(name, pid, then)| (name.clone(), (tree_cpu_seconds(*pid) - then).max(0.0)))
            .collect()
    }
}

/// CPU seconds of `pid` and of its children.
fn tree_cpu_seconds(pid: u32) -> f64 {
    let children = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent_of(*child) == Some(pid));
    std::iter::once(pid)
        .chain(children)
        .filter_map(|p| cpu_seconds(Some(p)))
        .sum()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn parse_node(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("{text}: expected NAME=PID"))?;
    let pid = pid
        .parse()
        .map_err(|_| format!("{text}: {pid} is not a pid"))?;
    Ok((name.to_owned(), pid))
}

/// User plus system CPU seconds of a process (`None`: this one), from `/proc`.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports in clock ticks of 1/100 s on every mainstream configuration.
    Some((utime + stime) / 100.0)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '+' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_targets_are_accepted() {
        assert!(loopback_target("http://127.0.0.1:8000").await.is_ok());
        assert!(loopback_target("http://localhost:8000/x").await.is_ok());
        assert!(loopback_target("http://10.1.2.3:80").await.is_err());
        assert!(loopback_target("https://127.0.0.1").await.is_err());
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_seconds(None).is_some());
    }
}
