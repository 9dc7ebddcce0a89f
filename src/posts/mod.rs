//! Posts and the news feed.

pub mod events;
pub mod feed;
pub mod routes;
pub mod sql;
mod types;

pub use crate::ids::PostId;
pub use events::PostEvent;
pub use types::{Post, PostText, FEED_PAGE_MAX_BYTES, FEED_WINDOW, POST_MAX_CHARS};
