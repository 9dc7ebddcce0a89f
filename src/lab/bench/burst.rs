//! The `ws-burst` scenario: a celebrity with many followers, `connections` of them on live-feed
//! websockets, posts a burst; right after it another author posts once, to one connected reader.
//! Per round: that other post's latency from its create call's response to the reader's socket
//! (does the burst hold other authors up?) and every delivery of the burst to the celebrity's
//! connected followers (how long does the burst itself take?).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::fanout::{connect, create_post, Socket};
use super::load::{StepPlan, Tally};

/// Posts per burst.
pub const BURST: usize = 30;
/// Pause between rounds, so that each burst starts on a drained system.
const BETWEEN_ROUNDS: Duration = Duration::from_secs(2);
/// How long the other author's post is awaited; a round that waited this long counts it missing.
const OTHER_WAIT: Duration = Duration::from_secs(600);
/// How long the burst's deliveries are awaited after the last round.
const GRACE: Duration = Duration::from_secs(60);

/// The cast of the scenario, from the highest user ids down (the lowest are `ws-fanout`'s).
pub struct Cast {
    pub celebrity: i64,
    /// The other author, followed by the reader only.
    pub other: i64,
    pub reader: i64,
    /// The celebrity's followers; the first `connections` of them connect.
    pub fans: Vec<i64>,
}

/// Makes `followers` users follow the celebrity and the reader alone follow the other author
/// (lab data: the rows stay, so a second run only checks them).
pub async fn prepare(db: &tokio_postgres::Client, followers: usize) -> anyhow::Result<Cast> {
    let rows = db
        .query(
            "select id from users order by id desc limit $1",
            &[&((followers + 3) as i64)],
        )
        .await?;
    anyhow::ensure!(
        rows.len() >= 4,
        "ws-burst needs at least 4 users; run `socialnet fake users`"
    );
    if rows.len() < followers + 3 {
        eprintln!(
            "ws-burst: only {} users, so the celebrity has {} followers",
            rows.len(),
            rows.len() - 3
        );
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let cast = Cast {
        celebrity: ids[0],
        other: ids[1],
        reader: ids[2],
        fans: ids[3..].to_vec(),
    };
    db.execute("delete from friends where friend_id = $1", &[&cast.other])
        .await?;
    db.execute(
        "insert into friends (user_id, friend_id) values ($1, $2) on conflict do nothing",
        &[&cast.reader, &cast.other],
    )
    .await?;
    for fans in cast.fans.chunks(100_000) {
        db.execute(
            "insert into friends (user_id, friend_id) select unnest($1::bigint[]), $2
             on conflict do nothing",
            &[&fans, &cast.celebrity],
        )
        .await?;
    }
    db.execute("analyze friends", &[]).await?;
    Ok(cast)
}

/// Tokens of the cast, in the order of [`Cast::users`].
pub struct Tokens<'a> {
    pub celebrity: &'a str,
    pub other: &'a str,
    pub reader: &'a str,
    pub fans: &'a [String],
}

impl Cast {
    /// Everyone who needs a token: celebrity, other author, reader, then the connected fans.
    pub fn users(&self, connected: usize) -> Vec<i64> {
        let mut users = vec![self.celebrity, self.other, self.reader];
        users.extend(self.fans.iter().take(connected));
        users
    }
}

/// What a step measured: the other author's post per round, and the burst's deliveries.
pub struct Measured {
    pub other: Tally,
    pub burst: Tally,
    pub rounds: usize,
    pub seconds: Duration,
}

