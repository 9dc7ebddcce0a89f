//! Two instances behind a real HAProxy, and behind each native balancer stack: tokens work across
//! instances and keep reaching one, websockets upgrade through the balancer, and losing an
//! instance costs no read.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use socialnet::Application;

use crate::helpers::{
    eventually, free_port, fresh_database_url, registration, test_config, ChildGuard, DatabaseGuard,
};

/// Registers a user through `base` and logs them in: (id, token).
async fn register_and_log_in(
    client: &reqwest::Client,
    base: &str,
    first: &str,
    second: &str,
) -> (String, String) {
    let id = client
        .post(format!("{base}/user/register"))
        .json(&registration(first, second))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = client
        .post(format!("{base}/login"))
        .json(&serde_json::json!({"id": id, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, token)
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
    let (_, token) = register_and_log_in(&client, &base, "Анна", "Иванова").await;
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

/// Instances of this build behind a balancer, started by its native script
/// (`scripts/stack/haproxy-local.sh` or `nginx-local.sh`) on free ports; stopped, with their
/// database dropped, when the test ends however it ends.
struct Balanced {
    script: &'static str,
    port: u16,
    dir: std::path::PathBuf,
    database_url: String,
    url: String,
    /// The script's own settings (DIALOG_SERVICE, say).
    settings: Vec<(&'static str, String)>,
}

impl Balanced {
    fn start(script: &'static str, instances: u16) -> Balanced {
        Balanced::start_with(script, instances, &[], &[])
    }

    /// With the script's `settings`, and `more_ports` (offsets from the balancer's) free too.
    fn start_with(
        script: &'static str,
        instances: u16,
        settings: &[(&'static str, &str)],
        more_ports: &[u16],
    ) -> Balanced {
        // The balancer on `port`, instance I on `port + I`.
        let port = loop {
            let base = 20_000 + (uuid::Uuid::new_v4().as_u128() % 20_000) as u16;
            if (0..=instances)
                .chain(more_ports.iter().copied())
                .all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
            {
                break base;
            }
        };
        let mut stack = Balanced {
            script,
            port,
            dir: std::env::temp_dir()
                .join(format!("socialnet-lb-{}", uuid::Uuid::new_v4().simple())),
            database_url: fresh_database_url(),
            url: String::new(),
            settings: settings
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned()))
                .collect(),
        };
        let out = stack.run(&["start", &instances.to_string()]);
        stack.url = out.lines().last().unwrap().to_owned();
        stack
    }

    /// The stack's script, pointed at this stack's ports and folder.
    fn script(&self) -> Command {
        let mut command = Command::new(format!(
            "{}/scripts/stack/{}",
            env!("CARGO_MANIFEST_DIR"),
            self.script
        ));
        command
            .env("PORT", self.port.to_string())
            .env("SOCIALNET_LB_DIR", &self.dir)
            .envs(self.settings.iter().map(|(name, value)| (name, value)));
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self
            .script()
            .args(args)
            .env("SOCIALNET_BIN", env!("CARGO_BIN_EXE_socialnet"))
            .env("DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "warn")
            .env("RATE_LIMITS", "off")
            .env("ARGON2_MEMORY_KIB", "1024")
            .env("ARGON2_ITERATIONS", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.script,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Balanced {
    fn drop(&mut self) {
        let _ = self.script().arg("stop").status();
        drop(DatabaseGuard::new(&self.database_url));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Readers and writers through the balancer while one of two instances is killed (SIGKILL, no
/// goodbye): no read may fail, every acknowledged post must exist, and a write may fail only
/// when it was in flight on the dead instance (it is not sent again: it may have been applied),
/// answered 502 or, by HAProxy on a kept-alive connection, by closing it.
async fn an_instance_killed_under_load_fails_no_read(script: &'static str) {
    let stack = Balanced::start(script, 2);
    let base = stack.url.clone();
    let client = reqwest::Client::new();
    let (id, token) = register_and_log_in(&client, &base, "Ирина", "Балансова").await;
    // The live-feed handshake passes through the balancer.
    let url = format!(
        "{}/post/feed/posted?token={token}",
        base.replace("http", "ws")
    );
    let (socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    drop(socket);

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for task in 0..6usize {
        let (client, base, token, id, done) = (
            client.clone(),
            base.clone(),
            token.clone(),
            id.clone(),
            done.clone(),
        );
        readers.push(tokio::spawn(async move {
            let paths = [
                format!("/user/get/{id}"),
                "/post/feed".to_owned(),
                "/health".to_owned(),
            ];
            let (mut served, mut failed, mut by) = (0u64, Vec::new(), HashSet::new());
            let mut i = task;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let path = &paths[i % paths.len()];
                i += 1;
                // Only the feed needs the token; the other reads go anonymously, spread over
                // both instances (a token keeps reaching one).
                let mut request = client.get(format!("{base}{path}"));
                if path == "/post/feed" {
                    request = request.bearer_auth(&token);
                }
                match request.send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        served += 1;
                        if let Some(server) = r.headers().get("x-served-by") {
                            by.insert(server.to_str().unwrap().to_owned());
                        }
                    }
                    Ok(r) => failed.push(format!("{path}: {}", r.status())),
                    Err(e) => failed.push(format!("{path}: {e}")),
                }
            }
            (served, failed, by)
        }));
    }
    let mut writers = Vec::new();
    for _ in 0..2 {
        let (client, base, token, done) =
            (client.clone(), base.clone(), token.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let response = client
                    .post(format!("{base}/post/create"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"text": "пишу, пока балансир работает"}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == StatusCode::OK => {
                        acknowledged.push(r.json::<String>().await.unwrap());
                    }
                    Ok(r) => failed.push(r.status().to_string()),
                    // HAProxy's answer to a request cut off on a kept-alive client connection: it
                    // closes that too, telling the client the request got no answer (a fresh
                    // connection would get a 502).
                    Err(e) if e.is_request() => failed.push("closed without an answer".to_owned()),
                    Err(e) => panic!("a write failed on the client's side: {e:?}"),
                }
            }
            (acknowledged, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stack.run(&["kill-instance", "1"]);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);

    let (mut served, mut failed, mut by) = (0, Vec::new(), HashSet::new());
    for reader in readers {
        let (s, f, b) = reader.await.unwrap();
        served += s;
        failed.extend(f);
        by.extend(b);
    }
    assert!(
        failed.is_empty(),
        "{} reads failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(served > 100, "only {served} reads");
    // Both instances served before the kill (nginx names them by address, HAProxy by name).
    assert!(by.len() >= 2, "served by {by:?}");
    let (mut acknowledged, mut write_failures) = (Vec::new(), Vec::new());
    for writer in writers {
        let (a, f) = writer.await.unwrap();
        acknowledged.extend(a);
        write_failures.extend(f);
    }
    assert!(
        write_failures
            .iter()
            .all(|s| s.starts_with("502") || s == "closed without an answer")
            && write_failures.len() <= 4,
        "writes failed with {write_failures:?}"
    );
    eprintln!(
        "{script}: {served} reads, 0 failed; {} writes acknowledged, {} failed ({write_failures:?})",
        acknowledged.len(),
        write_failures.len()
    );
    for post in acknowledged {
        let response = client
            .get(format!("{base}/post/get/{post}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "acknowledged post {post} is missing"
        );
    }
}

#[tokio::test]
async fn behind_haproxy_an_instance_killed_under_load_fails_no_read() {
    an_instance_killed_under_load_fails_no_read("haproxy-local.sh").await;
}

#[tokio::test]
async fn behind_nginx_an_instance_killed_under_load_fails_no_read() {
    an_instance_killed_under_load_fails_no_read("nginx-local.sh").await;
}

/// Requests with one token keep reaching one instance (whose read-your-writes notes know its
/// user's last write), different tokens spread over both, and requests without a token too.
async fn a_token_keeps_reaching_one_instance(script: &'static str) {
    let stack = Balanced::start(script, 2);
    let base = stack.url.clone();
    let client = reqwest::Client::new();
    let served_by = |response: &reqwest::Response| {
        assert_eq!(response.status(), StatusCode::OK);
        response.headers()["x-served-by"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let mut by_token = HashSet::new();
    for n in 0..20 {
        let (_, token) =
            register_and_log_in(&client, &base, "Липкий", &format!("Маршрут{n}")).await;
        let mut instances = HashSet::new();
        for _ in 0..6 {
            let response = client
                .get(format!("{base}/post/feed"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            instances.insert(served_by(&response));
        }
        assert_eq!(instances.len(), 1, "{script}: one token, {instances:?}");
        by_token.extend(instances);
    }
    // Twenty tokens all on one of two instances: about 1 in 500,000 with an even hash.
    assert_eq!(by_token.len(), 2, "{script}: twenty tokens, {by_token:?}");
    let mut anonymous = HashSet::new();
    for _ in 0..20 {
        let response = client.get(format!("{base}/health")).send().await.unwrap();
        anonymous.insert(served_by(&response));
    }
    assert_eq!(anonymous.len(), 2, "{script}: anonymous, {anonymous:?}");
}

#[tokio::test]
async fn behind_haproxy_a_token_keeps_reaching_one_instance() {
    a_token_keeps_reaching_one_instance("haproxy-local.sh").await;
}

#[tokio::test]
async fn behind_nginx_a_token_keeps_reaching_one_instance() {
    a_token_keeps_reaching_one_instance("nginx-local.sh").await;
}

/// The split stack (DIALOG_SERVICE=1, as docker-compose.split.yml): HAProxy routes the dialog
/// paths, old and new, to the dialog service itself; an API instance reached directly forwards
/// them there (through HAProxy's internal frontend); the dialog service gone, both ways answer
/// 503 with Retry-After and the rest of the API is served.
#[tokio::test]
async fn behind_haproxy_the_dialog_paths_reach_the_dialog_service() {
    let stack = Balanced::start_with("haproxy-local.sh", 1, &[("DIALOG_SERVICE", "1")], &[50, 51]);
    let base = stack.url.clone();
    let direct = format!("http://127.0.0.1:{}", stack.port + 1);
    let client = reqwest::Client::new();
    let (anna, anna_token) = register_and_log_in(&client, &base, "Анна", "Разделённая").await;
    let (boris, _) = register_and_log_in(&client, &base, "Борис", "Разделённый").await;
    let send = |url: String, token: &str| {
        client
            .post(url)
            .bearer_auth(token)
            .json(&serde_json::json!({"text": "через балансировщик"}))
            .send()
    };
    let response = send(format!("{base}/dialog/{boris}/send"), &anna_token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-served-by"], "app51");
    let response = send(format!("{base}/v2/dialogs/{boris}/messages"), &anna_token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-served-by"], "app51");
    let response = send(format!("{direct}/dialog/{boris}/send"), &anna_token)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client
        .get(format!("{base}/dialog/{boris}/list"))
        .bearer_auth(&anna_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-served-by"], "app51");
    let ids: Vec<String> = response
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["3", "2", "1"]);
    let response = client
        .get(format!("{base}/user/get/{anna}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-served-by"], "app1");

    stack.run(&["kill-instance", "51"]);
    // Once HAProxy's health check has seen it gone (within a second), and through the hop at
    // once: a 503 that says when to retry. (A POST in flight as it died may instead see its
    // connection closed, never a retry: it may have been applied.)
    for url in [
        format!("{base}/dialog/{boris}/send"),
        format!("{direct}/dialog/{boris}/send"),
    ] {
        crate::helpers::eventually(Duration::from_secs(10), || async {
            let response = send(url.clone(), &anna_token)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if response.status() == StatusCode::SERVICE_UNAVAILABLE
                && response.headers().contains_key("retry-after")
            {
                Ok(())
            } else {
                Err(format!("{url}: {:?}", response))
            }
        })
        .await;
    }
    let response = client
        .get(format!("{base}/user/get/{anna}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// An anonymous client's posts that are answered before their body is read (401 for a made-up
/// token, 400 for a bad path id), 60 KB each, in loops beside normal senders: every normal
/// message is sent, and every hostile one gets its answer. Before the server read such bodies
/// and the balancers counted only real failures, nginx took both instances out (its passive
/// checks saw the server reset the connection) and answered nearly every normal send 502.
async fn hostile_early_answers_take_no_instance_out(script: &'static str) {
    let stack = Balanced::start(script, 2);
    let base = stack.url.clone();
    let client = reqwest::Client::new();
    let (_, token) = register_and_log_in(&client, &base, "Обычная", "Отправительница").await;
    let (boris, _) = register_and_log_in(&client, &base, "Борис", "Получатель").await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (client, base, token, boris, done) = (
            client.clone(),
            base.clone(),
            token.clone(),
            boris.clone(),
            done.clone(),
        );
        senders.push(tokio::spawn(async move {
            let (mut sent, mut failed) = (0u64, Vec::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let response = client
                    .post(format!("{base}/dialog/{boris}/send"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"text": "обычное сообщение"}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == StatusCode::OK => sent += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (sent, failed)
        }));
    }
    let body = serde_json::json!({"text": "ы".repeat(30_000)}).to_string();
    let mut attackers = Vec::new();
    for n in 0..4usize {
        let (client, base, boris, body, done) = (
            client.clone(),
            base.clone(),
            boris.clone(),
            body.clone(),
            done.clone(),
        );
        attackers.push(tokio::spawn(async move {
            let (mut answered, mut unanswered) = (0u64, Vec::new());
            let mut i = n;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                // A made-up token, or a path id that cannot be one.
                let (path, expected) = if i % 2 == 0 {
                    (format!("/dialog/{boris}/send"), StatusCode::UNAUTHORIZED)
                } else {
                    ("/dialog/nobody/send".to_owned(), StatusCode::BAD_REQUEST)
                };
                let response = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(uuid::Uuid::new_v4().simple().to_string())
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == expected => answered += 1,
                    // A made-up token on a bad path: whichever check runs first.
                    Ok(r) if r.status() == StatusCode::UNAUTHORIZED => answered += 1,
                    Ok(r) => unanswered.push(r.status().to_string()),
                    Err(e) => unanswered.push(e.to_string()),
                }
            }
            (answered, unanswered)
        }));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut sent, mut failed) = (0, Vec::new());
    for sender in senders {
        let (s, f) = sender.await.unwrap();
        sent += s;
        failed.extend(f);
    }
    let (mut answered, mut unanswered) = (0, Vec::new());
    for attacker in attackers {
        let (a, u) = attacker.await.unwrap();
        answered += a;
        unanswered.extend(u);
    }
    eprintln!(
        "{script}: {sent} normal sends, {} failed; {answered} hostile posts answered, {} not",
        failed.len(),
        unanswered.len()
    );
    assert!(
        failed.is_empty(),
        "{script}: {} of {} normal sends failed: {:?}",
        failed.len(),
        sent + failed.len() as u64,
        &failed[..failed.len().min(5)]
    );
    assert!(
        unanswered.is_empty(),
        "{script}: {} hostile posts got no 401/400: {:?}",
        unanswered.len(),
        &unanswered[..unanswered.len().min(5)]
    );
    assert!(
        sent > 50 && answered > 50,
        "{sent} sent, {answered} answered"
    );
}

#[tokio::test]
async fn behind_nginx_hostile_early_answers_take_no_instance_out() {
    hostile_early_answers_take_no_instance_out("nginx-local.sh").await;
}

#[tokio::test]
async fn behind_haproxy_hostile_early_answers_take_no_instance_out() {
    hostile_early_answers_take_no_instance_out("haproxy-local.sh").await;
}
