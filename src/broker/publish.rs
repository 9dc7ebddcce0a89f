//! The one publisher of post events: after a write it sends the event down the road this
//! instance is configured for. Both roads end in the same two steps: [`Feeds::apply_event`] for
//! the feed cache and [`LiveFanout::deliver`] for the sockets, with the followers from the same
//! queries (`crate::friends::sql`).
//!
//! - In process (no `AMQP_URL`): the event is applied here, in the background, right after the
//!   write; a new post reaches the followers' sockets on this instance.
//! - Outbox + RabbitMQ: the write's own statement recorded the event in the outbox; the relay
//!   publishes it, and the consumers of this module apply it on whichever instances.

use std::time::Duration;

use tracing::Instrument;

use super::Broker;
use crate::cache::UnreadCounters;
use crate::dialogs::events::DialogEvent;
use crate::ids::{PostId, UserId};
use crate::live::{LiveFanout, LivePost};
use crate::posts::feed::Feeds;
use crate::posts::PostEvent;

/// Where post events go.
#[derive(Clone)]
pub enum PostEvents {
    /// Applied on this instance right after the write.
    InProcess { feeds: Feeds, live: LiveFanout },
    /// Recorded in the outbox by the write itself and carried by RabbitMQ.
    Outbox(Broker),
}

impl PostEvents {
    /// Whether writes record their events in the outbox (in the same statement as the write).
    pub fn through_outbox(&self) -> bool {
        matches!(self, PostEvents::Outbox(_))
    }

    /// After a write that committed: wakes the relay, or applies the event here in the
    /// background. A failure here leaves feeds to be rebuilt (on expiry or by `socialnet feed
    /// rebuild`) and never loses the post, which is in PostgreSQL. `event` is only built when
    /// it is applied here (through the outbox it was built by SQL).
    pub fn written(&self, event: impl FnOnce() -> PostEvent) {
        let (feeds, live) = match self {
            PostEvents::Outbox(broker) => {
                broker.outbox_written();
                return;
            }
            PostEvents::InProcess { feeds, live } => (feeds, live),
        };
        let event = event();
        if let PostEvent::Created {
            post_id,
            author_id,
            ref text,
        } = event
        {
            live.publish_here(
                PostId(post_id),
                LivePost::new(post_id, author_id, text.clone()),
                UserId(author_id),
            );
        }
        if !feeds.cached() {
            return;
        }
        let feeds = feeds.clone();
        tokio::spawn(
            async move {
                match feeds.apply_event(&event).await {
                    Ok(n) => {
                        metrics::counter!("feed_fanout_writes").increment(n as u64);
                        tracing::debug!(kind = event.kind(), written = n, "feed event applied");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, kind = event.kind(), "feed cache update failed")
                    }
                }
            }
            // In the request's span: its log lines name the request, as through RabbitMQ.
            .in_current_span(),
        );
    }

    /// Waits, at most `wait`, until new posts for `user` reach this instance, so that a socket
    /// opened now gets a post made right after. In process they always do; through RabbitMQ once
    /// the user's routing key is bound to this instance's queue. Returns whether they do.
    pub async fn route_here(&self, user: UserId, wait: Duration) -> bool {
        match self {
            PostEvents::InProcess { .. } => true,
            PostEvents::Outbox(broker) => broker.routed(user, wait).await,
        }
    }
}

/// Where dialog events go: the unread counters' one road, beside the posts'.
#[derive(Clone)]
pub enum DialogEvents {
    /// No counters (no `REDIS_URL`): nothing to tell. The read marks are still kept, and the
    /// counters are built from them and the messages once Redis is there.
    Off,
    /// Applied to the counters by the request itself, once its write committed.
    InProcess(UnreadCounters),
    /// Recorded in the outbox by the write's own transaction, carried by RabbitMQ to the
    /// counters' consumers.
    Outbox(Broker),
}

impl DialogEvents {
    pub fn through_outbox(&self) -> bool {
        matches!(self, DialogEvents::Outbox(_))
    }

    /// After a write that committed: wakes the relay, or applies the event here. A failure
    /// here leaves the counters to the next reconciliation (see `crate::dialogs::unread`); the
    /// write itself is kept.
    pub async fn written(&self, event: DialogEvent) {
        match self {
            DialogEvents::Off => {}
            DialogEvents::Outbox(broker) => broker.outbox_written(),
            DialogEvents::InProcess(counters) => match event.apply(counters).await {
                Ok(()) => tracing::debug!(kind = event.kind(), "dialog event applied"),
                Err(e) => {
                    counters.mark_stale();
                    metrics::counter!("unread_events_failed").increment(1);
                    tracing::warn!(error = %e, kind = event.kind(), "unread counters not updated; repaired at the next reconciliation")
                }
            },
        }
    }
}
