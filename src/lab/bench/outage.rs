//! `socialnet bench outage`: a steady mix of writes and reads while something breaks (a command
//! run at a chosen second: kill the primary, kill an instance), then a count, on the database,
//! of the acknowledged writes that survived it.
//!
//! Every write carries a marker of its own (in a registration's biography, a post's or a
//! message's text), so afterwards each acknowledged write is looked for by its marker: one that
//! is missing was **lost**; one found twice was applied twice (a balancer that repeated a POST);
//! a write that failed on the wire but is present was applied without its answer. Reads and
//! writes are timed on one clock with the event, so the report gives the window in which each
//! class failed, and which instance (`x-served-by`, set by both balancers) answered when.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::load::{self, StepPlan};
use super::plot::{line_chart, Series};
use super::scenario::{self, PlannedRequest};
use crate::config::DbConfig;
use crate::lab::fake::UserFaker;

/// The kinds of request in the mix; connection `n` sends only kind `n % kinds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Kind {
    /// `POST /user/register`, the marker in the biography.
    Register,
    /// `POST /post/create`, the marker in the text.
    Post,
    /// `POST /dialog/{user_id}/send`, the marker in the text.
    Send,
    /// `GET /user/get/{id}` of a sampled user.
    Read,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Post => "post",
            Kind::Send => "send",
            Kind::Read => "read",
        }
    }

    fn writes(self) -> bool {
        self != Kind::Read
    }

    /// The table and column a write's marker is stored in.
    fn stored_in(self) -> Option<(&'static str, &'static str)> {
        match self {
            Kind::Register => Some(("users", "biography")),
            Kind::Post => Some(("posts", "text")),
            Kind::Send => Some(("dialog_messages", "text")),
            Kind::Read => None,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct BenchOutageArgs {
    /// The server (or balancer) to load. Only loopback addresses are accepted.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Connections, spread evenly over the kinds.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// The mix: connection n sends only the (n mod count)-th kind.
    #[arg(long, value_delimiter = ',', default_value = "register,post,send,read")]
    pub kinds: Vec<Kind>,
    /// Seconds of load in all.
    #[arg(long, default_value_t = 30.0)]
    pub duration_secs: f64,
    /// A shell command run once during the load (the outage: kill a node, an instance).
    #[arg(long)]
    pub event: Option<String>,
    /// Seconds after the start at which `--event` runs.
    #[arg(long, default_value_t = 10.0)]
    pub event_after_secs: f64,
    /// A request unanswered for this long counts as failed (a hang is a failure too).
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout_secs: f64,
    /// How long, after the load, to keep trying to reach a writable primary for the count.
    #[arg(long, default_value_t = 60.0)]
    pub settle_secs: f64,
    /// Folder under which the run's folder is created.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Name of the run.
    #[arg(long, default_value = "outage")]
    pub name: String,
    /// The server's database: users are sampled from it before, and markers counted in it after
    /// (give every node, with target_session_attrs=read-write, to count on whichever is primary).
    #[command(flatten)]
    pub db: DbConfig,
    /// The server's token secret, when it was given one (see `bench run`).
    #[arg(long, env = "TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
}

/// What happened to one kind of request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KindResult {
    pub kind: String,
    pub connections: usize,
    pub sent: u64,
    /// 2xx answers: for a write, acknowledged.
    pub ok: u64,
    /// Answers by status, and failures without an answer by kind ("timeout", "send", …).
    pub outcomes: BTreeMap<String, u64>,
    /// Seconds after the event of the first and the last failed request (by the time it was
    /// sent), when any failed after it.
    pub first_failure_s: Option<f64>,
    pub last_failure_s: Option<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Writes: acknowledged but not on the database afterwards.
    pub lost: Option<u64>,
    /// Writes: present more than once.
    pub duplicated: Option<u64>,
    /// Writes: failed on the wire or answered 5xx, and present all the same.
    pub applied_unacknowledged: Option<u64>,
    /// Writes: failed, and not present (the client knows they were not done, or may retry).
    pub failed_absent: Option<u64>,
}

/// When each instance (the balancers' `x-served-by`) answered, relative to the event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServedBy {
    pub answers: u64,
    pub first_s: f64,
    pub last_s: f64,
    /// nginx lists every instance it tried: answers whose list held this one but did not end in
    /// it (a try that failed over to another), and the last of them.
    pub tried_and_passed: u64,
    pub first_tried_s: Option<f64>,
    pub last_tried_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutageResult {
    pub name: String,
    pub started_at: String,
    pub target: String,
    pub connections: usize,
    pub duration_secs: f64,
    pub event: Option<String>,
    /// Seconds after the start at which the event ran, and how long it took.
    pub event_at_s: Option<f64>,
    pub event_took_s: Option<f64>,
    pub event_status: Option<String>,
    /// Seconds after the load until the database could be counted on.
    pub count_wait_s: f64,
    pub kinds: Vec<KindResult>,
    pub served_by: BTreeMap<String, ServedBy>,
    /// Per kind: (bucket start in seconds after the event, ok per second, failed per second).
    pub timeline: BTreeMap<String, Vec<(f64, f64, f64)>>,
}

/// One request, as one connection saw it.
struct Sample {
    sent: Duration,
    took: Duration,
    /// The HTTP status, or 0 with `error` set.
    status: u16,
    error: Option<&'static str>,
}

/// What one connection did.
struct ConnectionLog {
    kind: Kind,
    samples: Vec<Sample>,
    /// Markers of writes, with whether each was acknowledged.
    markers: Vec<(String, bool)>,
    served_by: Vec<(Duration, String)>,
}

const BUCKET: Duration = Duration::from_millis(500);

pub async fn run(args: &BenchOutageArgs) -> anyhow::Result<(OutageResult, PathBuf)> {
    anyhow::ensure!(!args.kinds.is_empty(), "no kind of request given");
    anyhow::ensure!(
        args.connections >= args.kinds.len(),
        "fewer connections than kinds of request"
    );
    anyhow::ensure!(args.duration_secs > 0.0, "--duration-secs must be positive");
    let (address, host) = super::loopback_target(&args.url).await?;
    let plan = StepPlan {
        address,
        host,
        connections: args.connections,
        warmup: Duration::ZERO,
        duration: Duration::from_secs_f64(args.duration_secs),
        rate: None,
    };
    load::probe(&plan).await?;

    let pool = crate::lab::bulk_pool(&args.db)?;
    let client = pool
        .get()
        .await
        .context("connecting to the database to sample users")?;
    let users: Vec<i64> = client
        .query("select id from users order by random() limit 1000", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    anyhow::ensure!(
        users.len() >= 2,
        "the database has fewer than two users: run `socialnet fake users` first"
    );
    let secret = match &args.token_secret {
        Some(secret) if !secret.is_empty() => Some(secret.as_bytes().to_vec()),
        _ => crate::auth::secret::stored_secret(&**client).await?,
    };
    drop(client);
    let senders = &users[..users.len().min(200)];
    let tokens = super::tokens_for(senders, &plan, secret.as_deref()).await?;
    let tag = format!("lab-outage-{:08x}", rand::random::<u32>());
    let shared = Arc::new(Shared {
        plan,
        users,
        tokens,
        tag: tag.clone(),
        timeout: Duration::from_secs_f64(args.request_timeout_secs.max(0.1)),
    });

    let started_at = chrono::Utc::now();
    let start = Instant::now();
    let stop_at = start + Duration::from_secs_f64(args.duration_secs);
    let event = args.event.clone().map(|command| {
        let at = start + Duration::from_secs_f64(args.event_after_secs.max(0.0));
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let began = Instant::now();
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .status()
                .await;
            (began, began.elapsed(), status)
        })
    });
    let mut tasks = Vec::with_capacity(args.connections);
    for n in 0..args.connections {
        let kind = args.kinds[n % args.kinds.len()];
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            drive(&shared, kind, n as u64, start, stop_at).await
        }));
    }
    let mut logs = Vec::with_capacity(tasks.len());
    for task in tasks {
        logs.push(task.await.context("a load connection panicked")?);
    }
    let (event_at, event_took, event_status) = match event {
        Some(task) => {
            let (began, took, status) = task.await?;
            let status = match status {
                Ok(status) => status.to_string(),
                Err(e) => format!("could not run: {e}"),
            };
            eprintln!(
                "event at {:.2} s took {:.2} s: {status}",
                (began - start).as_secs_f64(),
                took.as_secs_f64()
            );
            (Some(began - start), Some(took), Some(status))
        }
        None => (None, None, None),
    };

    // The count: on whichever node takes writes now, once one does.
    let load_ended = Instant::now();
    let present = count_markers(args, &tag).await?;
    let count_wait = load_ended.elapsed();

    let origin = event_at.unwrap_or_default();
    let result = OutageResult {
        name: args.name.clone(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        target: args.url.clone(),
        connections: args.connections,
        duration_secs: args.duration_secs,
        event: args.event.clone(),
        event_at_s: event_at.map(|d| d.as_secs_f64()),
        event_took_s: event_took.map(|d| d.as_secs_f64()),
        event_status,
        count_wait_s: count_wait.as_secs_f64(),
        kinds: args
            .kinds
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|&kind| summarise(kind, &logs, &present, origin))
            .collect(),
        served_by: served_by(&logs, origin),
        timeline: timeline(&args.kinds, &logs, origin),
    };
    let dir = args.out.join(format!(
        "{}-{}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        super::sanitize(&args.name)
    ));
    result.write(&dir)?;
    Ok((result, dir))
}

