use reqwest::StatusCode;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn an_unknown_user_is_a_404() {
    let app = spawn_app().await;
    assert_error(app.get("/user/get/424242").await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn an_id_that_cannot_exist_is_a_400() {
    let app = spawn_app().await;
    for id in [
        "abc",
        "-5",
        "0",
        "1.5",
        "99999999999999999999",
        "%27%20or%201=1",
    ] {
        let response = app.get(&format!("/user/get/{id}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{id}");
        assert_error(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn the_profile_never_contains_the_password_hash() {
    let app = spawn_app().await;
    let id = app.register_user("Анна", "Иванова").await;
    let body = app
        .get(&format!("/user/get/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!body.contains("argon2"), "{body}");
    assert!(!body.contains("password"), "{body}");
}
