//! What clients generated from the public spec (`openapi.json`) send and expect: only the fields
//! they set, paging numbers as JSON numbers (`10.0`), bodies that are objects, and responses
//! without `null` anywhere.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, TestApp, TestUser};

/// Panics at the first `null` in a response body, naming where it is.
fn assert_no_null(value: &Value, at: &str) {
    match value {
        Value::Null => panic!("null at {at}"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_no_null(item, &format!("{at}[{i}]"));
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                assert_no_null(item, &format!("{at}.{key}"));
            }
        }
        _ => {}
    }
}

/// A register as a generated client makes it when only the required fields are set.
async fn register_minimal(app: &TestApp, first: &str, second: &str) -> TestUser {
    let response = app
        .register(&json!({"first_name": first, "second_name": second, "password": "correct horse battery"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.json::<Value>().await.unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.logged_in(&id, "correct horse battery").await
}

#[tokio::test]
async fn a_register_with_only_the_names_and_a_password_works_and_leaves_the_rest_out() {
    let app = spawn_app().await;
    let user = register_minimal(&app, "Анна", "Иванова").await;
    let profile: Value = app.get_json(&format!("/user/get/{}", user.id)).await;
    let keys: Vec<&str> = profile
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["first_name", "id", "second_name"], "{profile}");
    let page: Vec<Value> = app
        .get_json("/user/search?first_name=Ан&last_name=Ив")
        .await;
    assert_eq!(page, [profile]);
    // What is given is still checked.
    for (field, value) in [
        ("birthdate", json!("2023-02-30")),
        ("birthdate", json!("")),
        ("biography", json!("x".repeat(2_001))),
        ("city", json!("x".repeat(101))),
    ] {
        let mut body = json!({"first_name": "Анна", "second_name": "Иванова", "password": "correct horse battery"});
        body[field] = value;
        assert_error(app.register(&body).await, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn no_response_carries_a_null() {
    let app = spawn_app().await;
    let anna = register_minimal(&app, "Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    app.follow(&anna, &boris).await;
    let post = app.post(&boris, "привет").await;
    let sent = app
        .client
        .post(app.url(&format!("/dialog/{}/send", boris.id)))
        .bearer_auth(&anna.token)
        .json(&json!({"text": "здравствуй"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::OK);
    let mut bodies: Vec<(String, Value)> = Vec::new();
    for path in [
        format!("/user/get/{}", anna.id),
        format!("/user/get/{}", boris.id),
        "/user/search?first_name=А&last_name=И".to_owned(),
        format!("/post/get/{post}"),
        "/post/feed".to_owned(),
        format!("/dialog/{}/list", boris.id),
        "/user/get/424242".to_owned(),
        "/user/get/abc".to_owned(),
        "/no/such/route".to_owned(),
    ] {
        let response = app.get_as(&anna, &path).await;
        bodies.push((path, response.json().await.unwrap()));
    }
    let login = app
        .login(&anna.id, "correct horse battery")
        .await
        .json::<Value>()
        .await
        .unwrap();
    bodies.push(("/login".to_owned(), login));
    for (path, body) in &bodies {
        assert_no_null(body, path);
    }
}

#[tokio::test]
async fn paging_numbers_may_be_written_as_any_json_number() {
    let app = spawn_app().await;
    let reader = app.user("Читатель", "Лентов").await;
    let author = app.user("Анна", "Иванова").await;
    app.follow(&reader, &author).await;
    for text in ["p1", "p2", "p3"] {
        app.post(&author, text).await;
    }
    assert_eq!(
        app.feed_texts(&reader, "offset=0.0&limit=10.0").await,
        ["p3", "p2", "p1"]
    );
    assert_eq!(
        app.feed_texts(&reader, "offset=1e0&limit=1E1").await,
        ["p2", "p1"]
    );
    assert_eq!(app.feed_texts(&reader, "offset=1&limit=1.0").await, ["p2"]);
    let other = app.user("Борис", "Петров").await;
    for path in [
        "/user/search?first_name=Ан&last_name=Ив&limit=10.0&offset=0.0".to_owned(),
        format!("/dialog/{}/list?limit=5.0&offset=0e0", other.id),
    ] {
        assert_eq!(
            app.get_as(&reader, &path).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    // A fraction or a negative value is a 400 that names the parameter.
    for (query, parameter) in [
        ("limit=1.5", "limit"),
        ("limit=-10.0", "limit"),
        ("offset=-1", "offset"),
        ("offset=0.5", "offset"),
        ("limit=ten", "limit"),
    ] {
        for path in [
            format!("/post/feed?{query}"),
            format!("/user/search?first_name=Ан&last_name=Ив&{query}"),
            format!("/dialog/{}/list?{query}", other.id),
        ] {
            let message =
                assert_error(app.get_as(&reader, &path).await, StatusCode::BAD_REQUEST).await;
            assert!(message.contains(parameter), "{path}: {message}");
        }
    }
}

#[tokio::test]
async fn a_json_body_must_be_an_object() {
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let post = app.post(&anna, "первый").await;
    // Each call, first with bodies that are not objects (an array of the fields in order logged
    // in before), then the object that works, with a field no handler knows.
    let calls: Vec<(reqwest::Method, String, Value)> = vec![
        (
            reqwest::Method::POST,
            "/login".to_owned(),
            json!({"id": anna.id, "password": "correct horse battery"}),
        ),
        (
            reqwest::Method::POST,
            "/user/register".to_owned(),
            json!({"first_name": "Вера", "second_name": "Павлова", "password": "correct horse battery"}),
        ),
        (
            reqwest::Method::POST,
            "/post/create".to_owned(),
            json!({"text": "второй"}),
        ),
        (
            reqwest::Method::PUT,
            "/post/update".to_owned(),
            json!({"id": post, "text": "исправленный"}),
        ),
        (
            reqwest::Method::POST,
            format!("/dialog/{}/send", boris.id),
            json!({"text": "привет"}),
        ),
    ];
    for (method, path, mut good) in calls {
        // In the order the request type declares them, as serde would read an array.
        let fields: Vec<Value> = match path.as_str() {
            "/login" => vec![good["id"].clone(), good["password"].clone()],
            "/user/register" => vec![
                good["first_name"].clone(),
                good["second_name"].clone(),
                Value::Null,
                Value::Null,
                Value::Null,
                good["password"].clone(),
            ],
            "/post/update" => vec![good["id"].clone(), good["text"].clone()],
            _ => vec![good["text"].clone()],
        };
        good["unknown_field"] = json!(true);
        for bad in [Value::Array(fields), json!("text"), json!(42), Value::Null] {
            let response = app
                .client
                .request(method.clone(), app.url(&path))
                .bearer_auth(&anna.token)
                .json(&bad)
                .send()
                .await
                .unwrap();
            assert_error(response, StatusCode::BAD_REQUEST).await;
        }
        let response = app
            .client
            .request(method, app.url(&path))
            .bearer_auth(&anna.token)
            .json(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path} {good}");
    }
}
