//! Dialogs on plain PostgreSQL: the same tests run on Citus in `citus.rs` when one is reachable,
//! and on the in-memory store in `tarantool.rs`.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, TestApp, TestUser};

impl TestApp {
    pub async fn send_message(&self, from: &TestUser, to: &str, text: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/dialog/{to}/send")))
            .bearer_auth(&from.token)
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap()
    }

    pub async fn send_ok(&self, from: &TestUser, to: &TestUser, text: &str) {
        let response = self.send_message(from, &to.id, text).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// A page of `reader`'s dialog with `other`.
    pub async fn dialog(&self, reader: &TestUser, other: &str, query: &str) -> Vec<Value> {
        let response = self
            .get_as(reader, &format!("/dialog/{other}/list?{query}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

fn texts(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

/// Both parties see one dialog, newest first, with who wrote what; other dialogs stay apart.
pub async fn dialog_scenario(app: &TestApp) {
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let vera = app.user("Вера", "Сидорова").await;
    app.send_ok(&anna, &boris, "привет").await;
    app.send_ok(&boris, &anna, "здравствуй").await;
    app.send_ok(&anna, &boris, "как дела? 🙂").await;
    app.send_ok(&anna, &vera, "это другой диалог").await;

    let seen_by_anna = app.dialog(&anna, &boris.id, "").await;
    let seen_by_boris = app.dialog(&boris, &anna.id, "").await;
    assert_eq!(seen_by_anna, seen_by_boris);
    assert_eq!(
        texts(&seen_by_anna),
        ["как дела? 🙂", "здравствуй", "привет"]
    );
    let newest = &seen_by_anna[0];
    assert_eq!(newest["from"], json!(anna.id));
    assert_eq!(newest["to"], json!(boris.id));
    assert_eq!(newest["id"], json!("3"));
    assert!(newest["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(seen_by_anna[1]["from"], json!(boris.id));
    assert_eq!(
        texts(&app.dialog(&vera, &anna.id, "").await),
        ["это другой диалог"]
    );
    assert!(app.dialog(&boris, &vera.id, "").await.is_empty());
}

#[tokio::test]
async fn both_parties_see_the_same_dialog_newest_first() {
    dialog_scenario(&spawn_app().await).await;
}

/// Pages by cursor and by offset cover the dialog exactly once, in order.
pub async fn paging_scenario(app: &TestApp) {
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for i in 1..=25 {
        let (from, to) = if i % 2 == 0 {
            (&anna, &boris)
        } else {
            (&boris, &anna)
        };
        app.send_ok(from, to, &format!("m{i}")).await;
    }
    let mut seen = Vec::new();
    let mut query = "limit=10".to_owned();
    loop {
        let page = app.dialog(&anna, &boris.id, &query).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        let last = page.last().unwrap()["id"].as_str().unwrap().to_owned();
        seen.extend(texts(&page).into_iter().map(str::to_owned));
        query = format!("limit=10&cursor={last}");
    }
    let expected: Vec<String> = (1..=25).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(
        texts(&app.dialog(&boris, &anna.id, "limit=3&offset=22").await),
        ["m3", "m2", "m1"]
    );
    assert_eq!(
        texts(&app.dialog(&boris, &anna.id, "limit=2&cursor=2").await),
        ["m1"]
    );
    assert_eq!(app.dialog(&boris, &anna.id, "").await.len(), 25);
}

#[tokio::test]
async fn pages_by_cursor_and_offset_cover_the_dialog_once() {
    paging_scenario(&spawn_app().await).await;
}

/// Long messages: a page stops near `LIST_MAX_BYTES` of text however large `limit` is, and
/// paging on by the last id (or by the count received) still covers the dialog once, in order.
pub async fn long_messages_scenario(app: &TestApp) {
    let anna = app.user("Анна", "Многословная").await;
    let boris = app.user("Борис", "Читающий").await;
    // 4,000 characters, 15,991 bytes each: 100 of them are 1.6 MB.
    let long = |n: usize| format!("{n:03}{}", "😀".repeat(3_997));
    let (anna_ref, boris_id) = (&anna, boris.id.as_str());
    for batch in (1..=100).collect::<Vec<_>>().chunks(10) {
        let sends = batch.iter().map(|&n| {
            let text = long(n);
            async move { app.send_message(anna_ref, boris_id, &text).await }
        });
        for response in futures_util::future::join_all(sends).await {
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
    let budget = socialnet::dialogs::LIST_MAX_BYTES as usize;
    let first = app.dialog(&boris, &anna.id, "limit=1000").await;
    let bytes: usize = texts(&first).iter().map(|t| t.len()).sum();
    assert!(
        first.len() < 100 && bytes <= budget + long(0).len() && bytes > budget,
        "{} messages, {bytes} bytes",
        first.len()
    );
    let mut seen: Vec<String> = texts(&first).into_iter().map(str::to_owned).collect();
    let mut cursor = first.last().unwrap()["id"].as_str().unwrap().to_owned();
    loop {
        let page = app
            .dialog(&boris, &anna.id, &format!("limit=1000&cursor={cursor}"))
            .await;
        let Some(last) = page.last() else { break };
        cursor = last["id"].as_str().unwrap().to_owned();
        seen.extend(texts(&page).into_iter().map(str::to_owned));
    }
    let mut numbers: Vec<String> = seen.iter().map(|t| t[..3].to_owned()).collect();
    numbers.dedup();
    assert_eq!(numbers.len(), 100, "each message once");
    // By offset: the next page starts where the first one stopped.
    let next = app
        .dialog(
            &boris,
            &anna.id,
            &format!("limit=1000&offset={}", first.len()),
        )
        .await;
    assert_eq!(next[0]["text"], json!(seen[first.len()]));
}

#[tokio::test]
async fn a_page_of_long_messages_stops_near_a_megabyte_and_paging_covers_the_rest() {
    long_messages_scenario(&spawn_app().await).await;
}

/// Concurrent sends in one dialog get distinct, consecutive numbers.
pub async fn concurrent_scenario(app: &TestApp) {
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let sends = (0..20).map(|i| {
        let (from, to) = if i % 2 == 0 {
            (&anna, &boris)
        } else {
            (&boris, &anna)
        };
        let text = format!("параллельно {i}");
        async move { app.send_message(from, &to.id, &text).await }
    });
    for response in futures_util::future::join_all(sends).await {
        assert_eq!(response.status(), StatusCode::OK);
    }
    let dialog = app.dialog(&anna, &boris.id, "").await;
    let ids: Vec<i64> = dialog
        .iter()
        .map(|m| m["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=20).rev().collect::<Vec<i64>>());
    let distinct: BTreeSet<&str> = texts(&dialog).into_iter().collect();
    assert_eq!(distinct.len(), 20);
}

#[tokio::test]
async fn concurrent_sends_get_distinct_consecutive_ids() {
    concurrent_scenario(&spawn_app().await).await;
}

pub async fn hostile_text_scenario(app: &TestApp) {
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let hostile = [
        "'); drop table dialog_messages; --",
        "\"quoted\" \\ backslash",
        "emoji 👩‍👩‍👧 and RTL עברית",
        "многострочный\nтекст",
    ];
    for text in hostile {
        app.send_ok(&anna, &boris, text).await;
    }
    let mut back = texts(&app.dialog(&boris, &anna.id, "").await)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    back.reverse();
    assert_eq!(back, hostile);
    // Trimmed like every text of the API.
    app.send_ok(&anna, &boris, "  поля  ").await;
    assert_eq!(
        texts(&app.dialog(&anna, &boris.id, "limit=1").await),
        ["поля"]
    );
}

pub async fn bad_sends_scenario(app: &TestApp) {
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for text in [
        "",
        "   ",
        &"ы".repeat(socialnet::dialogs::MESSAGE_MAX_CHARS + 1),
        // Control characters mean nothing in a message and cost six bytes each in JSON.
        &"\u{1}".repeat(4_000),
        "a bell\u{7}",
        "\u{1b}[2Jclear screen",
    ] {
        assert_error(
            app.send_message(&anna, &boris.id, text).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    assert_error(
        app.send_message(&anna, &anna.id, "себе").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    for id in ["0", "-1", "abc", "1.5", "99999999999999999999"] {
        assert_error(
            app.send_message(&anna, id, "кому?").await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    assert_error(
        app.send_message(&anna, "987654321", "никому").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let no_token = app
        .client
        .post(app.url(&format!("/dialog/{}/send", boris.id)))
        .json(&json!({"text": "аноним"}))
        .send()
        .await
        .unwrap();
    assert_error(no_token, StatusCode::UNAUTHORIZED).await;
    let not_json = app
        .client
        .post(app.url(&format!("/dialog/{}/send", boris.id)))
        .bearer_auth(&anna.token)
        .body("text=hi")
        .send()
        .await
        .unwrap();
    assert_error(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // Nothing above was stored.
    assert!(app.dialog(&anna, &boris.id, "").await.is_empty());
}

pub async fn bad_lists_scenario(app: &TestApp) {
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for query in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=0",
        "cursor=-5",
        "cursor=abc",
        "offset=-1",
        "offset=9999&limit=10",
        "offset=9223372036854775807",
        "cursor=5&offset=0",
    ] {
        let response = app
            .get_as(&anna, &format!("/dialog/{}/list?{query}", boris.id))
            .await;
        assert_error(response, StatusCode::BAD_REQUEST).await;
    }
    let own = app
        .get_as(&anna, &format!("/dialog/{}/list", anna.id))
        .await;
    assert_error(own, StatusCode::BAD_REQUEST).await;
    let nobody = app.get_as(&anna, "/dialog/987654321/list").await;
    assert_error(nobody, StatusCode::NOT_FOUND).await;
    let no_token = app.get(&format!("/dialog/{}/list", boris.id)).await;
    assert_error(no_token, StatusCode::UNAUTHORIZED).await;
    // The highest cursor the schema allows starts above every message, on every store.
    app.send_ok(&anna, &boris, "одно").await;
    let page = app
        .dialog(&boris, &anna.id, "cursor=999999999999999999")
        .await;
    assert_eq!(page.len(), 1);
}

#[tokio::test]
async fn hostile_text_comes_back_as_it_was_sent() {
    hostile_text_scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn bad_sends_are_4xx() {
    bad_sends_scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn bad_lists_are_4xx() {
    bad_lists_scenario(&spawn_app().await).await;
}
