//! Two instances behind a real HAProxy: tokens work across instances, websockets upgrade through
//! the balancer, and losing an instance costs no request.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use socialnet::Application;

use crate::helpers::{
    eventually, fresh_database_url, registration, test_config, ChildGuard, DatabaseGuard,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn two_instances_behind_haproxy_share_tokens_and_survive_losing_one() {
    let database_url = fresh_database_url();
    let _database = DatabaseGuard::new(&database_url);
    let mut ports = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..2 {
        let app = Application::build(test_config(&database_url))
            .await
            .unwrap();
        ports.push(app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        stops.push(stop);
    }
    let front = free_port();
    let dir = std::env::temp_dir().join(format!("socialnet-lb-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "defaults
    mode http
    option http-server-close
    option redispatch
    retries 3
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout tunnel 1h
frontend api
    bind 127.0.0.1:{front}
    default_backend socialnet
backend socialnet
    balance roundrobin
    option httpchk GET /health
    http-response set-header x-served-by %s
    default-server check inter 200ms fall 1 rise 1
    server a 127.0.0.1:{}
    server b 127.0.0.1:{}
",
        ports[0], ports[1]
    );
    std::fs::write(dir.join("haproxy.cfg"), config).unwrap();
    let _haproxy = ChildGuard(
        Command::new("haproxy")
            .arg("-f")
            .arg(dir.join("haproxy.cfg"))
            .spawn()
            .expect("haproxy is installed (apt-get install haproxy)"),
    );
    let base = format!("http://127.0.0.1:{front}");
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(5), || async {
        match client.get(format!("{base}/health")).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            other => Err(format!("HAProxy not serving yet: {other:?}")),
        }
    })
    .await;

    // Register and log in through the balancer; the token is honoured by both instances.
    let response = client
        .post(format!("{base}/user/register"))
        .json(&registration("Анна", "Иванова"))
        .send()
        .await
        .unwrap();
    let id = response.json::<Value>().await.unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = client
        .post(format!("{base}/login"))
        .json(&serde_json::json!({"id": id, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    let token = response.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut served_by = HashSet::new();
    for _ in 0..10 {
        let response = client
            .get(format!("{base}/post/feed"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        served_by.insert(
            response.headers()["x-served-by"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(served_by.len(), 2, "both instances served: {served_by:?}");

    // The live-feed handshake passes through the balancer.
    let url = format!("ws://127.0.0.1:{front}/post/feed/posted?token={token}");
    let (socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    drop(socket);

    // One instance stops. Requests racing its shutdown may fail until the health check marks it
    // down (200 ms here); from then on every request succeeds, on the other instance.
    stops.remove(0).send(()).unwrap();
    eventually(Duration::from_secs(5), || async {
        let response = client
            .get(format!("{base}/post/feed"))
            .bearer_auth(&token)
            .send()
            .await;
        match response {
            Ok(r) if r.status() == StatusCode::OK && r.headers()["x-served-by"] == "b" => Ok(()),
            other => Err(format!(
                "HAProxy never routed around the stopped instance: {other:?}"
            )),
        }
    })
    .await;
    for _ in 0..20 {
        let response = client
            .get(format!("{base}/post/feed"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}
