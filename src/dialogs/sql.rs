//! Every SQL statement of the dialogs domain. Each one filters on `dialog_id`, the distribution
//! column: on Citus each is routed to the one shard that holds the dialog.

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::types::{DialogKey, Message, MessageText, LIST_MAX_BYTES};
use crate::db::{DbError, EventRecord};
use crate::ids::UserId;

/// What a send found.
pub enum Sent {
    Message(Stored),
    UnknownRecipient,
    UnknownSender,
}

/// A message stored: its number in its dialog, and how many messages its sender has sent in the
/// dialog now (what the unread counters count, see `crate::cache::UnreadCounters`; `None` from a
/// Tarantool still on the procedure before, which did not count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    pub sent: Option<i64>,
}

/// Stores a message through `store_dialog_message` (see `migrations/0012_dialog_unread_counts.sql`):
/// the dialog's counters are bumped and the message stored under the new number, in one call
/// that Citus delegates to the worker holding the dialog. With the outbox, its `message.sent`
/// event (the JSON of `DialogEvent::MessageSent`) is written by the same statement, so both
/// commit together or not at all, in one round trip; on Citus that statement is run by the
/// coordinator rather than delegated (the outbox is the coordinator's), at the cost of a
/// distributed transaction.
#[tracing::instrument(name = "sql.send_message", skip(db, text))]
pub async fn send_message(
    db: &impl GenericClient,
    key: DialogKey,
    from: UserId,
    to: UserId,
    text: &MessageText,
    event: EventRecord<'_>,
) -> Result<Sent, DbError> {
    let text = text.as_str();
    let mut args: Vec<&(dyn ToSql + Sync)> =
        vec![&key.id, &key.low.0, &key.high.0, &from.0, &to.0, &text];
    let request_id = event.request_id();
    let statement = match &request_id {
        None => {
            db.prepare_cached("select store_dialog_message($1, $2, $3, $4, $5, $6)")
                .await?
        }
        Some(request_id) => {
            args.push(request_id);
            db.prepare_cached(
                "with m as (select store_dialog_message($1, $2, $3, $4, $5, $6) as stored),
                 e as (
                     insert into outbox (kind, payload, request_id)
                     select 'message.sent', jsonb_build_object(
                         'kind', 'message.sent', 'id', stored[1], 'from', $4::bigint,
                         'to', $5::bigint, 'sent', stored[2]), $7
                     from m
                 )
                 select stored from m",
            )
            .await?
        }
    };
    let result = db.query_one(&statement, &args).await;
    match result {
        Ok(row) => match row.get::<_, Vec<i64>>(0)[..] {
            [id, sent] => Ok(Sent::Message(Stored {
                id,
                sent: Some(sent),
            })),
            ref other => Err(DbError::internal(
                anyhow::anyhow!("store_dialog_message answered {other:?}"),
                "storing a message",
            )),
        },
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

/// A page of the dialog between `me` and `other`, newest first: up to `limit` messages, and of
/// those only the ones that start within `LIST_MAX_BYTES` of text (the running sum is of the
/// stored sizes, so a message cut off is never read out of its TOAST table).
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
             from (
                 select *, sum(octet_length(text)) over (order by id desc)
                           - octet_length(text) as before_it
                 from (
                     select id, sender_id, recipient_id, text, created_at
                     from dialog_messages
                     where dialog_id = $1
                       and (sender_id = $2 and recipient_id = $3
                            or sender_id = $3 and recipient_id = $2)
                       and id < $4
                     order by id desc
                     limit $5 offset $6
                 ) rows
             ) page
             where before_it < $7
             order by id desc",
        )
        .await?;
    let rows = db
        .query(
            &statement,
            &[
                &key.id,
                &key.low.0,
                &key.high.0,
                &before,
                &limit,
                &offset,
                &LIST_MAX_BYTES,
            ],
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

/// A read mark after a request to raise it (the default: none yet, nothing raised).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// How far the reader has read now.
    pub now: i64,
    /// Whether this request raised it (a repeated or lower mark changes nothing, and has no
    /// event to tell).
    pub raised: bool,
    /// How many of the other party's messages are at or below the mark: what the unread counters
    /// take from the other's sent count (see `crate::cache::UnreadCounters`; `None` from a
    /// Tarantool still on the procedure before).
    pub seen: Option<i64>,
}

/// Raises `reader`'s mark of how far they have read the dialog to `up_to`, clamped to the
/// dialog's last message (a mark never covers a message not sent yet), through `read_dialog`
/// (migration 0012: one call, delegated on Citus to the dialog's worker); the mark now, or `None`
/// when the dialog has no message yet. A mark no higher than the one held changes nothing. With
/// the outbox, its `dialog.read` event is written by the same statement, when the mark rose.
#[tracing::instrument(name = "sql.mark_read", skip(db))]
pub async fn mark_read(
    db: &impl GenericClient,
    key: DialogKey,
    reader: UserId,
    other: UserId,
    up_to: i64,
    event: EventRecord<'_>,
) -> Result<Option<Mark>, DbError> {
    let reader_is_low = reader == key.low;
    let mut args: Vec<&(dyn ToSql + Sync)> =
        vec![&key.id, &key.low.0, &key.high.0, &reader_is_low, &up_to];
    let request_id = event.request_id();
    let statement = match &request_id {
        None => {
            db.prepare_cached("select read_dialog($1, $2, $3, $4, $5)")
                .await?
        }
        Some(request_id) => {
            args.extend([&reader.0 as &(dyn ToSql + Sync), &other.0, request_id]);
            db.prepare_cached(
                "with r as (select read_dialog($1, $2, $3, $4, $5) as mark),
                 e as (
                     insert into outbox (kind, payload, request_id)
                     select 'dialog.read', jsonb_build_object(
                         'kind', 'dialog.read', 'reader', $6::bigint, 'other', $7::bigint,
                         'up_to', mark[1], 'seen', mark[3]), $8
                     from r where mark[2] = 1
                 )
                 select mark from r",
            )
            .await?
        }
    };
    let mark: Option<Vec<i64>> = db.query_one(&statement, &args).await?.get(0);
    match mark.as_deref() {
        None => Ok(None),
        Some(&[now, raised, seen]) => Ok(Some(Mark {
            now,
            raised: raised == 1,
            seen: Some(seen),
        })),
        Some(other) => Err(DbError::internal(
            anyhow::anyhow!("read_dialog answered {other:?}"),
            "marking a dialog read",
        )),
    }
}

/// One party's side of a dialog, as a rebuild of the unread counters needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadSide {
    pub user: i64,
    pub other: i64,
    /// How many messages `other` has sent in the dialog.
    pub sent: i64,
    /// How many of those are at or below `user`'s read mark.
    pub seen: i64,
}

