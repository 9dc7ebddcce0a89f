//! Lab tools: the data generator (`socialnet fake`), the load benchmark (`socialnet bench`) and
//! the lab's index page (`socialnet lab index`).

pub mod bench;
pub mod dialogs;
pub mod fake;
pub mod index;
pub mod names;
mod progress;
pub mod social;

use deadpool_postgres::Pool;

use crate::config::DbConfig;

/// A pool for bulk work (loads, index builds, reports): the configured database without a
/// statement timeout, since such statements run for minutes at a million rows.
pub fn bulk_pool(db: &DbConfig) -> anyhow::Result<Pool> {
    let mut config = db.clone();
    config.db_statement_timeout_ms = 0;
    crate::db::build_pool(&config)
}

/// Every user id, ascending: what the generators draw from.
pub async fn user_ids(client: &tokio_postgres::Client) -> anyhow::Result<Vec<i64>> {
    Ok(client
        .query("select id from users order by id", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}
