//! Dialogs as a service of their own (`serve --service dialogs`), with the main service
//! forwarding the old paths to it (`DIALOGS_URL`): the dialog suite through the hop, the old and
//! the new API seeing one dialog, the request id crossing the hop, and the dialog service down
//! or silent answered 503 with Retry-After, in bounded time.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use socialnet::config::{DialogStoreKind, Service};

use crate::dialogs::{
    bad_lists_scenario, bad_sends_scenario, concurrent_scenario, dialog_scenario,
    hostile_text_scenario, long_messages_scenario, paging_scenario,
};
use crate::helpers::{assert_error, spawn_app, spawn_app_with, TestApp, TestUser};

/// The main service (forwarding) and the dialog service, on one database.
struct Split {
    main: TestApp,
    dialogs: TestApp,
}

async fn split_with(store: DialogStoreKind) -> Split {
    let dialogs = spawn_app_with(|config| {
        config.serve.service = Service::Dialogs;
        config.dialogs.dialog_store = store;
        if store == DialogStoreKind::Tarantool {
            config.dialogs.tarantool_url = crate::tarantool::tarantool_url().parse().unwrap();
        }
    })
    .await;
    let main = dialogs
        .spawn_beside(|config| {
            config.serve.service = Service::All;
            config.dialogs.dialog_store = DialogStoreKind::Postgres;
            config.dialogs.dialogs_url = Some(dialogs.address.clone());
        })
        .await;
    Split { main, dialogs }
}

async fn split() -> Split {
    split_with(DialogStoreKind::Postgres).await
}

impl TestApp {
    async fn send_v2(&self, from: &TestUser, to: &str, text: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v2/dialogs/{to}/messages")))
            .bearer_auth(&from.token)
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap()
    }

    /// Every message of `reader`'s dialog with `other` through the v2 API, page by page.
    async fn dialog_v2(&self, reader: &TestUser, other: &str, limit: usize) -> Vec<Value> {
        let mut messages = Vec::new();
        let mut query = format!("limit={limit}");
        loop {
            let response = self
                .get_as(reader, &format!("/v2/dialogs/{other}/messages?{query}"))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            let page: Value = response.json().await.unwrap();
            let batch = page["messages"].as_array().unwrap();
            assert!(batch.len() <= limit);
            messages.extend(batch.iter().cloned());
            match page["next"].as_str() {
                Some(next) => query = format!("limit={limit}&before={next}"),
                None => return messages,
            }
        }
    }
}

#[tokio::test]
async fn the_dialog_suite_passes_through_the_forwarding_service() {
    let split = split().await;
    dialog_scenario(&split.main).await;
    paging_scenario(&split.main).await;
    concurrent_scenario(&split.main).await;
    hostile_text_scenario(&split.main).await;
    bad_sends_scenario(&split.main).await;
    bad_lists_scenario(&split.main).await;
    long_messages_scenario(&split.main).await;
}

