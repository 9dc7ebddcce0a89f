//! Protections against hostile and heavy clients (docs/hardening.md lists each with its test).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    assert_error, fresh_database_url, registration, spawn_app, ChildGuard, DatabaseGuard,
};

#[tokio::test]
async fn a_refused_token_is_only_called_invalid_or_expired() {
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    let mut tampered = anna.token.clone();
    tampered.pop();
    for token in ["garbage", "a.b.c", tampered.as_str()] {
        let response = app
            .client
            .get(app.url("/post/feed"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(message, "invalid token", "{token}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    for scheme in ["BEARER", "bearer", "Bearer"] {
        let response = app
            .client
            .get(app.url("/post/feed"))
            .header("authorization", format!("{scheme} {}", anna.token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn a_query_string_that_is_not_utf8_is_a_400() {
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    for path in [
        "/user/search?first_name=%D0&last_name=%D0%98",
        "/user/search?first_name=%FF%FE&last_name=Ив",
        "/post/feed?limit=%C0%AF",
    ] {
        assert_error(app.get_as(&anna, path).await, StatusCode::BAD_REQUEST).await;
    }
    // Percent-encoded UTF-8 is fine.
    assert_eq!(
        app.get("/user/search?first_name=%D0%90%D0%BD&last_name=%D0%98")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn names_with_invisible_format_characters_are_refused() {
    let app = spawn_app().await;
    for name in [
        "Ан\u{202E}на",
        "Ан\u{200B}на",
        "\u{FEFF}Анна",
        "Ан\u{200D}на",
    ] {
        let mut body = registration("Анна", "Иванова");
        body["first_name"] = json!(name);
        assert_error(app.register(&body).await, StatusCode::BAD_REQUEST).await;
        let path = format!("/user/search?first_name={name}&last_name=Ив");
        assert_error(app.get(&path).await, StatusCode::BAD_REQUEST).await;
    }
}

/// Text logs carry colour codes on a terminal only: a file or a pipe gets plain text.
#[tokio::test]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let database_url = fresh_database_url();
    let _database = DatabaseGuard::new(&database_url);
    let log = std::env::temp_dir().join(format!("socialnet-log-{}", uuid::Uuid::new_v4().simple()));
    let file = std::fs::File::create(&log).unwrap();
    let _server = ChildGuard(
        std::process::Command::new(env!("CARGO_BIN_EXE_socialnet"))
            .args([
                "serve",
                "--database-url",
                &database_url,
                "--bind",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "info")
            .env("ARGON2_MEMORY_KIB", "1024")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap(),
    );
    let text = crate::helpers::eventually(Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("listening") {
            Ok(text)
        } else {
            Err(format!("no \"listening\" line yet: {text}"))
        }
    })
    .await;
    let _ = std::fs::remove_file(&log);
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

/// A raw connection to the app, for what an HTTP client library would not do.
async fn raw(app: &crate::helpers::TestApp) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
async fn until_closed(stream: &mut tokio::net::TcpStream, wait: Duration) -> (String, Duration) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the connection was still open after {wait:?}");
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_half_sent_request_and_an_idle_connection_are_cut_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let app = crate::helpers::spawn_app_with(|c| c.serve.header_read_timeout_ms = 500).await;
    // Slowloris: a request line and one header, then nothing.
    let mut slow = raw(&app).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, took) = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(400), "cut after {took:?}");
    // Kept alive after an answered request, then silent: closed the same way.
    let mut idle = raw(&app).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn headers_over_the_cap_are_a_431() {
    use tokio::io::AsyncWriteExt;
    let app = crate::helpers::spawn_app_with(|c| c.serve.max_header_bytes = 8 * 1024).await;
    let mut greedy = raw(&app).await;
    let padding = "a".repeat(16 * 1024);
    greedy
        .write_all(
            format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let (answer, _) = until_closed(&mut greedy, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A request under the cap is served.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_for_a_free_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(|c| {
        c.serve.max_connections = Some(2);
        c.serve.header_read_timeout_ms = 60_000;
    })
    .await;
    let holders = [raw(&app).await, raw(&app).await];
    // Accepted slots are taken one by one; give the server a moment to take both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = raw(&app).await;
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut answer)).await;
    assert!(
        early.is_err(),
        "served past the cap: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(holders);
    let (answer, _) = until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_finishes_within_its_grace_with_a_slow_client_attached() {
    use tokio::io::AsyncWriteExt;
    let database_url = fresh_database_url();
    let _database = DatabaseGuard::new(&database_url);
    let mut config = crate::helpers::test_config(&database_url);
    config.serve.header_read_timeout_ms = 60_000;
    config.serve.shutdown_grace_ms = 500;
    let app = socialnet::Application::build(config).await.unwrap();
    let address = format!("127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stopped within 5 s")
        .unwrap()
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn metrics_can_be_kept_off_the_api_port() {
    let database_url = fresh_database_url();
    let _database = DatabaseGuard::new(&database_url);
    let mut config = crate::helpers::test_config(&database_url);
    config.serve.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    let app = socialnet::Application::build(config).await.unwrap();
    let api = format!("http://127.0.0.1:{}", app.port());
    let metrics = format!("http://127.0.0.1:{}", app.metrics_port().unwrap());
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{api}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let hidden = client.get(format!("{api}/metrics")).send().await.unwrap();
    assert_error(hidden, StatusCode::NOT_FOUND).await;
    let text = client
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("db_pool_max_size"), "{text}");
}

/// A client learns that a dependency is down, not where it is nor what the library said: the
/// API's `/ready` and the 503s name no address and carry no error text; the operators'
/// listener (`METRICS_BIND`) has both.
#[tokio::test]
async fn the_public_ready_and_503s_name_no_internal_address() {
    let database_url = fresh_database_url();
    let _database = DatabaseGuard::new(&database_url);
    let mut config = crate::helpers::test_config(&database_url);
    config.serve.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    // A dialog service and a dialog store where nothing listens.
    let dead = crate::helpers::free_port();
    let mut dialogs_config = config.clone();
    config.dialogs.dialogs_url = Some(format!("http://127.0.0.1:{dead}"));
    dialogs_config.dialogs.dialog_store = socialnet::config::DialogStoreKind::Tarantool;
    dialogs_config.dialogs.tarantool_url = format!("socialnet:socialnet@127.0.0.1:{dead}")
        .parse()
        .unwrap();
    dialogs_config.serve.service = socialnet::config::Service::Dialogs;
    let mut urls = Vec::new();
    for config in [config, dialogs_config] {
        let app = socialnet::Application::build(config).await.unwrap();
        urls.push((
            format!("http://127.0.0.1:{}", app.port()),
            format!("http://127.0.0.1:{}", app.metrics_port().unwrap()),
        ));
        tokio::spawn(app.run_until(std::future::pending()));
    }
    let client = reqwest::Client::new();
    let seen = format!("127.0.0.1:{dead}");
    let main = crate::helpers::TestApp::at(urls[0].0.clone(), &database_url);
    let anna = main.user("Анна", "Иванова").await;
    let boris = main.register_user("Борис", "Петров").await;
    for (api, operators) in urls {
        let public = client.get(format!("{api}/ready")).send().await.unwrap();
        let public = public.text().await.unwrap();
        assert!(public.contains(r#""state":"down""#), "{public}");
        assert!(
            !public.contains(&seen) && !public.contains("error"),
            "{public}"
        );
        // The main service cannot forward it; the dialog service cannot store it.
        let send = client
            .post(format!("{api}/dialog/{boris}/send"))
            .bearer_auth(&anna.token)
            .json(&json!({"text": "?"}))
            .send()
            .await
            .unwrap();
        assert_eq!(send.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = send.text().await.unwrap();
        assert!(
            !body.contains(&seen) && !body.contains("os error"),
            "{body}"
        );
        assert!(body.contains("unavailable; retry later"), "{body}");
        let detail = client
            .get(format!("{operators}/ready"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(detail.contains(&seen), "{detail}");
        assert!(detail.contains("down: "), "{detail}");
    }
}

#[tokio::test]
async fn a_websocket_keeps_its_connection_slot_after_the_upgrade() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(|c| {
        c.serve.max_connections = Some(1);
        // reqwest keeps its connection open after the login: the header timeout frees the slot.
        c.serve.header_read_timeout_ms = 300;
    })
    .await;
    let anna = app.user("Анна", "Иванова").await;
    let app_client_free = crate::live::connect(&app, &anna).await;
    let mut waiting = raw(&app).await;
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(500), waiting.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "served while the websocket held the slot");
    drop(app_client_free);
    let (answer, _) = until_closed(&mut waiting, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Whether the server closed `socket` (a close frame or the end of the stream) within `wait`,
/// and the close frame's code if it sent one.
async fn closed_by_server(socket: &mut crate::live::Socket, wait: Duration) -> Option<Option<u16>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return Some(frame.map(|f| u16::from(f.code))),
            Ok(None) | Ok(Some(Err(_))) => return Some(None),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn a_user_past_the_per_user_socket_cap_loses_the_oldest_socket() {
    let app = crate::helpers::spawn_app_with(|c| c.live.live_sockets_per_user = 2).await;
    let author = app.user("Автор", "Постов").await;
    let fan = app.user("Фанат", "Первый").await;
    app.follow(&fan, &author).await;
    let mut oldest = crate::live::connect(&app, &fan).await;
    let mut second = crate::live::connect(&app, &fan).await;
    let mut newest = crate::live::connect(&app, &fan).await;
    assert!(
        closed_by_server(&mut oldest, Duration::from_secs(5))
            .await
            .is_some(),
        "the oldest socket stayed open"
    );
    app.post(&author, "после замены").await;
    for socket in [&mut second, &mut newest] {
        let frame = crate::live::next_post(socket, Duration::from_secs(5)).await;
        assert_eq!(frame.unwrap()["postText"], "после замены");
    }
}

#[tokio::test]
async fn past_the_instance_socket_cap_a_handshake_is_a_503() {
    let app = crate::helpers::spawn_app_with(|c| c.live.live_max_sockets = 2).await;
    let users = [
        app.user("Анна", "Иванова").await,
        app.user("Борис", "Петров").await,
        app.user("Вера", "Павлова").await,
    ];
    let _open = [
        crate::live::connect(&app, &users[0]).await,
        crate::live::connect(&app, &users[1]).await,
    ];
    let url = format!(
        "{}/post/feed/posted?token={}",
        app.address.replace("http://", "ws://"),
        users[2].token
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 503, got {other:?}"),
    }
}

#[tokio::test]
async fn a_socket_is_closed_when_its_token_expires() {
    let app = crate::helpers::spawn_app_with(|c| c.auth.token_ttl_secs = 2).await;
    let anna = app.user("Анна", "Иванова").await;
    let mut socket = crate::live::connect(&app, &anna).await;
    let started = std::time::Instant::now();
    let closed = closed_by_server(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(
        closed,
        Some(Some(1008)),
        "closed with 1008 (policy): token expired"
    );
    assert!(
        started.elapsed() <= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A token signed right, of a user who does not exist (a database reset under a kept secret, a
/// token minted by hand), is a 401 wherever a token is needed, also where the answer would be
/// empty anyway: no unfollow, mark, feed or dialog of nobody is a 200.
#[tokio::test]
async fn a_token_of_a_user_who_does_not_exist_is_a_401_everywhere() {
    let app = crate::helpers::spawn_app_with(|c| {
        crate::feed_cache::use_redis(c, &crate::feed_cache::redis_url());
    })
    .await;
    let anna = app.register_user("Анна", "Иванова").await;
    let ghost = app.token_for(987_654).await;
    let calls = [
        (reqwest::Method::PUT, format!("/friend/delete/{anna}"), None),
        (reqwest::Method::PUT, format!("/friend/set/{anna}"), None),
        (
            reqwest::Method::PUT,
            format!("/dialog/{anna}/read"),
            Some(json!({"up_to": "1"})),
        ),
        (reqwest::Method::GET, "/post/feed".to_owned(), None),
        (reqwest::Method::GET, format!("/dialog/{anna}/list"), None),
        (reqwest::Method::GET, "/dialog/unread".to_owned(), None),
        (
            reqwest::Method::POST,
            format!("/dialog/{anna}/send"),
            Some(json!({"text": "привет"})),
        ),
        (
            reqwest::Method::POST,
            "/post/create".to_owned(),
            Some(json!({"text": "привет"})),
        ),
    ];
    for (method, path, body) in calls {
        let mut request = app
            .client
            .request(method.clone(), app.url(&path))
            .bearer_auth(&ghost);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        assert_error(response, StatusCode::UNAUTHORIZED).await;
    }
}

/// One response read off a raw connection: its head (status line and headers, lowercased) and
/// its body (by `Content-Length`, which the server always sends for these answers).
async fn read_response(stream: &mut tokio::net::TcpStream) -> Result<(String, Vec<u8>), String> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) => {
                return Err(format!(
                    "closed after {:?}",
                    String::from_utf8_lossy(&received)
                ))
            }
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return Err(format!(
                    "{e} after {:?}",
                    String::from_utf8_lossy(&received)
                ))
            }
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse().unwrap());
    let mut body = received[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) => return Err(format!("closed in the body of {head:?}")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{e} in the body of {head:?}")),
        }
    }
    Ok((head, body))
}

/// A POST's head and a JSON body of `size` bytes (a message text of that size, about).
fn post_with_body(path: &str, authorization: &str, size: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"text": "{}"}}"#,
        "ж".repeat(size.saturating_sub(12) / 2)
    );
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// nginx and HTTP clients put a connection back in their pool after a complete answer that did
/// not say `Connection: close`: such an answer must leave the connection able to carry the
/// next request, also when it was given before the body was read (a bad token, a bad path).
#[tokio::test]
async fn an_answer_given_before_the_body_was_read_leaves_the_connection_usable() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.register_user("Борис", "Петров").await;
    let valid = format!("Bearer {}", anna.token);
    let cases = [
        (
            format!("/dialog/{boris}/send"),
            "Bearer made-up",
            60_000,
            "401",
        ),
        ("/dialog/abc/send".to_owned(), valid.as_str(), 60_000, "400"),
        // Read whole by its handler, as before.
        (
            format!("/dialog/{boris}/send"),
            valid.as_str(),
            2_000,
            "200",
        ),
    ];
    for (path, authorization, size, status) in cases {
        let mut stream = raw(&app).await;
        stream
            .write_all(&post_with_body(&path, authorization, size))
            .await
            .unwrap();
        let (head, _) = read_response(&mut stream).await.unwrap();
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{head}");
        assert!(!head.contains("connection: close"), "{path}: {head}");
        // The same connection carries the next request.
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let next = read_response(&mut stream).await;
        assert!(
            next.as_ref()
                .is_ok_and(|(head, _)| head.starts_with("http/1.1 200")),
            "{path} ({status}), then /health on the same connection: {next:?}"
        );
    }
}

/// A body over the limit is not read (413 at once, from its length), but the client is let to
/// finish sending it before the connection closes: closing with unread data would reset the
/// connection, and a client still writing (nginx, curl) would lose the answer.
#[tokio::test]
async fn a_body_over_the_limit_is_answered_and_the_client_may_finish_sending_it() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let boris = app.register_user("Борис", "Петров").await;
    for authorization in ["Bearer made-up", "Bearer another-made-up"] {
        let stream = raw(&app).await;
        let (mut reading, mut writing) = stream.into_split();
        let request = post_with_body(&format!("/dialog/{boris}/send"), authorization, 4 << 20);
        let writer = tokio::spawn(async move {
            writing.write_all(&request).await?;
            writing.flush().await
        });
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(&mut reading, &mut answer),
        )
        .await
        .expect("the connection closes within 10 s");
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(read.is_ok(), "{read:?} after {answer:?}");
        assert!(answer.starts_with("http/1.1 413"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        let written = writer.await.unwrap();
        assert!(written.is_ok(), "the client could not finish: {written:?}");
    }
}
