//! Every SQL statement of the posts domain.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::types::{Post, PostText};
use crate::db::reads::ReadConn;
use crate::db::{DbError, EventRecord};
use crate::ids::PostId;
use crate::ids::UserId;

fn post_from_row(row: &Row) -> Post {
    Post {
        id: row.get::<_, i64>("id").to_string(),
        text: row.get("text"),
        author_user_id: row.get::<_, i64>("author_id").to_string(),
    }
}

/// Inserts a post; `None` if its author does not exist (a token that outlived its user). With
/// the outbox, its `post.created` event is written by the same statement, so the post and its
/// event commit together or not at all.
#[tracing::instrument(name = "sql.insert_post", skip(db, text))]
pub async fn insert_post(
    db: &impl GenericClient,
    author: UserId,
    text: &PostText,
    event: EventRecord<'_>,
) -> Result<Option<PostId>, DbError> {
    let outcome = match event {
        EventRecord::Outbox { request_id } => {
            let statement = db
                .prepare_cached(
                    "with p as (
                         insert into posts (author_id, text) values ($1, $2)
                         returning id, author_id, text
                     ), e as (
                         insert into outbox (kind, payload, request_id)
                         select 'post.created', jsonb_build_object(
                             'kind', 'post.created', 'post_id', id, 'author_id', author_id,
                             'text', text), $3
                         from p
                     )
                     select id from p",
                )
                .await?;
            db.query_one(&statement, &[&author.0, &text.as_str(), &request_id])
                .await
        }
        EventRecord::None => {
            let statement = db
                .prepare_cached("insert into posts (author_id, text) values ($1, $2) returning id")
                .await?;
            db.query_one(&statement, &[&author.0, &text.as_str()]).await
        }
    };
    match outcome {
        Ok(row) => Ok(Some(PostId(row.get(0)))),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[tracing::instrument(name = "sql.find_post", skip(db))]
pub async fn find_post(db: &ReadConn, id: PostId) -> Result<Option<Post>, DbError> {
    Ok(db
        .query_opt(
            "select id, text, author_id from posts where id = $1",
            &[&id.0],
        )
        .await?
        .as_ref()
        .map(post_from_row))
}

/// What a write to someone's post found.
pub enum Ownership {
    Done,
    NotAuthor,
    Missing,
}

async fn ownership(
    db: &impl GenericClient,
    id: PostId,
    changed: u64,
) -> Result<Ownership, DbError> {
    if changed > 0 {
        return Ok(Ownership::Done);
    }
    let statement = db
        .prepare_cached("select 1 from posts where id = $1")
        .await?;
    Ok(match db.query_opt(&statement, &[&id.0]).await? {
        Some(_) => Ownership::NotAuthor,
        None => Ownership::Missing,
    })
}

/// Replaces the text of the author's post; with the outbox, records `post.updated` in the same
/// statement.
#[tracing::instrument(name = "sql.update_post", skip(db, text))]
pub async fn update_post(
    db: &impl GenericClient,
    author: UserId,
    id: PostId,
    text: &PostText,
    event: EventRecord<'_>,
) -> Result<Ownership, DbError> {
    let row = match event {
        EventRecord::Outbox { request_id } => {
            let statement = db
                .prepare_cached(
                    "with u as (
                         update posts set text = $3, updated_at = now()
                         where id = $1 and author_id = $2
                         returning id, author_id
                     ), e as (
                         insert into outbox (kind, payload, request_id)
                         select 'post.updated', jsonb_build_object(
                             'kind', 'post.updated', 'post_id', id, 'author_id', author_id), $4
                         from u
                     )
                     select count(*) from u",
                )
                .await?;
            db.query_one(&statement, &[&id.0, &author.0, &text.as_str(), &request_id])
                .await?
        }
        EventRecord::None => {
            let statement = db
                .prepare_cached(
                    "with u as (
                         update posts set text = $3, updated_at = now()
                         where id = $1 and author_id = $2
                         returning id
                     )
                     select count(*) from u",
                )
                .await?;
            db.query_one(&statement, &[&id.0, &author.0, &text.as_str()])
                .await?
        }
    };
    let changed: i64 = row.get(0);
    ownership(db, id, changed as u64).await
}

