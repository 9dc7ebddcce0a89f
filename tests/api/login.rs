use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn the_right_password_gives_a_token_naming_the_user() {
    let app = spawn_app().await;
    let id = app.register_user("Анна", "Иванова").await;
    let response = app.login(&id, "correct horse battery").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    // A JWT whose payload names the user.
    let payload = token.split('.').nth(1).unwrap();
    let claims = decode_base64url(payload);
    let claims: Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(claims["sub"], json!(id));
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
}

#[tokio::test]
async fn a_numeric_id_is_accepted_too() {
    let app = spawn_app().await;
    let id = app.register_user("John", "Smith").await;
    let response = app
        .post_json(
            "/login",
            &json!({"id": id.parse::<u64>().unwrap(), "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_password_is_a_400() {
    let app = spawn_app().await;
    let id = app.register_user("Анна", "Иванова").await;
    assert_error(
        app.login(&id, "wrong password!").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_error(app.login(&id, "").await, StatusCode::BAD_REQUEST).await;
    assert_error(
        app.login(&id, &"x".repeat(10_000)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn an_unknown_user_is_a_404() {
    let app = spawn_app().await;
    assert_error(
        app.login("123456789", "correct horse battery").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn an_id_that_cannot_exist_is_a_400() {
    let app = spawn_app().await;
    for id in ["abc", "-1", "0", "1 or 1=1", "99999999999999999999", ""] {
        let response = app.login(id, "correct horse battery").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{id:?}");
    }
    let response = app.post_json("/login", &json!({"password": "x"})).await;
    assert_error(response, StatusCode::BAD_REQUEST).await;
}

fn decode_base64url(input: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in input.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}