/// The columns of a dialog's row that a rebuild reads: its pair and its four counts.
const SIDE_COLUMNS: &str =
    "dialog_id, user_low, user_high, sent_low, sent_high, seen_low, seen_high";

/// Both sides of up to `limit` dialogs after `after` (by dialog key; `i64::MIN` first), and the
/// key to continue after (`None`: no more): the counts kept on each row, no message read. Sides
/// with nothing sent to them are left out.
#[tracing::instrument(name = "sql.unread_sides", skip(db))]
pub async fn unread_sides(
    db: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<(Vec<UnreadSide>, Option<i64>), DbError> {
    let statement = db
        .prepare_cached(&format!(
            "select {SIDE_COLUMNS} from dialogs where dialog_id > $1 order by dialog_id limit $2"
        ))
        .await?;
    let rows = db.query(&statement, &[&after, &limit]).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|row| row.get::<_, i64>(0)))
        .flatten();
    Ok((sides_of_rows(&rows), next))
}

/// Both sides of one dialog (none when it has no message yet), for the repair of a dialog whose
/// event was lost.
#[tracing::instrument(name = "sql.unread_sides_of", skip(db))]
pub async fn unread_sides_of(
    db: &impl GenericClient,
    key: DialogKey,
) -> Result<Vec<UnreadSide>, DbError> {
    let statement = db
        .prepare_cached(&format!(
            "select {SIDE_COLUMNS} from dialogs
             where dialog_id = $1 and user_low = $2 and user_high = $3"
        ))
        .await?;
    let rows = db
        .query(&statement, &[&key.id, &key.low.0, &key.high.0])
        .await?;
    Ok(sides_of_rows(&rows))
}

/// Both sides of each dialog row; a side with nothing sent to it is left out.
fn sides_of_rows(rows: &[tokio_postgres::Row]) -> Vec<UnreadSide> {
    let mut sides = Vec::with_capacity(rows.len() * 2);
    for row in rows {
        let (low, high): (i64, i64) = (row.get(1), row.get(2));
        let (sent_low, sent_high): (i64, i64) = (row.get(3), row.get(4));
        let (seen_low, seen_high): (i64, i64) = (row.get(5), row.get(6));
        // Low reads what high sent, and the other way round.
        for (user, other, sent, seen) in [
            (low, high, sent_high, seen_low),
            (high, low, sent_low, seen_high),
        ] {
            if sent > 0 {
                sides.push(UnreadSide {
                    user,
                    other,
                    sent,
                    seen,
                });
            }
        }
    }
    sides
}
