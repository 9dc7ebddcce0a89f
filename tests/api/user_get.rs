use reqwest::StatusCode;

use crate::helpers::{
    assert_error, fresh_database_url, server_url, spawn_app, spawn_app_on, DatabaseGuard,
};

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
        .get_json("/user/search?first_name=ан&last_name=ив")
        .await;
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

/// Only a `SQL_ASCII` database hands back text that is not UTF-8 (PostgreSQL converts every other
/// encoding). A profile or page holding such text is a 500 in the contract's shape, never a body
/// that is not UTF-8; profiles and pages without it are served as usual.
#[tokio::test]
async fn text_that_is_not_utf8_is_a_500_not_a_broken_body() {
    let database_url = fresh_database_url();
    // Dropped even if the app below never starts.
    let _database = DatabaseGuard::new(&database_url);
    let name = database_url.rsplit('/').next().unwrap().to_owned();
    let admin = socialnet::db::connect(&server_url().parse().unwrap())
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "create database {name} encoding 'SQL_ASCII' lc_collate 'C' lc_ctype 'C' \
             template template0"
        ))
        .await
        .unwrap();
    let app = spawn_app_on(&database_url, |_| {}).await;
    let good = app.register_user("Анна", "Иванова").await;
    let bad = app.register_user("Анна", "Ивашова").await;
    // Octal escapes write raw bytes, unchecked in a SQL_ASCII database: half of a 'Ж'.
    app.db()
        .await
        .execute(
            "update users set biography = E'cut \\320 here' where id = $1",
            &[&bad.parse::<i64>().unwrap()],
        )
        .await
        .unwrap();

    let profile: serde_json::Value = app.get_json(&format!("/user/get/{good}")).await;
    assert_eq!(profile["second_name"], "Иванова");
    assert_error(
        app.get(&format!("/user/get/{bad}")).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert_error(
        app.get("/user/search?first_name=Ан&last_name=Ив").await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    // A page without the bad profile is unaffected.
    let page: Vec<serde_json::Value> = app
        .get_json("/user/search?first_name=Ан&last_name=Иван")
        .await;
    assert_eq!(page.len(), 1);
}

/// Profiles are written as JSON by hand: each one read back into the documented `User` and
/// written again by serde must be the very same JSON (no field missing, none unknown, none typed
/// otherwise), alone and in a search page.
#[tokio::test]
async fn profiles_are_exactly_the_documented_user_schema() {
    use serde_json::Value;
    use socialnet::users::User;

    let app = spawn_app().await;
    let id = app.register_user("Анна \"Ан\" \\ Иванова", "Иванова").await;
    let profile: Value = app.get_json(&format!("/user/get/{id}")).await;
    let page: Vec<Value> = app
        .get_json("/user/search?first_name=ан&last_name=ив")
        .await;
    assert_eq!(page.len(), 1);
    for raw in std::iter::once(profile).chain(page) {
        let user: User = serde_json::from_value(raw.clone()).expect("a documented User");
        assert_eq!(serde_json::to_value(&user).unwrap(), raw);
    }
}
