//! Monitoring, natively (`scripts/stack/monitoring-local.sh`: Prometheus with the alert rules,
//! the PostgreSQL and Redis exporters): Prometheus scrapes the API and the dialog service and
//! raises an alert for an instance that is down; and every query of every Grafana dashboard
//! (`deploy/grafana/dashboards/`) names a metric that a live service or exporter exports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use socialnet::config::{DialogStoreKind, Service};

use crate::feed_cache::{redis_url, use_redis};
use crate::helpers::{eventually, free_port, spawn_app_with, use_broker, TestApp};
use crate::live::{connect, next_post};
use crate::rabbit::RabbitNodes;

/// Prometheus and the exporters of a test's own, stopped (and their data deleted) on drop.
struct Monitoring {
    dir: PathBuf,
    port: u16,
    client: reqwest::Client,
}

/// Three consecutive free loopback ports: Prometheus and the two exporters.
fn free_ports() -> u16 {
    for _ in 0..100 {
        let base = free_port();
        if base < 65_000
            && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no three free ports in a row");
}

fn script() -> &'static str {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/stack/monitoring-local.sh"
    )
}

impl Monitoring {
    /// Starts it on `settings` (the script's variables) and waits until Prometheus is ready.
    async fn start(settings: &[(&str, String)]) -> Monitoring {
        let dir = std::env::temp_dir().join(format!(
            "socialnet-monitoring-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let port = free_ports();
        let mut command = Command::new(script());
        command
            .arg("start")
            .env("SOCIALNET_MONITORING_DIR", &dir)
            .env("PROMETHEUS_PORT", port.to_string())
            .env("SCRAPE_INTERVAL", "1s");
        for (name, value) in settings {
            command.env(name, value);
        }
        let monitoring = Monitoring {
            dir,
            port,
            client: reqwest::Client::new(),
        };
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        monitoring
    }

    /// The `/metrics` text of the exporter `offset` ports above Prometheus (1: PostgreSQL,
    /// 2: Redis).
    async fn exporter(&self, offset: u16) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port + offset);
        eventually(Duration::from_secs(10), || async {
            match self.client.get(&url).send().await {
                Ok(response) if response.status() == StatusCode::OK => {
                    Ok(response.text().await.unwrap())
                }
                other => Err(format!("{url}: {other:?}")),
            }
        })
        .await
    }

    /// Prometheus' answer to `path` (its HTTP API), its `data`.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let body: Value = self
            .client
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .query(query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"].clone()
    }

    /// The instant vector of `query`.
    async fn query(&self, query: &str) -> Vec<Value> {
        let data = self.api("/api/v1/query", &[("query", query)]).await;
        data["result"].as_array().unwrap().clone()
    }
}

