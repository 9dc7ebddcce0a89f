use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn a_post_can_be_created_read_edited_and_deleted_by_its_author() {
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    let id = app.post(&anna, "  Привет, мир! 🌍 ").await;
    assert!(id.parse::<i64>().unwrap() > 0);

    // Reading needs no token.
    let post: Value = app.get_json(&format!("/post/get/{id}")).await;
    assert_eq!(
        post,
        json!({"id": id, "text": "Привет, мир! 🌍", "author_user_id": anna.id})
    );

    let response = app
        .put_as(
            &anna,
            "/post/update",
            Some(&json!({"id": id, "text": "исправлено"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let post: Value = app.get_json(&format!("/post/get/{id}")).await;
    assert_eq!(post["text"], "исправлено");

    let response = app.put_as(&anna, &format!("/post/delete/{id}"), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_error(
        app.get(&format!("/post/get/{id}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Deleting again: it is gone.
    assert_error(
        app.put_as(&anna, &format!("/post/delete/{id}"), None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn only_the_author_may_change_a_post() {
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let id = app.post(&anna, "моё").await;
    assert_error(
        app.put_as(
            &boris,
            "/post/update",
            Some(&json!({"id": id, "text": "чужое"})),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_error(
        app.put_as(&boris, &format!("/post/delete/{id}"), None)
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let post: Value = app.get_json(&format!("/post/get/{id}")).await;
    assert_eq!(post["text"], "моё");
}

#[tokio::test]
async fn bad_post_input_is_a_400_and_unknown_posts_a_404() {
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    for body in [
        json!({"text": ""}),
        json!({"text": "   "}),
        json!({"text": "я".repeat(5_001)}),
        json!({"text": "\u{1b}]0;new title\u{7}"}),
        json!({"text": 5}),
        json!({}),
    ] {
        let response = app
            .client
            .post(app.url("/post/create"))
            .bearer_auth(&anna.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::BAD_REQUEST).await;
    }
    assert_error(app.get("/post/get/abc").await, StatusCode::BAD_REQUEST).await;
    assert_error(app.get("/post/get/0").await, StatusCode::BAD_REQUEST).await;
    assert_error(app.get("/post/get/424242").await, StatusCode::NOT_FOUND).await;
    assert_error(
        app.put_as(
            &anna,
            "/post/update",
            Some(&json!({"id": "424242", "text": "x"})),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.put_as(
            &anna,
            "/post/update",
            Some(&json!({"id": "x1", "text": "x"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn writing_posts_needs_a_valid_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/post/create"))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .client
        .put(app.url("/post/delete/1"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert_error(app.get("/post/feed").await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_valid_token_of_a_user_who_no_longer_exists_is_a_401() {
    let app = spawn_app().await;
    let token = app.token_for(999_999).await;
    // The token itself is good: it works for a user who exists.
    let real = app.register_user("Анна", "Иванова").await;
    let works = app
        .client
        .get(app.url("/post/feed"))
        .bearer_auth(app.token_for(real.parse().unwrap()).await)
        .send()
        .await
        .unwrap();
    assert_eq!(works.status(), StatusCode::OK);
    let response = app
        .client
        .post(app.url("/post/create"))
        .bearer_auth(token)
        .json(&json!({"text": "ghost"}))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED).await;
}
