//! The sockets of the live feed open on this instance, by user: subscribing a socket, and
//! handing a frame to the sockets of given users. It knows nothing of who follows whom.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::{mpsc, Notify};

use crate::ids::UserId;

/// Frames waiting for one socket; a client that lets this many pile up is disconnected.
pub const SOCKET_QUEUE: usize = 64;

/// The event a follower's socket receives, in the async contract's field names.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LivePost {
    #[serde(rename = "postId")]
    pub post_id: String,
    #[serde(rename = "postText")]
    pub post_text: String,
    pub author_user_id: String,
}

impl LivePost {
    pub fn new(post_id: i64, author_id: i64, text: String) -> Self {
        LivePost {
            post_id: post_id.to_string(),
            post_text: text,
            author_user_id: author_id.to_string(),
        }
    }

    /// The websocket frame: the post as JSON, encoded once for every socket it goes to.
    pub fn frame(&self) -> serde_json::Result<Arc<str>> {
        serde_json::to_string(self).map(Arc::from)
    }
}

/// The sockets open on this instance, by user.
#[derive(Clone, Default)]
pub struct LiveHub {
    sockets: Arc<RwLock<HashMap<i64, Vec<Socket>>>>,
    next_id: Arc<AtomicU64>,
    /// Signalled when a user gets their first socket here or loses their last.
    membership: Arc<Notify>,
}

struct Socket {
    id: u64,
    frames: mpsc::Sender<Arc<str>>,
}

/// A registered socket: frames arrive on `frames`; dropping it unregisters.
pub struct Subscription {
    pub frames: mpsc::Receiver<Arc<str>>,
    hub: LiveHub,
    user: i64,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.user, self.id);
    }
}

impl LiveHub {
    pub fn subscribe(&self, user: UserId) -> Subscription {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut sockets = self.write();
            let list = sockets.entry(user.0).or_default();
            list.push(Socket { id, frames: tx });
            list.len() == 1
        };
        if first {
            self.membership.notify_one();
        }
        metrics::gauge!("live_sockets").increment(1.0);
        Subscription {
            frames: rx,
            hub: self.clone(),
            user: user.0,
            id,
        }
    }

    fn remove(&self, user: i64, id: u64) {
        let mut sockets = self.write();
        if let Some(list) = sockets.get_mut(&user) {
            let before = list.len();
            list.retain(|s| s.id != id);
            if list.len() < before {
                metrics::gauge!("live_sockets").decrement(1.0);
            }
            if list.is_empty() {
                sockets.remove(&user);
                self.membership.notify_one();
            }
        }
    }

    /// Resolves after the set of connected users has changed (at once if it changed since the
    /// last wait): the broker session then binds and unbinds their routing keys.
    pub async fn membership_changed(&self) {
        self.membership.notified().await;
    }

    /// Whether any socket is open here.
    pub fn has_sockets(&self) -> bool {
        !self.read().is_empty()
    }

    /// Users with at least one open socket here.
    pub fn connected_users(&self) -> Vec<i64> {
        self.read().keys().copied().collect()
    }

    /// Queues a frame for every socket of these users. A socket whose queue is full is dropped
    /// from the hub (its task then closes it): a slow client must not grow this process's memory.
    pub fn deliver(&self, users: &[i64], frame: Arc<str>) -> usize {
        let mut delivered = 0;
        let mut slow = Vec::new();
        {
            let sockets = self.read();
            for user in users {
                for socket in sockets.get(user).into_iter().flatten() {
                    match socket.frames.try_send(frame.clone()) {
                        Ok(()) => delivered += 1,
                        Err(mpsc::error::TrySendError::Full(_)) => slow.push((*user, socket.id)),
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
            }
        }
        for (user, id) in slow {
            tracing::info!(
                user_id = user,
                "dropping a live-feed socket that does not keep up"
            );
            metrics::counter!("live_sockets_dropped_slow").increment(1);
            self.remove(user, id);
        }
        metrics::counter!("live_frames_sent").increment(delivered as u64);
        delivered
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<i64, Vec<Socket>>> {
        self.sockets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<i64, Vec<Socket>>> {
        self.sockets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_reach_every_socket_of_the_named_users_only() {
        let hub = LiveHub::default();
        let mut a1 = hub.subscribe(UserId(1));
        let mut a2 = hub.subscribe(UserId(1));
        let mut b = hub.subscribe(UserId(2));
        assert_eq!(hub.deliver(&[1, 3], "hello".into()), 2);
        assert_eq!(&*a1.frames.recv().await.unwrap(), "hello");
        assert_eq!(&*a2.frames.recv().await.unwrap(), "hello");
        assert!(b.frames.try_recv().is_err());
    }

    #[tokio::test]
    async fn dropping_a_subscription_unregisters_it() {
        let hub = LiveHub::default();
        let sub = hub.subscribe(UserId(5));
        assert_eq!(hub.connected_users(), vec![5]);
        drop(sub);
        assert!(hub.connected_users().is_empty());
    }

    #[tokio::test]
    async fn a_socket_that_does_not_drain_its_queue_is_dropped() {
        let hub = LiveHub::default();
        let mut slow = hub.subscribe(UserId(9));
        for _ in 0..SOCKET_QUEUE {
            assert_eq!(hub.deliver(&[9], "x".into()), 1);
        }
        assert_eq!(hub.deliver(&[9], "x".into()), 0);
        assert!(hub.connected_users().is_empty());
        // The queued frames drain, then the channel reports closed: the socket task ends.
        for _ in 0..SOCKET_QUEUE {
            assert!(slow.frames.recv().await.is_some());
        }
        assert!(slow.frames.recv().await.is_none());
    }
}