impl Drop for Monitoring {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .env("SOCIALNET_MONITORING_DIR", &self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn prometheus_watches_both_services_and_alerts_on_an_instance_that_is_down() {
    let dialogs = spawn_app_with(|c| c.serve.service = Service::Dialogs).await;
    let main = dialogs
        .spawn_beside(|c| {
            c.serve.service = Service::All;
            c.dialogs.dialogs_url = Some(dialogs.address.clone());
        })
        .await;
    let anna = main.user("Анна", "Метрикова").await;
    let boris = main.user("Борис", "Метриков").await;
    main.send_ok(&anna, &boris, "привет").await;
    // An instance of the API that is not there.
    let gone = format!("127.0.0.1:{}", free_port());
    let monitoring = Monitoring::start(&[
        ("API_TARGETS", format!("{},{gone}", address(&main))),
        ("DIALOG_TARGETS", address(&dialogs)),
        ("DATABASE_URL", main.database_url.clone()),
        ("REDIS_URL", redis_url()),
    ])
    .await;

    // Requests of both services, and the exporters' own "up".
    eventually(Duration::from_secs(30), || async {
        let jobs: BTreeSet<String> = monitoring
            .query(r#"sum by (job) (http_requests_total{route="/dialog/{user_id}/send"})"#)
            .await
            .iter()
            .map(|series| series["metric"]["job"].as_str().unwrap().to_owned())
            .collect();
        let pg = monitoring.query("pg_up == 1").await;
        let redis = monitoring.query("redis_up == 1").await;
        if jobs.contains("socialnet")
            && jobs.contains("socialnet-dialogs")
            && pg.len() == 1
            && redis.len() == 1
        {
            Ok(())
        } else {
            Err(format!("jobs {jobs:?}, pg_up {pg:?}, redis_up {redis:?}"))
        }
    })
    .await;

    // Every rule of deploy/prometheus/alerts.yml is loaded, and the missing instance's alert is
    // on its way (pending for its 30 s, then firing).
    let rules = monitoring.api("/api/v1/rules", &[]).await;
    let names: BTreeSet<&str> = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["name"].as_str().unwrap())
        .collect();
    for alert in [
        "ServiceDown",
        "HighErrorRate",
        "SlowRoute",
        "OutboxBackingUp",
        "BrokerDisconnected",
        "ReplicaLagging",
        "PoolExhausted",
    ] {
        assert!(names.contains(alert), "{alert} not in {names:?}");
    }
    let alert = eventually(Duration::from_secs(30), || async {
        let alerts = monitoring.api("/api/v1/alerts", &[]).await;
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["alertname"] == "ServiceDown")
            .cloned()
            .ok_or_else(|| alerts.to_string())
    })
    .await;
    assert_eq!(alert["labels"]["instance"], gone.as_str(), "{alert}");
    assert_eq!(alert["labels"]["job"], "socialnet", "{alert}");
    assert!(
        alert["state"] == "pending" || alert["state"] == "firing",
        "{alert}"
    );
}

/// The metric names a PromQL expression reads: what is left once strings, label matchers, ranges,
/// grouping clauses, functions and keywords are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Strings, then {…} and […], each replaced by a space.
    let mut plain = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        let close = match c {
            '"' => '"',
            '{' => '}',
            '[' => ']',
            _ => {
                plain.push(c);
                continue;
            }
        };
        for d in chars.by_ref() {
            if d == close {
                break;
            }
        }
        plain.push(' ');
    }
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 4] = ["and", "or", "unless", "bool"];
    let mut names = BTreeSet::new();
    let mut rest = plain.as_str();
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        // A number's exponent or unit (1e3, 5m) is not a name.
        let before = rest[..start].chars().last();
        let end = rest[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(rest.len(), |n| start + n);
        let word = &rest[start..end];
        let after = rest[end..].trim_start();
        rest = &rest[end..];
        if before.is_some_and(|c| c.is_ascii_digit() || c == '.') {
            continue;
        }
        if GROUPING.contains(&word) {
            // Its label list in parentheses goes with it.
            if let Some(list) = after.strip_prefix('(') {
                rest = list.split_once(')').map_or("", |(_, r)| r);
            }
            continue;
        }
        // A function, an aggregation (`sum (…)`, `sum by (…) (…)`), or a keyword.
        let next_word = after
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .next();
        if after.starts_with('(')
            || next_word.is_some_and(|w| w == "by" || w == "without")
            || KEYWORDS.contains(&word)
        {
            continue;
        }
        names.insert(word.to_owned());
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket{job="$job", route=~"$route"}[$__rate_interval]))) / on (job) group_left up > 0.5 and bool 1e3"#,
    );
    assert_eq!(
        names,
        ["http_request_duration_seconds_bucket", "up"]
            .map(str::to_owned)
            .into()
    );
}

