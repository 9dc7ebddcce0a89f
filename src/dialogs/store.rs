//! Where dialogs are kept (`DIALOG_STORE`): PostgreSQL (`sql.rs`, sharded over Citus when the
//! database is a coordinator) or Tarantool (`memory.rs`). The users stay in PostgreSQL in both
//! cases: with Tarantool, a send first asks PostgreSQL whether its recipient exists (PostgreSQL's
//! own store checks it in the same call, by a foreign key).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use super::events::DialogEvent;
use super::memory;
use super::sql::{self, Mark, Page, Sent, UnreadSide};
use super::types::{DialogKey, Message, MessageText};
use crate::cache::UnreadCounters;
use crate::config::{DialogStoreKind, DialogsConfig};
use crate::db::{Db, DbError, EventRecord};
use crate::ids::UserId;
use crate::tarantool::{Tarantool, TarantoolError};

#[derive(Clone)]
pub enum DialogStore {
    Postgres,
    Tarantool(InMemory),
}

/// Tarantool, and the number of the database whose users' dialogs it holds (read on first use:
/// building the state waits for no connection).
#[derive(Clone)]
pub struct InMemory {
    tarantool: Tarantool,
    database: Arc<OnceCell<i64>>,
    /// The unread counters, told of a dialog whose event could not be recorded (see
    /// [`record_after_write`]).
    counters: Option<UnreadCounters>,
}

impl InMemory {
    /// The database's number, read on first use, once the store has been found to serve this
    /// server's procedures (`memory::check_version`; until it does, every call is a 503).
    async fn database(&self, db: &Db) -> Result<i64, StoreError> {
        self.database
            .get_or_try_init(|| async {
                memory::check_version(&self.tarantool).await?;
                Ok::<_, StoreError>(crate::db::database_number(&**db.get().await?).await?)
            })
            .await
            .copied()
    }
}

/// Why a dialog could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Tarantool(#[from] TarantoolError),
}

impl DialogStore {
    /// The store of `config`; `counters`, when this instance keeps them, to be told of a dialog
    /// whose event a write could not record.
    pub fn from_config(config: &DialogsConfig, counters: Option<UnreadCounters>) -> Self {
        match config.dialog_store {
            DialogStoreKind::Postgres => DialogStore::Postgres,
            DialogStoreKind::Tarantool => DialogStore::Tarantool(InMemory {
                tarantool: Tarantool::new(
                    config.tarantool_url.clone(),
                    Duration::from_millis(config.tarantool_timeout_ms.max(1)),
                ),
                database: Arc::new(OnceCell::new()),
                counters,
            }),
        }
    }

