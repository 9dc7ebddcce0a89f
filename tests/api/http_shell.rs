use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, registration, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    assert_error(app.get("/no/such/route").await, StatusCode::NOT_FOUND).await;
}

/// The root leads a visitor to the documentation.
#[tokio::test]
async fn the_root_leads_to_the_docs() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(app.url("/")).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/docs");
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/user/register"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn a_request_id_is_echoed_when_given_and_made_when_not() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-abc_123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc_123");

    let response = app.get("/health").await;
    let made = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");

    // A hostile id (spaces, too long) is replaced rather than echoed into logs.
    let response = app
        .client
        .get(app.url("/user/get/nope"))
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    let replaced = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(replaced, "a b");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["request_id"], json!(replaced));
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let app = spawn_app().await;
    let mut body = registration("Анна", "Иванова");
    body["biography"] = json!("x".repeat(70 * 1024));
    assert_error(app.register(&body).await, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Without a Content-Length the limit still holds while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 1024])).collect();
    let response = app
        .client
        .post(app.url("/user/register"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/health").await.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    assert_eq!(
        app.get("/ready").await.json::<Value>().await.unwrap(),
        json!({"status": "ready"})
    );
    app.get("/user/get/1").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("http_requests_total{"), "{metrics}");
    assert!(metrics.contains("route=\"/user/get/{id}\""), "{metrics}");
    assert!(
        metrics.contains("db_pool_max_size{pool=\"primary\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_lost_database_gives_503_with_retry_after_not_a_hang() {
    let app = spawn_app_with(|c| c.db.db_pool_timeout_ms = 500).await;
    let id = app.register_user("Анна", "Иванова").await;
    assert_eq!(
        app.get(&format!("/user/get/{id}")).await.status(),
        StatusCode::OK
    );

    let admin = app.cut_off_database().await;

    for path in [
        format!("/user/get/{id}"),
        format!("/user/get/{id}"),
        "/ready".to_owned(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.headers()["retry-after"], "1");
        assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
    }

    app.restore_database(&admin).await;
    assert_eq!(
        app.get(&format!("/user/get/{id}")).await.status(),
        StatusCode::OK
    );
}
