//! The dialog suite on the in-memory store (`DIALOG_STORE=tarantool`), against the Tarantool the
//! test script starts (`scripts/stack/tarantool-local.sh`; `TEST_TARANTOOL_URL`), and what only
//! a store outside PostgreSQL has to get right: two databases sharing one Tarantool, and
//! Tarantool killed and started again under a running server (and `/ready` saying so).

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use socialnet::config::DialogStoreKind;

use crate::dialogs::{
    bad_lists_scenario, bad_sends_scenario, concurrent_scenario, dialog_scenario,
    hostile_text_scenario, long_messages_scenario, paging_scenario,
};
use crate::helpers::{eventually, spawn_app_with, ChildGuard, TestApp};

/// The shared Tarantool of the suite.
pub fn tarantool_url() -> String {
    std::env::var("TEST_TARANTOOL_URL")
        .unwrap_or_else(|_| "socialnet:socialnet@127.0.0.1:3301".to_owned())
}

async fn spawn_on(url: &str) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(move |config| {
        config.dialogs.dialog_store = DialogStoreKind::Tarantool;
        config.dialogs.tarantool_url = url.parse().unwrap();
    })
    .await
}

async fn spawn_on_tarantool() -> TestApp {
    spawn_on(&tarantool_url()).await
}

#[tokio::test]
async fn both_parties_see_the_same_dialog_newest_first() {
    let app = spawn_on_tarantool().await;
    dialog_scenario(&app).await;
    // The messages went to Tarantool: PostgreSQL's dialog tables stayed empty.
    let db = app.db().await;
    for table in ["dialogs", "dialog_messages"] {
        let rows: i64 = db
            .query_one(&format!("select count(*) from {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 0, "{table}");
    }
}

#[tokio::test]
async fn pages_by_cursor_and_offset_cover_the_dialog_once() {
    paging_scenario(&spawn_on_tarantool().await).await;
}

#[tokio::test]
async fn a_page_of_long_messages_stops_near_a_megabyte_and_paging_covers_the_rest() {
    long_messages_scenario(&spawn_on_tarantool().await).await;
}

#[tokio::test]
async fn concurrent_sends_get_distinct_consecutive_ids() {
    concurrent_scenario(&spawn_on_tarantool().await).await;
}

#[tokio::test]
async fn hostile_text_comes_back_as_it_was_sent() {
    hostile_text_scenario(&spawn_on_tarantool().await).await;
}

#[tokio::test]
async fn bad_sends_are_4xx() {
    bad_sends_scenario(&spawn_on_tarantool().await).await;
}

#[tokio::test]
async fn bad_lists_are_4xx() {
    bad_lists_scenario(&spawn_on_tarantool().await).await;
}

/// Two databases on one Tarantool: their users have the same ids (1, 2, …), and neither sees
/// the other's dialogs.
#[tokio::test]
async fn two_databases_sharing_a_tarantool_keep_their_dialogs_apart() {
    let first = spawn_on_tarantool().await;
    let second = spawn_on_tarantool().await;
    let (a1, b1) = (
        first.user("Анна", "Первая").await,
        first.user("Борис", "Первый").await,
    );
    let (a2, b2) = (
        second.user("Анна", "Вторая").await,
        second.user("Борис", "Второй").await,
    );
    assert_eq!(
        (&a1.id, &b1.id),
        (&a2.id, &b2.id),
        "fresh databases number users alike"
    );
    first.send_ok(&a1, &b1, "только в первой базе").await;
    assert_eq!(first.dialog(&b1, &a1.id, "").await.len(), 1);
    assert!(second.dialog(&b2, &a2.id, "").await.is_empty());
}

/// A Tarantool of the test's own, on a free port, destroyed at the end.
struct OwnTarantool {
    port: u16,
    root: std::path::PathBuf,
}

impl OwnTarantool {
    fn start() -> (OwnTarantool, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let own = OwnTarantool {
            port,
            root: std::env::temp_dir()
                .join(format!("socialnet-tt-{}", uuid::Uuid::new_v4().simple())),
        };
        let url = own.run("start");
        (own, url.trim().to_owned())
    }

    fn run(&self, action: &str) -> String {
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/stack/tarantool-local.sh"
        ))
        .arg(action)
        .env("TARANTOOL_PORT", self.port.to_string())
        .env("SOCIALNET_TARANTOOL_ROOT", &self.root)
        .output()
        .expect("the stack script runs");
        assert!(
            out.status.success(),
            "tarantool-local.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for OwnTarantool {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.run("destroy"));
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Killed with SIGKILL, Tarantool loses no acknowledged message (its write-ahead log has them);
/// while it is down, sends and lists fail fast with 503 and nothing else; once it is back, the
/// same server (no restart) reconnects and goes on.
#[tokio::test]
async fn tarantool_killed_and_restarted_loses_nothing_and_the_server_reconnects() {
    let (tarantool, url) = OwnTarantool::start();
    let app = spawn_on(&url).await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for n in 0..50 {
        app.send_ok(&anna, &boris, &format!("до сбоя {n}")).await;
    }

    let ready: serde_json::Value = app.get_json("/ready").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["dialog_store"]["state"], "up");

    tarantool.run("kill");
    // Everything else is still served: /ready says so (200), and names what is down.
    let ready: serde_json::Value = app.get_json("/ready").await;
    assert_eq!(ready["status"], "degraded");
    assert!(ready["dialog_store"]["state"]
        .as_str()
        .unwrap()
        .starts_with("down"));
    for _ in 0..5 {
        let started = Instant::now();
        let response = app.send_message(&anna, &boris.id, "в пустоту").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(5), "a send hung");
        let response = app
            .get_as(&boris, &format!("/dialog/{}/list", anna.id))
            .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    tarantool.run("start");
    eventually(Duration::from_secs(10), || async {
        match app
            .send_message(&anna, &boris.id, "после сбоя")
            .await
            .status()
        {
            StatusCode::OK => Ok(()),
            other => Err(format!("send after the restart: {other}")),
        }
    })
    .await;
    let ready: serde_json::Value = app.get_json("/ready").await;
    assert_eq!(ready["status"], "ready");
    let dialog = app.dialog(&boris, &anna.id, "limit=1000").await;
    let texts: Vec<&str> = dialog.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts[0], "после сбоя");
    let before: Vec<String> = (0..50).rev().map(|n| format!("до сбоя {n}")).collect();
    assert_eq!(
        texts[1..],
        before.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    // The numbers went on from where they were: 50 before, the 51st after.
    assert_eq!(dialog[0]["id"], "51");
}

/// A Tarantool restarted on its data is called from the moment its port accepts connections: a
/// call may find it still loading or not listening (a 503 for the server), never without its
/// procedures (error 33, "Procedure 'dialog_send' is not defined", which was a 500).
#[tokio::test]
async fn a_restarting_tarantool_never_answers_without_its_procedures() {
    let (tarantool, url) = OwnTarantool::start();
    let store = socialnet::tarantool::Tarantool::new(url.parse().unwrap(), Duration::from_secs(2));
    // Some data to recover, so that the restart takes a moment.
    let rows: Vec<rmpv::Value> = (1..=20_000i64)
        .map(|n| {
            rmpv::Value::Array(
                [n, 1, 2, 1, 1, 2]
                    .into_iter()
                    .map(rmpv::Value::from)
                    .chain(["текст".into(), 1.into()])
                    .collect(),
            )
        })
        .collect();
    let rows = rmpv::Value::Array(rows);
    store
        .call(
            "dialog_load",
            &[
                socialnet::tarantool::Arg::Int(-7),
                socialnet::tarantool::Arg::Value(&rows),
            ],
        )
        .await
        .unwrap();
    for round in 0..3 {
        tarantool.run("kill");
        let root = tarantool.root.join(format!("tarantool-{}", tarantool.port));
        let mut child = ChildGuard(
            Command::new("tarantool")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/deploy/tarantool/dialogs.lua"
                ))
                .current_dir(&root)
                .env("TARANTOOL_LISTEN", format!("127.0.0.1:{}", tarantool.port))
                .env("TARANTOOL_DIR", &root)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("tarantool is installed"),
        );
        let started = Instant::now();
        let mut refused = 0;
        loop {
            match store.call("dialog_stats", &[]).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(e.is_transient(), "round {round}: {e}");
                    assert!(!e.to_string().contains("not defined"), "round {round}: {e}");
                    refused += 1;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "not back in 30 s"
            );
            assert!(child.0.try_wait().unwrap().is_none(), "tarantool exited");
        }
        eprintln!("round {round}: {refused} calls refused while it started");
        std::fs::write(root.join("pid"), child.0.id().to_string()).unwrap();
        std::mem::forget(child);
    }
}

#[tokio::test]
async fn an_operator_takes_a_snapshot_and_the_store_keeps_answering() {
    let app = spawn_on_tarantool().await;
    dialog_scenario(&app).await;
    let store = socialnet::tarantool::Tarantool::new(
        tarantool_url().parse().unwrap(),
        Duration::from_secs(60),
    );
    let took = store.call("dialog_snapshot", &[]).await.unwrap();
    let seconds = took.first().and_then(|v| v.as_f64()).unwrap();
    assert!(seconds >= 0.0, "{took:?}");
    // Dialogs go on as before.
    let anna = app.user("Анна", "Снимкова").await;
    let boris = app.user("Борис", "Снимков").await;
    app.send_ok(&anna, &boris, "после снимка").await;
    assert_eq!(app.dialog(&boris, &anna.id, "").await.len(), 1);
}
