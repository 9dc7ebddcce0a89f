//! Post events through the outbox and RabbitMQ: feeds kept by the queue's consumers, live posts
//! routed to whichever instance holds a follower's socket, nothing lost while the broker is away.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::feed_cache::{
    cached_feed_scenario, cached_list, celebrity_scenario, clear_redis, feed_becomes, redis_url,
    use_redis,
};
use crate::helpers::{amqp_url, eventually, spawn_app_with, use_broker, TestApp, TestUser};
use crate::live::{connect, next_post, Socket};
use crate::rabbit::RabbitNodes;

async fn outbox_rows(app: &TestApp) -> Vec<(String, Value)> {
    let client = app.db().await;
    client
        .query("select kind, payload::text from outbox order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let payload: String = row.get(1);
            (row.get(0), serde_json::from_str(&payload).unwrap())
        })
        .collect()
}

/// Waits until the relay has published (and deleted) every outbox row.
async fn outbox_drains(app: &TestApp) {
    eventually(Duration::from_secs(15), || async {
        match outbox_rows(app).await {
            rows if rows.is_empty() => Ok(()),
            rows => Err(format!("outbox still holds {rows:?}")),
        }
    })
    .await;
}

/// Publishes `events` (routing key, JSON) to the app's events exchange, as the relay or a
/// redelivery would, each confirmed by the broker. The app declares its exchange when its broker
/// session is up, which a busy broker may take a while to allow: until then this waits.
pub async fn publish_events(app: &TestApp, events: &[(&str, String)]) {
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let names = socialnet::broker::Names::new(
        &app.config.broker.amqp_prefix,
        app.config.broker.live_route_exchange,
    );
    eventually(Duration::from_secs(20), || async {
        // A passive declaration only asks; a missing exchange closes its channel, so one each.
        let probe = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        let passive = lapin::options::ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        probe
            .exchange_declare(
                names.events.as_str().into(),
                lapin::ExchangeKind::Topic,
                passive,
                Default::default(),
            )
            .await
            .map_err(|e| format!("the app's events exchange: {e}"))?;
        let _ = probe.close(200, "declared".into()).await;
        Ok(())
    })
    .await;
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    for (key, body) in events {
        let confirm = channel
            .basic_publish(
                names.events.as_str().into(),
                (*key).into(),
                Default::default(),
                body.as_bytes(),
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
    }
    let _ = connection.close(200, "done".into()).await;
}

/// Reads frames until every text in `expected` has arrived (or `wait` passes); returns all seen.
async fn receive_all(socket: &mut Socket, expected: &[&str], wait: Duration) -> BTreeSet<String> {
    let mut texts = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + wait;
    while !expected.iter().all(|t| texts.contains(*t)) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_post(socket, left).await {
            Some(frame) => {
                texts.insert(frame["postText"].as_str().unwrap().to_owned());
            }
            None => break,
        }
    }
    texts
}

fn set(texts: &[&str]) -> BTreeSet<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

#[tokio::test]
async fn through_the_broker_the_cached_feed_follows_posts_edits_deletes_and_follows() {
    let app = spawn_app_with(|c| {
        use_redis(c, &redis_url());
        use_broker(c, &amqp_url());
    })
    .await;
    cached_feed_scenario(&app).await;
    outbox_drains(&app).await;
}

#[tokio::test]
async fn through_the_broker_celebrities_are_merged_at_read_time() {
    let app = spawn_app_with(|c| {
        use_redis(c, &redis_url());
        use_broker(c, &amqp_url());
        c.cache.feed_celebrity_followers = 1;
    })
    .await;
    celebrity_scenario(&app).await;
}

#[tokio::test]
async fn a_follower_connected_to_one_instance_gets_a_post_made_through_another() {
    follower_on_every_instance_gets_the_post(None).await;
}

