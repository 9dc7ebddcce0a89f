use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint_built_so_far() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    for (path, method) in [
        ("/user/register", "post"),
        ("/login", "post"),
        ("/user/get/{id}", "get"),
        ("/user/search", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/friend/set/{user_id}", "put"),
        ("/friend/delete/{user_id}", "put"),
        ("/post/create", "post"),
        ("/post/update", "put"),
        ("/post/delete/{id}", "put"),
        ("/post/get/{id}", "get"),
        ("/post/feed", "get"),
        ("/post/feed/posted", "get"),
        ("/dialog/{user_id}/send", "post"),
        ("/dialog/{user_id}/list", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    let params: Vec<&str> = doc["paths"]["/user/search"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        params.contains(&"first_name") && params.contains(&"last_name"),
        "{params:?}"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
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
