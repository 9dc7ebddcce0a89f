//! The road of post events: [`PostEvents`], the one publisher, applies them in process or hands
//! them to RabbitMQ; and RabbitMQ's side: the outbox relay, the consumers that keep feeds and
//! route live posts, and this instance's own queue of live posts for the sockets it holds.
//!
//! Names live under `AMQP_PREFIX` (`P` below):
//! - `P.events`, a topic exchange: post events from the outbox, routing key = event kind.
//! - `P.feed`, a quorum queue bound to `post.*`: instances with a feed cache consume it side by
//!   side and apply each event to Redis.
//! - `P.live`, a quorum queue bound to `post.created`: consumers look up the author's followers
//!   and route the post to them through `P.sockets`.
//! - `P.sockets`, a topic exchange keyed `user.<id>`: each instance has an exclusive queue bound
//!   to the keys of the users connected to it, so a post reaches only the instances that hold one
//!   of its followers' sockets; and one bound to `broadcast`, for the posts of celebrities
//!   (`LIVE_BROADCAST_FOLLOWERS`), which every instance gets and matches against its own sockets.
//!
//! The client library is not left to reconnect: one supervisor task per instance owns the
//! connection and every part that uses it, and on any failure tears all of them down and starts
//! again, trying the next URL of a cluster in turn. While the broker is away nothing is lost:
//! posts are still written with their outbox rows, which the relay publishes once it is back.

mod consumers;
mod outbox;
mod publish;
mod relay;

pub use outbox::backlog as outbox_backlog;
pub use publish::{DialogEvents, PostEvents};

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::backoff::Backoff;
use crate::cache::UnreadCounters;
use crate::config::{BrokerConfig, LiveRouteExchange};
use crate::db::Db;
use crate::dialogs::events::DialogEvent;
use crate::ids::UserId;
use crate::live::LiveFanout;
use crate::posts::feed::Feeds;

/// How long opening a connection and declaring everything on it may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing handshake may take on a connection that is being given up.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnection delays grow from the first to the last (with jitter, see `crate::backoff`).
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// A session that lasted this long was healthy: the next failure retries quickly again.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// Exchange and queue names of one deployment.
#[derive(Debug, Clone)]
pub struct Names {
    pub events: String,
    pub feed: String,
    pub live: String,
    /// `P.unread`, a quorum queue bound to the dialog events: the unread counters' consumers.
    pub unread: String,
    pub sockets: String,
    pub sockets_kind: LiveRouteExchange,
}

impl Names {
    pub fn new(prefix: &str, sockets: LiveRouteExchange) -> Self {
        Names {
            events: format!("{prefix}.events"),
            feed: format!("{prefix}.feed"),
            live: format!("{prefix}.live"),
            unread: format!("{prefix}.unread"),
            // Named by kind: switching kinds must not meet the other kind's exchange.
            sockets: match sockets {
                LiveRouteExchange::Topic => format!("{prefix}.sockets"),
                LiveRouteExchange::Direct => format!("{prefix}.sockets.direct"),
            },
            sockets_kind: sockets,
        }
    }
}

/// The routing key of the live posts for one user.
pub fn user_key(user: i64) -> String {
    format!("user.{user}")
}

/// The header that carries the id of the request an event comes from, on every message.
const REQUEST_ID: &str = "x-request-id";

/// Headers naming the request an event comes from (none for events older than the outbox's
/// `request_id` column).
fn request_id_headers(request_id: Option<&str>) -> FieldTable {
    let mut headers = FieldTable::default();
    if let Some(id) = request_id {
        headers.insert(REQUEST_ID.into(), AMQPValue::LongString(id.into()));
    }
    headers
}