/// The same with the author over `LIVE_BROADCAST_FOLLOWERS`: the post goes to every instance,
/// and each finds the follower among its own sockets.
#[tokio::test]
async fn a_celebritys_post_broadcast_to_every_instance_reaches_exactly_the_connected_followers() {
    follower_on_every_instance_gets_the_post(Some(0)).await;
}

async fn follower_on_every_instance_gets_the_post(broadcast_over: Option<i64>) {
    let one = spawn_app_with(|c| {
        use_broker(c, &amqp_url());
        if let Some(over) = broadcast_over {
            c.broker.live_broadcast_followers = over;
        }
    })
    .await;
    let two = one.spawn_peer().await;
    let author = one.user("Автор", "Постов").await;
    let fan = one.user("Фанат", "Первый").await;
    let stranger = one.user("Чужой", "Незнакомов").await;
    one.follow(&fan, &author).await;

    // The fan on both instances, the others on the first.
    let mut fan_one = connect(&one, &fan).await;
    let mut fan_two = connect(&two, &fan).await;
    let mut author_one = connect(&one, &author).await;
    let mut stranger_one = connect(&one, &stranger).await;

    let id = two.post(&author, "через брокер").await;
    let expected = json!({"postId": id, "postText": "через брокер", "author_user_id": author.id});
    assert_eq!(
        next_post(&mut fan_one, Duration::from_secs(5)).await,
        Some(expected.clone())
    );
    assert_eq!(
        next_post(&mut fan_two, Duration::from_secs(5)).await,
        Some(expected)
    );
    assert_eq!(
        next_post(&mut author_one, Duration::from_millis(300)).await,
        None
    );
    assert_eq!(
        next_post(&mut stranger_one, Duration::from_millis(300)).await,
        None
    );
    // With the fan's socket on the first instance closed (and its routing key unbound there),
    // the socket on the second still gets the fan's posts.
    fan_one.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    one.post(&author, "второй").await;
    assert_eq!(
        next_post(&mut fan_two, Duration::from_secs(5))
            .await
            .unwrap()["postText"],
        "второй"
    );
}