struct Shared {
    plan: StepPlan,
    users: Vec<i64>,
    /// Tokens of the first users (at most 200), who post and send.
    tokens: Vec<String>,
    tag: String,
    timeout: Duration,
}

async fn drive(
    shared: &Shared,
    kind: Kind,
    connection: u64,
    start: Instant,
    stop_at: Instant,
) -> ConnectionLog {
    let mut log = ConnectionLog {
        kind,
        samples: Vec::new(),
        markers: Vec::new(),
        served_by: Vec::new(),
    };
    let mut rng = SmallRng::seed_from_u64(connection ^ 0x07a9e);
    let mut faker = None;
    let mut sender = None;
    let mut seq = 0u64;
    while Instant::now() < stop_at {
        if sender.is_none() {
            let sent = start.elapsed();
            match tokio::time::timeout(shared.timeout, load::connect(&shared.plan)).await {
                Ok(Ok(s)) => sender = Some(s),
                outcome => {
                    log.samples.push(Sample {
                        sent,
                        took: start.elapsed() - sent,
                        status: 0,
                        error: Some(if outcome.is_err() {
                            "timeout"
                        } else {
                            "connect"
                        }),
                    });
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        seq += 1;
        let marker = format!("{}-{}-{connection}-{seq}", shared.tag, kind.name());
        let planned = plan_request(shared, kind, &marker, &mut rng, &mut faker);
        let sent = start.elapsed();
        let s = sender.as_mut().expect("connected above");
        let exchange = load::exchange(&shared.plan, s, &planned, "x-served-by");
        let outcome = match tokio::time::timeout(shared.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err("timeout".to_owned()),
        };
        let took = start.elapsed() - sent;
        let (status, error) = match &outcome {
            Ok((status, served)) => {
                if let Some(served) = served {
                    log.served_by.push((sent, served.clone()));
                }
                (*status, None)
            }
            Err(kind) => (0, Some(error_kind(kind))),
        };
        if kind.writes() {
            log.markers.push((marker, (200..300).contains(&status)));
        }
        log.samples.push(Sample {
            sent,
            took,
            status,
            error,
        });
        if outcome.is_err() {
            sender = None;
        }
    }
    log
}

fn error_kind(kind: &str) -> &'static str {
    match kind {
        "timeout" => "timeout",
        "closed" => "closed",
        "body" => "body",
        "connect" => "connect",
        _ => "send",
    }
}

fn plan_request(
    shared: &Shared,
    kind: Kind,
    marker: &str,
    rng: &mut SmallRng,
    faker: &mut Option<UserFaker>,
) -> PlannedRequest {
    match kind {
        Kind::Register => {
            let faker = faker.get_or_insert_with(|| UserFaker::new(rng.gen(), 0.7));
            scenario::registration(&faker.next_user(), marker)
        }
        Kind::Post => PlannedRequest {
            post: true,
            path: "/post/create".to_owned(),
            body: Some(Bytes::from(
                serde_json::json!({ "text": marker }).to_string(),
            )),
            token: Some(shared.tokens[rng.gen_range(0..shared.tokens.len())].clone()),
        },
        Kind::Send => {
            let from = rng.gen_range(0..shared.tokens.len());
            let mut to = shared.users[rng.gen_range(0..shared.users.len())];
            if to == shared.users[from] {
                to = shared.users[(from + 1) % shared.users.len()];
            }
            PlannedRequest {
                post: true,
                path: format!("/dialog/{to}/send"),
                body: Some(Bytes::from(
                    serde_json::json!({ "text": marker }).to_string(),
                )),
                token: Some(shared.tokens[from].clone()),
            }
        }
        Kind::Read => PlannedRequest {
            post: false,
            path: format!(
                "/user/get/{}",
                shared.users[rng.gen_range(0..shared.users.len())]
            ),
            body: None,
            token: None,
        },
    }
}

/// How many times each marker of this run is on the database, once a writable primary answers.
async fn count_markers(args: &BenchOutageArgs, tag: &str) -> anyhow::Result<HashMap<String, u64>> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.settle_secs.max(0.0));
    let pool = crate::lab::bulk_pool(&args.db)?;
    let client = loop {
        let attempt = async {
            let client = pool.get().await?;
            let row = client
                .query_one(
                    "select pg_is_in_recovery() or current_setting('transaction_read_only')::bool",
                    &[],
                )
                .await?;
            anyhow::ensure!(!row.get::<_, bool>(0), "the database is read-only");
            anyhow::Ok(client)
        };
        match attempt.await {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for a writable primary to count on");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.context("no writable primary to count the writes on")),
        }
    };
    let pattern = format!("{tag}-%");
    let mut present = HashMap::new();
    for kind in [Kind::Register, Kind::Post, Kind::Send] {
        let (table, column) = kind.stored_in().expect("writes are stored");
        let rows = client
            .query(
                &format!("select {column} from {table} where {column} like $1"),
                &[&pattern],
            )
            .await
            .with_context(|| format!("counting the run's rows in {table}"))?;
        for row in rows {
            *present.entry(row.get::<_, String>(0)).or_insert(0) += 1;
        }
    }
    Ok(present)
}