/// Connects the fans and the reader, then runs rounds of a burst and the other post for the
/// step's duration (one round at least).
pub async fn run_step(plan: &StepPlan, tokens: &Tokens<'_>) -> anyhow::Result<Measured> {
    let mut fans = Vec::with_capacity(plan.connections);
    for token in tokens.fans.iter().take(plan.connections) {
        fans.push(connect(plan, token).await?);
    }
    let mut reader = connect(plan, tokens.reader).await?;
    // Let the server register every subscription before the first post.
    tokio::time::sleep(Duration::from_millis(300) + plan.warmup + Duration::from_secs(1)).await;

    let started = Instant::now();
    // Fans collect until told how many posts to expect, and then until those have come or the
    // grace is over.
    let (stop, stopped) = watch::channel(None);
    let fan_readers: Vec<_> = fans
        .into_iter()
        .map(|socket| tokio::spawn(collect(socket, stopped.clone())))
        .collect();

    let mut other = Tally::new();
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut rounds = 0;
    while rounds == 0 || started.elapsed() < plan.duration {
        rounds += 1;
        for _ in 0..BURST {
            match create_post(plan, tokens.celebrity).await {
                Ok(id) => {
                    created.insert(id, Instant::now());
                }
                Err(_) => *other.errors.entry("burst-create".into()).or_default() += 1,
            }
        }
        let id = match create_post(plan, tokens.other).await {
            Ok(id) => id,
            Err(_) => {
                *other.errors.entry("create".into()).or_default() += 1;
                continue;
            }
        };
        let answered = Instant::now();
        match wait_for(&mut reader, &id, OTHER_WAIT).await {
            Some(at) => {
                let micros = at.saturating_duration_since(answered).as_micros() as u64;
                other.latency_us.saturating_record(micros.max(1));
                *other.statuses.entry(200).or_default() += 1;
            }
            None => *other.errors.entry("missing".into()).or_default() += 1,
        }
        tokio::time::sleep(BETWEEN_ROUNDS).await;
    }
    let seconds = started.elapsed();
    let _ = reader.close(None).await;
    let _ = stop.send(Some((created.len(), Instant::now() + GRACE)));

    // Every fan's deliveries of the burst: their latency from each create call's response.
    let mut burst = Tally::new();
    let mut delivered = 0u64;
    let connected = tokens.fans.len().min(plan.connections) as u64;
    for fan in fan_readers {
        for (post, at) in fan.await.unwrap_or_default() {
            if let Some(&answered) = created.get(&post) {
                let micros = at.saturating_duration_since(answered).as_micros() as u64;
                burst.latency_us.saturating_record(micros.max(1));
                delivered += 1;
            }
        }
    }
    *burst.statuses.entry(200).or_default() += delivered;
    let expected = created.len() as u64 * connected;
    if expected > delivered {
        *burst.errors.entry("missing".into()).or_default() += expected - delivered;
    }
    Ok(Measured {
        other,
        burst,
        rounds,
        seconds,
    })
}

/// A fan's arrivals: until `stop` says how many posts were made, then until that many have
/// arrived or its deadline has passed.
async fn collect(
    mut socket: Socket,
    mut stop: watch::Receiver<Option<(usize, Instant)>>,
) -> Vec<(String, Instant)> {
    let mut arrivals = Vec::new();
    loop {
        let told = *stop.borrow();
        if let Some((expected, deadline)) = told {
            if arrivals.len() >= expected || Instant::now() >= deadline {
                break;
            }
            let deadline = tokio::time::Instant::from_std(deadline);
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(Some(Ok(message))) => record(&mut arrivals, message),
                _ => break,
            }
            continue;
        }
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(message)) => record(&mut arrivals, message),
                _ => break,
            },
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
    let _ = socket.close(None).await;
    arrivals
}

fn record(arrivals: &mut Vec<(String, Instant)>, message: Message) {
    if let Message::Text(text) = message {
        let at = Instant::now();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(id) = value["postId"].as_str() {
            arrivals.push((id.to_owned(), at));
        }
    }
}

/// When the frame of post `id` arrives on `socket`, if within `wait`.
async fn wait_for(socket: &mut Socket, id: &str, wait: Duration) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let Message::Text(text) = message {
            let at = Instant::now();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if value["postId"].as_str() == Some(id) {
                return Some(at);
            }
        }
    }
    None
}
