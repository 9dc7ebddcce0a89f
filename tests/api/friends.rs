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

/// Who gets a post live is who followed its author when it was written, however late it is
/// routed: decided by the order of the writes, from the follow changes recorded beside follows.
#[tokio::test]
async fn who_followed_when_a_post_was_made_is_decided_by_the_order_of_the_writes() {
    use socialnet::friends::sql::followers_at;
    use socialnet::posts::PostId;
    use socialnet::users::UserId;

    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    let carl = app.user("Карл", "Смирнов").await;
    let boris = app.user("Борис", "Петров").await;
    app.follow(&anna, &boris).await;
    app.follow(&carl, &boris).await;
    let p1 = app.post(&boris, "p1").await;
    app.unfollow(&anna, &boris).await;
    let p2 = app.post(&boris, "p2").await;
    app.follow(&anna, &boris).await;
    app.unfollow(&carl, &boris).await;
    let p3 = app.post(&boris, "p3").await;
    // Anna leaves and comes back once more: her first change after p3 is an unfollow.
    app.unfollow(&anna, &boris).await;
    app.follow(&anna, &boris).await;

    let pool =
        socialnet::db::build_pool(&crate::helpers::test_config(&app.database_url).db).unwrap();
    let db = pool.get().await.unwrap();
    let (a, c) = (
        anna.id.parse::<i64>().unwrap(),
        carl.id.parse::<i64>().unwrap(),
    );
    let at = |post: &str, among: Option<Vec<i64>>| {
        let post = PostId(post.parse().unwrap());
        let author = UserId(boris.id.parse().unwrap());
        let db = &db;
        async move {
            let mut users = followers_at(db, author, post, among.as_deref())
                .await
                .unwrap();
            users.sort_unstable();
            users
        }
    };
    assert_eq!(at(&p1, None).await, [a, c]);
    assert_eq!(at(&p2, None).await, [c]);
    assert_eq!(at(&p3, None).await, [a]);
    assert_eq!(at(&p1, Some(vec![a])).await, [a]);
    assert_eq!(at(&p2, Some(vec![a])).await, Vec::<i64>::new());
    assert_eq!(at(&p3, Some(vec![a, c])).await, [a]);
}

/// A token that outlived its user (the account gone, the token still signed right) is a 401 on
/// a follow, as on every other call, not a 404 about the user to follow.
#[tokio::test]
async fn a_follow_with_the_token_of_a_user_who_no_longer_exists_is_a_401() {
    let app = spawn_app().await;
    let boris = app.user("Борис", "Петров").await;
    let ghost = app
        .client
        .put(app.url(&format!("/friend/set/{}", boris.id)))
        .bearer_auth(app.token_for(999_999).await)
        .send()
        .await
        .unwrap();
    assert_error(ghost, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn follows_stop_at_the_cap_and_following_again_someone_followed_still_works() {
    let app = crate::helpers::spawn_app_with(|c| c.max_follows = 2).await;
    let reader = app.user("Читатель", "Лентов").await;
    let authors = [
        app.user("Анна", "Иванова").await,
        app.user("Борис", "Петров").await,
        app.user("Вера", "Павлова").await,
    ];
    app.follow(&reader, &authors[0]).await;
    app.follow(&reader, &authors[1]).await;
    let third = app
        .put_as(&reader, &format!("/friend/set/{}", authors[2].id), None)
        .await;
    let message = assert_error(third, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("most allowed"), "{message}");
    // At the cap, a follow that exists already is the idempotent 200 it always was.
    app.follow(&reader, &authors[1]).await;
    app.unfollow(&reader, &authors[0]).await;
    app.follow(&reader, &authors[2]).await;
}
