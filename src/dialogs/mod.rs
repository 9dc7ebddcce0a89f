//! Private dialogs between two users, keyed by the dialog so that they shard (see
//! `migrations/0004_dialogs.sql` and `crate::shards`).

pub mod routes;
pub mod sql;
mod types;

pub use types::{DialogKey, Message, MessageText, MESSAGE_MAX_CHARS};
