//! Reads on streaming replicas, against a real primary and replicas started by
//! `scripts/stack/replicas-local.sh`: a replica answers the reads it may, a user who just wrote
//! reads it back, a lagging replica is skipped, and replicas dying under reads cost no request.
//!
//! Which server answered is told by pausing a replica's replay (`pg_wal_replay_pause()`): a
//! write made after the pause is on the primary only, so a read that misses it came from the
//! replica, and one that sees it from the primary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{eventually, parse_url, spawn_app_on, TestApp, TestUser};

/// A primary and replicas of its own, on free loopback ports; destroyed with its data when the
/// test ends however it ends.
struct Stack {
    port: u16,
    root: PathBuf,
    urls: Vec<String>,
}

impl Stack {
    fn start(replicas: usize) -> Stack {
        let root = std::env::temp_dir().join(format!(
            "socialnet-replicas-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut stack = Stack {
            port: free_ports(replicas + 1),
            root,
            urls: Vec::new(),
        };
        let out = stack.run(&["start", &replicas.to_string()]);
        stack.urls = out.lines().map(str::to_owned).collect();
        assert_eq!(stack.urls.len(), replicas + 1, "{out}");
        stack
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/stack/replicas-local.sh"
        ))
        .args(args)
        .env("REPLICAS_PORT", self.port.to_string())
        .env("SOCIALNET_PG_ROOT", &self.root)
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "replicas-local.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A maintenance connection to node `i` (0 the primary).
    async fn admin(&self, i: usize) -> tokio_postgres::Client {
        let url = self.urls[i].replace("/socialnet", "/postgres");
        socialnet::db::connect(&parse_url(&url).pg().clone())
            .await
            .unwrap()
    }

    /// An app on the primary that reads from every replica.
    async fn app(&self, max_lag_ms: u64) -> TestApp {
        let replicas: Vec<_> = self.urls[1..].iter().map(|u| parse_url(u)).collect();
        spawn_app_on(&self.urls[0], |config| {
            config.db.database_read_urls = replicas;
            config.db.read_max_lag_ms = max_lag_ms;
            config.db.replica_check_ms = 50;
        })
        .await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/stack/replicas-local.sh"
        ))
        .arg("destroy")
        .env("REPLICAS_PORT", self.port.to_string())
        .env("SOCIALNET_PG_ROOT", &self.root)
        .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The first of `count` consecutive free loopback ports.
fn free_ports(count: usize) -> u16 {
    loop {
        let base = 20_000 + (uuid::Uuid::new_v4().as_u128() % 20_000) as u16;
        let free =
            (0..count as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
}

/// Waits until `/ready` reports every replica `up`.
async fn replicas_up(app: &TestApp) {
    eventually(Duration::from_secs(30), || async {
        let ready: Value = app.get_json("/ready").await;
        let replicas = ready["replicas"].as_array().cloned().unwrap_or_default();
        if !replicas.is_empty() && replicas.iter().all(|r| r["state"] == "up") {
            Ok(())
        } else {
            Err(format!("{ready}"))
        }
    })
    .await;
}

/// Waits until `replica` has replayed what `primary` had written when this was called.
async fn caught_up(primary: &tokio_postgres::Client, replica: &tokio_postgres::Client) {
    let written: String = primary
        .query_one("select pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    eventually(Duration::from_secs(10), || async {
        let replayed: bool = replica
            .query_one(
                "select pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&written],
            )
            .await
            .unwrap()
            .get(0);
        if replayed {
            Ok(())
        } else {
            Err(format!("the replica has not replayed {written}"))
        }
    })
    .await;
}

/// Pauses a replica's replay, and waits until it has paused (the request takes effect between
/// two WAL records).
async fn pause_replay(replica: &tokio_postgres::Client) {
    replica
        .batch_execute("select pg_wal_replay_pause()")
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || async {
        let state: String = replica
            .query_one("select pg_get_wal_replay_pause_state()", &[])
            .await
            .unwrap()
            .get(0);
        if state == "paused" {
            Ok(())
        } else {
            Err(state)
        }
    })
    .await;
}

async fn status_of(app: &TestApp, as_user: Option<&TestUser>, path: &str) -> StatusCode {
    match as_user {
        Some(user) => app.get_as(user, path).await.status(),
        None => app.get(path).await.status(),
    }
}

