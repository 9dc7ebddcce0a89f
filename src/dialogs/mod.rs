//! Private dialogs between two users, keyed by the dialog so that they shard (see
//! `migrations/0004_dialogs.sql` and `crate::shards`), kept in PostgreSQL or in Tarantool
//! (`store`), served on the API's old paths (`routes`) and, by the dialog service, on its own
//! versioned ones (`v2`); with unread counters kept from their events (`unread`).

pub mod events;
mod memory;
pub mod routes;
pub mod sql;
pub mod store;
mod types;
pub mod unread;
pub mod v2;

pub use store::{DialogStore, StoreError};
pub use types::{DialogKey, Message, MessageText, LIST_MAX_BYTES, MESSAGE_MAX_CHARS};