#[tokio::test]
async fn an_event_delivered_twice_lands_in_a_feed_once() {
    let app = spawn_app_with(|c| {
        use_redis(c, &redis_url());
        use_broker(c, &amqp_url());
    })
    .await;
    let reader = app.user("Читатель", "Лентов").await;
    let anna = app.user("Анна", "Иванова").await;
    app.follow(&reader, &anna).await;
    feed_becomes(&app, &reader, "", &[]).await;
    let first = app.post(&anna, "первый").await;
    feed_becomes(&app, &reader, "", &["первый"]).await;

    // The same event again, as a redelivery would bring it.
    let event = json!({"kind": "post.created", "post_id": first.parse::<i64>().unwrap(),
                       "author_id": anna.id.parse::<i64>().unwrap(), "text": "первый"});
    publish_events(&app, &[("post.created", event.to_string())]).await;
    // An event published after the duplicate shows that the duplicate had its turn.
    app.post(&anna, "второй").await;
    feed_becomes(&app, &reader, "", &["второй", "первый"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cached = cached_list(&app, &format!("feed:{}", reader.id)).await;
    assert_eq!(
        cached.iter().filter(|id| **id == first).count(),
        1,
        "{cached:?}"
    );
    clear_redis(&app).await;
}

#[tokio::test]
async fn writes_while_the_broker_is_unreachable_wait_in_the_outbox_with_their_events() {
    // Nothing listens on port 1: the supervisor keeps retrying while the API keeps answering.
    let app = spawn_app_with(|c| use_broker(c, "amqp://guest:guest@127.0.0.1:1/%2f")).await;
    let author = app.user("Автор", "Постов").await;
    let kept = app.post(&author, "остаётся").await;
    let edited = app.post(&author, "будет исправлен").await;
    let deleted = app.post(&author, "будет удалён").await;
    let response = app
        .put_as(
            &author,
            "/post/update",
            Some(&json!({"id": edited, "text": "исправлен"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .put_as(&author, &format!("/post/delete/{deleted}"), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // A refused write leaves no event behind.
    let stranger = app.user("Чужой", "Незнакомов").await;
    let response = app
        .put_as(
            &stranger,
            "/post/update",
            Some(&json!({"id": kept, "text": "чужая правка"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let author_id: i64 = author.id.parse().unwrap();
    let id = |s: &str| s.parse::<i64>().unwrap();
    assert_eq!(
        outbox_rows(&app).await,
        vec![
            (
                "post.created".to_owned(),
                json!({"kind": "post.created", "post_id": id(&kept), "author_id": author_id, "text": "остаётся"})
            ),
            (
                "post.created".to_owned(),
                json!({"kind": "post.created", "post_id": id(&edited), "author_id": author_id, "text": "будет исправлен"})
            ),
            (
                "post.created".to_owned(),
                json!({"kind": "post.created", "post_id": id(&deleted), "author_id": author_id, "text": "будет удалён"})
            ),
            (
                "post.updated".to_owned(),
                json!({"kind": "post.updated", "post_id": id(&edited), "author_id": author_id})
            ),
            (
                "post.deleted".to_owned(),
                json!({"kind": "post.deleted", "post_id": id(&deleted), "author_id": author_id})
            ),
        ]
    );
}

/// A celebrity posting 30 times at once does not hold up another author's live post: the router
/// does not read the celebrity's 100,000 followers (none of whom but one is connected) for each
/// post, and the instances' work on the burst is on a queue of its own. Before, this wait grew
/// with the followers of the posts ahead (29 s for 30 posts of an author with 200,000, as the
/// review measured); the bound here is generous, the point is that it no longer grows.
#[tokio::test]
async fn a_celebritys_burst_does_not_hold_up_another_authors_live_post() {
    let app = spawn_app_with(|c| use_broker(c, &amqp_url())).await;
    let celebrity = app.user("Звезда", "Известная").await;
    let fan = app.user("Фанат", "Первый").await;
    let other = app.user("Автор", "Обычный").await;
    let reader = app.user("Читатель", "Лентов").await;
    app.follow(&fan, &celebrity).await;
    app.follow(&reader, &other).await;
    app.db()
        .await
        .batch_execute(&format!(
            "insert into users (first_name, second_name, birthdate, password_hash)
                 select 'Поклонник', 'Номер' || g, '1990-01-01', 'not a hash'
                 from generate_series(1, 100000) g;
             insert into friends (user_id, friend_id)
                 select id, {celebrity} from users where id > {reader}",
            celebrity = celebrity.id,
            reader = reader.id,
        ))
        .await
        .unwrap();
    let mut fan_socket = connect(&app, &fan).await;
    let mut reader_socket = connect(&app, &reader).await;
    // Both users routed here before the first post.
    app.post(&other, "разминка").await;
    assert_eq!(
        receive_all(&mut reader_socket, &["разминка"], Duration::from_secs(10)).await,
        set(&["разминка"])
    );

    let burst: Vec<String> = (1..=30).map(|n| format!("звезда {n}")).collect();
    for text in &burst {
        app.post(&celebrity, text).await;
    }
    let posted = std::time::Instant::now();
    app.post(&other, "тем временем").await;
    let frame = next_post(&mut reader_socket, Duration::from_secs(60))
        .await
        .expect("the other author's post arrives");
    let waited = posted.elapsed();
    assert_eq!(frame["postText"], "тем временем");
    assert!(
        waited < Duration::from_secs(5),
        "another author's live post waited {waited:?} behind the burst"
    );
    // The celebrity's connected fan gets the whole burst.
    let expected: Vec<&str> = burst.iter().map(String::as_str).collect();
    assert_eq!(
        receive_all(&mut fan_socket, &expected, Duration::from_secs(30)).await,
        set(&expected)
    );
}

/// An app on the given broker(s) with Redis; a reader following Anna, watching on a socket that
/// has already received Anna's first post.
async fn watched_app(urls: String) -> (TestApp, TestUser, TestUser, Socket) {
    let app = spawn_app_with(move |c| {
        use_redis(c, &redis_url());
        use_broker(c, &urls);
    })
    .await;
    let reader = app.user("Читатель", "Лентов").await;
    let anna = app.user("Анна", "Иванова").await;
    app.follow(&reader, &anna).await;
    feed_becomes(&app, &reader, "", &[]).await;
    let mut socket = connect(&app, &reader).await;
    app.post(&anna, "до").await;
    assert_eq!(
        receive_all(&mut socket, &["до"], Duration::from_secs(5)).await,
        set(&["до"])
    );
    (app, reader, anna, socket)
}

#[tokio::test]
async fn events_written_while_rabbitmq_is_stopped_all_arrive_once_it_is_back() {
    let rabbit = RabbitNodes::start(1).await;
    let (app, reader, anna, mut socket) = watched_app(rabbit.url(1)).await;
    rabbit.stop_node(1).await;
    let during = ["во время 1", "во время 2", "во время 3"];
    for text in during {
        app.post(&anna, text).await;
    }
    // Nothing can be published: every event waits in the outbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(outbox_rows(&app).await.len(), during.len());

    rabbit.start_node(1).await;
    // The supervisor reconnects, re-binds the socket's user and the relay publishes the backlog.
    everything_arrives(&app, &reader, &mut socket, &during).await;
}

/// Posts routed late (the broker away) still go by who followed when each was made: the one made
/// before the unfollow arrives, the one made while unfollowed does not, the one made after the
/// follow again does; in the feed too, which shows the author's posts again once followed.
#[tokio::test]
async fn a_post_routed_after_an_unfollow_still_reaches_who_followed_when_it_was_made() {
    let rabbit = RabbitNodes::start(1).await;
    let (app, reader, anna, mut socket) = watched_app(rabbit.url(1)).await;
    rabbit.stop_node(1).await;
    app.post(&anna, "до отписки").await;
    app.unfollow(&reader, &anna).await;
    app.post(&anna, "без подписки").await;
    app.follow(&reader, &anna).await;
    app.post(&anna, "после подписки").await;
    assert_eq!(
        outbox_rows(&app).await.len(),
        3,
        "routed only once the broker is back"
    );
    rabbit.start_node(1).await;
    outbox_drains(&app).await;
    let mut seen = receive_all(
        &mut socket,
        &["до отписки", "после подписки"],
        Duration::from_secs(30),
    )
    .await;
    // Anything else would have come with them; give a straggler a moment all the same.
    if let Some(frame) = next_post(&mut socket, Duration::from_millis(500)).await {
        seen.insert(frame["postText"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, set(&["до отписки", "после подписки"]));
    clear_redis(&app).await;
}

#[tokio::test]
async fn the_event_bus_fails_over_when_the_cluster_node_in_use_stops() {
    let rabbit = RabbitNodes::start(3).await;
    let (app, reader, anna, mut socket) = watched_app(rabbit.urls()).await;
    // The instance is connected to node 1 (the first URL). Without it, the quorum queues keep a
    // majority on nodes 2 and 3, and the supervisor moves on to the next URL.
    rabbit.stop_node(1).await;
    let after = ["после 1", "после 2", "после 3"];
    for text in after {
        app.post(&anna, text).await;
    }
    everything_arrives(&app, &reader, &mut socket, &after).await;
}

/// Every one of `texts` (posted by Anna after "до") reaches the socket and the reader's feed,
/// and the outbox empties.
async fn everything_arrives(app: &TestApp, reader: &TestUser, socket: &mut Socket, texts: &[&str]) {
    assert_eq!(
        receive_all(socket, texts, Duration::from_secs(30)).await,
        set(texts)
    );
    outbox_drains(app).await;
    let mut expected: Vec<&str> = texts.iter().rev().copied().collect();
    expected.push("до");
    feed_becomes(app, reader, "", &expected).await;
    clear_redis(app).await;
}