/// The request id a delivered message carries, if any.
fn request_id_of(properties: &lapin::BasicProperties) -> Option<String> {
    let value = properties.headers().as_ref()?.inner().get(REQUEST_ID)?;
    match value {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

/// The span a consumer handles a message in: its log lines name the request it comes from.
fn event_span(consumer: &'static str, properties: &lapin::BasicProperties) -> tracing::Span {
    let request_id = request_id_of(properties);
    let span = tracing::info_span!(
        "event",
        consumer,
        request_id = request_id.as_deref().unwrap_or("none")
    );
    if let Some(id) = &request_id {
        crate::telemetry::join_request_trace(&span, id);
    }
    span
}

/// Longest wait for the broker's confirm of a publish.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits for the broker to confirm every publish: an error when a confirm is late or a nack.
async fn confirmed(confirms: Vec<lapin::PublisherConfirm>, what: &str) -> anyhow::Result<()> {
    for confirm in confirms {
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| anyhow::anyhow!("no publisher confirm for {what} in time"))??;
        anyhow::ensure!(!confirmation.is_nack(), "the broker refused {what} (nack)");
    }
    Ok(())
}

/// A handle on this instance's broker session: cheap to clone.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    names: Names,
    /// Signalled after a write that added outbox rows: the relay wakes at once instead of at
    /// its next poll.
    outbox: Notify,
    connected: AtomicBool,
    /// Whether a session has ever been up: before the first one the instance is starting, and a
    /// socket waits for it (see [`Broker::routed`]).
    ever_connected: AtomicBool,
    /// Users whose routing key is bound to this instance's queue now.
    routed: Mutex<HashSet<i64>>,
    /// Bumped whenever `routed` or `connected` changes.
    routed_version: watch::Sender<u64>,
}

