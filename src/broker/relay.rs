//! The outbox relay: publishes outbox rows to `P.events` with publisher confirms, then deletes
//! them, in one transaction that holds the rows' locks throughout. A crash or a broker failure
//! before the commit leaves the rows in place to be published again: events are delivered at
//! least once, and every consumer is idempotent.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel};

use super::outbox;
use super::Shared;
use crate::backoff::Backoff;
use crate::db::{Db, DbError};

/// Rows published per transaction.
const BATCH: i64 = 256;
/// Rows written by other instances (or left by a failed attempt) are found within this.
const POLL: Duration = Duration::from_secs(1);
/// Pauses after database failures, before the next attempt: from the first to the last.
const DATABASE_RETRY_FIRST: Duration = Duration::from_millis(100);
const DATABASE_RETRY_LAST: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    /// The session is broken: end it, reconnect.
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    /// The broker did not confirm a publish: end the session too.
    #[error(transparent)]
    Unconfirmed(anyhow::Error),
    /// Try again shortly on the same session.
    #[error(transparent)]
    Database(#[from] DbError),
}

pub(super) async fn run(channel: Channel, db: Db, shared: Arc<Shared>) -> anyhow::Result<()> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut backoff = Backoff::new(DATABASE_RETRY_FIRST, DATABASE_RETRY_LAST);
    loop {
        match publish_batch(&channel, &db, &shared.names.events).await {
            // A full batch: more are probably waiting.
            Ok(published) if published == BATCH as usize => {
                backoff.reset();
                continue;
            }
            Ok(_) => backoff.reset(),
            Err(RelayError::Broker(e)) => return Err(anyhow::Error::new(e).context("outbox relay")),
            Err(RelayError::Unconfirmed(e)) => return Err(e.context("outbox relay")),
            Err(RelayError::Database(e)) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "outbox relay: database unavailable; retrying");
                tokio::time::sleep(delay).await;
            }
        }
        tokio::select! {
            () = shared.outbox.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Publishes the oldest unpublished rows; returns how many.
async fn publish_batch(channel: &Channel, db: &Db, exchange: &str) -> Result<usize, RelayError> {
    let mut client = db.get().await?;
    let transaction = client.transaction().await.map_err(DbError::from)?;
    let rows = outbox::lock(&transaction, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let properties = BasicProperties::default()
            // Persistent: a quorum queue keeps it across broker restarts.
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(row.id.to_string().into())
            .with_headers(super::request_id_headers(row.request_id.as_deref()));
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
        .map_err(RelayError::Unconfirmed)?;
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    outbox::delete(&transaction, &ids).await?;
    transaction.commit().await.map_err(DbError::from)?;
    metrics::counter!("outbox_published").increment(rows.len() as u64);
    tracing::debug!(events = rows.len(), "outbox relay: published");
    Ok(rows.len())
}
