use std::collections::BTreeMap;

use socialnet::lab::bench::{self, BenchCompareArgs, BenchRunArgs, RunResult, Scenario};
use socialnet::lab::fake::{fake_users, FakeUsersArgs};

use crate::helpers::{lab_db_config, spawn_app};

fn assert_well_formed_svg(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(doc.descendants().any(|n| n.has_tag_name("polyline")));
}

#[tokio::test]
async fn a_short_bench_writes_json_markdown_and_plots_and_compares_with_itself() {
    let app = spawn_app().await;
    fake_users(&FakeUsersArgs {
        db: lab_db_config(&app.database_url),
        count: 300,
        seed: Some(1),
        cyrillic_share: 0.7,
        batch_size: 300,
        keep_index: false,
    })
    .await
    .unwrap();
    socialnet::lab::social::fake_social(&socialnet::lab::social::FakeSocialArgs {
        db: lab_db_config(&app.database_url),
        follows_per_user: 5.0,
        popularity_skew: 1.0,
        posts_per_user: 2.0,
        days: 10,
        seed: Some(2),
    })
    .await
    .unwrap();
    let out =
        std::env::temp_dir().join(format!("socialnet-bench-{}", uuid::Uuid::new_v4().simple()));
    // The database server's postmaster, the parent of every backend: its CPU per request too.
    let backend: i32 = app
        .db()
        .await
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let stat = std::fs::read_to_string(format!("/proc/{backend}/stat")).unwrap();
    let postmaster: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let args = BenchRunArgs {
        url: app.address.clone(),
        scenarios: Scenario::ALL.to_vec(),
        // ws-fanout: 1 and 3 followers on websockets; ws-burst: 1 and 3 of a celebrity's 10.
        connections: vec![1, 3],
        celebrity_followers: 10,
        warmup_secs: 0.1,
        duration_secs: 0.4,
        rate: None,
        server_pid: Some(std::process::id()),
        node_pids: vec![("postgres".into(), postmaster)],
        out: out.clone(),
        name: Some("smoke".into()),
        db: lab_db_config(&app.database_url),
        token_secret: None,
    };
    let (result, dir) = bench::run(&args).await.unwrap();

    // What was returned is what was written.
    let written = RunResult::read(&dir).unwrap();
    // ws-burst reports two: the other author's post and the burst's deliveries.
    assert_eq!(written.scenarios.len(), Scenario::ALL.len() + 1);
    assert_eq!(written.mode, "closed");
    for scenario in &result.scenarios {
        assert_eq!(
            scenario
                .steps
                .iter()
                .map(|s| s.connections)
                .collect::<Vec<_>>(),
            [1, 3]
        );
        for step in &scenario.steps {
            assert!(step.requests > 0, "{} sent nothing", scenario.scenario);
            assert_eq!(
                step.failed, 0,
                "{}: {:?} {:?}",
                scenario.scenario, step.statuses, step.errors
            );
            let ok: BTreeMap<String, u64> = [("200".to_owned(), step.requests)].into();
            assert_eq!(step.statuses, ok);
            let p = &step.latency_ms;
            assert!(
                p.p50 > 0.0
                    && p.p50 <= p.p90
                    && p.p90 <= p.p99
                    && p.p99 <= p.p999
                    && p.p999 <= p.max
            );
            assert!(step.server_cpu_us_per_request.is_some());
        }
        for kind in ["throughput", "latency"] {
            assert_well_formed_svg(&dir.join(format!("{}-{kind}.svg", scenario.scenario)));
        }
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("## user-search") && report.contains("| 3 |"),
        "{report}"
    );
    // A search costs its database backend some CPU, which the postmaster's children show. The
    // kernel counts CPU in clock ticks (10 ms): a step of a fraction of a second on a tiny
    // database may stay under one, so the steps are summed.
    let search = result
        .scenarios
        .iter()
        .find(|s| s.scenario == "user-search")
        .unwrap();
    assert!(
        search
            .steps
            .iter()
            .all(|s| s.nodes_cpu_us_per_request.contains_key("postgres"))
            && search
                .steps
                .iter()
                .map(|s| s.nodes_cpu_us_per_request["postgres"])
                .sum::<f64>()
                > 0.0,
        "{:?}",
        search.steps
    );
    assert!(
        report.contains("CPU µs per request of each database node"),
        "{report}"
    );

    let (markdown, compare_dir) = bench::compare(&BenchCompareArgs {
        a: dir.clone(),
        b: dir.join("result.json"),
        out: None,
    })
    .unwrap();
    assert!(markdown.contains("| 1.00× |"), "{markdown}");
    assert_well_formed_svg(&compare_dir.join("user-get-throughput.svg"));
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test]
async fn an_open_loop_run_holds_roughly_its_rate() {
    let app = spawn_app().await;
    app.register_user("Анна", "Иванова").await;
    let out =
        std::env::temp_dir().join(format!("socialnet-bench-{}", uuid::Uuid::new_v4().simple()));
    let (result, _) = bench::run(&BenchRunArgs {
        url: app.address.clone(),
        scenarios: vec![Scenario::UserGet],
        connections: vec![2],
        warmup_secs: 0.0,
        duration_secs: 1.0,
        rate: Some(50.0),
        celebrity_followers: 0,
        server_pid: None,
        node_pids: Vec::new(),
        out: out.clone(),
        name: None,
        db: lab_db_config(&app.database_url),
        token_secret: None,
    })
    .await
    .unwrap();
    let step = &result.scenarios[0].steps[0];
    assert_eq!(result.mode, "open");
    // 50 requests/s for one second is a schedule of 50 sends (one more per connection at most,
    // from the staggered start): never as fast as possible, whatever the machine's speed, and
    // each one sent even when the server answers late (the loop catches up, it skips nothing).
    assert!(
        (45..=52).contains(&step.requests),
        "{} requests",
        step.requests
    );
    let _ = std::fs::remove_dir_all(out);
}