impl Shared {
    fn with_routed<T>(&self, read: impl FnOnce(&HashSet<i64>) -> T) -> T {
        read(&self.routed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn set_routed(&self, update: impl FnOnce(&mut HashSet<i64>)) {
        update(&mut self.routed.lock().unwrap_or_else(|p| p.into_inner()));
        self.routed_version.send_modify(|v| *v += 1);
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
        if connected {
            self.ever_connected.store(true, Ordering::SeqCst);
        }
        metrics::gauge!("broker_connected").set(if connected { 1.0 } else { 0.0 });
        if !connected {
            self.set_routed(HashSet::clear);
        } else {
            self.routed_version.send_modify(|v| *v += 1);
        }
    }
}

/// What the broker's parts use: the outbox's database, the feeds its consumer applies events
/// to, the live feed's fan-out (followers, and this instance's sockets), and the unread counters.
#[derive(Clone)]
pub struct BrokerDeps {
    pub db: Db,
    /// Whether this instance handles post events (feeds, live routing): not the dialog service.
    pub posts: bool,
    /// The counters `P.unread` is applied to, on an instance that serves dialogs with them.
    pub counters: Option<UnreadCounters>,
    /// Feeds, consumed from `P.feed` when they are cached.
    pub feeds: Feeds,
    pub live: LiveFanout,
    /// Followers named by one routed live post (`LIVE_ROUTE_BATCH`).
    pub live_route_batch: usize,
    /// Authors with more followers have their live posts broadcast (`LIVE_BROADCAST_FOLLOWERS`).
    pub live_broadcast_followers: i64,
}

impl Broker {
    /// Starts the supervisor that keeps this instance connected. Returns at once: a broker that is
    /// down at start-up is retried in the background while the service runs.
    pub fn start(config: &BrokerConfig, deps: BrokerDeps) -> (Broker, JoinHandle<()>) {
        let broker = Broker {
            shared: Arc::new(Shared {
                names: Names::new(&config.amqp_prefix, config.live_route_exchange),
                outbox: Notify::new(),
                connected: AtomicBool::new(false),
                ever_connected: AtomicBool::new(false),
                routed: Mutex::new(HashSet::new()),
                routed_version: watch::channel(0).0,
            }),
        };
        let urls = config.urls();
        let settings = Settings {
            queue_expires_ms: config.amqp_queue_expires_ms,
        };
        let task = tokio::spawn(supervise(urls, settings, deps, broker.shared.clone()));
        (broker, task)
    }

    /// Wakes the relay: a write just added outbox rows.
    pub fn outbox_written(&self) {
        self.shared.outbox.notify_one();
    }

    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Waits, at most `wait`, until live posts for `user` are routed to this instance. Returns
    /// whether they are; at once (false) while the broker is away after a session was up, since
    /// waiting would only delay the socket: the binding is made when the session comes back. An
    /// instance still starting its first session (a balancer may send it sockets as soon as it is
    /// ready, which does not wait for the broker) is waited for: a post made meanwhile would
    /// reach no queue of this instance's.
    pub async fn routed(&self, user: UserId, wait: Duration) -> bool {
        let mut changes = self.shared.routed_version.subscribe();
        let check = async {
            loop {
                if !self.is_connected() && self.shared.ever_connected.load(Ordering::SeqCst) {
                    return false;
                }
                if self.shared.with_routed(|routed| routed.contains(&user.0)) {
                    return true;
                }
                if changes.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(wait, check).await.unwrap_or(false)
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    queue_expires_ms: u64,
}

/// Connects, runs a session until it fails, and starts again; forever (until aborted).
async fn supervise(urls: Vec<String>, settings: Settings, deps: BrokerDeps, shared: Arc<Shared>) {
    let mut backoff = Backoff::new(FIRST_RETRY, LAST_RETRY);
    let mut attempt = 0usize;
    loop {
        let url = &urls[attempt % urls.len()];
        let started = Instant::now();
        let outcome = session(url, settings, &deps, &shared).await;
        shared.set_connected(false);
        if started.elapsed() > HEALTHY_SESSION {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        if let Err(e) = outcome {
            tracing::warn!(
                error = %format!("{e:#}"),
                broker = %redact(url),
                retry_in_ms = delay.as_millis() as u64,
                "broker session ended; reconnecting"
            );
        }
        metrics::counter!("broker_session_failures").increment(1);
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// A queue of this instance's own (server-named, exclusive, gone with its connection), bound to
/// the `sockets` exchange by `key`, or by `instance.<its name>` when `key` is `None`.
async fn instance_queue(
    channel: &lapin::Channel,
    sockets: &str,
    key: Option<&str>,
) -> Result<String, lapin::Error> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?
        .name()
        .to_string();
    let key = key.map_or_else(|| format!("instance.{queue}"), str::to_owned);
    channel
        .queue_bind(
            queue.as_str().into(),
            sockets.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(queue)
}

/// One connection's life: topology, then every part that uses the broker, until one of them fails.
async fn session(
    url: &str,
    settings: Settings,
    deps: &BrokerDeps,
    shared: &Arc<Shared>,
) -> anyhow::Result<()> {
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("socialnet {}", std::process::id()).into());
    let setup = async {
        let connection = Connection::connect(url, properties).await?;
        let channel = connection.create_channel().await?;
        declare(&channel, &shared.names, settings, deps.feeds.cached()).await?;
        // A binding of the instance's own keeps `P.sockets` alive when it is auto-deleted (tests).
        let own = instance_queue(&channel, &shared.names.sockets, None).await?;
        // The instance's queue of broadcast live posts (celebrities'), consumed apart from `own`.
        let broadcasts = instance_queue(
            &channel,
            &shared.names.sockets,
            Some(consumers::BROADCAST_KEY),
        )
        .await?;
        Ok::<_, lapin::Error>((connection, channel, own, broadcasts))
    };
    let (connection, setup, own, broadcasts) =
        tokio::time::timeout(SETUP_TIMEOUT, setup)
            .await
            .map_err(|_| anyhow::anyhow!("no answer in {} s", SETUP_TIMEOUT.as_secs()))??;
    let mut events = connection.events_listener();
    // Sockets already open here are routed before anything is published on this session.
    shared.set_connected(true);
    let hub = deps.live.hub();
    consumers::bind_connected_now(&setup, &own, hub, shared).await?;

    let mut parts: JoinSet<anyhow::Result<()>> = JoinSet::new();
    parts.spawn(relay::run(
        connection.create_channel().await?,
        deps.db.clone(),
        shared.clone(),
    ));
    if deps.posts {
        parts.spawn(consumers::route_live(
            connection.create_channel().await?,
            connection.create_channel().await?,
            deps.live.clone(),
            consumers::RouteSettings {
                batch: deps.live_route_batch,
                broadcast_over: deps.live_broadcast_followers,
            },
            shared.names.clone(),
        ));
    }
    if let Some(counters) = &deps.counters {
        parts.spawn(consumers::apply_to_counters(
            connection.create_channel().await?,
            counters.clone(),
            shared.names.clone(),
        ));
    }
    if deps.posts && deps.feeds.cached() {
        parts.spawn(consumers::apply_to_feeds(
            connection.create_channel().await?,
            deps.feeds.clone(),
            shared.names.clone(),
        ));
    }
    parts.spawn(consumers::deliver_live(
        connection.create_channel().await?,
        own.clone(),
        deps.live.clone(),
    ));
    parts.spawn(consumers::deliver_broadcasts(
        connection.create_channel().await?,
        broadcasts,
        deps.live.clone(),
    ));
    parts.spawn(consumers::bind_connected_users(
        setup,
        own,
        hub.clone(),
        shared.clone(),
    ));
    parts.spawn(async move {
        while let Some(event) = events.next().await {
            if let lapin::Event::Error(e) = event {
                return Err(anyhow::Error::new(e).context("connection"));
            }
        }
        Err(anyhow::anyhow!("connection closed"))
    });
    tracing::info!(broker = %redact(url), "broker connected");

    let ended = parts.join_next().await;
    shared.set_connected(false);
    parts.shutdown().await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "reconnecting".into())).await;
    match ended {
        Some(Ok(Err(e))) => Err(e),
        Some(Err(join)) => Err(anyhow::Error::new(join).context("a broker task stopped")),
        Some(Ok(Ok(()))) | None => Err(anyhow::anyhow!("a broker task ended")),
    }
}

/// Declares the shared exchanges and queues (idempotent: every instance does it on connecting).
/// `P.feed` only by instances with a feed cache: a deployment without one must not collect
/// events that nobody will consume.
async fn declare(
    channel: &lapin::Channel,
    names: &Names,
    settings: Settings,
    with_feed: bool,
) -> lapin::Result<()> {
    // With an expiry (tests, experiments), the broker removes what this deployment leaves behind:
    // queues unused for that long, then the exchanges once nothing is bound to them.
    let transient = settings.queue_expires_ms > 0;
    let exchange = ExchangeDeclareOptions {
        durable: true,
        auto_delete: transient,
        ..Default::default()
    };
    channel
        .exchange_declare(
            names.events.as_str().into(),
            ExchangeKind::Topic,
            exchange,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            names.sockets.as_str().into(),
            match names.sockets_kind {
                LiveRouteExchange::Topic => ExchangeKind::Topic,
                LiveRouteExchange::Direct => ExchangeKind::Direct,
            },
            exchange,
            FieldTable::default(),
        )
        .await?;
    let mut arguments = FieldTable::default();
    // Quorum queues: replicated across a cluster's nodes (Raft), durable, and they never drop a
    // confirmed message while a majority of the nodes is up.
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if transient {
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(settings.queue_expires_ms.min(i64::MAX as u64) as i64),
        );
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    // `P.unread` by every instance, whether or not it consumes it: the dialog service may not
    // have connected yet when another instance's relay publishes its first events. Events are
    // only recorded where counters are on, so without them it stays empty.
    let mut queues = vec![(&names.live, "post.created")];
    queues.extend(DialogEvent::KINDS.map(|kind| (&names.unread, kind)));
    if with_feed {
        queues.push((&names.feed, "post.*"));
    }
    for (queue, key) in queues {
        channel
            .queue_declare(queue.as_str().into(), durable, arguments.clone())
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                names.events.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// A broker URL fit for a log line: the password hidden.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
    }

    #[test]
    fn names_sit_under_the_prefix() {
        let names = Names::new("lab", LiveRouteExchange::Topic);
        assert_eq!(names.events, "lab.events");
        assert_eq!(names.feed, "lab.feed");
        assert_eq!(names.live, "lab.live");
        assert_eq!(names.unread, "lab.unread");
        assert_eq!(names.sockets, "lab.sockets");
        let direct = Names::new("lab", LiveRouteExchange::Direct);
        assert_eq!(direct.sockets, "lab.sockets.direct");
        assert_eq!(user_key(42), "user.42");
    }
}