#[tokio::test]
async fn a_replica_answers_reads_and_a_user_who_just_wrote_reads_it_from_the_primary() {
    let stack = Stack::start(1);
    // A lag limit far beyond the test: the paused replica stays in use.
    let app = stack.app(600_000).await;
    let writer = app.user("Анна", "Писатель").await;
    let bystander = app.user("Ева", "Сторонняя").await;
    replicas_up(&app).await;
    let replica = stack.admin(1).await;
    // Registering was a write: the replica must have replayed it, and the server seen that,
    // before the bystander's reads may go to the replica.
    caught_up(&stack.admin(0).await, &replica).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    pause_replay(&replica).await;

    // Written after the pause: on the primary only.
    let post = app.post(&writer, "после паузы").await;
    let path = format!("/post/get/{post}");
    assert_eq!(status_of(&app, None, &path).await, StatusCode::NOT_FOUND);
    assert_eq!(status_of(&app, Some(&writer), &path).await, StatusCode::OK);
    // A user who has not written reads from the replica, token or not.
    assert_eq!(
        status_of(&app, Some(&bystander), &path).await,
        StatusCode::NOT_FOUND
    );
    let newcomer = app.register_user("Борис", "Новичков").await;
    let newcomer = app.logged_in(&newcomer, "correct horse battery").await;
    let other_post = app.post(&newcomer, "мой пост").await;
    assert_eq!(
        status_of(&app, Some(&newcomer), &path).await,
        StatusCode::OK,
        "a newcomer who wrote reads from the primary"
    );
    // A registration is a write too: the new user's own profile, read with their token.
    let profile = format!("/user/get/{}", newcomer.id);
    assert_eq!(status_of(&app, None, &profile).await, StatusCode::NOT_FOUND);
    assert_eq!(
        status_of(&app, Some(&newcomer), &profile).await,
        StatusCode::OK
    );

    replica
        .batch_execute("select pg_wal_replay_resume()")
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || async {
        match status_of(&app, None, &format!("/post/get/{other_post}")).await {
            StatusCode::OK => Ok(()),
            other => Err(format!("anonymous read after the replay resumed: {other}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_replica_further_behind_than_the_limit_is_skipped() {
    let stack = Stack::start(1);
    let app = stack.app(300).await;
    let writer = app.user("Вера", "Отстающая").await;
    replicas_up(&app).await;
    let replica = stack.admin(1).await;
    pause_replay(&replica).await;
    let post = app.post(&writer, "пока реплика стоит").await;
    // The replica has not got it, and is soon further behind than 300 ms: anonymous reads move
    // to the primary.
    eventually(Duration::from_secs(10), || async {
        match status_of(&app, None, &format!("/post/get/{post}")).await {
            StatusCode::OK => Ok(()),
            other => Err(format!(
                "anonymous read of a post the replica lacks: {other}"
            )),
        }
    })
    .await;
    let ready: Value = app.get_json("/ready").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["replicas"][0]["state"], "lagging", "{ready}");
    assert!(
        ready["replicas"][0]["lag_ms"].as_u64().unwrap() >= 300,
        "{ready}"
    );

    replica
        .batch_execute("select pg_wal_replay_resume()")
        .await
        .unwrap();
    replicas_up(&app).await;
}

#[tokio::test]
async fn replicas_stopped_under_reads_cost_no_request_and_come_back() {
    let stack = Stack::start(2);
    let app = Arc::new(stack.app(1_000).await);
    let author = app.user("Глеб", "Автор").await;
    let reader = app.user("Дина", "Читатель").await;
    app.follow(&reader, &author).await;
    let post = app.post(&author, "читают все").await;
    replicas_up(&app).await;

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = Arc::new(reader);
    let mut tasks = Vec::new();
    for task in 0..8 {
        let (app, done, served, failures, reader) = (
            app.clone(),
            done.clone(),
            served.clone(),
            failures.clone(),
            reader.clone(),
        );
        let paths = [
            format!("/user/get/{}", author.id),
            format!("/post/get/{post}"),
            "/user/search?first_name=Гл&last_name=Ав".to_owned(),
            "/post/feed".to_owned(),
        ];
        tasks.push(tokio::spawn(async move {
            let mut i = task;
            while !done.load(Ordering::Relaxed) {
                let path = &paths[i % paths.len()];
                i += 1;
                let response = app.get_as(&reader, path).await;
                if response.status() == StatusCode::OK {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{path}: {status} {body}"));
                }
            }
        }));
    }
    let pause = || tokio::time::sleep(Duration::from_millis(500));
    pause().await;
    // One replica shut down politely (sessions ended), the other killed: every read then runs
    // on the primary.
    stack.run(&["stop-node", "1", "fast"]);
    pause().await;
    stack.run(&["stop-node", "2", "immediate"]);
    pause().await;
    let ready: Value = app.get_json("/ready").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(
        ready["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "down"),
        "{ready}"
    );
    stack.run(&["start-node", "1"]);
    stack.run(&["start-node", "2"]);
    replicas_up(&app).await;
    pause().await;
    done.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served.load(Ordering::Relaxed) > 100, "served {served:?}");
}
