//! Rate limits: logins per account and per address, registrations per address, writes per
//! account; `Retry-After` on every 429; `X-Forwarded-For` believed only from a trusted proxy;
//! instances sharing Redis share the counts.

use reqwest::{Response, StatusCode};
use serde_json::json;

use socialnet::config::{Config, OnOff};

use crate::feed_cache::{redis_url, use_redis};
use crate::helpers::{assert_error, first_column, registration, spawn_app_with, TestApp, TestUser};

/// Limits on, every one generous except those a test sets.
fn limits_on(config: &mut Config) {
    let generous = "1000/min".parse().unwrap();
    config.rate.rate_limits = OnOff::On;
    config.rate.rate_login_per_address = generous;
    config.rate.rate_login_per_account_address = generous;
    config.rate.rate_login_per_account = generous;
    config.rate.rate_register_per_address = generous;
    config.rate.rate_writes_per_account = generous;
    config.rate.rate_writes_per_address = generous;
}

/// The `Retry-After` seconds of a 429, which must be there and sane, and its message.
async fn assert_limited(response: Response, max_wait_secs: u64) -> String {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("a 429 says when to retry")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=max_wait_secs).contains(&retry_after),
        "Retry-After {retry_after}, expected 1..={max_wait_secs}"
    );
    assert_error(response, StatusCode::TOO_MANY_REQUESTS).await
}

