use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, first_column, spawn_app};

async fn search(app: &crate::helpers::TestApp, query: &str) -> Vec<Value> {
    let response = app.get(&format!("/user/search?{query}")).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

fn names(users: &[Value]) -> Vec<String> {
    users
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u["first_name"].as_str().unwrap(),
                u["second_name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn search_matches_case_insensitive_prefixes_of_both_names_ordered_by_id() {
    let app = spawn_app().await;
    for (first, second) in [
        ("Анна", "Иванова"),
        ("Андрей", "Ивлев"),
        ("анастасия", "ИВАНОВА"),
        ("Анна", "Петрова"),
        ("Борис", "Иванов"),
        ("Ann", "Ivanova"),
    ] {
        app.register_user(first, second).await;
    }
    let found = search(&app, "first_name=ан&last_name=ИВ").await;
    assert_eq!(
        names(&found),
        ["Анна Иванова", "Андрей Ивлев", "анастасия ИВАНОВА"]
    );
    let ids: Vec<i64> = found
        .iter()
        .map(|u| u["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ordered by id: {ids:?}"
    );

    assert_eq!(
        names(&search(&app, "first_name=Анна&last_name=Иванова").await),
        ["Анна Иванова"]
    );
    assert_eq!(
        names(&search(&app, "first_name=ann&last_name=iv").await),
        ["Ann Ivanova"]
    );
    assert!(search(&app, "first_name=Анны&last_name=Ив")
        .await
        .is_empty());
}

#[tokio::test]
async fn limit_and_offset_page_through_results() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.register_user(&format!("Mark{i}"), "Twain").await;
    }
    let all = search(&app, "first_name=mark&last_name=tw").await;
    assert_eq!(all.len(), 5);
    let page = search(&app, "first_name=mark&last_name=tw&limit=2&offset=2").await;
    assert_eq!(page, all[2..4].to_vec());
    assert!(search(&app, "first_name=mark&last_name=tw&offset=5")
        .await
        .is_empty());
}

#[tokio::test]
async fn like_wildcards_in_a_prefix_are_plain_characters() {
    let app = spawn_app().await;
    app.register_user("Anna", "Smith").await;
    app.register_user("%Odd", "_Name").await;
    assert!(search(&app, "first_name=%25&last_name=%25")
        .await
        .is_empty());
    assert!(search(&app, "first_name=_&last_name=_").await.is_empty());
    assert_eq!(
        names(&search(&app, "first_name=%25&last_name=_").await),
        ["%Odd _Name"]
    );
}

/// A limit past 1,000 is a page of 1,000 at most, as API.md has it, not a 400.
#[tokio::test]
async fn a_limit_past_the_cap_is_a_page_of_the_cap() {
    let app = spawn_app().await;
    app.register_user("Анна", "Иванова").await;
    let response = app
        .get("/user/search?first_name=Ан&last_name=Ив&limit=5000")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .json::<Vec<serde_json::Value>>()
            .await
            .unwrap()
            .len(),
        1
    );
    // The deepest page is still the cap's: offset + the cap within 10,000.
    let response = app
        .get("/user/search?first_name=Ан&last_name=Ив&limit=5000&offset=9000")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_or_invalid_parameters_are_a_400() {
    let app = spawn_app().await;
    for query in [
        "",
        "first_name=an",
        "last_name=iv",
        "first_name=&last_name=iv",
        "first_name=an&last_name=%20",
        "first_name=an&last_name=iv&limit=0",
        "first_name=an&last_name=iv&limit=ten",
        "first_name=an&last_name=iv&offset=-1",
        "first_name=an&last_name=iv&offset=9999&limit=100",
        "first_name=an&last_name=iv&offset=9223372036854775807",
    ] {
        let response = app.get(&format!("/user/search?{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_error(response, StatusCode::BAD_REQUEST).await;
    }
    let long = "я".repeat(101);
    let response = app
        .get(&format!("/user/search?first_name={long}&last_name=x"))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn one_letter_prefixes_take_the_range_path_and_still_match() {
    let app = spawn_app().await;
    for (first, second) in [
        ("Анна", "Иванова"),
        ("Андрей", "Смирнов"),
        ("Ян", "Ли"),
        ("Борис", "Ивлев"),
    ] {
        app.register_user(first, second).await;
    }
    assert_eq!(
        names(&search(&app, "first_name=а&last_name=и").await),
        ["Анна Иванова"]
    );
    assert_eq!(
        names(&search(&app, "first_name=А&last_name=Смир").await),
        ["Андрей Смирнов"]
    );
    assert_eq!(
        names(&search(&app, "first_name=ян&last_name=л").await),
        ["Ян Ли"]
    );
    assert_eq!(
        names(&search(&app, "first_name=я&last_name=ли").await),
        ["Ян Ли"]
    );
}

#[tokio::test]
async fn the_search_index_can_be_dropped_and_rebuilt_as_the_migration_made_it() {
    use socialnet::users::sql::{create_search_index, drop_search_index, search_index_exists};

    let app = spawn_app().await;
    app.register_user("Анна", "Иванова").await;
    let client = app.db().await;
    let definition = "select indexdef from pg_indexes where indexname = 'users_name_search_idx'";
    let from_migration: String = client.query_one(definition, &[]).await.unwrap().get(0);

    drop_search_index(&client).await.unwrap();
    assert!(!search_index_exists(&client).await.unwrap());
    assert_eq!(
        names(&search(&app, "first_name=ан&last_name=ив").await),
        ["Анна Иванова"]
    );

    create_search_index(&client).await.unwrap();
    let rebuilt: String = client.query_one(definition, &[]).await.unwrap().get(0);
    assert_eq!(rebuilt, from_migration);
}

#[tokio::test]
async fn a_long_prefix_is_checked_against_the_lower_cased_names_stored_in_the_index() {
    use socialnet::users::sql::search_sql;
    use socialnet::users::NamePrefix;

    let app = spawn_app().await;
    app.register_user("Ирина", "Зайцева").await;
    let client = app.db().await;
    // A handful of rows would be read by a sequential scan; the plan's shape is what is checked.
    client
        .batch_execute("set enable_seqscan = off; set enable_bitmapscan = off")
        .await
        .unwrap();
    let first = NamePrefix::parse("first_name", Some("Ири")).unwrap();
    let second = NamePrefix::parse("last_name", Some("Зай")).unwrap();
    let explain = format!(
        "explain (verbose, costs off) {}",
        search_sql(&first, &second)
    );
    let plan: Vec<String> = first_column(
        &client,
        &explain,
        &[&first.as_str(), &second.as_str(), &100_i64, &0_i64],
    )
    .await;
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Only Scan using users_name_search_idx"),
        "{plan}"
    );
    // `(lower(users.first_name))` in parentheses is the index's column; a bare `lower(...)` would
    // mean PostgreSQL lower-cases every candidate's name again.
    assert!(
        plan.contains("starts_with((lower(users.first_name)), $0)")
            && plan.contains("starts_with((lower(users.second_name)), $1)"),
        "{plan}"
    );
    assert_eq!(
        names(&search(&app, "first_name=Ири&last_name=Зай").await),
        ["Ирина Зайцева"]
    );
}