fn summarise(
    kind: Kind,
    logs: &[ConnectionLog],
    present: &HashMap<String, u64>,
    origin: Duration,
) -> KindResult {
    let mut result = KindResult {
        kind: kind.name().to_owned(),
        ..KindResult::default()
    };
    let mut latency =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let (mut lost, mut duplicated, mut applied, mut absent) = (0, 0, 0, 0);
    let since = |d: Duration| d.as_secs_f64() - origin.as_secs_f64();
    for log in logs.iter().filter(|log| log.kind == kind) {
        result.connections += 1;
        for sample in &log.samples {
            result.sent += 1;
            latency.saturating_record(sample.took.as_micros().max(1) as u64);
            let outcome = match sample.error {
                Some(error) => error.to_owned(),
                None => sample.status.to_string(),
            };
            *result.outcomes.entry(outcome).or_default() += 1;
            if (200..300).contains(&sample.status) {
                result.ok += 1;
            } else if sample.sent >= origin {
                let at = since(sample.sent);
                result.first_failure_s = Some(result.first_failure_s.map_or(at, |t| t.min(at)));
                result.last_failure_s = Some(result.last_failure_s.map_or(at, |t| t.max(at)));
            }
        }
        for (marker, acknowledged) in &log.markers {
            let found = present.get(marker).copied().unwrap_or(0);
            match (acknowledged, found) {
                (true, 0) => lost += 1,
                (false, 0) => absent += 1,
                (false, _) => applied += 1,
                (true, _) => {}
            }
            if found > 1 {
                duplicated += 1;
            }
        }
    }
    if kind.writes() {
        result.lost = Some(lost);
        result.duplicated = Some(duplicated);
        result.applied_unacknowledged = Some(applied);
        result.failed_absent = Some(absent);
    }
    if !latency.is_empty() {
        result.p50_ms = latency.value_at_quantile(0.5) as f64 / 1000.0;
        result.p99_ms = latency.value_at_quantile(0.99) as f64 / 1000.0;
        result.max_ms = latency.max() as f64 / 1000.0;
    }
    result
}

