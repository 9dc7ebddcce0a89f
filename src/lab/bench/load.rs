//! The load engine: N HTTP/1.1 keep-alive connections, closed-loop (each sends its next request when
//! the last is answered) or open-loop (requests on a fixed schedule, latency measured from the
//! scheduled time so a stalled server cannot hide its queue: no coordinated omission).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::net::TcpStream;

use super::scenario::Workload;

/// How one step is driven.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub address: std::net::SocketAddr,
    pub host: String,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Open loop: total requests per second across all connections. Closed loop when `None`.
    pub rate: Option<f64>,
}

/// What one connection (and, merged, one step) saw during the measured window.
pub struct Tally {
    pub latency_us: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn new() -> Self {
        Tally {
            // 1 µs to 60 s at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency_us.add(&other.latency_us).expect("same bounds");
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (error, n) in other.errors {
            *self.errors.entry(error).or_default() += n;
        }
    }

    pub fn requests(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.errors.values().sum::<u64>()
    }
}

/// Runs one step and returns what the measured window saw, with its exact length.
pub async fn run_step(plan: &StepPlan, workload: Arc<Workload>) -> (Tally, Duration) {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let stop_at = measure_from + plan.duration;
    let per_connection_interval = plan
        .rate
        .map(|rate| Duration::from_secs_f64(plan.connections as f64 / rate.max(0.001)));
    let mut tasks = Vec::with_capacity(plan.connections);
    for n in 0..plan.connections {
        let plan = plan.clone();
        let workload = workload.clone();
        // Spread open-loop schedules so connections do not fire in lockstep.
        let offset = per_connection_interval
            .map(|i| i.mul_f64(n as f64 / plan.connections as f64))
            .unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            drive_connection(
                &plan,
                &workload,
                start + offset,
                measure_from,
                stop_at,
                per_connection_interval,
                n as u64,
            )
            .await
        }));
    }
    let mut total = Tally::new();
    for task in tasks {
        if let Ok(tally) = task.await {
            total.merge(tally);
        }
    }
    let measured = Instant::now()
        .min(stop_at.max(measure_from))
        .saturating_duration_since(measure_from);
    (total, measured.max(Duration::from_millis(1)))
}

async fn drive_connection(
    plan: &StepPlan,
    workload: &Workload,
    first_send: Instant,
    measure_from: Instant,
    stop_at: Instant,
    interval: Option<Duration>,
    seed: u64,
) -> Tally {
    let mut tally = Tally::new();
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut faker = None;
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    let mut next_send = first_send;
    loop {
        let now = Instant::now();
        if now >= stop_at {
            break;
        }
        // Open loop: wait for the scheduled time; latency counts from it, however late we are.
        let scheduled = match interval {
            Some(interval) => {
                if next_send > now {
                    tokio::time::sleep_until(next_send.into()).await;
                }
                let scheduled = next_send;
                next_send += interval;
                scheduled
            }
            None => now,
        };
        if scheduled >= stop_at {
            break;
        }
        if sender.is_none() {
            match connect(plan).await {
                Ok(s) => sender = Some(s),
                Err(kind) => {
                    if scheduled >= measure_from {
                        *tally.errors.entry(kind).or_default() += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let planned = workload.next(&mut rng, &mut faker);
        let s = sender.as_mut().expect("connected above");
        let outcome = exchange(plan, s, &planned, "")
            .await
            .map(|(status, _)| status);
        let done = Instant::now();
        if scheduled >= measure_from && done <= stop_at + Duration::from_secs(1) {
            let micros = done.duration_since(scheduled).as_micros() as u64;
            tally.latency_us.saturating_record(micros.max(1));
            match &outcome {
                Ok(status) => *tally.statuses.entry(*status).or_default() += 1,
                Err(kind) => *tally.errors.entry(kind.clone()).or_default() += 1,
            }
        }
        if outcome.is_err() {
            sender = None;
        }
    }
    tally
}

pub(super) async fn connect(plan: &StepPlan) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(plan.address)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "handshake".to_owned())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn build_request(
    plan: &StepPlan,
    planned: super::scenario::PlannedRequest,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(if planned.post {
            Method::POST
        } else {
            Method::GET
        })
        .uri(planned.path)
        .header(hyper::header::HOST, plan.host.as_str());
    if let Some(token) = planned.token {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match planned.body {
        Some(body) => builder
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body)),
        None => builder.body(Full::new(Bytes::new())),
    }
    .expect("requests are well-formed")
}

/// Sends `planned` on `sender` and reads the whole answer: its status and the value of
/// `header` (none when `header` is empty), or a short error kind. A connection the server had
/// closed before the request went out (nginx ends a kept-alive one after `keepalive_requests`)
/// did not carry it, so that is no failure: as a client would, this connects again and sends
/// it once more, and the time counts.
pub(super) async fn exchange(
    plan: &StepPlan,
    sender: &mut http1::SendRequest<Full<Bytes>>,
    planned: &super::scenario::PlannedRequest,
    header: &str,
) -> Result<(u16, Option<String>), String> {
    match send_reading(sender, build_request(plan, planned.clone()), header).await {
        Err(kind) if kind == "closed" => {
            *sender = connect(plan).await?;
            send_reading(sender, build_request(plan, planned.clone()), header).await
        }
        outcome => outcome,
    }
}

/// Sends one request and reads the whole response; the error "closed" means the connection
/// was closed before the request was sent.
async fn send_reading(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    header: &str,
) -> Result<(u16, Option<String>), String> {
    sender.ready().await.map_err(|_| "closed".to_owned())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| if e.is_timeout() { "timeout" } else { "send" }.to_owned())?;
    let status = response.status().as_u16();
    let value = (!header.is_empty())
        .then(|| response.headers().get(header))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    response
        .into_body()
        .collect()
        .await
        .map_err(|_| "body".to_owned())?;
    Ok((status, value))
}

/// Checks once that the target answers at all, so a typo in the URL fails fast and clearly.
pub async fn probe(plan: &StepPlan) -> anyhow::Result<()> {
    let stream = TcpStream::connect(plan.address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", plan.address))?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get("/health")
        .header(hyper::header::HOST, plan.host.as_str())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{} answered /health with {}",
        plan.address,
        response.status()
    );
    Ok(())
}

/// Logs a generated user in (password of `socialnet fake users`) and returns the token.
pub async fn login(plan: &StepPlan, user: i64) -> anyhow::Result<String> {
    let stream = TcpStream::connect(plan.address).await?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let body =
        serde_json::json!({"id": user.to_string(), "password": crate::lab::fake::LAB_PASSWORD});
    let request = Request::post("/login")
        .header(hyper::header::HOST, plan.host.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "login of user {user} answered {status}"
    );
    let value: serde_json::Value = serde_json::from_slice(&bytes)?;
    value["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("login answer has no token"))
}
