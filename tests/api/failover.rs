//! The primary killed under writes, against a real pg_auto_failover formation started by
//! `scripts/stack/failover-local.sh`: the monitor promotes the standby by itself, the server
//! follows it through its multi-host URL (`target_session_attrs=read-write`), reads go on
//! throughout, writes fail with 503 + `Retry-After` only while no primary exists, and no
//! acknowledged write is lost (replication is synchronous while a standby is up). The feed cache
//! moves to a new namespace when the database it caches changes under it (a new timeline).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::feed_cache::redis_url;
use crate::helpers::{eventually, first_column, parse_url, spawn_app_on};

/// A monitor and two data nodes of its own, on free loopback ports; destroyed with its data when
/// the test ends however it ends.
struct Formation {
    port: u16,
    root: PathBuf,
    /// The server's URL (every node, read-write wanted), then each node's.
    urls: Vec<String>,
}

impl Formation {
    fn start(nodes: usize) -> Formation {
        let port = loop {
            let base = 20_000 + (uuid::Uuid::new_v4().as_u128() % 20_000) as u16;
            if (0..=nodes as u16)
                .all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
            {
                break base;
            }
        };
        let mut formation = Formation {
            port,
            root: std::env::temp_dir().join(format!(
                "socialnet-failover-{}",
                uuid::Uuid::new_v4().simple()
            )),
            urls: Vec::new(),
        };
        let out = formation.run(&["start", &nodes.to_string()]);
        formation.urls = out.lines().map(str::to_owned).collect();
        assert_eq!(formation.urls.len(), nodes + 1, "{out}");
        formation
    }

