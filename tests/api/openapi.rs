use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

/// The whole served document against the one reviewed and committed
/// (`tests/api/snapshots/`): routes are registered together with their handler's annotation
/// (`utoipa_axum::routes!`), so a new or changed route, parameter or schema shows up here as a
/// difference to accept on purpose (`INSTA_UPDATE=always cargo test openapi`, then review the
/// diff), never silently.
#[tokio::test]
async fn the_openapi_document_is_the_reviewed_one() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    insta::assert_json_snapshot!("openapi", doc);
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = spawn_app().await;
    let response = app.get("/docs/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Its assets come from the server itself, not a CDN.
    assert!(!html.contains("https://"), "{html}");
    let response = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().len() > 100_000);
}
