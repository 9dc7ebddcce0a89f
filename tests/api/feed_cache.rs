use std::time::Duration;

use clap::Parser;
use reqwest::StatusCode;
use serde_json::{json, Value};

use socialnet::config::Config;

use crate::helpers::{database_name, eventually, spawn_app_with, OwnRedis, TestApp, TestUser};

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Serves the app's feeds from Redis at `url`, under keys of its own.
pub fn use_redis(config: &mut Config, url: &str) {
    config.cache.redis_url = Some(url.to_owned());
    config.cache.redis_key_prefix = database_name(config);
}

async fn cached_app(url: String) -> TestApp {
    spawn_app_with(move |c| use_redis(c, &url)).await
}

/// Reads the feed until it equals `expected` (fan-out is asynchronous), for at most ten seconds.
pub async fn feed_becomes(app: &TestApp, reader: &TestUser, query: &str, expected: &[&str]) {
    eventually(Duration::from_secs(10), || async {
        let feed = app.feed_texts(reader, query).await;
        if feed == expected {
            Ok(())
        } else {
            Err(format!("feed {query:?} is {feed:?}, expected {expected:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn the_cached_feed_follows_posts_edits_deletes_and_follows() {
    let app = cached_app(redis_url()).await;
    cached_feed_scenario(&app).await;
}

/// Posts, edits, deletes, unfollows and follows reach a cached feed; a rebuild gives the same.
pub async fn cached_feed_scenario(app: &TestApp) {
    let reader = app.user("Читатель", "Лентов").await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    app.follow(&reader, &anna).await;
    app.post(&anna, "a1").await;
    // First read builds the feed from PostgreSQL, into Redis.
    feed_becomes(app, &reader, "", &["a1"]).await;
    let prefix = app.config.cache.redis_key_prefix.clone();
    let cached = cached_list(app, &format!("feed:{}", reader.id)).await;
    assert_eq!(
        cached.len(),
        2,
        "one post id and the end marker: {cached:?}"
    );
    // Later posts arrive by fan-out onto the built feed.
    app.follow(&reader, &boris).await;
    app.post(&boris, "b1").await;
    app.post(&anna, "a2").await;
    feed_becomes(app, &reader, "", &["a2", "b1", "a1"]).await;
    feed_becomes(app, &reader, "offset=1&limit=1", &["b1"]).await;

    let b1 = app.feed_texts(&reader, "").await;
    assert_eq!(b1.len(), 3);
    let id = app.post(&boris, "b2").await;
    feed_becomes(app, &reader, "limit=1", &["b2"]).await;
    app.put_as(
        &boris,
        "/post/update",
        Some(&json!({"id": id, "text": "b2 edited"})),
    )
    .await;
    feed_becomes(app, &reader, "limit=1", &["b2 edited"]).await;
    let response = app
        .put_as(&boris, &format!("/post/delete/{id}"), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    feed_becomes(app, &reader, "", &["a2", "b1", "a1"]).await;

    app.put_as(&reader, &format!("/friend/delete/{}", anna.id), None)
        .await;
    feed_becomes(app, &reader, "", &["b1"]).await;
    app.follow(&reader, &anna).await;
    feed_becomes(app, &reader, "", &["a2", "b1", "a1"]).await;

    // A rebuild from PostgreSQL gives what the incremental updates gave.
    let incremental = app.feed_texts(&reader, "limit=100").await;
    socialnet::cli::run(socialnet::cli::Cli::parse_from([
        "socialnet",
        "feed",
        "rebuild",
        "--all",
        "--database-url",
        &app.database_url,
        "--redis-url",
        &redis_url(),
        "--redis-key-prefix",
        &prefix,
    ]))
    .await
    .unwrap();
    assert_eq!(app.feed_texts(&reader, "limit=100").await, incremental);

    let keys = cached_keys(app).await;
    assert!(keys.iter().any(|k| k.contains(":post:")), "{keys:?}");
    clear_redis(app).await;
}

#[tokio::test]
async fn with_redis_gone_the_feed_answers_from_postgres() {
    // A Redis of this test's own, so it can be stopped.
    let mut redis = OwnRedis::start().await;
    let app = cached_app(redis.url()).await;
    let reader = app.user("Читатель", "Лентов").await;
    let anna = app.user("Анна", "Иванова").await;
    app.follow(&reader, &anna).await;
    app.post(&anna, "a1").await;
    feed_becomes(&app, &reader, "", &["a1"]).await;

    redis.stop();
    app.post(&anna, "a2").await;
    // Served by SQL now: complete, and never a 5xx.
    feed_becomes(&app, &reader, "", &["a2", "a1"]).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("feed_cache_fallbacks"), "{metrics}");
}

#[tokio::test]
async fn an_unreachable_redis_at_start_up_leaves_the_service_on_postgres() {
    let app = cached_app("redis://127.0.0.1:1".to_owned()).await;
    let reader = app.user("Читатель", "Лентов").await;
    let anna = app.user("Анна", "Иванова").await;
    app.follow(&reader, &anna).await;
    app.post(&anna, "a1").await;
    assert_eq!(app.feed_texts(&reader, "").await, ["a1"]);
}

#[tokio::test]
async fn celebrities_are_merged_at_read_time_not_fanned_out() {
    let app = spawn_app_with(|c| {
        use_redis(c, &redis_url());
        // More than one follower makes a celebrity.
        c.cache.feed_celebrity_followers = 1;
    })
    .await;
    celebrity_scenario(&app).await;
}

/// With `FEED_CELEBRITY_FOLLOWERS` = 1: the star's posts stay on the star's list, merged at read.
pub async fn celebrity_scenario(app: &TestApp) {
    let reader = app.user("Читатель", "Лентов").await;
    let other = app.user("Другой", "Читатель").await;
    let star = app.user("Звезда", "Эстрады").await;
    let plain = app.user("Обычный", "Автор").await;
    app.follow(&reader, &star).await;
    app.follow(&other, &star).await;
    app.follow(&reader, &plain).await;
    // The reader's feed is built (empty) before the star becomes a celebrity.
    feed_becomes(app, &reader, "", &[]).await;

    let c1 = app.post(&star, "c1").await;
    app.post(&plain, "n1").await;
    let c2 = app.post(&star, "c2").await;
    feed_becomes(app, &reader, "", &["c2", "n1", "c1"]).await;
    feed_becomes(app, &reader, "offset=1&limit=1", &["n1"]).await;

    // The star's posts sit on the star's own list, not on the reader's feed.
    let feed = cached_list(app, &format!("feed:{}", reader.id)).await;
    assert!(!feed.contains(&c1) && !feed.contains(&c2), "{feed:?}");
    let recent = cached_list(app, &format!("recent:{}", star.id)).await;
    // Highest id first, then the marker of a built list that is not full.
    assert_eq!(recent, [c2.clone(), c1.clone(), "end".to_owned()]);

    // Deletes and unfollows reach merged posts too.
    app.put_as(&star, &format!("/post/delete/{c2}"), None).await;
    feed_becomes(app, &reader, "", &["n1", "c1"]).await;
    app.put_as(&reader, &format!("/friend/delete/{}", star.id), None)
        .await;
    feed_becomes(app, &reader, "", &["n1"]).await;
    app.follow(&reader, &star).await;
    feed_becomes(app, &reader, "", &["n1", "c1"]).await;
    clear_redis(app).await;
}

async fn redis_connection(app: &TestApp) -> redis::aio::MultiplexedConnection {
    redis::Client::open(app.config.cache.redis_url.clone().unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Where the app's cache keys start: its prefix, then the name of its database.
pub async fn cache_prefix(app: &TestApp) -> String {
    let namespace = socialnet::db::cache_namespace(&app.db().await)
        .await
        .unwrap();
    format!("{}:{namespace}", app.config.cache.redis_key_prefix)
}

/// A whole cached list (`feed:<reader>`, `recent:<author>`) of the app's prefix, as stored.
pub async fn cached_list(app: &TestApp, key: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(format!("{}:{key}", cache_prefix(app).await))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis_connection(app).await)
        .await
        .unwrap()
}

/// Every Redis key of the app's prefix.
async fn cached_keys(app: &TestApp) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{}:*", app.config.cache.redis_key_prefix))
        .query_async(&mut redis_connection(app).await)
        .await
        .unwrap()
}

/// Deletes every Redis key of the app's prefix.
pub async fn clear_redis(app: &TestApp) {
    let mut redis = redis_connection(app).await;
    let keys = cached_keys(app).await;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
}

/// A database dropped and created again under the same cache settings starts its ids over: its
/// first post has the old one's id, and must not show the old one's text, still in Redis.
#[tokio::test]
async fn a_recreated_database_never_reads_the_cache_of_the_one_before() {
    let before = spawn_app_with(|c| use_redis(c, &redis_url())).await;
    let reader = before.user("Читатель", "Лентов").await;
    let author = before.user("Анна", "Иванова").await;
    before.follow(&reader, &author).await;
    let old_id = before.post(&author, "старый текст").await;
    feed_becomes(&before, &reader, "", &["старый текст"]).await;
    let old_prefix = cache_prefix(&before).await;

    // The same database name, dropped and made again, the cache left as it was.
    let (client, connection) =
        tokio_postgres::connect(&crate::helpers::server_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "drop database \"{}\" with (force)",
            before.database_name()
        ))
        .await
        .unwrap();
    let config = before.config.clone();
    let after = crate::helpers::spawn_app_on(&before.database_url, move |c| *c = config).await;
    let reader = after.user("Читатель", "Лентов").await;
    let author = after.user("Анна", "Иванова").await;
    after.follow(&reader, &author).await;
    let id = after.post(&author, "новый текст").await;
    assert_eq!(id, old_id, "the new database reuses the id");
    assert_ne!(cache_prefix(&after).await, old_prefix);
    feed_becomes(&after, &reader, "", &["новый текст"]).await;
    let post: Value = after.get_json(&format!("/post/get/{id}")).await;
    assert_eq!(post["text"], "новый текст");
    clear_redis(&after).await;
}

#[tokio::test]
async fn feeds_stay_in_id_order_and_deleted_or_edited_posts_stay_out() {
    let prefix = format!("idem_{}", uuid::Uuid::new_v4().simple());
    let cache = socialnet::cache::FeedCache::connect(
        &redis_url(),
        &prefix,
        Duration::from_secs(1),
        socialnet::posts::FEED_WINDOW,
    )
    .await
    .unwrap();
    let reader = socialnet::users::UserId(1);
    cache.store_feed(reader, &[5, 3]).await.unwrap();
    // Twice (a redelivery), and out of order (7 fanned out before 6): id order all the same.
    cache.push_post(7, &[1, 2]).await.unwrap();
    cache.push_post(7, &[1, 2]).await.unwrap();
    cache.push_post(6, &[1]).await.unwrap();
    assert_eq!(
        cache.feed_head(reader, 10).await.unwrap().unwrap().ids,
        [7, 6, 5, 3]
    );
    assert_eq!(
        cache.feed_head(reader, 2).await.unwrap().unwrap().ids,
        [7, 6]
    );
    // Late ones go to their place, once: in the middle, and at the end before the marker.
    for id in [4, 4, 1] {
        cache.push_post(id, &[1]).await.unwrap();
    }
    assert_eq!(
        cache.feed_head(reader, 10).await.unwrap().unwrap().ids,
        [7, 6, 5, 4, 3, 1]
    );
    // A feed that is not built is left alone.
    assert!(cache
        .feed_head(socialnet::users::UserId(2), 10)
        .await
        .unwrap()
        .is_none());
    // A deleted post cannot come back through a late creation event…
    let author = socialnet::users::UserId(9);
    cache.delete_post(author, 8).await.unwrap();
    cache.push_post(8, &[1]).await.unwrap();
    assert_eq!(
        cache.feed_head(reader, 10).await.unwrap().unwrap().ids,
        [7, 6, 5, 4, 3, 1]
    );
    // …and a read that loaded a body before an edit does not cache the old text after it.
    let post = |id: i64, text: &str| socialnet::posts::Post {
        id: id.to_string(),
        text: text.to_owned(),
        author_user_id: "9".to_owned(),
    };
    cache.invalidate_post(6).await.unwrap();
    cache
        .store_posts(&[post(6, "old text"), post(5, "five")])
        .await
        .unwrap();
    let cached: Vec<Option<socialnet::posts::Post>> = cache.posts(&[6, 5]).await.unwrap();
    assert!(cached[0].is_none());
    assert_eq!(cached[1].as_ref().unwrap().text, "five");
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
}
