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

#[tokio::test]
async fn pipelined_reads_answer_like_pooled_ones_and_fail_over_to_503() {
    use crate::helpers::{registration, spawn_app_with};
    use serde_json::Value;

    let app = spawn_app_with(|c| c.db.db_pipelined_reads = Some(2)).await;
    let response = app.register(&registration("Анна", "Иванова")).await;
    let id = response.json::<Value>().await.unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Many concurrent reads share two connections.
    let path = format!("/user/get/{id}");
    let reads = (0..50).map(|_| app.get(&path));
    for response in futures_util::future::join_all(reads).await {
        assert_eq!(response.status(), StatusCode::OK);
    }
    let found: Vec<Value> = app
        .get("/user/search?first_name=ан&last_name=ив")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_error(app.get("/user/get/424242").await, StatusCode::NOT_FOUND).await;

    // Cut the database off: shared connections die, reconnects are refused, reads get 503.
    let admin = app.cut_off_database().await;
    for _ in 0..3 {
        assert_error(
            app.get(&format!("/user/get/{id}")).await,
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .await;
    }
    app.restore_database(&admin).await;
    assert_eq!(
        app.get(&format!("/user/get/{id}")).await.status(),
        StatusCode::OK
    );
}
