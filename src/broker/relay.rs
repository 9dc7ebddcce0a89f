//! The outbox relay: publishes outbox rows to `P.events` with publisher confirms, then deletes
//! them, in one transaction that holds the rows' locks throughout. A crash or a broker failure
//! before the commit leaves the rows in place to be published again: events are delivered at
//! least once, and every consumer is idempotent.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel};

use super::Shared;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::posts::sql;

/// Rows published per transaction.
const BATCH: i64 = 256;
/// Rows written by other instances (or left by a failed attempt) are found within this.
const POLL: Duration = Duration::from_secs(1);
/// Pause after a database failure before the next attempt.
const DATABASE_RETRY: Duration = Duration::from_millis(500);

enum RelayError {
    /// The session is broken: end it, reconnect.
    Broker(anyhow::Error),
    /// Try again shortly on the same session.
    Database(ApiError),
}

impl From<ApiError> for RelayError {
    fn from(e: ApiError) -> Self {
        RelayError::Database(e)
    }
}

impl From<deadpool_postgres::PoolError> for RelayError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        RelayError::Database(e.into())
    }
}

impl From<tokio_postgres::Error> for RelayError {
    fn from(e: tokio_postgres::Error) -> Self {
        RelayError::Database(e.into())
    }
}

impl From<lapin::Error> for RelayError {
    fn from(e: lapin::Error) -> Self {
        RelayError::Broker(e.into())
    }
}

pub(super) async fn run(
    channel: Channel,
    state: AppState,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    loop {
        match publish_batch(&channel, &state, &shared.names.events).await {
            // A full batch: more are probably waiting.
            Ok(published) if published == BATCH as usize => continue,
            Ok(_) => {}
            Err(RelayError::Broker(e)) => return Err(e.context("outbox relay")),
            Err(RelayError::Database(e)) => {
                tracing::warn!(error = %e, "outbox relay: database unavailable; retrying");
                tokio::time::sleep(DATABASE_RETRY).await;
            }
        }
        tokio::select! {
            () = shared.outbox.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Publishes the oldest unpublished rows; returns how many.
async fn publish_batch(
    channel: &Channel,
    state: &AppState,
    exchange: &str,
) -> Result<usize, RelayError> {
    let mut client = state.db.get().await?;
    let transaction = client.transaction().await?;
    let rows = sql::lock_outbox(&transaction, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let properties = BasicProperties::default()
            // Persistent: a quorum queue keeps it across broker restarts.
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(row.id.to_string().into());
        confirms.push(
            channel
                .basic_publish(
                    exchange.into(),
                    row.kind.as_str().into(),
                    BasicPublishOptions::default(),
                    row.payload.as_bytes(),
                    properties,
                )
                .await?,
        );
    }
    super::confirmed(confirms, "an event")
        .await
        .map_err(RelayError::Broker)?;
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    sql::delete_outbox(&transaction, &ids).await?;
    transaction.commit().await?;
    metrics::counter!("outbox_published").increment(rows.len() as u64);
    tracing::debug!(events = rows.len(), "outbox relay: published");
    Ok(rows.len())
}