fn served_by(logs: &[ConnectionLog], origin: Duration) -> BTreeMap<String, ServedBy> {
    let mut all: BTreeMap<String, ServedBy> = BTreeMap::new();
    let since = |d: Duration| d.as_secs_f64() - origin.as_secs_f64();
    for (at, header) in logs.iter().flat_map(|log| &log.served_by) {
        // nginx: "a:1, b:2" when it tried a first; the last one answered.
        let tried: Vec<&str> = header.split(',').map(str::trim).collect();
        let Some((answered, passed)) = tried.split_last() else {
            continue;
        };
        let entry = all.entry((*answered).to_owned()).or_insert(ServedBy {
            first_s: since(*at),
            ..ServedBy::default()
        });
        entry.answers += 1;
        entry.first_s = entry.first_s.min(since(*at));
        entry.last_s = entry.last_s.max(since(*at));
        for name in passed {
            let entry = all.entry((*name).to_owned()).or_insert(ServedBy {
                first_s: f64::MAX,
                last_s: f64::MIN,
                ..ServedBy::default()
            });
            entry.tried_and_passed += 1;
            entry.first_tried_s = Some(entry.first_tried_s.unwrap_or(f64::MAX).min(since(*at)));
            entry.last_tried_s = Some(entry.last_tried_s.unwrap_or(f64::MIN).max(since(*at)));
        }
    }
    all
}

