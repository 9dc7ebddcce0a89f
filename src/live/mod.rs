//! The live feed: the websocket (`routes`), the sockets open on this instance (`hub`), and who
//! of them gets a new post (`fanout`).
//!
//! Without a broker a post reaches the sockets held by the instance that served the create call;
//! with one, it is routed through RabbitMQ to every instance holding a follower's socket (see
//! `crate::broker`). Either way the followers come from the same queries and the frame reaches
//! the sockets through the same [`LiveFanout::deliver`].

pub mod fanout;
mod hub;
pub mod routes;

pub use fanout::{Audience, LiveFanout, LiveRoute};
pub use hub::{HubFull, LiveHub, LivePost, SocketLimits, Subscription, SOCKET_QUEUE};