    /// For `/ready`: the in-memory store's address and whether it answers with the procedures
    /// this server calls; `None` for PostgreSQL, which `/ready` checks anyway.
    pub async fn check(&self) -> Option<(String, Result<(), TarantoolError>)> {
        match self {
            DialogStore::Postgres => None,
            DialogStore::Tarantool(store) => Some((
                store.tarantool.address().to_owned(),
                memory::check_version(&store.tarantool).await,
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DialogStore::Postgres => "postgres",
            DialogStore::Tarantool(_) => "tarantool",
        }
    }

    /// Stores a message from `from` to `to`, and with `record` its `message.sent` event.
    ///
    /// In PostgreSQL the message and its outbox row are written by one statement. Tarantool and
    /// PostgreSQL share no transaction: the row is written once Tarantool has the message, and
    /// when that fails the dialog is marked for repair instead (see [`record_after_write`]).
    pub async fn send(
        &self,
        db: &Db,
        from: UserId,
        to: UserId,
        text: &MessageText,
        record: EventRecord<'_>,
    ) -> Result<Sent, StoreError> {
        let key = DialogKey::of(from, to);
        match self {
            DialogStore::Postgres => {
                let conn = db.get().await?;
                Ok(sql::send_message(&conn, key, from, to, text, record).await?)
            }
            DialogStore::Tarantool(store) => {
                // On the primary: a user registered a moment ago may not be on a replica yet.
                if !crate::users::sql::user_exists(&db.get().await?, to).await? {
                    return Ok(Sent::UnknownRecipient);
                }
                let database = store.database(db).await?;
                let stored =
                    memory::send_message(&store.tarantool, database, key, from, to, text).await?;
                let event = DialogEvent::MessageSent {
                    id: stored.id,
                    from: from.0,
                    to: to.0,
                    sent: stored.sent,
                };
                record_after_write(db, store, key, record, &event).await;
                Ok(Sent::Message(stored))
            }
        }
    }

    /// Raises `reader`'s mark of how far they have read their dialog with `other` to `up_to`
    /// (clamped to the dialog's last message), and with `record` writes its `dialog.read` event
    /// when the mark rose; the mark now (0 for a dialog with no message yet) and whether it rose.
    pub async fn mark_read(
        &self,
        db: &Db,
        reader: UserId,
        other: UserId,
        up_to: i64,
        record: EventRecord<'_>,
    ) -> Result<Mark, StoreError> {
        let key = DialogKey::of(reader, other);
        let mark = match self {
            DialogStore::Postgres => {
                sql::mark_read(&db.get().await?, key, reader, other, up_to, record).await?
            }
            DialogStore::Tarantool(store) => {
                let database = store.database(db).await?;
                let mark =
                    memory::mark_read(&store.tarantool, database, key, reader, up_to).await?;
                if let Some(mark) = mark.filter(|mark| mark.raised) {
                    let event = DialogEvent::Read {
                        reader: reader.0,
                        other: other.0,
                        up_to: mark.now,
                        seen: mark.seen,
                    };
                    record_after_write(db, store, key, record, &event).await;
                }
                mark
            }
        };
        Ok(mark.unwrap_or_default())
    }

    /// Both sides of up to `limit` dialogs after the key `after` (`i64::MIN` to start), for a
    /// rebuild of the unread counters; and the key to continue after.
    pub async fn unread_sides(
        &self,
        db: &Db,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<UnreadSide>, Option<i64>), StoreError> {
        match self {
            DialogStore::Postgres => Ok(sql::unread_sides(&db.get().await?, after, limit).await?),
            DialogStore::Tarantool(store) => {
                let database = store.database(db).await?;
                Ok(memory::unread_sides(&store.tarantool, database, after, limit).await?)
            }
        }
    }

    /// Both sides of one dialog, for the repair of one whose event was lost.
    pub async fn unread_sides_of(
        &self,
        db: &Db,
        key: DialogKey,
    ) -> Result<Vec<UnreadSide>, StoreError> {
        match self {
            DialogStore::Postgres => Ok(sql::unread_sides_of(&db.get().await?, key).await?),
            DialogStore::Tarantool(store) => {
                let database = store.database(db).await?;
                Ok(memory::unread_sides_of(&store.tarantool, database, key).await?)
            }
        }
    }

    /// A page of the dialog between `me` and `other`, newest first; `None` when `other` does
    /// not exist.
    pub async fn list(
        &self,
        db: &Db,
        me: UserId,
        other: UserId,
        limit: i64,
        page: Page,
    ) -> Result<Option<Vec<Message>>, StoreError> {
        let key = DialogKey::of(me, other);
        let messages = match self {
            DialogStore::Postgres => sql::list_messages(&db.get().await?, key, limit, page).await?,
            DialogStore::Tarantool(store) => {
                let database = store.database(db).await?;
                memory::list_messages(&store.tarantool, database, key, limit, page).await?
            }
        };
        // An empty page is the one case where the other party may not exist at all.
        if messages.is_empty() && !crate::users::sql::user_exists(&db.get().await?, other).await? {
            return Ok(None);
        }
        Ok(Some(messages))
    }
}

/// With the outbox, writes `event` to it after a write to Tarantool, which shares no transaction
/// with PostgreSQL. If that fails (the outbox locked or PostgreSQL away), the write is kept and
/// answered, and the dialog is marked stale for the counters: the next reconciliation, on any
/// instance, merges it from the store (`UnreadCounters::mark_dialog_stale`). Should Redis be
/// away too, this instance rebuilds them all once it can.
///
/// The step runs as a task of its own, which the request waits for: a request cut short (its
/// time limit, a client gone) does not cut it, so a write Tarantool has is always either told or
/// marked.
async fn record_after_write(
    db: &Db,
    store: &InMemory,
    key: DialogKey,
    record: EventRecord<'_>,
    event: &DialogEvent,
) {
    let Some(request_id) = record.request_id() else {
        return;
    };
    let step = tokio::spawn(record_or_mark(
        db.clone(),
        store.counters.clone(),
        key,
        request_id.to_owned(),
        event.clone(),
    ));
    if let Err(e) = step.await {
        tracing::error!(error = %e, "recording a dialog event failed");
    }
}

async fn record_or_mark(
    db: Db,
    counters: Option<UnreadCounters>,
    key: DialogKey,
    request_id: String,
    event: DialogEvent,
) {
    let recorded = async {
        let payload = serde_json::to_string(&event)
            .map_err(|e| DbError::internal(e, "encoding a dialog event"))?;
        crate::db::record_event(&db.get().await?, event.kind(), &payload, &request_id).await
    }
    .await;
    let Err(e) = recorded else {
        return;
    };
    let Some(counters) = counters else {
        tracing::warn!(error = %e, kind = event.kind(), "dialog write kept, its event not recorded; no counters here to repair");
        return;
    };
    match counters.mark_dialog_stale(key.low.0, key.high.0).await {
        Ok(()) => {
            tracing::warn!(error = %e, kind = event.kind(), "dialog write kept, its event not recorded: the dialog is marked for repair")
        }
        Err(redis) => {
            counters.mark_stale();
            tracing::warn!(error = %e, %redis, kind = event.kind(), "dialog write kept, its event not recorded, Redis away: the counters are rebuilt once it is back");
        }
    }
}
