//! Who gets a new post live, and its delivery to their sockets here: the two steps that every
//! road of a post's event ends in. In process both run on the instance that took the post; with
//! RabbitMQ the router finds the followers once and the broker carries the frame to each
//! instance that holds one of their sockets, which delivers it (see `crate::broker`).

use std::sync::Arc;
use tracing::Instrument;

use tokio::sync::Semaphore;

use super::hub::{LiveHub, LivePost};
use crate::db::{Db, DbError};
use crate::friends;
use crate::ids::{PostId, UserId};

/// Among whom an author's followers are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The users with a socket on this instance (no broker: nobody else can be reached).
    ConnectedHere,
    /// Everyone: the broker routes the post on to whichever instances hold their sockets.
    Everyone,
}

/// How the broker's router sends a new post on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveRoute {
    /// To these followers (every one, connected or not), by their routing keys.
    Followers(Vec<i64>),
    /// To every instance, each finding its connected followers itself
    /// ([`Audience::ConnectedHere`]): the author has more followers than the broadcast threshold,
    /// and reading them all would cost more than the instances' probes.
    Broadcast,
}

/// The live feed's fan-out: the followers query and the hub it delivers to.
#[derive(Clone)]
pub struct LiveFanout {
    db: Db,
    /// Shared with the feed cache's fan-out: at most half the pool looks followers up at once.
    slots: Arc<Semaphore>,
    hub: LiveHub,
}

impl LiveFanout {
    pub fn new(db: Db, slots: Arc<Semaphore>, hub: LiveHub) -> Self {
        LiveFanout { db, slots, hub }
    }

    pub fn hub(&self) -> &LiveHub {
        &self.hub
    }

    /// Who gets the author's new post live: the users among `audience` who followed the author
    /// when the post was made (see `friends::sql::followers_at`), however late this runs.
    pub async fn followers(
        &self,
        author: UserId,
        post: PostId,
        audience: Audience,
    ) -> Result<Vec<i64>, DbError> {
        let connected = match audience {
            Audience::ConnectedHere => {
                let connected = self.hub.connected_users();
                if connected.is_empty() {
                    return Ok(Vec::new());
                }
                Some(connected)
            }
            Audience::Everyone => None,
        };
        let _slot = self.slots.acquire().await;
        let db = self.db.get().await?;
        friends::sql::followers_at(&db, author, post, connected.as_deref()).await
    }

    /// The router's choice for a new post: broadcast when the author has more than
    /// `broadcast_over` followers (found by reading at most that many + 1; `i64::MAX` never
    /// broadcasts and skips the check), otherwise every follower as of the post.
    pub async fn route(
        &self,
        author: UserId,
        post: PostId,
        broadcast_over: i64,
    ) -> Result<LiveRoute, DbError> {
        let _slot = self.slots.acquire().await;
        let db = self.db.get().await?;
        if broadcast_over < i64::MAX
            && friends::sql::has_more_followers_than(&db, author, broadcast_over).await?
        {
            return Ok(LiveRoute::Broadcast);
        }
        friends::sql::followers_at(&db, author, post, None)
            .await
            .map(LiveRoute::Followers)
    }

    /// Queues the frame for every socket on this instance of these followers (the others are
    /// not here); returns how many sockets it was queued for.
    pub fn deliver(&self, followers: &[i64], frame: Arc<str>) -> usize {
        self.hub.deliver(followers, frame)
    }

    /// Without a broker: the whole road of a new post, on this instance and in the background
    /// (the create call does not wait for it).
    pub fn publish_here(&self, id: PostId, post: LivePost, author: UserId) {
        if !self.hub.has_sockets() {
            return;
        }
        let fanout = self.clone();
        tokio::spawn(
            async move {
                match fanout.followers(author, id, Audience::ConnectedHere).await {
                    Ok(followers) => match post.frame() {
                        Ok(frame) => {
                            fanout.deliver(&followers, frame);
                        }
                        Err(e) => tracing::error!(error = %e, "encoding a live post"),
                    },
                    Err(e) => tracing::warn!(error = %e, "live fan-out failed"),
                }
            }
            // In the request's span: its log lines name the request (its id) as the request's do.
            .in_current_span(),
        );
    }
}