async fn login_from(app: &TestApp, id: &str, password: &str, forwarded_for: &str) -> Response {
    app.client
        .post(app.url("/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"id": id, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn create_post(app: &TestApp, author: &TestUser, text: &str) -> Response {
    app.client
        .post(app.url("/post/create"))
        .bearer_auth(&author.token)
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn guesses_at_one_account_are_limited_from_every_address_and_other_accounts_are_not() {
    let app = spawn_app_with(|c| {
        limits_on(c);
        c.rate.rate_login_per_account = "3/min".parse().unwrap();
        c.rate.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let victim = app.register_user("Анна", "Смирнова").await;
    let other = app.register_user("Иван", "Петров").await;

    // Three guesses, each from another address (through the trusted proxy)…
    for (n, address) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .enumerate()
    {
        let response = login_from(&app, &victim, &format!("guess {n}"), address).await;
        assert_error(response, StatusCode::BAD_REQUEST).await;
    }
    // …and the account takes no more, even with the right password, from a fourth address: one
    // cell every 20 s.
    let refused = login_from(&app, &victim, "correct horse battery", "198.51.100.4").await;
    let message = assert_limited(refused, 20).await;
    assert!(message.contains("login_per_account"), "{message}");

    // The other account is counted apart.
    let response = login_from(&app, &other, "correct horse battery", "198.51.100.4").await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// One address guessing at an account does not lock its owner out: the owner, from another
/// address, gets in, again and again (a right password costs nothing), while the guesser stays
/// stopped. Ids are public and sequential: counting every attempt per account let one address
/// keep any account locked for ever.
async fn one_address_guessing_does_not_lock_the_owner_out(shared: bool) {
    let defaults = Config::defaults().rate;
    let app = spawn_app_with(|c| {
        limits_on(c);
        if shared {
            use_redis(c, &redis_url());
        }
        c.rate.rate_login_per_account_address = defaults.rate_login_per_account_address;
        c.rate.rate_login_per_account = defaults.rate_login_per_account;
        c.rate.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let owner = app.register_user("Анна", "Смирнова").await;
    let guesser = "198.51.100.66";
    let mut guesses = 0;
    let refused = loop {
        let response = login_from(&app, &owner, &format!("guess {guesses}"), guesser).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_error(response, StatusCode::BAD_REQUEST).await;
        guesses += 1;
        assert!(guesses <= 20, "20 guesses in a row were let through");
    };
    assert!(guesses >= 3, "stopped after {guesses} guesses");
    assert_limited(refused, 400).await;
    for _ in 0..8 {
        let response = login_from(&app, &owner, "correct horse battery", "203.0.113.10").await;
        assert_eq!(response.status(), StatusCode::OK, "the owner is locked out");
    }
    let response = login_from(&app, &owner, "correct horse battery", guesser).await;
    assert_limited(response, 400).await;
}

#[tokio::test]
async fn one_address_guessing_does_not_lock_the_owner_out_of_an_instance() {
    one_address_guessing_does_not_lock_the_owner_out(false).await;
}

#[tokio::test]
async fn one_address_guessing_does_not_lock_the_owner_out_through_redis() {
    one_address_guessing_does_not_lock_the_owner_out(true).await;
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let limited = |trusted: bool| {
        move |c: &mut Config| {
            limits_on(c);
            c.rate.rate_login_per_address = "2/min".parse().unwrap();
            if trusted {
                c.rate.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            }
        }
    };

    // Untrusted: a client that names a new address in each request is still the one peer.
    let direct = spawn_app_with(limited(false)).await;
    let id = direct.register_user("Анна", "Смирнова").await;
    for address in ["198.51.100.1", "198.51.100.2"] {
        let response = login_from(&direct, &id, "correct horse battery", address).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = login_from(&direct, &id, "correct horse battery", "198.51.100.3").await;
    let message = assert_limited(refused, 30).await;
    assert!(message.contains("login_per_address"), "{message}");

    // Behind a trusted proxy: each client address has its own count, and the proxy's own entry
    // (the rightmost) is what counts, not what the client put before it.
    let proxied = spawn_app_with(limited(true)).await;
    let id = proxied.register_user("Анна", "Смирнова").await;
    for claimed in ["1.1.1.1", "2.2.2.2"] {
        let chain = format!("{claimed}, 198.51.100.1");
        let response = login_from(&proxied, &id, "correct horse battery", &chain).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = login_from(
        &proxied,
        &id,
        "correct horse battery",
        "3.3.3.3, 198.51.100.1",
    )
    .await;
    assert_limited(refused, 30).await;
    let response = login_from(&proxied, &id, "correct horse battery", "198.51.100.2").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn registrations_from_one_address_are_limited_and_a_form_with_a_mistake_costs_nothing() {
    let app = spawn_app_with(|c| {
        limits_on(c);
        c.rate.rate_register_per_address = "2/h".parse().unwrap();
    })
    .await;
    let mut bad = registration("Анна", "Смирнова");
    bad["birthdate"] = json!("1990-13-45");
    assert_error(app.register(&bad).await, StatusCode::BAD_REQUEST).await;
    app.register_user("Анна", "Смирнова").await;
    app.register_user("Иван", "Петров").await;
    let refused = app.register(&registration("Пётр", "Иванов")).await;
    let message = assert_limited(refused, 1_800).await;
    assert!(message.contains("register_per_address"), "{message}");
    // Refused means not created: still two users.
    let users: Vec<i64> = first_column(&app.db().await, "select count(*) from users", &[]).await;
    assert_eq!(users, [2]);
}

#[tokio::test]
async fn writes_past_an_accounts_limit_are_refused_whole_and_reads_go_on() {
    let app = spawn_app_with(|c| {
        limits_on(c);
        c.rate.rate_writes_per_account = "3/min".parse().unwrap();
    })
    .await;
    let author = app.user("Анна", "Смирнова").await;
    let friend = app.user("Иван", "Петров").await;

    // A follow and two posts are three writes; the third post is one too many, and so is a
    // message.
    app.follow(&author, &friend).await;
    app.post(&author, "first").await;
    app.post(&author, "second").await;
    let refused = create_post(&app, &author, "third").await;
    let message = assert_limited(refused, 20).await;
    assert!(message.contains("writes_per_account"), "{message}");
    let refused = app
        .client
        .post(app.url(&format!("/dialog/{}/send", friend.id)))
        .bearer_auth(&author.token)
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_limited(refused, 20).await;

    // Nothing of the refused calls was written.
    let client = app.db().await;
    let posts: Vec<i64> = first_column(&client, "select count(*) from posts", &[]).await;
    assert_eq!(posts, [2]);
    let messages: Vec<i64> =
        first_column(&client, "select count(*) from dialog_messages", &[]).await;
    assert_eq!(messages, [0]);

    // Reads are not limited; another account writes on.
    let response = app.get_as(&author, "/post/feed").await;
    assert_eq!(response.status(), StatusCode::OK);
    app.post(&friend, "mine").await;
}

#[tokio::test]
async fn instances_sharing_redis_share_the_counts() {
    let app = spawn_app_with(|c| {
        limits_on(c);
        use_redis(c, &redis_url());
        c.rate.rate_login_per_account = "2/min".parse().unwrap();
    })
    .await;
    let peer = app.spawn_peer().await;
    let id = app.register_user("Анна", "Смирнова").await;
    // Logins count their failures: two wrong guesses, one on each instance…
    assert_error(app.login(&id, "guess 1").await, StatusCode::BAD_REQUEST).await;
    assert_error(peer.login(&id, "guess 2").await, StatusCode::BAD_REQUEST).await;
    // …and the account takes no third, on either instance.
    assert_limited(app.login(&id, "correct horse battery").await, 30).await;
    assert_limited(peer.login(&id, "correct horse battery").await, 30).await;
}

#[tokio::test]
async fn through_redis_a_write_refused_by_one_limit_takes_no_cell_of_the_other() {
    let app = spawn_app_with(|c| {
        limits_on(c);
        use_redis(c, &redis_url());
        c.rate.rate_writes_per_account = "3/min".parse().unwrap();
        c.rate.rate_writes_per_address = "2/min".parse().unwrap();
        c.rate.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let author = app.user("Анна", "Смирнова").await;
    let post_from = |address: &'static str| {
        app.client
            .post(app.url("/post/create"))
            .bearer_auth(&author.token)
            .header("x-forwarded-for", address)
            .json(&json!({ "text": "a post" }))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(
            post_from("198.51.100.1").await.unwrap().status(),
            StatusCode::OK
        );
    }
    // The address is spent; the account had a cell left, and the refusal did not take it…
    let message = assert_limited(post_from("198.51.100.1").await.unwrap(), 30).await;
    assert!(message.contains("writes_per_address"), "{message}");
    // …so from another address the account writes once more, and then is spent itself.
    assert_eq!(
        post_from("198.51.100.2").await.unwrap().status(),
        StatusCode::OK
    );
    let message = assert_limited(post_from("198.51.100.2").await.unwrap(), 20).await;
    assert!(message.contains("writes_per_account"), "{message}");
}
