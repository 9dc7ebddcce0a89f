//! Which database this is, for what is kept outside it (the Redis feed cache).

use tokio_postgres::GenericClient;

use super::DbError;

/// A short name for this database's contents, the same for every instance of a deployment and
/// different for anything that may hold other posts under the same ids: its epoch (made when
/// the database was created, migration 0009: a dropped and recreated database gets a new one),
/// mixed with the database's oid (new when it is created again, even if a dump restores the old
/// epoch into it), the cluster's system identifier (new with every `initdb`, so with a restore
/// into a new cluster) and its current timeline (new with every promotion of a replica, which
/// may have lost the last writes, and with every point-in-time recovery). Read at start-up.
/// Where the server may not read the cluster's control data, the epoch and the oid alone.
pub async fn cache_namespace(db: &impl GenericClient) -> Result<String, DbError> {
    let row = db
        .query_one(
            "select epoch::text, (select oid::int8 from pg_database
                                  where datname = current_database())
             from database_identity",
            &[],
        )
        .await?;
    let epoch: String = row.get(0);
    let oid: i64 = row.get(1);
    let epoch = u128::from_str_radix(&epoch.replace('-', ""), 16)
        .map_err(|e| DbError::internal(e, "reading the database epoch"))?;
    // The low half of a random UUID is random enough to tell databases apart.
    let mut name = epoch as u64 ^ (oid as u64).rotate_left(16);
    match db
        .query_one(
            "select system_identifier,
                    ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
             from pg_control_system()",
            &[],
        )
        .await
    {
        Ok(cluster) => {
            let system: i64 = cluster.get(0);
            let timeline: i32 = cluster.get(1);
            name ^= system as u64 ^ u64::from(timeline as u32).rotate_left(32);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the cluster's identity; the cache is keyed by the database's epoch and oid alone");
        }
    }
    Ok(format!("{name:016x}"))
}

/// The database as a number, for primary data kept outside it (dialogs in Tarantool): the low
/// half of its epoch. Unlike [`cache_namespace`] it stays the same through a failover and a
/// restore from a dump, which keep the users whose data it names; a dropped and recreated
/// database, whose new users reuse the old ids, gets a new one.
pub async fn database_number(db: &impl GenericClient) -> Result<i64, DbError> {
    let row = db
        .query_one("select epoch::text from database_identity", &[])
        .await?;
    let epoch: String = row.get(0);
    let epoch = u128::from_str_radix(&epoch.replace('-', ""), 16)
        .map_err(|e| DbError::internal(e, "reading the database epoch"))?;
    Ok(epoch as u64 as i64)
}
