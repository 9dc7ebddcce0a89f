use reqwest::StatusCode;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn following_is_idempotent_and_so_is_unfollowing() {
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    app.post(&boris, "от Бориса").await;
    for _ in 0..2 {
        let response = app
            .put_as(&anna, &format!("/friend/set/{}", boris.id), None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().is_empty());
    }
    assert_eq!(app.feed_texts(&anna, "").await, ["от Бориса"]);
    for _ in 0..2 {
        let response = app
            .put_as(&anna, &format!("/friend/delete/{}", boris.id), None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(app.feed_texts(&anna, "").await.is_empty());
}

#[tokio::test]
async fn befriending_yourself_an_unknown_user_or_a_bad_id_fails_clearly() {
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    assert_error(
        app.put_as(&anna, &format!("/friend/set/{}", anna.id), None)
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_error(
        app.put_as(&anna, "/friend/set/987654", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.put_as(&anna, "/friend/set/abc", None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_error(
        app.put_as(&anna, "/friend/delete/-3", None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn friend_calls_need_a_valid_token() {
    let app = spawn_app().await;
    let boris = app.user("Борис", "Петров").await;
    for path in [
        format!("/friend/set/{}", boris.id),
        format!("/friend/delete/{}", boris.id),
    ] {
        let response = app.client.put(app.url(&path)).send().await.unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED).await;
        let response = app
            .client
            .put(app.url(&path))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED).await;
    }
}
