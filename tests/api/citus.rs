//! Dialogs on a real Citus cluster: the plain suite again, distribution checks, and an online
//! rebalance under continuous sends. Citus is not packaged everywhere, so they are ignored by a
//! plain `cargo test`; with `TEST_CITUS_URL` naming the `postgres` database of a Citus
//! coordinator whose metadata lists two workers (`scripts/stack/citus-local.sh start 2` sets one
//! up), `cargo test -- --include-ignored` runs them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use reqwest::StatusCode;

use crate::dialogs::{
    concurrent_scenario, dialog_scenario, long_messages_scenario, paging_scenario,
};
use crate::helpers::{first_column, parse_url, spawn_app_on, DatabaseGuard, TestApp};

/// Tests share one cluster: changes of its membership made in parallel (each test in a database of
/// its own) can collide on cluster-wide catalogs ("tuple concurrently updated" on a worker), so
/// they take turns.
static CLUSTER_CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The coordinator and the workers its `postgres` database knows.
struct Cluster {
    coordinator: String,
    workers: Vec<String>,
}

const NEEDS_CITUS: &str = "needs a Citus cluster: TEST_CITUS_URL (see the README: Citus)";

/// The cluster `TEST_CITUS_URL` names; a test that runs without one fails, saying why.
async fn cluster() -> Cluster {
    let coordinator = std::env::var("TEST_CITUS_URL").expect(NEEDS_CITUS);
    let admin = socialnet::db::connect(&coordinator.parse().unwrap())
        .await
        .expect("TEST_CITUS_URL is reachable");
    let workers: Vec<String> = admin
        .query(
            "select nodename || ':' || nodeport from pg_dist_node
             where groupid <> 0 and noderole = 'primary' order by nodeport",
            &[],
        )
        .await
        .expect("TEST_CITUS_URL has Citus")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        workers.len() >= 2,
        "the Citus coordinator lists fewer than two workers: {workers:?}"
    );
    Cluster {
        coordinator,
        workers,
    }
}

fn with_database(server: &str, name: &str) -> String {
    let cut = server.rfind('/').unwrap();
    format!("{}/{name}", &server[..cut])
}

/// An app on a fresh database of the cluster, with `workers` of its workers added through
/// `socialnet shards add-worker` (which distributes the dialog tables in `shard_count` shards).
async fn citus_app(
    cluster: &Cluster,
    workers: usize,
    shard_count: u32,
) -> (TestApp, Vec<DatabaseGuard>) {
    citus_app_with(cluster, workers, shard_count, |_| {}).await
}

/// The same, configured further by `customise`.
async fn citus_app_with(
    cluster: &Cluster,
    workers: usize,
    shard_count: u32,
    customise: impl FnOnce(&mut socialnet::config::Config),
) -> (TestApp, Vec<DatabaseGuard>) {
    let name = format!("socialnet_citus_{}", uuid::Uuid::new_v4().simple());
    let mut databases = Vec::new();
    let turn = CLUSTER_CHANGES.lock().await;
    for worker in &cluster.workers {
        let url = format!("postgres://postgres@{worker}/{name}");
        databases.push(DatabaseGuard::new(&url));
        socialnet::db::ensure_database(&parse_url(&url))
            .await
            .unwrap();
        let client = socialnet::db::connect(&url.parse().unwrap()).await.unwrap();
        client
            .batch_execute("create extension if not exists citus")
            .await
            .unwrap();
    }
    drop(turn);
    let app = spawn_app_on(&with_database(&cluster.coordinator, &name), |c| {
        c.db.citus_shard_count = shard_count;
        customise(c);
    })
    .await;
    let mut add = vec!["add-worker"];
    add.extend(cluster.workers.iter().take(workers).map(String::as_str));
    shards(&app, &add).await;
    (app, databases)
}

