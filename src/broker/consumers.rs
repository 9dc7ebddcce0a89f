//! What each instance consumes: post events for the feed cache (`P.feed`) and for live routing
//! (`P.live`), dialog events for the unread counters (`P.unread`), and the live posts routed to its own sockets. Also the task that keeps this
//! instance's queue bound to the users connected here.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{user_key, Names, Shared};
use crate::backoff::Backoff;
use crate::cache::UnreadCounters;
use crate::dialogs::events::DialogEvent;
use crate::ids::{PostId, UserId};
use crate::live::{Audience, LiveFanout, LiveHub, LivePost, LiveRoute};
use crate::posts::feed::Feeds;
use crate::posts::PostEvent;

/// Unacknowledged deliveries per consumer, and how many are worked on at once.
const PREFETCH: u16 = 32;
const CONCURRENCY: usize = 4;
/// A feed event that keeps failing (Redis or PostgreSQL away) is retried in place this long,
/// then handed back to the queue.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// The router's pause before handing back a post whose followers it could not read (the post
/// would come straight back to a database that is still away): from the first to the last.
const ROUTE_RETRY_FIRST: Duration = Duration::from_millis(100);
const ROUTE_RETRY_LAST: Duration = Duration::from_secs(5);
/// Longest one pass of (un)binding users may take, and how much one pass does.
const BIND_TIMEOUT: Duration = Duration::from_secs(10);
const BINDS_PER_PASS: usize = 5_000;
const UNBINDS_PER_PASS: usize = 200;

/// The routing key of broadcast live posts: every instance's broadcast queue is bound to it.
pub(super) const BROADCAST_KEY: &str = "broadcast";

/// A celebrity's live post, broadcast to every instance: each finds the followers among its own
/// connected users.
#[derive(Debug, Serialize, Deserialize)]
struct Broadcast<'a> {
    post_id: i64,
    author_id: i64,
    frame: Cow<'a, str>,
}

/// Live posts on their way to the sockets of `to` (those connected to the receiving instance).
#[derive(Debug, Serialize, Deserialize)]
struct SocketBatch<'a> {
    to: Cow<'a, [i64]>,
    /// The websocket frame, already encoded (once for all the batches of a post).
    frame: Cow<'a, str>,
}

async fn consume(channel: &Channel, queue: &str, no_ack: bool) -> lapin::Result<lapin::Consumer> {
    if !no_ack {
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
    }
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// What a consumer made of an event.
enum Handled {
    /// Done (or nothing to do): acknowledge it.
    Done,
    /// Not now (a dependency is away): return it to the queue, for here or another instance.
    Later,
}

/// Consumes events (post or dialog events) from `queue`, `CONCURRENCY` at a time, acknowledging each as `handle`
/// decides. `handle` gets the event and the id of the request it comes from, and runs in a span
/// that names both the consumer and that id, as every log line it writes does. An unreadable
/// message is acknowledged and logged: retrying cannot fix it. Ends only with an error (the
/// session is then restarted).
async fn consume_events<E, F, Fut>(
    channel: &Channel,
    consumer: &'static str,
    queue: &str,
    handle: F,
) -> anyhow::Result<()>
where
    E: serde::de::DeserializeOwned,
    F: Fn(E, Option<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Handled>>,
{
    let deliveries = consume(channel, queue, false).await?;
    deliveries
        .map_err(anyhow::Error::from)
        .try_for_each_concurrent(CONCURRENCY, |delivery| {
            let span = super::event_span(consumer, &delivery.properties);
            let handled = match serde_json::from_slice::<E>(&delivery.data) {
                Ok(event) => Some(
                    handle(event, super::request_id_of(&delivery.properties))
                        .instrument(span.clone()),
                ),
                Err(e) => {
                    span.in_scope(|| tracing::error!(error = %e, routing_key = %delivery.routing_key, "dropping an unreadable event"));
                    metrics::counter!("broker_events_unreadable").increment(1);
                    None
                }
            };
            async move {
                let handled = match handled {
                    Some(work) => work.await?,
                    None => Handled::Done,
                };
                match handled {
                    Handled::Done => {
                        delivery.ack(BasicAckOptions::default()).await?;
                    }
                    Handled::Later => {
                        delivery
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..Default::default()
                            })
                            .await?;
                    }
                }
                Ok(())
            }
        })
        .await?;
    Err(anyhow::anyhow!("the consumer of {queue} was cancelled"))
}

