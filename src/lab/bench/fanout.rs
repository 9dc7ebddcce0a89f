//! The `ws-fanout` scenario: N followers hold live-feed websockets while their author posts at a
//! fixed rate; each delivery's latency is measured from the moment the create call answered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::load::{StepPlan, Tally};

/// Posts per second when no `--rate` is given.
pub const DEFAULT_POSTS_PER_SEC: f64 = 2.0;
/// How long deliveries are awaited after the last post.
const GRACE: Duration = Duration::from_secs(2);

/// Makes `followers` follow `author` (lab data: the rows stay), returning the followers' ids.
pub async fn prepare(
    db: &tokio_postgres::Client,
    followers: usize,
) -> anyhow::Result<(i64, Vec<i64>)> {
    let rows = db
        .query(
            "select id from users order by id limit $1",
            &[&((followers + 1) as i64)],
        )
        .await?;
    anyhow::ensure!(
        rows.len() > followers,
        "ws-fanout with {followers} followers needs {} users; run `socialnet fake users`",
        followers + 1
    );
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let (author, readers) = (ids[0], ids[1..].to_vec());
    db.execute(
        "insert into friends (user_id, friend_id) select unnest($1::bigint[]), $2 on conflict do nothing",
        &[&readers, &author],
    )
    .await?;
    Ok((author, readers))
}

/// Connects one socket per follower token, lets the author post for the step's duration, and
/// tallies every delivery (status 200 in the tally) and every missing one (error `missing`).
pub async fn run_step(
    plan: &StepPlan,
    author_token: &str,
    follower_tokens: &[String],
) -> anyhow::Result<(Tally, Duration)> {
    let mut sockets = Vec::with_capacity(plan.connections);
    for token in follower_tokens.iter().take(plan.connections) {
        sockets.push(connect(plan, token).await?);
    }
    // Let the server register every subscription before the first post.
    tokio::time::sleep(Duration::from_millis(300) + plan.warmup).await;

    let rate = plan.rate.unwrap_or(DEFAULT_POSTS_PER_SEC).max(0.1);
    let start = Instant::now();
    let stop_posting = start + plan.duration;
    let collect_until = stop_posting + GRACE;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(arrivals(socket, collect_until)))
        .collect();

    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut create_failures = 0u64;
    let mut next = start;
    while next < stop_posting {
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_secs_f64(1.0 / rate);
        match create_post(plan, author_token).await {
            Ok(id) => {
                created.insert(id, Instant::now());
            }
            Err(_) => create_failures += 1,
        }
    }

    let mut tally = Tally::new();
    let mut delivered = 0u64;
    for reader in readers {
        for (post, at) in reader.await.unwrap_or_default() {
            if let Some(&answered) = created.get(&post) {
                // A frame can beat the create call's own response; that counts as zero.
                let micros = at.saturating_duration_since(answered).as_micros() as u64;
                tally.latency_us.saturating_record(micros.max(1));
                delivered += 1;
            }
        }
    }
    *tally.statuses.entry(200).or_default() += delivered;
    let expected = created.len() as u64 * plan.connections.min(follower_tokens.len()) as u64;
    if expected > delivered {
        *tally.errors.entry("missing".into()).or_default() += expected - delivered;
    }
    if create_failures > 0 {
        *tally.errors.entry("create".into()).or_default() += create_failures;
    }
    Ok((tally, plan.duration))
}

pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A live-feed socket of the user whose token this is.
pub(super) async fn connect(plan: &StepPlan, token: &str) -> anyhow::Result<Socket> {
    let mut request = format!("ws://{}/post/feed/posted", plan.address).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// The post ids of the frames `socket` receives until `until`, each with its arrival.
async fn arrivals(mut socket: Socket, until: Instant) -> Vec<(String, Instant)> {
    let mut arrivals = Vec::new();
    let deadline = tokio::time::Instant::from_std(until);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let Message::Text(text) = message {
            let at = Instant::now();
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
                if let Some(id) = value["postId"].as_str() {
                    arrivals.push((id.to_owned(), at));
                }
            }
        }
    }
    let _ = socket.close(None).await;
    arrivals
}

pub(super) async fn create_post(plan: &StepPlan, token: &str) -> anyhow::Result<String> {
    let stream = TcpStream::connect(plan.address).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let body = serde_json::json!({"text": format!("fan-out probe {}", rand::random::<u32>())});
    let request = Request::post("/post/create")
        .header(hyper::header::HOST, plan.host.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = sender.send_request(request).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "create answered {}",
        response.status()
    );
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice::<String>(&bytes)?)
}
