//! Every SQL statement of the users domain.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::types::{NamePrefix, NewUser, User, UserId};
use crate::db::reads::ReadConn;
use crate::http::error::ApiError;

const USER_COLUMNS: &str = "id, first_name, second_name, birthdate, biography, city";

fn user_from_row(row: &Row) -> User {
    User {
        id: row.get::<_, i64>("id").to_string(),
        first_name: row.get("first_name"),
        second_name: row.get("second_name"),
        birthdate: row.get("birthdate"),
        biography: row.get("biography"),
        city: row.get("city"),
    }
}

#[tracing::instrument(name = "sql.insert_user", skip_all)]
pub async fn insert_user(
    db: &impl GenericClient,
    user: &NewUser,
    password_hash: &str,
    is_admin: bool,
) -> Result<UserId, ApiError> {
    let statement = db
        .prepare_cached(
            "insert into users (first_name, second_name, birthdate, biography, city, password_hash, is_admin)
             values ($1, $2, $3, $4, $5, $6, $7)
             returning id",
        )
        .await?;
    let row = db
        .query_one(
            &statement,
            &[
                &user.first_name.as_str(),
                &user.second_name.as_str(),
                &user.birthdate.date(),
                &user.biography,
                &user.city,
                &password_hash,
                &is_admin,
            ],
        )
        .await?;
    Ok(UserId(row.get(0)))
}

#[tracing::instrument(name = "sql.find_user", skip(db))]
pub async fn find_user(db: &ReadConn, id: UserId) -> Result<Option<User>, ApiError> {
    Ok(db
        .query_opt(
            &format!("select {USER_COLUMNS} from users where id = $1"),
            &[&id.0],
        )
        .await?
        .as_ref()
        .map(user_from_row))
}

#[tracing::instrument(name = "sql.password_hash", skip(db))]
pub async fn password_hash(
    db: &impl GenericClient,
    id: UserId,
) -> Result<Option<String>, ApiError> {
    let statement = db
        .prepare_cached("select password_hash from users where id = $1")
        .await?;
    Ok(db
        .query_opt(&statement, &[&id.0])
        .await?
        .map(|row| row.get(0)))
}

/// Users whose lower-cased first and second names start with the given prefixes, by id.
///
/// `users_name_search_idx` is keyed by each name's first two lower-cased characters, then id, and
/// includes every returned column. When both prefixes have two or more characters, the heads are
/// equalities: the index yields candidates already in id order, `starts_with` checks the whole
/// prefix, and the walk stops after `offset + limit` matches, all without touching the table
/// (index-only scan). Shorter prefixes become a range of heads and a sort. A prefix of at most two
/// characters is fully decided by its head, so its `starts_with` test is left out.
/// Prefixes are parameters, never patterns: `%` and `_` are plain characters here.
#[tracing::instrument(name = "sql.search_users", skip(db))]
pub async fn search_users(
    db: &ReadConn,
    first_name: &NamePrefix,
    second_name: &NamePrefix,
    limit: i64,
    offset: i64,
) -> Result<Vec<User>, ApiError> {
    let rows = db
        .query(
            &search_sql(first_name, second_name),
            &[&first_name.as_str(), &second_name.as_str(), &limit, &offset],
        )
        .await?;
    Ok(rows.iter().map(user_from_row).collect())
}

/// The search statement for these prefix lengths: one of a handful of texts, each prepared once
/// per connection.
fn search_sql(first_name: &NamePrefix, second_name: &NamePrefix) -> String {
    let heads = if first_name.chars() >= 2 && second_name.chars() >= 2 {
        "left(lower(first_name), 2) collate \"C\" = left(lower($1), 2)
         and left(lower(second_name), 2) collate \"C\" = left(lower($2), 2)"
    } else {
        "left(lower(first_name), 2) collate \"C\" >= left(lower($1), 2)
         and left(lower(first_name), 2) collate \"C\" < left(lower($1), 2) || chr(1114111)
         and left(lower(second_name), 2) collate \"C\" >= left(lower($2), 2)
         and left(lower(second_name), 2) collate \"C\" < left(lower($2), 2) || chr(1114111)"
    };
    let first_rest = if first_name.chars() > 2 {
        "and starts_with(lower(first_name), lower($1))"
    } else {
        ""
    };
    let second_rest = if second_name.chars() > 2 {
        "and starts_with(lower(second_name), lower($2))"
    } else {
        ""
    };
    format!(
        "select {USER_COLUMNS}
         from users
         where {heads} {first_rest} {second_rest}
         order by id
         limit $3 offset $4"
    )
}

/// The search index, as migration 0001 creates it. The lab drops and rebuilds it (bulk loads,
/// before/after measurements); a test keeps this text and the migration in step.
pub const SEARCH_INDEX_DDL: &str = "create index if not exists users_name_search_idx on users (
    (left(lower(first_name), 2) collate \"C\"),
    (left(lower(second_name), 2) collate \"C\"),
    id
) include (first_name, second_name, birthdate, biography, city)";

#[tracing::instrument(name = "sql.drop_search_index", skip_all)]
pub async fn drop_search_index(db: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    db.batch_execute("drop index if exists users_name_search_idx")
        .await
}

#[tracing::instrument(name = "sql.create_search_index", skip_all)]
pub async fn create_search_index(db: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    db.batch_execute(SEARCH_INDEX_DDL).await
}

/// Whether the search index exists.
pub async fn search_index_exists(
    db: &tokio_postgres::Client,
) -> Result<bool, tokio_postgres::Error> {
    Ok(db
        .query_opt(
            "select 1 from pg_indexes where tablename = 'users' and indexname = 'users_name_search_idx'",
            &[],
        )
        .await?
        .is_some())
}
