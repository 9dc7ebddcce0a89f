//! Every SQL statement of the users domain.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

#[cfg(doc)]
use super::types::User;
use super::types::{Birthdate, NamePrefix, NewUser};
use crate::db::columns::{Date, RawText};
use crate::db::reads::ReadConn;
use crate::db::DbError;
use crate::ids::UserId;
use crate::json;

/// Whether a user exists (a dialog with nobody is a 404; a token of nobody, a 401).
#[tracing::instrument(name = "sql.user_exists", skip(db))]
pub async fn user_exists(db: &impl GenericClient, user: UserId) -> Result<bool, DbError> {
    let statement = db
        .prepare_cached("select 1 from users where id = $1")
        .await?;
    Ok(db.query_opt(&statement, &[&user.0]).await?.is_some())
}

/// The columns of a public profile, in the order [`UserRow`] reads them.
macro_rules! user_columns {
    () => {
        "id, first_name, second_name, birthdate, biography, city"
    };
}
const USER_COLUMNS: &str = user_columns!();

/// One row of [`USER_COLUMNS`], written as the API's [`User`] JSON straight from the driver's
/// buffer: the texts are borrowed, the id and the date written on the stack, so a profile costs no
/// owned copy of each field on its way to JSON (a search page of 100 users is ~40 KB of JSON, and
/// building owned users first was most of a search's server time).
pub struct UserRow(Row);

/// About how many bytes one user takes in JSON (generated data: ~420), to size response buffers.
pub const USER_JSON_BYTES: usize = 512;

impl UserRow {
    /// Appends the profile as the API's JSON object (see [`crate::json`]), its texts not yet
    /// checked as UTF-8: only [`UserRow::json`] and [`UserRow::page_json`] call this, and they
    /// check the whole body. A field the user does not have (a null column) is left out.
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), DbError> {
        let row = &self.0;
        let column_error = |e| DbError::internal(e, "reading a user row");
        // Unchecked here; the whole response is checked once (see `write_raw_text`).
        let text = |i| {
            row.try_get::<_, Option<RawText>>(i)
                .map(|t| t.map(|t| t.0))
                .map_err(column_error)
        };
        let id: i64 = row.try_get(0).map_err(column_error)?;
        let birthdate: Option<Date> = row.try_get(3).map_err(column_error)?;
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        out.extend_from_slice(b"\",\"first_name\":");
        json::write_raw_text(out, text(1)?.unwrap_or_default());
        out.extend_from_slice(b",\"second_name\":");
        json::write_raw_text(out, text(2)?.unwrap_or_default());
        if let Some(birthdate) = birthdate {
            out.extend_from_slice(b",\"birthdate\":\"");
            birthdate.write_iso(out);
            out.push(b'"');
        }
        if let Some(biography) = text(4)? {
            out.extend_from_slice(b",\"biography\":");
            json::write_raw_text(out, biography);
        }
        if let Some(city) = text(5)? {
            out.extend_from_slice(b",\"city\":");
            json::write_raw_text(out, city);
        }
        out.push(b'}');
        Ok(())
    }

    /// The profile as a JSON body.
    pub fn json(&self) -> Result<Vec<u8>, DbError> {
        let mut body = Vec::with_capacity(USER_JSON_BYTES);
        self.write_json(&mut body)?;
        checked(body, std::slice::from_ref(self))
    }

    /// A page of profiles as a JSON array, in a buffer sized for it up front.
    pub fn page_json(users: &[UserRow]) -> Result<Vec<u8>, DbError> {
        let mut body = Vec::with_capacity(2 + users.len() * USER_JSON_BYTES);
        body.push(b'[');
        for (i, user) in users.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            user.write_json(&mut body)?;
        }
        body.push(b']');
        checked(body, users)
    }

    /// The id and the first column of this row that is not UTF-8, if one is not.
    fn text_not_utf8(&self) -> Option<(i64, &'static str)> {
        let id = self.0.try_get(0).ok()?;
        [
            (1, "first_name"),
            (2, "second_name"),
            (4, "biography"),
            (5, "city"),
        ]
        .into_iter()
        .find(|&(i, _)| {
            self.0
                .try_get::<_, Option<RawText>>(i)
                .is_ok_and(|text| text.is_some_and(|t| std::str::from_utf8(t.0).is_err()))
        })
        .map(|(_, column)| (id, column))
    }
}

