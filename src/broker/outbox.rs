//! The relay's SQL: the outbox rows waiting to be published, locked, and forgotten once the
//! broker has them. (The rows are written by the domains' own statements, beside their writes.)

use deadpool_postgres::GenericClient;

use crate::db::DbError;

/// An event waiting in the outbox.
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    /// The request whose write recorded it (`x-request-id`).
    pub request_id: Option<String>,
}

/// Locks up to `limit` of the oldest unpublished events for this transaction; rows another relay
/// holds are skipped, so several instances relay side by side without publishing a row twice
/// at once.
#[tracing::instrument(name = "sql.lock_outbox", skip(db))]
pub async fn lock(db: &impl GenericClient, limit: i64) -> Result<Vec<OutboxRow>, DbError> {
    let statement = db
        .prepare_cached(
            "select id, kind, payload::text, request_id from outbox
             order by id
             limit $1
             for update skip locked",
        )
        .await?;
    Ok(db
        .query(&statement, &[&limit])
        .await?
        .iter()
        .map(|row| OutboxRow {
            id: row.get(0),
            kind: row.get(1),
            payload: row.get(2),
            request_id: row.get(3),
        })
        .collect())
}

/// Forgets events the broker has confirmed.
#[tracing::instrument(name = "sql.delete_outbox", skip(db, ids))]
pub async fn delete(db: &impl GenericClient, ids: &[i64]) -> Result<u64, DbError> {
    let statement = db
        .prepare_cached("delete from outbox where id = any($1)")
        .await?;
    Ok(db.execute(&statement, &[&ids]).await?)
}

/// The backlog: how many events wait, and how long the oldest has waited (seconds; 0 for none).
#[tracing::instrument(name = "sql.outbox_backlog", skip(db))]
pub async fn backlog(db: &impl GenericClient) -> Result<(i64, f64), DbError> {
    let statement = db
        .prepare_cached(
            "select count(*), coalesce(extract(epoch from now() - min(created_at))::float8, 0)
             from outbox",
        )
        .await?;
    let row = db.query_one(&statement, &[]).await?;
    Ok((row.get(0), row.get(1)))
}
