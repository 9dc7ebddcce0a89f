use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{eventually, spawn_app, TestApp, TestUser};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(app: &TestApp, user: &TestUser) -> Socket {
    let url = format!(
        "{}/post/feed/posted",
        app.address.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", user.token).parse().unwrap(),
    );
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
}

async fn connect_with_query_token(app: &TestApp, user: &TestUser) -> Socket {
    let url = format!(
        "{}/post/feed/posted?token={}",
        app.address.replace("http://", "ws://"),
        user.token
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next text frame, or None if nothing arrives within `wait`.
pub async fn next_post(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Waits until the server has registered `n` sockets (the handshake returns before that).
async fn wait_for_sockets(app: &TestApp, n: usize) {
    eventually(Duration::from_secs(5), || async {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let open = metrics
            .lines()
            .find(|l| l.starts_with("live_sockets "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if open as usize >= n {
            Ok(())
        } else {
            Err(format!("{open} of {n} sockets registered"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_post_reaches_every_socket_of_every_follower_and_nobody_else() {
    let app = spawn_app().await;
    let author = app.user("Автор", "Постов").await;
    let fan = app.user("Фанат", "Первый").await;
    let stranger = app.user("Чужой", "Незнакомов").await;
    app.follow(&fan, &author).await;

    let mut fan_header = connect(&app, &fan).await;
    let mut fan_query = connect_with_query_token(&app, &fan).await;
    let mut author_socket = connect(&app, &author).await;
    let mut stranger_socket = connect(&app, &stranger).await;
    // Sockets are registered per process, and /metrics is process-wide: count at least ours.
    wait_for_sockets(&app, 4).await;

    let id = app.post(&author, "живой пост").await;
    let expected = json!({"postId": id, "postText": "живой пост", "author_user_id": author.id});
    assert_eq!(
        next_post(&mut fan_header, Duration::from_secs(5)).await,
        Some(expected.clone())
    );
    assert_eq!(
        next_post(&mut fan_query, Duration::from_secs(5)).await,
        Some(expected)
    );
    assert_eq!(
        next_post(&mut author_socket, Duration::from_millis(300)).await,
        None
    );
    assert_eq!(
        next_post(&mut stranger_socket, Duration::from_millis(300)).await,
        None
    );
    let _ = fan_header.close(None).await;
}

#[tokio::test]
async fn the_handshake_without_a_valid_token_is_refused_with_401() {
    let app = spawn_app().await;
    let ws = app.address.replace("http://", "ws://");
    for url in [
        format!("{ws}/post/feed/posted"),
        format!("{ws}/post/feed/posted?token=garbage"),
    ] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401)
            }
            other => panic!("expected a 401, got {other:?}"),
        }
    }
}

/// A socket receives exactly the posts created while its user followed the author: one made
/// just before an unfollow, and one made just after a follow, but none made in between.
#[tokio::test]
async fn a_socket_gets_exactly_the_posts_made_while_its_user_followed() {
    let app = spawn_app().await;
    let author = app.user("Автор", "Постов").await;
    let fan = app.user("Фанат", "Первый").await;
    let mut socket = connect(&app, &fan).await;
    wait_for_sockets(&app, 1).await;
    app.follow(&fan, &author).await;
    app.post(&author, "до отписки").await;
    app.unfollow(&fan, &author).await;
    app.post(&author, "без подписки").await;
    app.follow(&fan, &author).await;
    app.post(&author, "после подписки").await;
    let mut seen = Vec::new();
    while let Some(frame) = next_post(&mut socket, Duration::from_secs(2)).await {
        seen.push(frame["postText"].as_str().unwrap().to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["до отписки", "после подписки"]);
}