/// Every series name a `/metrics` text has.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_dashboard_query_names_a_metric_that_is_exported() {
    // Every part on, so that each records its metrics: RabbitMQ of the test's own with its
    // Prometheus plugin, the dialog service on Tarantool with unread counters, the API with the
    // feed cache, the broker, a "replica" (the primary, read-only), forwarding its dialogs.
    let rabbit = RabbitNodes::start_with_metrics(1).await;
    let dialogs = spawn_app_with(|c| {
        c.serve.service = Service::Dialogs;
        c.dialogs.dialog_store = DialogStoreKind::Tarantool;
        c.dialogs.tarantool_url = crate::tarantool::tarantool_url().parse().unwrap();
        use_redis(c, &redis_url());
        use_broker(c, &rabbit.url(1));
    })
    .await;
    let replica = format!(
        "{}?options=-c%20default_transaction_read_only%3Don",
        dialogs.database_url
    );
    let main = dialogs
        .spawn_beside(|c| {
            c.serve.service = Service::All;
            c.dialogs.dialogs_url = Some(dialogs.address.clone());
            c.db.database_read_urls = vec![replica.parse().unwrap()];
            c.rate.rate_limits = socialnet::config::OnOff::On;
        })
        .await;
    let monitoring = Monitoring::start(&[
        ("API_TARGETS", address(&main)),
        ("DATABASE_URL", main.database_url.clone()),
        ("REDIS_URL", redis_url()),
    ])
    .await;

    // Traffic through every part.
    let anna = main.user("Анна", "Панелева").await;
    let boris = main.user("Борис", "Панелев").await;
    main.follow(&boris, &anna).await;
    let mut socket = connect(&main, &boris).await;
    main.post(&anna, "на панели").await;
    assert!(next_post(&mut socket, Duration::from_secs(10))
        .await
        .is_some());
    main.feed_texts(&boris, "").await;
    main.feed_texts(&boris, "").await;
    main.send_ok(&anna, &boris, "привет").await;
    main.unread_becomes(&boris, &[(&anna, 1)]).await;
    // Reads go to the "replica" once it is checked and the reader's own writes are old enough.
    let vera = main.user("Вера", "Панелева").await;
    eventually(Duration::from_secs(30), || async {
        let user = main.get_as(&vera, &format!("/user/get/{}", boris.id)).await;
        assert_eq!(user.status(), StatusCode::OK);
        let metrics = main.get("/metrics").await.text().await.unwrap();
        if metrics.contains("db_replica_reads{") {
            Ok(())
        } else {
            Err(format!(
                "no read on the replica yet: {:?}",
                metrics
                    .lines()
                    .filter(|l| l.starts_with("db_replica"))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await;

    let mut names = BTreeSet::new();
    for app in [&main, &dialogs] {
        names.extend(exported(&app.get("/metrics").await.text().await.unwrap()));
    }
    names.extend(exported(&monitoring.exporter(1).await));
    names.extend(exported(&monitoring.exporter(2).await));
    let plugin = format!("http://{}/metrics", rabbit.metrics_address(1).unwrap());
    names.extend(exported(
        &reqwest::get(&plugin).await.unwrap().text().await.unwrap(),
    ));
    // Prometheus' own series for each target.
    names.insert("up".to_owned());

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/dashboards");
    let mut uids = BTreeSet::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let dashboard: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            uids.insert(dashboard["uid"].as_str().unwrap().to_owned()),
            "{file}: uid taken"
        );
        let mut queries: Vec<String> = Vec::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            assert_eq!(
                panel["datasource"],
                json!({"type": "prometheus", "uid": "prometheus"}),
                "{file}"
            );
            assert!(!panel["title"].as_str().unwrap().is_empty(), "{file}");
            let targets = panel["targets"].as_array().unwrap();
            assert!(
                !targets.is_empty(),
                "{file}: {} has no query",
                panel["title"]
            );
            queries.extend(
                targets
                    .iter()
                    .map(|t| t["expr"].as_str().unwrap().to_owned()),
            );
        }
        for variable in dashboard["templating"]["list"].as_array().unwrap() {
            let query = variable["query"]["query"].as_str().unwrap();
            // label_values(metric{…}, label): the metric is the first argument.
            let inner = query.trim_start_matches("label_values(");
            queries.push(inner.split([',', '{']).next().unwrap().to_owned());
        }
        for query in &queries {
            let wanted = metric_names(query);
            assert!(!wanted.is_empty(), "{file}: no metric in {query}");
            for name in wanted {
                assert!(
                    names.contains(&name),
                    "{file}: {name} (in {query}) is exported by nothing"
                );
                checked += 1;
            }
        }
    }
    assert!(uids.len() >= 5, "{uids:?}");
    assert!(checked > 50, "{checked}");
    drop(socket);
}
