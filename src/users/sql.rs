//! Every SQL statement of the users domain.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::types::{NamePrefix, NewUser, User, UserId};
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
pub async fn find_user(db: &impl GenericClient, id: UserId) -> Result<Option<User>, ApiError> {
    let statement = db
        .prepare_cached(&format!("select {USER_COLUMNS} from users where id = $1"))
        .await?;
    Ok(db
        .query_opt(&statement, &[&id.0])
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
/// Each prefix becomes a byte-wise range `[p, p || U+10FFFF)` on the lower-cased name, which the
/// `users_name_search_idx` btree answers with one range scan; unlike `like $1 || '%'`, the range
/// stays index-friendly in the generic plan of a prepared statement, and needs no escaping of
/// `%` or `_` in user input.
#[tracing::instrument(name = "sql.search_users", skip(db))]
pub async fn search_users(
    db: &impl GenericClient,
    first_name: &NamePrefix,
    second_name: &NamePrefix,
    limit: i64,
    offset: i64,
) -> Result<Vec<User>, ApiError> {
    let statement = db
        .prepare_cached(&format!(
            "select {USER_COLUMNS}
             from users
             where lower(first_name) collate \"C\" >= lower($1)
               and lower(first_name) collate \"C\" < lower($1) || chr(1114111)
               and lower(second_name) collate \"C\" >= lower($2)
               and lower(second_name) collate \"C\" < lower($2) || chr(1114111)
             order by id
             limit $3 offset $4"
        ))
        .await?;
    let rows = db
        .query(
            &statement,
            &[&first_name.as_str(), &second_name.as_str(), &limit, &offset],
        )
        .await?;
    Ok(rows.iter().map(user_from_row).collect())
}