/// Applies post events to the feed cache (see [`Feeds::apply_event`]); acknowledges each once
/// Redis has it, retrying in place for a while when Redis or PostgreSQL is away.
pub(super) async fn apply_to_feeds(
    channel: Channel,
    feeds: Feeds,
    names: Names,
) -> anyhow::Result<()> {
    consume_events(&channel, "feed", &names.feed, |event: PostEvent, _| {
        let feeds = feeds.clone();
        async move {
            let written = retried("feed event", event.kind(), || feeds.apply_event(&event)).await;
            Ok(match written {
                Some(written) => {
                    metrics::counter!("feed_fanout_writes").increment(written as u64);
                    tracing::debug!(kind = event.kind(), written, "feed event applied");
                    Handled::Done
                }
                None => Handled::Later,
            })
        }
    })
    .await
}

/// Applies dialog events to the unread counters; acknowledges each once Redis has it, retrying
/// in place for a while when Redis is away, then handing it back to the queue. Every event is a
/// merge (see [`UnreadCounters`]): a redelivered one changes nothing.
pub(super) async fn apply_to_counters(
    channel: Channel,
    counters: UnreadCounters,
    names: Names,
) -> anyhow::Result<()> {
    consume_events(
        &channel,
        "unread",
        &names.unread,
        |event: DialogEvent, _| {
            let counters = counters.clone();
            async move {
                let applied =
                    retried("dialog event", event.kind(), || event.apply(&counters)).await;
                Ok(match applied {
                    Some(()) => {
                        metrics::counter!("unread_events_applied").increment(1);
                        tracing::debug!(kind = event.kind(), "dialog event applied");
                        Handled::Done
                    }
                    None => Handled::Later,
                })
            }
        },
    )
    .await
}

/// Calls `apply` until it succeeds, retrying in place (with growing pauses) for `RETRY_FOR`
/// while what it writes to is away; `None` once it gives up, when the event goes back to the
/// queue. `what` names the event in the log lines.
async fn retried<T, E, Fut>(
    what: &str,
    kind: &'static str,
    mut apply: impl FnMut() -> Fut,
) -> Option<T>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match apply().await {
            Ok(value) => return Some(value),
            Err(e) if started.elapsed() < RETRY_FOR => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, kind, retry_in_ms = delay.as_millis() as u64, "{what} not applied yet");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, kind, "{what} handed back to the queue");
                return None;
            }
        }
    }
}

/// How the router sends posts on.
#[derive(Debug, Clone, Copy)]
pub(super) struct RouteSettings {
    /// Followers named by one message (`LIVE_ROUTE_BATCH`).
    pub batch: usize,
    /// Authors with more followers are broadcast (`LIVE_BROADCAST_FOLLOWERS`).
    pub broadcast_over: i64,
}