/// Deletes the author's post; with the outbox, records `post.deleted` in the same statement.
#[tracing::instrument(name = "sql.delete_post", skip(db))]
pub async fn delete_post(
    db: &impl GenericClient,
    author: UserId,
    id: PostId,
    event: EventRecord<'_>,
) -> Result<Ownership, DbError> {
    let row = match event {
        EventRecord::Outbox { request_id } => {
            let statement = db
                .prepare_cached(
                    "with d as (
                         delete from posts where id = $1 and author_id = $2
                         returning id, author_id
                     ), e as (
                         insert into outbox (kind, payload, request_id)
                         select 'post.deleted', jsonb_build_object(
                             'kind', 'post.deleted', 'post_id', id, 'author_id', author_id), $3
                         from d
                     )
                     select count(*) from d",
                )
                .await?;
            db.query_one(&statement, &[&id.0, &author.0, &request_id])
                .await?
        }
        EventRecord::None => {
            let statement = db
                .prepare_cached(
                    "with d as (delete from posts where id = $1 and author_id = $2 returning id)
                     select count(*) from d",
                )
                .await?;
            db.query_one(&statement, &[&id.0, &author.0]).await?
        }
    };
    let changed: i64 = row.get(0);
    ownership(db, id, changed as u64).await
}

/// The caller's feed computed by SQL: the newest posts of the users they follow, `limit` of them
/// from `offset`. Each followed author contributes at most `offset + limit` posts through
/// `posts_author_idx` before the merge, so the work is bounded by (authors × window), never by
/// the authors' whole history.
#[tracing::instrument(name = "sql.feed", skip(db))]
pub async fn feed(
    db: &ReadConn,
    reader: UserId,
    limit: i64,
    offset: i64,
) -> Result<Vec<Post>, DbError> {
    let rows = db
        .query(
            "select p.id, p.text, p.author_id
             from friends f
             cross join lateral (
                 select id, text, author_id from posts
                 where author_id = f.friend_id
                 order by id desc
                 limit $4
             ) p
             where f.user_id = $1
             order by p.id desc
             limit $2 offset $3",
            &[&reader.0, &limit, &offset, &(offset + limit)],
        )
        .await?;
    Ok(rows.iter().map(post_from_row).collect())
}

/// Ids of a reader's feed window (newest first): what the cache stores.
#[tracing::instrument(name = "sql.feed_ids", skip(db))]
pub async fn feed_ids(
    db: &impl GenericClient,
    reader: UserId,
    window: i64,
) -> Result<Vec<i64>, DbError> {
    let statement = db
        .prepare_cached(
            "select p.id
             from friends f
             cross join lateral (
                 select id from posts where author_id = f.friend_id order by id desc limit $2
             ) p
             where f.user_id = $1
             order by p.id desc
             limit $2",
        )
        .await?;
    Ok(db
        .query(&statement, &[&reader.0, &window])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

#[tracing::instrument(name = "sql.posts_by_ids", skip(db, ids))]
pub async fn posts_by_ids(db: &impl GenericClient, ids: &[i64]) -> Result<Vec<Post>, DbError> {
    let statement = db
        .prepare_cached("select id, text, author_id from posts where id = any($1)")
        .await?;
    Ok(db
        .query(&statement, &[&ids])
        .await?
        .iter()
        .map(post_from_row)
        .collect())
}

/// An author's newest post ids.
#[tracing::instrument(name = "sql.recent_post_ids", skip(db))]
pub async fn recent_post_ids(
    db: &impl GenericClient,
    author: UserId,
    window: i64,
) -> Result<Vec<i64>, DbError> {
    let statement = db
        .prepare_cached("select id from posts where author_id = $1 order by id desc limit $2")
        .await?;
    Ok(db
        .query(&statement, &[&author.0, &window])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}
