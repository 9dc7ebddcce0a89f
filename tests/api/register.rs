use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, registration, spawn_app};

#[tokio::test]
async fn registering_returns_an_id_whose_profile_reads_back() {
    let app = spawn_app().await;
    let id = app.register_user("Анна", "Иванова").await;
    assert!(id.parse::<i64>().unwrap() > 0);

    let response = app.get(&format!("/user/get/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(
        user,
        json!({
            "id": id,
            "first_name": "Анна",
            "second_name": "Иванова",
            "birthdate": "1990-05-17",
            "biography": "чтение, походы",
            "city": "Москва",
        })
    );
}

#[tokio::test]
async fn biography_and_city_may_be_left_out() {
    let app = spawn_app().await;
    let mut body = registration("John", "Smith");
    body.as_object_mut().unwrap().remove("biography");
    body.as_object_mut().unwrap().remove("city");
    let user = app.register_and_read(&body).await;
    // A field the user does not have is left out, never null.
    assert!(user.get("biography").is_none(), "{user}");
    assert!(user.get("city").is_none(), "{user}");
    assert_eq!(user["birthdate"], "1990-05-17");
}

/// A field sent empty reads back empty: what was sent is kept (API.md), not silently left out
/// as if it had not been sent.
#[tokio::test]
async fn biography_and_city_sent_empty_read_back_empty() {
    let app = spawn_app().await;
    let mut body = registration("John", "Smith");
    body["biography"] = json!("");
    body["city"] = json!("   ");
    let user = app.register_and_read(&body).await;
    assert_eq!(user["biography"], "", "{user}");
    // Trimmed, as every text is.
    assert_eq!(user["city"], "", "{user}");
}

#[tokio::test]
async fn hostile_text_is_stored_verbatim_not_executed() {
    let app = spawn_app().await;
    let sql = "Robert'); drop table users;--";
    let emoji = "Zoë 🚀 Ёлкина";
    let mut body = registration(sql, emoji);
    body["biography"] = json!("\"quotes\" \\ backslashes % _ and 中文");
    let response = app.register(&body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.json::<Value>().await.unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user: Value = app.get_json(&format!("/user/get/{id}")).await;
    assert_eq!(user["first_name"], sql);
    assert_eq!(user["second_name"], emoji);
    assert_eq!(user["biography"], "\"quotes\" \\ backslashes % _ and 中文");
    // The table is still there.
    app.register_user("After", "Injection").await;
}

#[tokio::test]
async fn invalid_registrations_are_rejected_with_400() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Value)> = vec![
        (
            "impossible date",
            with(&[("birthdate", json!("2023-02-30"))]),
        ),
        (
            "non-leap 29 February",
            with(&[("birthdate", json!("2001-02-29"))]),
        ),
        (
            "date in the future",
            with(&[("birthdate", json!("2999-01-01"))]),
        ),
        (
            "date before 1900",
            with(&[("birthdate", json!("1899-12-31"))]),
        ),
        (
            "date in another format",
            with(&[("birthdate", json!("17.05.1990"))]),
        ),
        ("date as a number", with(&[("birthdate", json!(19900517))])),
        ("empty first name", with(&[("first_name", json!(""))])),
        ("blank second name", with(&[("second_name", json!("   "))])),
        (
            "10 KB first name",
            with(&[("first_name", json!("я".repeat(5_000)))]),
        ),
        ("name with a NUL", with(&[("first_name", json!("a\u{0}b"))])),
        ("name as a number", with(&[("first_name", json!(42))])),
        ("null second name", with(&[("second_name", Value::Null)])),
        ("short password", with(&[("password", json!("1234567"))])),
        (
            "long biography",
            with(&[("biography", json!("x".repeat(2_001)))]),
        ),
        ("long city", with(&[("city", json!("x".repeat(101)))])),
        ("missing password", without("password")),
        ("missing first name", without("first_name")),
        ("missing second name", without("second_name")),
        ("not an object", json!(["Анна", "Иванова"])),
    ];
    for (case, body) in cases {
        let response = app.register(&body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
        assert_error(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn malformed_json_is_a_400_and_a_wrong_content_type_a_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/user/register"))
        .header("content-type", "application/json")
        .body("{\"first_name\": ")
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST).await;

    let response = app
        .client
        .post(app.url("/user/register"))
        .header("content-type", "text/plain")
        .body(registration("A", "B").to_string())
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

fn with(overrides: &[(&str, Value)]) -> Value {
    let mut body = registration("Анна", "Иванова");
    for (key, value) in overrides {
        body[*key] = value.clone();
    }
    body
}

fn without(key: &str) -> Value {
    let mut body = registration("Анна", "Иванова");
    body.as_object_mut().unwrap().remove(key);
    body
}

#[tokio::test]
async fn a_biography_may_span_lines_but_names_may_not() {
    let app = spawn_app().await;
    let mut body = registration("Анна", "Иванова");
    body["biography"] = json!("строка 1\nстрока 2\tи табуляция");
    let user = app.register_and_read(&body).await;
    assert_eq!(user["biography"], "строка 1\nстрока 2\tи табуляция");

    let response = app
        .register(&registration("Анна\nИванова", "Петрова"))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST).await;
}