fn timeline(
    kinds: &[Kind],
    logs: &[ConnectionLog],
    origin: Duration,
) -> BTreeMap<String, Vec<(f64, f64, f64)>> {
    let mut out = BTreeMap::new();
    for &kind in kinds.iter().collect::<HashSet<_>>() {
        let mut buckets: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for sample in logs
            .iter()
            .filter(|log| log.kind == kind)
            .flat_map(|log| &log.samples)
        {
            let bucket = buckets
                .entry((sample.sent.as_nanos() / BUCKET.as_nanos()) as u64)
                .or_default();
            if (200..300).contains(&sample.status) {
                bucket.0 += 1;
            } else {
                bucket.1 += 1;
            }
        }
        let per_second = 1.0 / BUCKET.as_secs_f64();
        out.insert(
            kind.name().to_owned(),
            buckets
                .into_iter()
                .map(|(n, (ok, failed))| {
                    (
                        (((BUCKET * n as u32).as_secs_f64() - origin.as_secs_f64()) * 100.0)
                            .round()
                            / 100.0,
                        ok as f64 * per_second,
                        failed as f64 * per_second,
                    )
                })
                .collect(),
        );
    }
    out
}

impl OutageResult {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("outage.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("outage.md"), self.markdown())?;
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for (colour, (kind, points)) in self.timeline.iter().enumerate() {
            ok.push(Series {
                label: kind.clone(),
                points: points.iter().map(|&(t, ok, _)| (t, ok)).collect(),
                colour,
                dash: 0,
            });
            failed.push(Series {
                label: kind.clone(),
                points: points.iter().map(|&(t, _, failed)| (t, failed)).collect(),
                colour,
                dash: 0,
            });
        }
        let x = if self.event.is_some() {
            "seconds after the event"
        } else {
            "seconds"
        };
        std::fs::write(
            dir.join("ok.svg"),
            line_chart(
                &format!("{}: answered 2xx", self.name),
                x,
                "per second",
                &ok,
            ),
        )?;
        std::fs::write(
            dir.join("failed.svg"),
            line_chart(&format!("{}: failed", self.name), x, "per second", &failed),
        )?;
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# {}\n\n{} against {}: {} connections for {:.0} s.\n",
            self.name, self.started_at, self.target, self.connections, self.duration_secs
        );
        if let (Some(event), Some(at), Some(took)) =
            (&self.event, self.event_at_s, self.event_took_s)
        {
            let _ = writeln!(
                md,
                "\nThe event, at {at:.2} s (it took {took:.2} s, {}): `{event}`. Times below are \
                 seconds after it.",
                self.event_status.as_deref().unwrap_or("?")
            );
        }
        let _ = writeln!(
            md,
            "\nThe writes were counted on the database {:.1} s after the load ended.\n\n\
             ![answered](ok.svg) ![failed](failed.svg)\n\n\
             | kind | connections | sent | ok | outcomes | failures from / to (s) | p50 ms | p99 ms | max ms | acknowledged, lost | duplicated | failed but applied | failed, absent |\n\
             |---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
            self.count_wait_s
        );
        let opt = |v: Option<u64>| v.map_or("–".to_owned(), |v| v.to_string());
        for k in &self.kinds {
            let outcomes = k
                .outcomes
                .iter()
                .map(|(outcome, n)| format!("{outcome}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let window = match (k.first_failure_s, k.last_failure_s) {
                (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {outcomes} | {window} | {:.2} | {:.2} | {:.1} | **{}** | {} | {} | {} |",
                k.kind,
                k.connections,
                k.sent,
                k.ok,
                k.p50_ms,
                k.p99_ms,
                k.max_ms,
                opt(k.lost),
                opt(k.duplicated),
                opt(k.applied_unacknowledged),
                opt(k.failed_absent),
            );
        }
        if !self.served_by.is_empty() {
            let _ = writeln!(
                md,
                "\n| instance | answers | first / last answer (s) | tried, passed on | first / last such try (s) |\n\
                 |---|---:|---|---:|---|"
            );
            for (name, s) in &self.served_by {
                let span = if s.answers > 0 {
                    format!("{:.2} / {:.2}", s.first_s, s.last_s)
                } else {
                    "–".to_owned()
                };
                let _ = writeln!(
                    md,
                    "| {name} | {} | {span} | {} | {} |",
                    s.answers,
                    s.tried_and_passed,
                    match (s.first_tried_s, s.last_tried_s) {
                        (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
                        _ => "–".to_owned(),
                    }
                );
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sent_ms: u64, status: u16) -> Sample {
        Sample {
            sent: Duration::from_millis(sent_ms),
            took: Duration::from_millis(1),
            status,
            error: (status == 0).then_some("send"),
        }
    }

    #[test]
    fn writes_are_counted_lost_duplicated_or_applied_by_their_markers() {
        let log = ConnectionLog {
            kind: Kind::Post,
            samples: vec![
                sample(500, 200),
                sample(1_500, 200),
                sample(2_500, 0),
                sample(3_500, 503),
                sample(4_000, 200),
            ],
            markers: vec![
                ("m1".into(), true),
                ("m2".into(), true),
                ("m3".into(), false),
                ("m4".into(), false),
                ("m5".into(), true),
            ],
            served_by: Vec::new(),
        };
        // m2 lost, m3 applied without its answer, m4 absent, m5 applied twice.
        let present = HashMap::from([("m1".into(), 1), ("m3".into(), 1), ("m5".into(), 2)]);
        let result = summarise(Kind::Post, &[log], &present, Duration::from_secs(1));
        assert_eq!((result.sent, result.ok), (5, 3));
        assert_eq!(result.lost, Some(1));
        assert_eq!(result.applied_unacknowledged, Some(1));
        assert_eq!(result.failed_absent, Some(1));
        assert_eq!(result.duplicated, Some(1));
        assert_eq!(result.outcomes["send"], 1);
        assert_eq!(result.outcomes["503"], 1);
        // Failures after the event (at 1 s): sent at 2.5 s and 3.5 s.
        assert_eq!(result.first_failure_s, Some(1.5));
        assert_eq!(result.last_failure_s, Some(2.5));
    }

    #[test]
    fn nginx_lists_of_tried_instances_count_the_passed_on_ones() {
        let log = ConnectionLog {
            kind: Kind::Read,
            samples: Vec::new(),
            markers: Vec::new(),
            served_by: vec![
                (Duration::from_millis(900), "a:1".into()),
                (Duration::from_millis(1_200), "a:1, b:2".into()),
                (Duration::from_millis(1_400), "b:2".into()),
            ],
        };
        let all = served_by(&[log], Duration::from_secs(1));
        assert_eq!(all["a:1"].answers, 1);
        assert_eq!(all["a:1"].tried_and_passed, 1);
        assert!((all["a:1"].first_tried_s.unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(all["b:2"].answers, 2);
        assert_eq!(all["b:2"].tried_and_passed, 0);
    }
}
