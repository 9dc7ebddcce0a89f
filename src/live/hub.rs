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
#[derive(Clone)]
pub struct LiveHub {
    sockets: Arc<RwLock<Sockets>>,
    next_id: Arc<AtomicU64>,
    /// Signalled when a user gets their first socket here or loses their last.
    membership: Arc<Notify>,
    limits: SocketLimits,
}

/// How many sockets the hub holds at most.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// Per user: one more closes that user's oldest.
    pub per_user: usize,
    /// In all: one more is refused.
    pub total: usize,
}

#[derive(Default)]
struct Sockets {
    by_user: HashMap<i64, Vec<Socket>>,
    total: usize,
}

/// A new socket refused: the instance holds its most.
#[derive(Debug, thiserror::Error)]
#[error("this instance holds as many live-feed sockets as it may ({0}); retry later")]
pub struct HubFull(pub usize);

impl Default for LiveHub {
    /// A hub without practical limits (tests).
    fn default() -> Self {
        LiveHub::new(SocketLimits {
            per_user: usize::MAX,
            total: usize::MAX,
        })
    }
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
    pub fn new(limits: SocketLimits) -> Self {
        LiveHub {
            sockets: Arc::default(),
            next_id: Arc::default(),
            membership: Arc::default(),
            limits,
        }
    }

    /// Registers a socket of `user`. Past the per-user limit the user's oldest socket is closed
    /// (its queue dropped: its task sends a close frame and ends); past the total, `HubFull`.
    pub fn subscribe(&self, user: UserId) -> Result<Subscription, HubFull> {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut sockets = self.write();
            let Sockets { by_user, total } = &mut *sockets;
            let list = by_user.entry(user.0).or_default();
            if list.len() >= self.limits.per_user {
                list.remove(0);
                metrics::counter!("live_sockets_replaced").increment(1);
            } else if *total >= self.limits.total {
                if list.is_empty() {
                    by_user.remove(&user.0);
                }
                metrics::counter!("live_sockets_refused").increment(1);
                return Err(HubFull(self.limits.total));
            } else {
                *total += 1;
                metrics::gauge!("live_sockets").increment(1.0);
            }
            list.push(Socket { id, frames: tx });
            list.len() == 1
        };
        if first {
            self.membership.notify_one();
        }
        Ok(Subscription {
            frames: rx,
            hub: self.clone(),
            user: user.0,
            id,
        })
    }

    fn remove(&self, user: i64, id: u64) {
        let mut sockets = self.write();
        let Sockets { by_user, total } = &mut *sockets;
        if let Some(list) = by_user.get_mut(&user) {
            let before = list.len();
            list.retain(|s| s.id != id);
            if list.len() < before {
                *total -= 1;
                metrics::gauge!("live_sockets").decrement(1.0);
            }
            if list.is_empty() {
                by_user.remove(&user);
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
        self.read().total > 0
    }

    /// Users with at least one open socket here.
    pub fn connected_users(&self) -> Vec<i64> {
        self.read().by_user.keys().copied().collect()
    }

    /// Queues a frame for every socket of these users. A socket whose queue is full is dropped
    /// from the hub (its task then closes it): a slow client must not grow this process's memory.
    pub fn deliver(&self, users: &[i64], frame: Arc<str>) -> usize {
        let mut delivered = 0;
        let mut slow = Vec::new();
        {
            let sockets = self.read();
            for user in users {
                for socket in sockets.by_user.get(user).into_iter().flatten() {
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Sockets> {
        self.sockets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Sockets> {
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
        let mut a1 = hub.subscribe(UserId(1)).unwrap();
        let mut a2 = hub.subscribe(UserId(1)).unwrap();
        let mut b = hub.subscribe(UserId(2)).unwrap();
        assert_eq!(hub.deliver(&[1, 3], "hello".into()), 2);
        assert_eq!(&*a1.frames.recv().await.unwrap(), "hello");
        assert_eq!(&*a2.frames.recv().await.unwrap(), "hello");
        assert!(b.frames.try_recv().is_err());
    }

    #[tokio::test]
    async fn past_the_per_user_limit_the_oldest_socket_is_closed_and_past_the_total_none_opens() {
        let hub = LiveHub::new(SocketLimits {
            per_user: 2,
            total: 3,
        });
        let mut first = hub.subscribe(UserId(1)).unwrap();
        let mut second = hub.subscribe(UserId(1)).unwrap();
        let mut third = hub.subscribe(UserId(1)).unwrap();
        // The oldest is closed (its queue ends); the two newest get frames.
        assert!(first.frames.recv().await.is_none());
        assert_eq!(hub.deliver(&[1], "x".into()), 2);
        assert!(second.frames.recv().await.is_some() && third.frames.recv().await.is_some());
        let _other = hub.subscribe(UserId(2)).unwrap();
        assert!(
            hub.subscribe(UserId(3)).is_err(),
            "the fourth socket of the instance"
        );
        assert_eq!(
            hub.connected_users().len(),
            2,
            "the refused user left no entry"
        );
        drop(second);
        let _fourth = hub.subscribe(UserId(3)).unwrap();
    }

    #[tokio::test]
    async fn dropping_a_subscription_unregisters_it() {
        let hub = LiveHub::default();
        let sub = hub.subscribe(UserId(5)).unwrap();
        assert_eq!(hub.connected_users(), vec![5]);
        drop(sub);
        assert!(hub.connected_users().is_empty());
    }

    #[tokio::test]
    async fn a_socket_that_does_not_drain_its_queue_is_dropped() {
        let hub = LiveHub::default();
        let mut slow = hub.subscribe(UserId(9)).unwrap();
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
