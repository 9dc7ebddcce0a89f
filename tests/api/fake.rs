use reqwest::StatusCode;
use serde_json::Value;
use socialnet::lab::fake::{fake_users, FakeUsersArgs, LAB_PASSWORD};

use crate::helpers::{lab_db_config, spawn_app};

fn args(database_url: &str, count: u64, seed: u64) -> FakeUsersArgs {
    FakeUsersArgs {
        db: lab_db_config(database_url),
        count,
        seed: Some(seed),
        cyrillic_share: 0.7,
        batch_size: 700,
        keep_index: false,
    }
}

#[tokio::test]
async fn fake_users_appends_realistic_users_who_can_log_in() {
    let app = spawn_app().await;
    let report = fake_users(&args(&app.database_url, 3_000, 7))
        .await
        .unwrap();
    assert_eq!(report.rows, 3_000);
    assert_eq!(report.seed, 7);

    let client = app.db().await;
    let row = client
        .query_one(
            "select count(*),
                    count(*) filter (where first_name ~ '[А-Яа-яЁё]'),
                    count(distinct first_name),
                    min(birthdate), max(birthdate),
                    count(*) filter (where biography = '' or city = '')
             from users",
            &[],
        )
        .await
        .unwrap();
    let (total, cyrillic, distinct_first): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(total, 3_000);
    let share = cyrillic as f64 / total as f64;
    assert!((0.65..=0.75).contains(&share), "cyrillic share {share}");
    assert!(
        distinct_first > 100,
        "only {distinct_first} distinct first names"
    );
    let (oldest, youngest): (chrono::NaiveDate, chrono::NaiveDate) = (row.get(3), row.get(4));
    let today = chrono::Utc::now().date_naive();
    assert!((today - youngest).num_days() >= 16 * 365);
    assert!((today - oldest).num_days() <= 80 * 365);
    assert_eq!(
        row.get::<_, i64>(5),
        0,
        "every user has a biography and a city"
    );

    // Frequencies are skewed: the most common first name is far above the average share.
    let top: i64 = client
        .query_one(
            "select count(*) from users group by first_name order by count(*) desc limit 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        top as f64 > 3.0 * total as f64 / distinct_first as f64,
        "top name only {top}"
    );

    // Russian women carry the feminine surname form.
    let feminine: i64 = client
        .query_one(
            "select count(*) from users where first_name in ('Анна', 'Мария', 'Елена') and second_name ~ '(ов|ев|ин)$'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(feminine, 0);

    // The search index was rebuilt after the load, and a generated user logs in.
    assert!(socialnet::users::sql::search_index_exists(&client)
        .await
        .unwrap());
    let id: i64 = client
        .query_one("select min(id) from users", &[])
        .await
        .unwrap()
        .get(0);
    let response = app.login(&id.to_string(), LAB_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.json::<Value>().await.unwrap()["token"].is_string());
}

#[tokio::test]
async fn the_same_seed_generates_the_same_users() {
    let app = spawn_app().await;
    let first = fake_users(&args(&app.database_url, 200, 99)).await.unwrap();
    let second = fake_users(&args(&app.database_url, 200, 99)).await.unwrap();
    assert_eq!((first.rows, second.rows), (200, 200));
    let client = app.db().await;
    let total: i64 = client
        .query_one("select count(*) from users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 400, "the second load appended its own 200");
    let differing: i64 = client
        .query_one(
            "select count(*) from users a join users b on b.id = a.id + 200
             where a.id <= 200 and (a.first_name, a.second_name, a.birthdate, a.city, a.biography)
                               is distinct from (b.first_name, b.second_name, b.birthdate, b.city, b.biography)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(differing, 0);
}

#[tokio::test]
async fn fake_social_draws_a_skewed_graph_and_posts_that_fill_feeds() {
    use socialnet::lab::social::{fake_social, FakeSocialArgs};

    let app = spawn_app().await;
    fake_users(&args(&app.database_url, 500, 3)).await.unwrap();
    let report = fake_social(&FakeSocialArgs {
        db: args(&app.database_url, 0, 0).db,
        follows_per_user: 10.0,
        popularity_skew: 1.0,
        posts_per_user: 2.0,
        days: 30,
        seed: Some(5),
    })
    .await
    .unwrap();
    assert_eq!(report.posts, 1_000);
    assert!(report.follows > 3_000, "{} follows", report.follows);

    let client = app.db().await;
    let row = client
        .query_one(
            "select count(*) filter (where user_id = friend_id),
                    (select max(n) from (select count(*) n from friends group by friend_id) f),
                    (select percentile_cont(0.5) within group (order by n)
                       from (select count(*) n from friends group by friend_id) f)
             from friends",
            &[],
        )
        .await
        .unwrap();
    let (self_follows, top, median): (i64, i64, f64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(self_follows, 0);
    assert_eq!(top, report.top_followers);
    // A celebrity: followed by far more users than the typical user.
    assert!(top as f64 > 10.0 * median, "top {top}, median {median}");

    // Post times grow with ids, within the requested span.
    let disorder: i64 = client
        .query_one(
            "select count(*) from (select created_at < lag(created_at) over (order by id) as back from posts) p where back",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(disorder, 0);

    // Someone who follows the celebrity has a feed.
    let row = client
        .query_one(
            "select user_id from friends group by user_id order by count(*) desc limit 1",
            &[],
        )
        .await
        .unwrap();
    let reader: i64 = row.get(0);
    let reader = app.logged_in(&reader.to_string(), LAB_PASSWORD).await;
    let feed: Vec<Value> = app
        .get_as(&reader, "/post/feed?limit=20")
        .await
        .json()
        .await
        .unwrap();
    assert!(!feed.is_empty());
}

#[tokio::test]
async fn fake_dialogs_writes_numbered_dialogs_that_the_api_continues_and_shows_the_key_skew() {
    use socialnet::lab::dialogs::{dialog_shards, fake_dialogs, DialogShardsArgs, FakeDialogsArgs};

    let app = spawn_app().await;
    fake_users(&args(&app.database_url, 50, 11)).await.unwrap();
    let report = fake_dialogs(&FakeDialogsArgs {
        db: lab_db_config(&app.database_url),
        messages: 2_000,
        messages_per_dialog: 10.0,
        hot_users: 1,
        hot_share: 0.3,
        days: 30,
        seed: Some(13),
    })
    .await
    .unwrap();
    assert_eq!(report.messages, 2_000);
    let hot = report.hot_users[0];

    let client = app.db().await;
    let row = client
        .query_one(
            "select (select count(*) from dialog_messages),
                    (select count(*) from dialog_messages where sender_id = $1),
                    (select count(*) from dialog_messages where sender_id = recipient_id),
                    (select count(*) from dialogs d where last_message_id <>
                        (select count(*) from dialog_messages m where m.dialog_id = d.dialog_id)),
                    (select count(*) from dialogs)",
            &[&hot],
        )
        .await
        .unwrap();
    let (total, by_hot, to_self, miscounted, dialogs): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(total, 2_000);
    // 30 % by choice, plus the hot user's turns in ordinary dialogs (1 in 50 users).
    assert!((500..=850).contains(&by_hot), "hot user wrote {by_hot}");
    assert_eq!(to_self, 0);
    assert_eq!(miscounted, 0, "every dialog counts its messages 1..n");
    assert_eq!(dialogs as u64, report.dialogs);

    // A message sent through the API takes the next number in a generated dialog.
    let row = client
        .query_one(
            "select case when user_low = $1 then user_high else user_low end, last_message_id
             from dialogs where $1 in (user_low, user_high) order by last_message_id desc limit 1",
            &[&hot],
        )
        .await
        .unwrap();
    let (other, last): (i64, i64) = (row.get(0), row.get(1));
    let me = app.logged_in(&hot.to_string(), LAB_PASSWORD).await;
    let sent = app
        .send_message(&me, &other.to_string(), "и ещё одно")
        .await;
    assert_eq!(sent.status(), StatusCode::OK);
    let newest = app.dialog(&me, &other.to_string(), "limit=1").await;
    assert_eq!(newest[0]["id"], (last + 1).to_string());
    assert_eq!(newest[0]["text"], "и ещё одно");

    // Sharded by sender, the hot user's shard carries far more than sharded by dialog.
    let table = dialog_shards(&DialogShardsArgs {
        db: lab_db_config(&app.database_url),
        shards: 32,
    })
    .await
    .unwrap();
    let skew = |label: &str| -> f64 {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {label}")))
            .unwrap_or_else(|| panic!("no {label} row in\n{table}"));
        line.split('|').nth(4).unwrap().trim().parse().unwrap()
    };
    let (by_dialog, by_sender) = (skew("dialog"), skew("sender"));
    assert!(by_sender > 2.0 * by_dialog, "{table}");
    // The busiest sender shard holds at least the hot user's messages.
    assert!(
        by_sender >= by_hot as f64 / (2_001.0 / 32.0) - 0.01,
        "{table}"
    );
}
