use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn the_feed_merges_followed_authors_newest_first() {
    let app = spawn_app().await;
    let reader = app.user("Читатель", "Лентов").await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let stranger = app.user("Чужой", "Незнакомов").await;
    app.follow(&reader, &anna).await;
    app.follow(&reader, &boris).await;
    for (author, text) in [
        (&anna, "a1"),
        (&boris, "b1"),
        (&stranger, "s1"),
        (&anna, "a2"),
        (&reader, "own"),
        (&boris, "b2"),
    ] {
        app.post(author, text).await;
    }
    assert_eq!(app.feed_texts(&reader, "").await, ["b2", "a2", "b1", "a1"]);
    assert_eq!(
        app.feed_texts(&reader, "offset=1&limit=2").await,
        ["a2", "b1"]
    );
    assert_eq!(app.feed_texts(&reader, "offset=3&limit=10").await, ["a1"]);
    assert!(app.feed_texts(&reader, "offset=4").await.is_empty());
    // Edits show, deletes leave.
    let b3 = app.post(&boris, "b3").await;
    app.put_as(
        &boris,
        "/post/update",
        Some(&json!({"id": b3, "text": "b3 edited"})),
    )
    .await;
    assert_eq!(app.feed_texts(&reader, "limit=1").await, ["b3 edited"]);
    app.put_as(&boris, &format!("/post/delete/{b3}"), None)
        .await;
    assert_eq!(app.feed_texts(&reader, "limit=1").await, ["b2"]);
    // Unfollow removes an author's posts; following again brings them back.
    app.put_as(&reader, &format!("/friend/delete/{}", anna.id), None)
        .await;
    assert_eq!(app.feed_texts(&reader, "").await, ["b2", "b1"]);
    app.follow(&reader, &anna).await;
    assert_eq!(app.feed_texts(&reader, "").await, ["b2", "a2", "b1", "a1"]);
}

#[tokio::test]
async fn the_feed_is_drawn_from_the_latest_1000_posts() {
    let app = spawn_app().await;
    let reader = app.user("Читатель", "Лентов").await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    app.follow(&reader, &anna).await;
    app.follow(&reader, &boris).await;
    // 1,200 posts, alternating authors, written straight to the database for speed.
    let client = app.db().await;
    client
        .execute(
            "insert into posts (author_id, text)
             select case when n % 2 = 0 then $1::bigint else $2::bigint end, 'post ' || n from generate_series(1, 1200) n",
            &[&anna.id.parse::<i64>().unwrap(), &boris.id.parse::<i64>().unwrap()],
        )
        .await
        .unwrap();
    let page = app.feed_texts(&reader, "limit=3").await;
    assert_eq!(page, ["post 1200", "post 1199", "post 1198"]);
    // The window ends at the 1000th newest post (post 201).
    let tail = app.feed_texts(&reader, "offset=990&limit=100").await;
    assert_eq!(tail.len(), 10);
    assert_eq!(tail.last().unwrap(), "post 201");
    assert!(app
        .feed_texts(&reader, "offset=1000&limit=10")
        .await
        .is_empty());
    let whole = app.feed_texts(&reader, "limit=1000").await;
    assert_eq!(whole.len(), 1000);
}

/// Long posts: a page of the feed stops near `FEED_PAGE_MAX_BYTES` of text however large
/// `limit` is, and the next offset (by the count received) goes on where it stopped.
#[tokio::test]
async fn a_feed_page_of_long_posts_stops_near_a_megabyte() {
    let app = spawn_app().await;
    let reader = app.user("Читатель", "Лентов").await;
    let anna = app.user("Анна", "Многословная").await;
    app.follow(&reader, &anna).await;
    // 100 posts of 5,000 four-byte characters (20 KB each, 2 MB in all), written straight to the
    // database for speed.
    app.db()
        .await
        .execute(
            "insert into posts (author_id, text)
             select $1, lpad(n::text, 3, '0') || repeat('😀', 4997) from generate_series(1, 100) n",
            &[&anna.id.parse::<i64>().unwrap()],
        )
        .await
        .unwrap();
    let budget = socialnet::posts::FEED_PAGE_MAX_BYTES;
    let first = app.feed_texts(&reader, "limit=100").await;
    let bytes: usize = first.iter().map(String::len).sum();
    assert!(
        first.len() < 100 && bytes > budget && bytes <= budget + 20_000,
        "{} posts, {bytes} bytes",
        first.len()
    );
    let next = app
        .feed_texts(&reader, &format!("offset={}&limit=100", first.len()))
        .await;
    let numbers: Vec<&str> = first.iter().chain(&next).map(|t| &t[..3]).collect();
    let expected: Vec<String> = (100 - numbers.len() + 1..=100)
        .rev()
        .map(|n| format!("{n:03}"))
        .collect();
    assert_eq!(numbers, expected);
}

/// The public spec sets `limit` no maximum: a limit past the 1,000 posts of the feed is the
/// whole window, not a 400 (an independent client's suite asks for 1,010).
#[tokio::test]
async fn a_limit_past_the_window_returns_what_the_window_holds() {
    let app = spawn_app().await;
    let reader = app.user("Читатель", "Лентов").await;
    let anna = app.user("Анна", "Иванова").await;
    app.follow(&reader, &anna).await;
    for text in ["раз", "два", "три"] {
        app.post(&anna, text).await;
    }
    assert_eq!(
        app.feed_texts(&reader, "limit=1010").await,
        ["три", "два", "раз"]
    );
    assert_eq!(
        app.feed_texts(&reader, "offset=1&limit=5000").await,
        ["два", "раз"]
    );
}

#[tokio::test]
async fn bad_feed_windows_are_a_400() {
    let app = spawn_app().await;
    let reader = app.user("Читатель", "Лентов").await;
    for query in ["offset=-1", "limit=0", "limit=ten"] {
        assert_error(
            app.get_as(&reader, &format!("/post/feed?{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}