/// Routes each new post on `P.sockets`. An author with few followers: to each of them, one
/// message per `LIVE_ROUTE_BATCH` followers, the first one's key as routing key and the others'
/// in the `BCC` header, so the broker hands one copy to each instance queue bound to any of them.
/// A celebrity: one message to every instance's broadcast queue (see [`deliver_broadcasts`]), so
/// the router's work per post stays small however many followers there are, and a burst of a
/// celebrity's posts does not hold up other authors' behind it.
pub(super) async fn route_live(
    consumer_channel: Channel,
    publisher: Channel,
    live: LiveFanout,
    settings: RouteSettings,
    names: Names,
) -> anyhow::Result<()> {
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let publisher = Arc::new(publisher);
    let batch = settings.batch.max(1);
    // One schedule for the router: consecutive failures wait longer, a success starts over.
    let pause = Arc::new(std::sync::Mutex::new(Backoff::new(
        ROUTE_RETRY_FIRST,
        ROUTE_RETRY_LAST,
    )));
    consume_events(&consumer_channel, "live", &names.live, |event: PostEvent, request_id| {
        let (live, publisher, sockets) = (live.clone(), publisher.clone(), names.sockets.clone());
        let pause = pause.clone();
        async move {
            let PostEvent::Created {
                post_id,
                author_id,
                text,
            } = event
            else {
                return Ok(Handled::Done);
            };
            let (author, post) = (UserId(author_id), PostId(post_id));
            let route = match live.route(author, post, settings.broadcast_over).await {
                Ok(route) => {
                    pause.lock().unwrap_or_else(|p| p.into_inner()).reset();
                    route
                }
                Err(e) => {
                    let delay = pause.lock().unwrap_or_else(|p| p.into_inner()).next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "live routing: followers unavailable; handing the post back");
                    tokio::time::sleep(delay).await;
                    return Ok(Handled::Later);
                }
            };
            let frame = LivePost::new(post_id, author_id, text).frame()?;
            let followers = match route {
                LiveRoute::Followers(followers) => followers,
                LiveRoute::Broadcast => {
                    let body = serde_json::to_vec(&Broadcast {
                        post_id,
                        author_id,
                        frame: Cow::Borrowed(&frame),
                    })?;
                    let confirm = publisher
                        .basic_publish(
                            sockets.as_str().into(),
                            BROADCAST_KEY.into(),
                            BasicPublishOptions::default(),
                            &body,
                            BasicProperties::default()
                                .with_headers(super::request_id_headers(request_id.as_deref())),
                        )
                        .await?;
                    super::confirmed(vec![confirm], "a broadcast live post").await?;
                    metrics::counter!("live_posts_broadcast").increment(1);
                    tracing::debug!(post_id, "live post broadcast");
                    return Ok(Handled::Done);
                }
            };
            let mut confirms = Vec::new();
            for chunk in followers.chunks(batch) {
                let body = serde_json::to_vec(&SocketBatch {
                    to: Cow::Borrowed(chunk),
                    frame: Cow::Borrowed(&frame),
                })?;
                let mut headers = super::request_id_headers(request_id.as_deref());
                if chunk.len() > 1 {
                    let keys: Vec<AMQPValue> = chunk[1..]
                        .iter()
                        .map(|&user| AMQPValue::LongString(user_key(user).into()))
                        .collect();
                    headers.insert("BCC".into(), AMQPValue::FieldArray(FieldArray::from(keys)));
                }
                confirms.push(
                    publisher
                        .basic_publish(
                            sockets.as_str().into(),
                            user_key(chunk[0]).into(),
                            BasicPublishOptions::default(),
                            &body,
                            BasicProperties::default().with_headers(headers),
                        )
                        .await?,
                );
            }
            super::confirmed(confirms, "a routed live post").await?;
            metrics::counter!("live_posts_routed").increment(1);
            tracing::debug!(post_id, followers = followers.len(), "live post routed");
            Ok(Handled::Done)
        }
    })
    .await
}

/// Hands live posts routed to this instance to the sockets of their addressees here
/// ([`LiveFanout::deliver`], as in process). Acknowledged on receipt: a live post is worth
/// nothing later, and a socket that was missed still finds the post in its feed.
pub(super) async fn deliver_live(
    channel: Channel,
    queue: String,
    live: LiveFanout,
) -> anyhow::Result<()> {
    let mut deliveries = consume(&channel, &queue, true).await?;
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        let _span = super::event_span("sockets", &delivery.properties).entered();
        match serde_json::from_slice::<SocketBatch>(&delivery.data) {
            Ok(batch) => {
                let sockets = live.deliver(&batch.to, batch.frame.into());
                tracing::debug!(sockets, "live post delivered");
            }
            Err(e) => tracing::error!(error = %e, "dropping an unreadable live post"),
        }
    }
    Err(anyhow::anyhow!("the live queue consumer was cancelled"))
}