/// With the dialog service on Tarantool, the main service's PostgreSQL never sees a message:
/// every one went through the hop.
#[tokio::test]
async fn forwarded_messages_live_in_the_dialog_service_store() {
    let split = split_with(DialogStoreKind::Tarantool).await;
    dialog_scenario(&split.main).await;
    let db = split.main.db().await;
    for table in ["dialogs", "dialog_messages"] {
        let rows: i64 = db
            .query_one(&format!("select count(*) from {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 0, "{table}");
    }
}

/// Backward compatibility: messages sent through the main service's old path and through the
/// dialog service's old and new paths are one dialog, identical and in order through each.
#[tokio::test]
async fn old_and_new_paths_see_one_dialog_identical_and_in_order() {
    let Split { main, dialogs } = split().await;
    let anna = main.user("Анна", "Старая").await;
    let boris = main.user("Борис", "Новый").await;
    let mut sent = Vec::new();
    for i in 0..12 {
        let (from, to) = if i % 2 == 0 {
            (&anna, &boris)
        } else {
            (&boris, &anna)
        };
        let text = format!("сообщение {i}");
        match i % 3 {
            0 => main.send_ok(from, to, &text).await,
            1 => dialogs.send_ok(from, to, &text).await,
            _ => {
                let response = dialogs.send_v2(from, &to.id, &text).await;
                assert_eq!(response.status(), StatusCode::CREATED);
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["id"], json!((i + 1).to_string()));
            }
        }
        sent.push(text);
    }
    let old_via_main = main.dialog(&anna, &boris.id, "limit=1000").await;
    let old_direct = dialogs.dialog(&boris, &anna.id, "limit=1000").await;
    let new_direct = dialogs.dialog_v2(&anna, &boris.id, 5).await;
    assert_eq!(old_via_main, old_direct);
    assert_eq!(old_via_main, new_direct);
    let texts: Vec<&str> = old_via_main
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = sent.iter().rev().map(String::as_str).collect();
    assert_eq!(texts, newest_first);
    let ids: Vec<&str> = old_via_main
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (1..=12).rev().map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn the_v2_api_checks_what_it_is_given() {
    let Split { main, dialogs } = split().await;
    let anna = main.user("Анна", "Проверка").await;
    let boris = main.user("Борис", "Проверка").await;
    assert_error(
        dialogs.send_v2(&anna, &anna.id, "себе").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_error(
        dialogs.send_v2(&anna, &boris.id, " ").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_error(
        dialogs.send_v2(&anna, "999999", "никому").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let forged = TestUser {
        id: anna.id.clone(),
        token: "not.a.token".to_owned(),
    };
    assert_error(
        dialogs.send_v2(&forged, &boris.id, "чужой").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    for query in [
        "limit=0",
        "limit=1001",
        "before=0",
        "before=abc",
        "limit=1.5",
    ] {
        let response = dialogs
            .get_as(&anna, &format!("/v2/dialogs/{}/messages?{query}", boris.id))
            .await;
        assert_error(response, StatusCode::BAD_REQUEST).await;
    }
    // An empty dialog: an empty page and no next one.
    let response = dialogs
        .get_as(&anna, &format!("/v2/dialogs/{}/messages", boris.id))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "messages": [] })
    );
}

/// The id a client gives crosses the hop: the dialog service's own error body carries it.
#[tokio::test]
async fn the_request_id_crosses_the_hop() {
    let Split {
        main,
        dialogs: _dialogs,
    } = split().await;
    let anna = main.user("Анна", "След").await;
    let response = main
        .client
        .post(main.url(&format!("/dialog/{}/send", anna.id)))
        .bearer_auth(&anna.token)
        .header("x-request-id", "trace-me-42")
        .json(&json!({ "text": "себе" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["request_id"], "trace-me-42");
    assert_eq!(body["message"], "a dialog needs two different users");
}

#[tokio::test]
async fn the_dialog_service_serves_the_dialog_api_alone_with_its_own_document() {
    let Split {
        dialogs,
        main: _main,
    } = split().await;
    let response = dialogs
        .post_json("/user/register", &crate::helpers::registration("А", "Б"))
        .await;
    assert_error(response, StatusCode::NOT_FOUND).await;
    assert_eq!(dialogs.get("/health").await.status(), StatusCode::OK);
    let doc: Value = dialogs.get_json("/openapi.json").await;
    assert_eq!(doc["info"]["title"], "socialnet dialogs");
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        paths.contains(&"/v2/dialogs/{user_id}/messages"),
        "{paths:?}"
    );
    assert!(paths.contains(&"/dialog/{user_id}/send"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/user")), "{paths:?}");
    insta::assert_json_snapshot!("dialog_service_openapi", doc);
}

/// Down (a closed port) or silent (a listener that never answers): a 503 with Retry-After,
/// within the forwarding time limit; `/ready` says degraded; everything else is served.
#[tokio::test]
async fn a_dialog_service_down_or_silent_is_a_503_with_retry_after() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for url in [closed, silent_url] {
        let main = spawn_app_with(|config| {
            config.dialogs.dialogs_url = Some(url.clone());
            config.dialogs.dialogs_timeout_ms = 300;
        })
        .await;
        let anna = main.user("Анна", "Одна").await;
        let boris = main.user("Борис", "Один").await;
        for attempt in 0..2 {
            let started = Instant::now();
            let response = if attempt == 0 {
                main.send_message(&anna, &boris.id, "алло").await
            } else {
                main.get_as(&anna, &format!("/dialog/{}/list", boris.id))
                    .await
            };
            assert!(started.elapsed() < Duration::from_secs(5), "{url}");
            assert_eq!(response.headers()["retry-after"], "1", "{url}");
            let message = assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
            assert_eq!(message, "the dialog service is unavailable; retry later");
        }
        let ready: Value = main.get_json("/ready").await;
        assert_eq!(ready["status"], "degraded", "{ready}");
        // Where it is and why it is down are the operators' (METRICS_BIND), not the public's.
        assert_eq!(ready["dialog_service"], json!({"state": "down"}), "{ready}");
        // The rest of the API does not depend on it.
        let response = main.get_as(&anna, &format!("/user/get/{}", boris.id)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// The main service asks the dialog service for its readiness and says what it answered.
#[tokio::test]
async fn the_main_service_reports_the_dialog_service_ready() {
    let Split {
        main,
        dialogs: _dialogs,
    } = split().await;
    let ready: Value = main.get_json("/ready").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["dialog_service"]["state"], "up", "{ready}");
}

/// `--service dialogs` with DIALOGS_URL set would forward to itself: refused at start.
#[tokio::test]
async fn a_dialog_service_told_to_forward_refuses_to_start() {
    let app = spawn_app().await;
    let mut config = app.config.clone();
    config.serve.service = Service::Dialogs;
    config.dialogs.dialogs_url = Some(app.address.clone());
    let error = socialnet::Application::build(config)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("DIALOGS_URL"), "{error}");
}

#[tokio::test]
async fn unread_counts_are_kept_by_the_dialog_service_through_rabbitmq() {
    // As the split stack runs: both services on Redis and RabbitMQ; the dialog service keeps the
    // counters, from its own events.
    let dialogs = spawn_app_with(|config| {
        config.serve.service = Service::Dialogs;
        crate::feed_cache::use_redis(config, &crate::feed_cache::redis_url());
        crate::helpers::use_broker(config, &crate::helpers::amqp_url());
        config.dialogs.unread_reconcile_ms = 200;
    })
    .await;
    let main = dialogs
        .spawn_beside(|config| {
            config.serve.service = Service::All;
            config.dialogs.dialogs_url = Some(dialogs.address.clone());
        })
        .await;
    // Through the main service's old paths, forwarded.
    crate::unread::unread_scenario(&main).await;
    crate::unread::bad_reads_scenario(&main).await;
    // The dialog service's own path says the same.
    let anna = main.user("Анна", "Новая").await;
    let boris = main.user("Борис", "Новый").await;
    dialogs.send_v2(&anna, &boris.id, "привет").await;
    dialogs.send_v2(&anna, &boris.id, "ещё").await;
    main.unread_becomes(&boris, &[(&anna, 2)]).await;
    let (total, _) = dialogs
        .try_unread(&boris, "/v2/dialogs/unread")
        .await
        .unwrap();
    assert_eq!(total, 2);
    let read = dialogs
        .put_as(
            &boris,
            &format!("/v2/dialogs/{}/read", anna.id),
            Some(&json!({ "up_to": "2" })),
        )
        .await;
    assert_eq!(read.status(), StatusCode::OK);
    main.unread_becomes(&boris, &[]).await;
    dialogs.counters().await.clear().await.unwrap();
}
