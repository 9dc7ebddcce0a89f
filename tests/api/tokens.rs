//! The secret that signs tokens: generated and shared through the database unless TOKEN_SECRET
//! is given, and never a published one.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use socialnet::auth::TokenKeys;
use socialnet::users::UserId;

use crate::helpers::{
    assert_error, fresh_database_url, spawn_app, spawn_app_with, test_config, DatabaseGuard,
};

/// A token for `user` signed with `secret`, as anyone who knows the secret can make one.
fn forged(secret: &str, user: &str) -> String {
    TokenKeys::new(secret.as_bytes(), Duration::from_secs(3600))
        .issue(UserId(user.parse().unwrap()))
        .unwrap()
}

#[tokio::test]
async fn a_default_start_accepts_no_token_signed_with_a_published_secret() {
    let app = spawn_app().await;
    assert!(app.config.auth.token_secret.is_none(), "the default start");
    let victim = app.user("Анна", "Иванова").await;
    for secret in ["change-me", "local-balancer-secret", "test-secret"] {
        let response = app
            .client
            .post(app.url("/post/create"))
            .bearer_auth(forged(secret, &victim.id))
            .json(&json!({"text": "not mine"}))
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED).await;
    }
    // Nothing was posted in the victim's name.
    let posts: i64 = app
        .db()
        .await
        .query_one("select count(*) from posts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(posts, 0);
}

#[tokio::test]
async fn instances_without_token_secret_share_the_one_kept_in_the_database() {
    let app = spawn_app().await;
    let peer = app.spawn_peer().await;
    let anna = app.user("Анна", "Иванова").await;
    let response = peer
        .client
        .post(peer.url("/post/create"))
        .bearer_auth(&anna.token)
        .json(&json!({"text": "через другой экземпляр"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // And a restart keeps it: the token still works on a new instance.
    let again = app.spawn_peer().await;
    assert_eq!(
        again.get_as(&anna, "/post/feed").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_explicit_token_secret_wins() {
    let secret = "an-own-secret-of-more-than-32-bytes-0123";
    let app = spawn_app_with(|c| c.auth.token_secret = Some(secret.to_owned())).await;
    let anna = app.user("Анна", "Иванова").await;
    let response = app
        .client
        .get(app.url("/post/feed"))
        .bearer_auth(forged(secret, &anna.id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_published_or_short_token_secret_refuses_to_start_saying_why() {
    let database_url = fresh_database_url();
    let _database = DatabaseGuard::new(&database_url);
    for (secret, says) in [
        ("change-me", "placeholder"),
        ("CHANGE-ME-please-change-me-please-0123", "placeholder"),
        ("too-short-to-sign", "at least 32"),
        // Forty spaces: long enough by its bytes, and anyone's guess.
        ("                                        ", "at least 32"),
        ("abababababababababababababababababababab", "not random"),
    ] {
        let mut config = test_config(&database_url);
        config.auth.token_secret = Some(secret.to_owned());
        let error = match socialnet::Application::build(config).await {
            Ok(_) => panic!("started with TOKEN_SECRET={secret}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains(says), "{secret}: {error}");
    }
}