async fn shards(app: &TestApp, args: &[&str]) {
    let _turn = CLUSTER_CHANGES.lock().await;
    let shard_count = app.config.db.citus_shard_count.to_string();
    let mut argv = vec![
        "socialnet",
        "shards",
        "--database-url",
        &app.database_url,
        "--citus-shard-count",
        &shard_count,
    ];
    argv.extend_from_slice(args);
    socialnet::cli::run(socialnet::cli::Cli::parse_from(argv))
        .await
        .unwrap_or_else(|e| panic!("shards {args:?}: {e:#}"));
}

async fn coordinator(app: &TestApp) -> tokio_postgres::Client {
    app.db().await
}

#[tokio::test]
#[ignore = "needs a Citus cluster: TEST_CITUS_URL (see the README: Citus)"]
async fn on_citus_both_parties_see_the_same_dialog() {
    let cluster = cluster().await;
    let (app, _nodes) = citus_app(&cluster, 2, 32).await;
    dialog_scenario(&app).await;
    paging_scenario(&app).await;
    concurrent_scenario(&app).await;
    long_messages_scenario(&app).await;
    shards(&app, &["status"]).await;
}

#[tokio::test]
#[ignore = "needs a Citus cluster: TEST_CITUS_URL (see the README: Citus)"]
async fn on_citus_unread_counts_follow_sends_and_reads_through_the_outbox() {
    let cluster = cluster().await;
    // Read marks live on the dialogs' own rows, on the workers; each send's and read's event goes
    // to the coordinator's outbox in the same statement.
    let (app, _nodes) = citus_app_with(&cluster, 2, 32, |c| {
        crate::feed_cache::use_redis(c, &crate::feed_cache::redis_url());
        crate::helpers::use_broker(c, &crate::helpers::amqp_url());
        c.dialogs.unread_reconcile_ms = 200;
    })
    .await;
    crate::unread::unread_scenario(&app).await;
    crate::unread::bad_reads_scenario(&app).await;
    crate::unread::only_a_raised_mark_is_told(&app).await;
    // Counters lost are rebuilt from the shards: every reader's counts come back.
    let expected = app.unread_from_messages().await;
    assert!(!expected.is_empty());
    app.counters().await.clear().await.unwrap();
    for (reader, want) in &expected {
        let user = crate::helpers::TestUser {
            id: reader.clone(),
            token: app.token_for(reader.parse().unwrap()).await,
        };
        crate::helpers::eventually(Duration::from_secs(20), || async {
            match app.try_unread(&user, "/dialog/unread").await {
                Ok((_, dialogs)) if &dialogs == want => Ok(()),
                seen => Err(format!("{seen:?}, expected {want:?}")),
            }
        })
        .await;
    }
    app.counters().await.clear().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a Citus cluster: TEST_CITUS_URL (see the README: Citus)"]
async fn on_citus_the_shard_count_changes_with_one_command_and_keeps_every_message() {
    let cluster = cluster().await;
    let (app, _nodes) = citus_app(&cluster, 2, 8).await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for i in 0..5 {
        app.send_ok(&anna, &boris, &format!("m{i}")).await;
    }
    shards(&app, &["set-count", "4"]).await;
    let db = coordinator(&app).await;
    let counts: Vec<i64> = first_column(
        &db,
        "select count(*) from citus_shards where table_name::text in ('dialogs', 'dialog_messages')
         group by table_name order by table_name",
        &[],
    )
    .await;
    assert_eq!(counts, [4, 4]);
    assert_eq!(app.dialog(&boris, &anna.id, "").await.len(), 5);
    // Sends still go to the dialog's (new) shard, numbered on.
    app.send_ok(&boris, &anna, "после").await;
    let newest = &app.dialog(&anna, &boris.id, "limit=1").await[0];
    assert_eq!(newest["id"], "6");
}

#[tokio::test]
#[ignore = "needs a Citus cluster: TEST_CITUS_URL (see the README: Citus)"]
async fn on_citus_a_dialog_lives_on_one_shard_and_its_list_is_routed_there() {
    let cluster = cluster().await;
    let (app, _nodes) = citus_app(&cluster, 2, 32).await;
    let db = coordinator(&app).await;
    // Workers added together share the shards from the start.
    let workers_with_shards: i64 = db
        .query_one(
            "select count(distinct nodeport) from citus_shards where table_name = 'dialog_messages'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(workers_with_shards, 2);
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for i in 0..10 {
        app.send_ok(&anna, &boris, &format!("m{i}")).await;
    }
    let kinds: Vec<(String, String)> = db
        .query(
            "select logicalrelid::text, partmethod::text from pg_dist_partition
             where logicalrelid::text in ('users', 'dialogs', 'dialog_messages') order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        kinds,
        [
            ("dialog_messages".into(), "h".into()),
            ("dialogs".into(), "h".into()),
            ("users".into(), "n".into())
        ]
    );
    // Every message of the dialog sits in one shard of dialog_messages.
    let key = socialnet::dialogs::DialogKey::of(
        socialnet::users::UserId(anna.id.parse().unwrap()),
        socialnet::users::UserId(boris.id.parse().unwrap()),
    );
    let per_shard: Vec<i64> = first_column(
        &db,
        "select result::bigint from run_command_on_shards('dialog_messages',
             'select count(*) from %s') where result::bigint > 0",
        &[],
    )
    .await;
    assert_eq!(per_shard, [10]);
    let expected_shard: i64 = db
        .query_one(
            "select get_shard_id_for_distribution_column('dialog_messages', $1::bigint)",
            &[&key.id],
        )
        .await
        .unwrap()
        .get(0);
    let holding: i64 = db
        .query_one(
            "select shardid from run_command_on_shards('dialog_messages', 'select count(*) from %s')
             where result::bigint > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(holding, expected_shard);
    // The list query, as the service sends it, is planned for one shard.
    let plan: Vec<String> = first_column(
        &db,
        "explain select id, sender_id, recipient_id, text, created_at from dialog_messages
         where dialog_id = $1
           and (sender_id = $2 and recipient_id = $3 or sender_id = $3 and recipient_id = $2)
           and id < $4 order by id desc limit 20",
        &[&key.id, &key.low.0, &key.high.0, &i64::MAX],
    )
    .await;
    let plan = plan.join("\n");
    assert!(plan.contains("Task Count: 1"), "{plan}");
}

#[tokio::test]
#[ignore = "needs a Citus cluster: TEST_CITUS_URL (see the README: Citus)"]
async fn on_citus_an_online_rebalance_under_continuous_sends_loses_no_message() {
    let cluster = cluster().await;
    // Everything on the first worker, then a second one joins. Few shards: each move is a
    // logical-replication round of its own, seconds each on this scale.
    let (app, _nodes) = citus_app(&cluster, 1, 4).await;
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(app.user("Пишущий", &format!("Номер{i}")).await);
    }
    let app = Arc::new(app);
    let users = Arc::new(users);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (app, users, stop, sent, failed) = (
            app.clone(),
            users.clone(),
            stop.clone(),
            sent.clone(),
            failed.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let from = &users[(w + i) % users.len()];
                let to = &users[(w + 3 * i + 1) % users.len()];
                if from.id != to.id {
                    let response = app.send_message(from, &to.id, &format!("w{w} #{i}")).await;
                    if response.status() == StatusCode::OK {
                        sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    shards(&app, &["add-worker", &cluster.workers[1]]).await;
    shards(&app, &["rebalance"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    let db = coordinator(&app).await;
    let on_nodes: Vec<(String, i64)> = db
        .query(
            "select nodename || ':' || nodeport, count(*) from citus_shards
             where table_name = 'dialog_messages'::regclass group by 1 order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(on_nodes.len(), 2, "shards on both workers: {on_nodes:?}");
    let stored: i64 = db
        .query_one("select count(*) from dialog_messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "sends failed during the rebalance"
    );
    assert!(sent.load(Ordering::Relaxed) > 0);
    assert_eq!(stored as u64, sent.load(Ordering::Relaxed));

    // And back: drain the second worker, remove it; nothing is lost either.
    shards(&app, &["drain", &cluster.workers[1]]).await;
    shards(&app, &["remove", &cluster.workers[1]]).await;
    let after: i64 = db
        .query_one("select count(*) from dialog_messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, stored);
}
