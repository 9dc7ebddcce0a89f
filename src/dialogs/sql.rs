//! Every SQL statement of the dialogs domain. Each one filters on `dialog_id`, the distribution
//! column: on Citus each is routed to the one shard that holds the dialog.

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::types::{DialogKey, Message, MessageText};
use crate::db::DbError;
use crate::ids::UserId;

/// What a send found.
pub enum Sent {
    /// The message's number in its dialog.
    Message(i64),
    UnknownRecipient,
    UnknownSender,
}

/// Stores a message through `send_dialog_message` (see `migrations/0004_dialogs.sql`): the
/// dialog's counter is bumped and the message stored under the new number, in one call that Citus
/// delegates to the worker holding the dialog.
#[tracing::instrument(name = "sql.send_message", skip(db, text))]
pub async fn send_message(
    db: &impl GenericClient,
    key: DialogKey,
    from: UserId,
    to: UserId,
    text: &MessageText,
) -> Result<Sent, DbError> {
    let statement = db
        .prepare_cached("select send_dialog_message($1, $2, $3, $4, $5, $6)")
        .await?;
    let result = db
        .query_one(
            &statement,
            &[
                &key.id,
                &key.low.0,
                &key.high.0,
                &from.0,
                &to.0,
                &text.as_str(),
            ],
        )
        .await;
    match result {
        Ok(row) => Ok(Sent::Message(row.get(0))),
        Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
            // On Citus the name carries the shard's suffix; the message names it too.
            let constraint = e
                .as_db_error()
                .map(|db| format!("{} {}", db.constraint().unwrap_or_default(), db.message()))
                .unwrap_or_default();
            // Which user is missing: the sender only when the token outlived its user.
            let sender_column = if from == key.low {
                "user_low"
            } else {
                "user_high"
            };
            if constraint.contains("sender_id") || constraint.contains(sender_column) {
                Ok(Sent::UnknownSender)
            } else {
                Ok(Sent::UnknownRecipient)
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Where a page of a dialog starts.
#[derive(Debug, Clone, Copy)]
pub enum Page {
    /// Messages numbered below this one, newest first.
    Before(i64),
    /// Skip this many of the newest.
    Offset(i64),
}

impl Page {
    /// (messages numbered below, how many of those to skip), as both stores ask.
    pub fn bounds(self) -> (i64, i64) {
        match self {
            Page::Before(id) => (id, 0),
            Page::Offset(n) => (i64::MAX, n),
        }
    }
}

/// A page of the dialog between `me` and `other`, newest first.
#[tracing::instrument(name = "sql.list_messages", skip(db))]
pub async fn list_messages(
    db: &impl GenericClient,
    key: DialogKey,
    limit: i64,
    page: Page,
) -> Result<Vec<Message>, DbError> {
    let (before, offset) = page.bounds();
    let statement = db
        .prepare_cached(
            "select id, sender_id, recipient_id, text, created_at
             from dialog_messages
             where dialog_id = $1
               and (sender_id = $2 and recipient_id = $3 or sender_id = $3 and recipient_id = $2)
               and id < $4
             order by id desc
             limit $5 offset $6",
        )
        .await?;
    let rows = db
        .query(
            &statement,
            &[&key.id, &key.low.0, &key.high.0, &before, &limit, &offset],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Message {
            id: row.get::<_, i64>(0).to_string(),
            from: row.get::<_, i64>(1).to_string(),
            to: row.get::<_, i64>(2).to_string(),
            text: row.get(3),
            created_at: row.get(4),
        })
        .collect())
}

/// Whether a user exists (answering 404 for a dialog with nobody).
#[tracing::instrument(name = "sql.user_exists", skip(db))]
pub async fn user_exists(db: &impl GenericClient, user: UserId) -> Result<bool, DbError> {
    let statement = db
        .prepare_cached("select 1 from users where id = $1")
        .await?;
    Ok(db.query_opt(&statement, &[&user.0]).await?.is_some())
}