/// The body, if the texts in it are UTF-8. Only a `SQL_ASCII` database can hand back text that
/// is not (PostgreSQL converts every other encoding to the client's UTF-8); the error then names
/// the row and the column, found again on this rare path.
fn checked(body: Vec<u8>, users: &[UserRow]) -> Result<Vec<u8>, DbError> {
    match json::check_utf8(&body) {
        Ok(()) => Ok(body),
        Err(e) => {
            let context = match users.iter().find_map(UserRow::text_not_utf8) {
                Some((id, column)) => format!("user {id}, column {column}"),
                None => "a user row".to_owned(),
            };
            Err(DbError::Internal(anyhow::Error::new(e).context(context)))
        }
    }
}

#[tracing::instrument(name = "sql.insert_user", skip_all)]
pub async fn insert_user(
    db: &impl GenericClient,
    user: &NewUser,
    password_hash: &str,
    is_admin: bool,
) -> Result<UserId, DbError> {
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
                &user.birthdate.map(Birthdate::date),
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
pub async fn find_user(db: &ReadConn, id: UserId) -> Result<Option<UserRow>, DbError> {
    const FIND_USER: &str = concat!("select ", user_columns!(), " from users where id = $1");
    Ok(db.query_opt(FIND_USER, &[&id.0]).await?.map(UserRow))
}

#[tracing::instrument(name = "sql.password_hash", skip(db))]
pub async fn password_hash(db: &impl GenericClient, id: UserId) -> Result<Option<String>, DbError> {
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
/// `users_name_search_idx` is keyed by each name's first two lower-cased characters, then id, then
/// the lower-cased names, and includes every returned column. When both prefixes have two or more
/// characters, the heads are equalities: the index yields candidates already in id order,
/// `starts_with` checks the whole prefix against the lower-cased names stored in the index entry,
/// and the walk stops after `offset + limit` matches, all without touching the table (index-only
/// scan). Shorter prefixes become a range of heads and a sort. A prefix of at most two characters
/// is fully decided by its head, so its `starts_with` test is left out. The lower-cased prefix is
/// a one-time subquery (`(select lower($1))`): written plainly, a generic plan lower-cases the
/// parameter again for every candidate.
/// Prefixes are parameters, never patterns: `%` and `_` are plain characters here.
#[tracing::instrument(name = "sql.search_users", skip(db))]
pub async fn search_users(
    db: &ReadConn,
    first_name: &NamePrefix,
    second_name: &NamePrefix,
    limit: i64,
    offset: i64,
) -> Result<Vec<UserRow>, DbError> {
    let rows = db
        .query(
            &search_sql(first_name, second_name),
            &[&first_name.as_str(), &second_name.as_str(), &limit, &offset],
        )
        .await?;
    Ok(rows.into_iter().map(UserRow).collect())
}

/// The search statement for these prefix lengths: one of a handful of texts, each prepared once
/// per connection. Public so that a test can check its plan.
pub fn search_sql(first_name: &NamePrefix, second_name: &NamePrefix) -> String {
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
        "and starts_with(lower(first_name), (select lower($1)))"
    } else {
        ""
    };
    let second_rest = if second_name.chars() > 2 {
        "and starts_with(lower(second_name), (select lower($2)))"
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

/// The search index, as migration 0005 creates it. The lab drops and rebuilds it (bulk loads,
/// before/after measurements); a test keeps this text and the migration in step.
pub const SEARCH_INDEX_DDL: &str = "create index if not exists users_name_search_idx on users (
    (left(lower(first_name), 2) collate \"C\"),
    (left(lower(second_name), 2) collate \"C\"),
    id,
    (lower(first_name)),
    (lower(second_name))
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