    fn script(&self) -> Command {
        let mut command = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/stack/failover-local.sh"
        ));
        command
            .env("FAILOVER_PORT", self.port.to_string())
            .env("SOCIALNET_PG_ROOT", &self.root);
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.script().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "failover-local.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The node that accepts writes now (1 or 2), if one does.
    fn primary(&self) -> Option<usize> {
        self.run(&["primary"]).trim().parse().ok()
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        let _ = self.script().arg("destroy").status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[tokio::test]
async fn killing_the_primary_under_writes_loses_no_acknowledged_write_and_reads_go_on() {
    let formation = Formation::start(2);
    let nodes: Vec<_> = formation.urls[1..].iter().map(|u| parse_url(u)).collect();
    let prefix = format!("failover-{}", uuid::Uuid::new_v4().simple());
    let app = Arc::new(
        spawn_app_on(&formation.urls[0], |config| {
            // Every node as a replica: whichever is in recovery serves reads.
            config.db.database_read_urls = nodes;
            config.db.replica_check_ms = 50;
            config.cache.redis_url = Some(redis_url());
            config.cache.redis_key_prefix = prefix.clone();
        })
        .await,
    );
    let writer = Arc::new(app.user("Фёдор", "Отказов").await);
    let reader = app.user("Нина", "Подписчица").await;
    app.follow(&reader, &writer).await;
    let first_post = app.post(&writer, "до отказа").await;
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // The namespaces under which the reader's feed is cached.
    let feed_namespaces = |redis: redis::aio::MultiplexedConnection| {
        let (prefix, reader) = (prefix.clone(), reader.id.clone());
        async move {
            let mut redis = redis;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}:*:feed:{reader}"))
                .query_async(&mut redis)
                .await
                .unwrap();
            keys.into_iter().collect::<HashSet<_>>()
        }
    };
    assert_eq!(app.feed_texts(&reader, "").await, ["до отказа"]);
    let before = feed_namespaces(redis.clone()).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let old_primary = formation.primary().expect("a primary");
    eventually(Duration::from_secs(30), || async {
        let ready: Value = app.get_json("/ready").await;
        match ready["replicas"].as_array() {
            Some(r) if r.iter().any(|r| r["state"] == "up") => Ok(()),
            _ => Err(format!("{ready}")),
        }
    })
    .await;

    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for task in 0..4usize {
        let (app, done, writer) = (app.clone(), done.clone(), writer.clone());
        let paths = [
            format!("/user/get/{}", writer.id),
            format!("/post/get/{first_post}"),
        ];
        readers.push(tokio::spawn(async move {
            let (mut served, mut failed) = (0u64, Vec::new());
            let mut i = task;
            while !done.load(Ordering::Relaxed) {
                let path = &paths[i % paths.len()];
                i += 1;
                let response = app.get(path).await;
                if response.status() == StatusCode::OK {
                    served += 1;
                } else {
                    let status = response.status();
                    failed.push(format!(
                        "{path}: {status} {}",
                        response.text().await.unwrap()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (served, failed)
        }));
    }
    let mut writers = Vec::new();
    for _ in 0..2 {
        let (app, done, writer) = (app.clone(), done.clone(), writer.clone());
        writers.push(tokio::spawn(async move {
            let (mut acknowledged, mut unavailable, mut other) =
                (Vec::new(), Vec::new(), Vec::new());
            while !done.load(Ordering::Relaxed) {
                let response = app
                    .client
                    .post(app.url("/post/create"))
                    .bearer_auth(&writer.token)
                    .json(&serde_json::json!({"text": "пишу сквозь отказ"}))
                    .send()
                    .await
                    .unwrap();
                match response.status() {
                    StatusCode::OK => acknowledged
                        .push((Instant::now(), response.json::<String>().await.unwrap())),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert!(
                            response.headers().contains_key("retry-after"),
                            "a 503 without Retry-After"
                        );
                        unavailable.push(Instant::now());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    status => other.push(format!("{status} {}", response.text().await.unwrap())),
                }
            }
            (acknowledged, unavailable, other)
        }));
    }

    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let killed = Instant::now();
    formation.run(&["kill-node", &old_primary.to_string()]);
    // The standby is promoted by the monitor, with nobody's help.
    let new_primary = eventually(Duration::from_secs(60), || async {
        match formation.primary() {
            Some(node) if node != old_primary => Ok(node),
            other => Err(format!("primary: {other:?}")),
        }
    })
    .await;
    let promoted = killed.elapsed();
    // Writes come back on the new primary without a restart.
    eventually(Duration::from_secs(30), || async {
        let response = app
            .client
            .post(app.url("/post/create"))
            .bearer_auth(&writer.token)
            .json(&serde_json::json!({"text": "после отказа"}))
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => Ok(()),
            status => Err(format!("a write after the failover: {status}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    done.store(true, Ordering::Relaxed);

    let (mut served, mut read_failures) = (0, Vec::new());
    for reader in readers {
        let (s, f) = reader.await.unwrap();
        served += s;
        read_failures.extend(f);
    }
    let (mut acknowledged, mut unavailable, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for writer in writers {
        let (a, u, o) = writer.await.unwrap();
        acknowledged.extend(a);
        unavailable.extend(u);
        other.extend(o);
    }
    let window = match (unavailable.first(), unavailable.last()) {
        (Some(first), Some(last)) => *last - *first,
        _ => Duration::ZERO,
    };
    eprintln!(
        "promoted after {promoted:?}; {served} reads, {} failed; {} writes acknowledged \
         ({} after the kill), {} answered 503 over {window:?}",
        read_failures.len(),
        acknowledged.len(),
        acknowledged.iter().filter(|(at, _)| *at > killed).count(),
        unavailable.len(),
    );
    assert!(
        read_failures.is_empty(),
        "{} reads failed: {:?}",
        read_failures.len(),
        &read_failures[..read_failures.len().min(5)]
    );
    assert!(served > 50, "only {served} reads");
    assert!(
        other.is_empty(),
        "writes failed otherwise than 503: {other:?}"
    );
    assert!(acknowledged.iter().any(|(at, _)| *at > killed));

    // Every acknowledged post is on the new primary.
    let new_primary = socialnet::db::connect(&parse_url(&formation.urls[new_primary]).pg().clone())
        .await
        .unwrap();
    let ids: Vec<i64> = acknowledged
        .iter()
        .map(|(_, id)| id.parse().unwrap())
        .collect();
    let present: HashSet<i64> = first_column(
        &new_primary,
        "select id from posts where id = any($1)",
        &[&ids],
    )
    .await
    .into_iter()
    .collect();
    let lost: Vec<_> = ids.iter().filter(|id| !present.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");

    // The database has a new timeline: the running server's feed cache moved to a new
    // namespace by itself, and the reader's feed, built there afresh, has the new posts.
    app.post(&writer, "последний, после отказа").await;
    eventually(Duration::from_secs(10), || async {
        let texts = app.feed_texts(&reader, "limit=1").await;
        let namespaces = feed_namespaces(redis.clone()).await;
        if namespaces.len() == 2 && texts == ["последний, после отказа"] {
            Ok(())
        } else {
            Err(format!("feed {texts:?}, cached under {namespaces:?}"))
        }
    })
    .await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
}
