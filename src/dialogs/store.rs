//! Where dialogs are kept (`DIALOG_STORE`): PostgreSQL (`sql.rs`, sharded over Citus when the
//! database is a coordinator) or Tarantool (`memory.rs`). The users stay in PostgreSQL in both
//! cases: with Tarantool, a send first asks PostgreSQL whether its recipient exists (PostgreSQL's
//! own store checks it in the same call, by a foreign key).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use super::memory;
use super::sql::{self, Page, Sent};
use super::types::{DialogKey, Message, MessageText};
use crate::config::{DialogStoreKind, DialogsConfig};
use crate::db::{Db, DbError};
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
}

impl InMemory {
    async fn database(&self, db: &Db) -> Result<i64, DbError> {
        self.database
            .get_or_try_init(|| async { crate::db::database_number(&**db.get().await?).await })
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
    pub fn from_config(config: &DialogsConfig) -> Self {
        match config.dialog_store {
            DialogStoreKind::Postgres => DialogStore::Postgres,
            DialogStoreKind::Tarantool => DialogStore::Tarantool(InMemory {
                tarantool: Tarantool::new(
                    config.tarantool_url.clone(),
                    Duration::from_millis(config.tarantool_timeout_ms.max(1)),
                ),
                database: Arc::new(OnceCell::new()),
            }),
        }
    }

    /// For `/ready`: the in-memory store's address and whether it answers; `None` for
    /// PostgreSQL, which `/ready` checks anyway.
    pub async fn check(&self) -> Option<(String, Result<(), TarantoolError>)> {
        match self {
            DialogStore::Postgres => None,
            DialogStore::Tarantool(store) => Some((
                store.tarantool.address().to_owned(),
                store.tarantool.ping().await,
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DialogStore::Postgres => "postgres",
            DialogStore::Tarantool(_) => "tarantool",
        }
    }

    /// Stores a message from `from` to `to`.
    pub async fn send(
        &self,
        db: &Db,
        from: UserId,
        to: UserId,
        text: &MessageText,
    ) -> Result<Sent, StoreError> {
        let key = DialogKey::of(from, to);
        match self {
            DialogStore::Postgres => {
                let conn = db.get().await?;
                Ok(sql::send_message(&conn, key, from, to, text).await?)
            }
            DialogStore::Tarantool(store) => {
                // On the primary: a user registered a moment ago may not be on a replica yet.
                if !sql::user_exists(&db.get().await?, to).await? {
                    return Ok(Sent::UnknownRecipient);
                }
                let database = store.database(db).await?;
                Ok(Sent::Message(
                    memory::send_message(&store.tarantool, database, key, from, to, text).await?,
                ))
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
        if messages.is_empty() && !sql::user_exists(&db.get().await?, other).await? {
            return Ok(None);
        }
        Ok(Some(messages))
    }
}
