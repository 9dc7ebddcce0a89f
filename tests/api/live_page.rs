//! The live-feed page (`/demo/live`) in a real browser: Debian's Chromium, headless, driven by
//! `tests/browser/live_page.mjs` (playwright-core from `tests/browser/package-lock.json`, which
//! the test script installs). Two sessions: one follows the other, and a post made in one
//! appears in the other within a second.

use reqwest::StatusCode;

use crate::helpers::{browser_script, spawn_app};

#[tokio::test]
async fn the_page_serves_itself_whole_with_a_policy_that_keeps_it_so() {
    let app = spawn_app().await;
    let response = app.get("/demo/live").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"));
    // No other site may frame the page: `default-src` does not cover framing.
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let page = response.text().await.unwrap();
    // Nothing loaded from elsewhere.
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "{page}"
    );
    assert!(page.contains("/post/feed/posted?token="));
}

#[tokio::test]
async fn a_post_made_in_one_browser_appears_in_a_follower_s_within_a_second() {
    let app = spawn_app().await;
    let author = app.register_user("Автор", "Браузерный").await;
    let reader = app.register_user("Читатель", "Браузерный").await;
    let base = app.address.clone();
    let result = tokio::task::spawn_blocking(move || {
        browser_script(
            "live_page.mjs",
            &[&base, &author, &reader, "correct horse battery"],
        )
    })
    .await
    .unwrap();
    assert!(result["ms"].as_u64().unwrap() < 1000, "{result}");
}