/// Hands each broadcast live post to this instance's connected followers of its author, found
/// among the users with a socket here as of the post ([`Audience::ConnectedHere`], the in-process
/// road's query). Its own queue and consumer: a celebrity's burst waits here, not in front of
/// other authors' posts. One post at a time, so a celebrity's posts arrive in order; acknowledged
/// on receipt, as a live post is worth nothing later (a follower who missed one finds it in their
/// feed).
pub(super) async fn deliver_broadcasts(
    channel: Channel,
    queue: String,
    live: LiveFanout,
) -> anyhow::Result<()> {
    let mut deliveries = consume(&channel, &queue, true).await?;
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        let span = super::event_span("broadcasts", &delivery.properties);
        async {
            let post = match serde_json::from_slice::<Broadcast>(&delivery.data) {
                Ok(post) => post,
                Err(e) => {
                    tracing::error!(error = %e, "dropping an unreadable broadcast live post");
                    return;
                }
            };
            let (author, id) = (UserId(post.author_id), PostId(post.post_id));
            match live.followers(author, id, Audience::ConnectedHere).await {
                Ok(followers) => {
                    let sockets = live.deliver(&followers, post.frame.into());
                    tracing::debug!(
                        post_id = post.post_id,
                        sockets,
                        "broadcast live post delivered"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, post_id = post.post_id, "broadcast live post not delivered: followers unavailable");
                }
            }
        }
        .instrument(span)
        .await;
    }
    Err(anyhow::anyhow!(
        "the broadcast queue consumer was cancelled"
    ))
}

/// Binds the routing keys of `added` users to this instance's queue, unbinds those of `removed`.
async fn rebind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    added: &[i64],
    removed: &[i64],
) -> lapin::Result<()> {
    for &user in added {
        // No reply per binding: thousands of sockets arriving bind in one round trip…
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                user_key(user).into(),
                QueueBindOptions { nowait: true },
                FieldTable::default(),
            )
            .await?;
    }
    if !added.is_empty() {
        // …closed by one synchronous call: the broker answers it after every binding before.
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
    }
    for &user in removed {
        channel
            .queue_unbind(
                queue.into(),
                exchange.into(),
                user_key(user).into(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Binds the routing keys of every user connected now. A session does this before anything is
/// published on it, so no post can be routed past a socket that is already open.
pub(super) async fn bind_connected_now(
    channel: &Channel,
    queue: &str,
    hub: &LiveHub,
    shared: &Shared,
) -> anyhow::Result<()> {
    let added: Vec<i64> = hub.connected_users();
    tokio::time::timeout(
        BIND_TIMEOUT,
        rebind(channel, queue, &shared.names.sockets, &added, &[]),
    )
    .await
    .map_err(|_| anyhow::anyhow!("binding users took over {} s", BIND_TIMEOUT.as_secs()))??;
    shared.set_routed(|routed| routed.extend(&added));
    Ok(())
}

/// Keeps this instance's queue bound to exactly the users with a socket here; what is bound now
/// is the shared routed set, which this loop alone changes while the session lasts.
/// Work is done in bounded passes (bindings cost one round trip per pass, unbindings one each),
/// so that thousands of sockets closing at once are unbound over a few passes instead of one
/// long one; a stale binding meanwhile only costs traffic, as the hub ignores absent users.
pub(super) async fn bind_connected_users(
    channel: Channel,
    queue: String,
    hub: LiveHub,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let mut behind = false;
    loop {
        // A change made during the last pass left a permit: this returns at once, another runs.
        if !behind {
            hub.membership_changed().await;
        }
        let wanted: HashSet<i64> = hub.connected_users().into_iter().collect();
        let (added, removed) = shared.with_routed(|bound| {
            let added: Vec<i64> = wanted
                .difference(bound)
                .copied()
                .take(BINDS_PER_PASS)
                .collect();
            let removed: Vec<i64> = bound
                .difference(&wanted)
                .copied()
                .take(UNBINDS_PER_PASS)
                .collect();
            (added, removed)
        });
        let pass = rebind(&channel, &queue, &shared.names.sockets, &added, &removed);
        tokio::time::timeout(BIND_TIMEOUT, pass)
            .await
            .map_err(|_| {
                anyhow::anyhow!("binding users took over {} s", BIND_TIMEOUT.as_secs())
            })??;
        if !added.is_empty() || !removed.is_empty() {
            tracing::debug!(
                added = added.len(),
                removed = removed.len(),
                "live routing keys rebound"
            );
            shared.set_routed(|routed| {
                routed.extend(&added);
                for user in &removed {
                    routed.remove(user);
                }
            });
        }
        behind = shared.with_routed(|bound| *bound != wanted);
    }
}
