//! `x-request-id` end to end, read from the logs: the main service and the dialog service run
//! as processes of the binary, with JSON logs, RabbitMQ and the feed cache; one id given by the
//! client is on the log lines of the main service's request, of the hop to the dialog service,
//! of the dialog service's own request, and of the RabbitMQ consumers that applied the post's
//! event and the message's (the outbox rows and the message headers carried it there). The same
//! spans, exported over OTLP/HTTP to a receiver the test runs, land in one trace per request id,
//! from both services.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha1::{Digest, Sha1};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    amqp_url, eventually, free_port, fresh_database_url, ChildGuard, DatabaseGuard, TestApp,
    TestUser,
};

/// One `socialnet serve` process with JSON logs at debug level in `log`.
fn serve(port: u16, log: &Path, settings: &[(&str, &str)]) -> ChildGuard {
    let mut command = Command::new(env!("CARGO_BIN_EXE_socialnet"));
    command
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "socialnet=debug")
        .env("ARGON2_MEMORY_KIB", "1024")
        .env("ARGON2_ITERATIONS", "1")
        .env("RATE_LIMITS", "off")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (name, value) in settings {
        command.env(name, value);
    }
    ChildGuard(command.spawn().unwrap())
}

/// Waits until `app` is ready, all of it: its dialog service too (`degraded` is a 200).
async fn wait_ready(app: &TestApp) {
    eventually(Duration::from_secs(60), || async {
        let response = app
            .client
            .get(app.url("/ready"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] == "ready" {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;
}

/// The JSON log lines of a file whose request id (the field of the innermost span that has
/// one) is `id`.
fn lines_of(log: &Path, id: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line["spans"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|span| span["request_id"] == id)
        })
        .collect()
}

fn messages(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|line| line["message"].as_str())
        .collect()
}

/// An OTLP/HTTP receiver (JSON encoding) on a loopback port: every span posted to
/// `/v1/traces`, flattened to (service.name, span name, trace id, its attributes).
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ReceivedSpan>>>);

/// service.name, span name, trace id (hex), attributes.
type ReceivedSpan = (String, String, String, Value);

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let spans = receiver.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::Json<Value>| async move {
                spans.take(&body);
                axum::Json(json!({}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn take(&self, request: &Value) {
        let value = |v: &Value| {
            let v = &v["value"];
            v.get("stringValue")
                .cloned()
                .or_else(|| v.get("intValue").cloned())
                .unwrap_or(Value::Null)
        };
        for resource in request["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(value)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let attributes: serde_json::Map<String, Value> = span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| (a["key"].as_str().unwrap_or("").to_owned(), value(a)))
                        .collect();
                    self.0.lock().unwrap().push((
                        service.clone(),
                        span["name"].as_str().unwrap_or("").to_owned(),
                        span["traceId"].as_str().unwrap_or("").to_owned(),
                        Value::Object(attributes),
                    ));
                }
            }
        }
    }

    /// (service, span name, consumer) of every span in the trace of `request_id`, which must
    /// all carry that request id when they carry one.
    fn trace_of(&self, request_id: &str) -> Vec<(String, String, String)> {
        let trace: String = Sha1::digest(request_id.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .filter(|(_, _, t, _)| *t == trace)
            .map(|(service, name, _, attributes)| {
                if let Some(id) = attributes.get("request_id") {
                    assert_eq!(id, request_id, "{name} of {service}: {attributes}");
                }
                let consumer = attributes["consumer"].as_str().unwrap_or("").to_owned();
                (service.clone(), name.clone(), consumer)
            })
            .collect()
    }
}

struct Logs(Vec<PathBuf>);

impl Drop for Logs {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[tokio::test]
async fn one_request_id_is_on_every_service_and_consumer_that_handled_the_request() {
    let database_url = fresh_database_url();
    let _database = DatabaseGuard::new(&database_url);
    let name = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir();
    let logs = Logs(vec![
        dir.join(format!("socialnet-main-{name}.log")),
        dir.join(format!("socialnet-dialogs-{name}.log")),
    ]);
    let (main_log, dialogs_log) = (&logs.0[0], &logs.0[1]);
    let (main_port, dialogs_port) = (free_port(), free_port());
    let dialogs_url = format!("http://127.0.0.1:{dialogs_port}");
    let redis_url = crate::feed_cache::redis_url();
    let amqp_url = amqp_url();
    let prefix = format!("socialnet_trace_{name}");
    let (receiver, otlp) = Receiver::start().await;
    // Spans leave in batches every 100 ms (the default is 5 s).
    let traces = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    // The main service first: it creates the database and its token secret, which the dialog
    // service then reads.
    let _main = serve(
        main_port,
        main_log,
        &[
            ("DATABASE_URL", &database_url),
            ("DIALOGS_URL", &dialogs_url),
            ("REDIS_URL", &redis_url),
            ("REDIS_KEY_PREFIX", &prefix),
            ("AMQP_URL", &amqp_url),
            ("AMQP_PREFIX", &prefix),
            ("AMQP_QUEUE_EXPIRES_MS", "60000"),
            traces[0],
            traces[1],
            traces[2],
        ],
    );
    let main = TestApp::at(format!("http://127.0.0.1:{main_port}"), &database_url);
    eventually(Duration::from_secs(60), || async {
        match main.client.get(main.url("/health")).send().await {
            Ok(response) if response.status() == StatusCode::OK => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let _dialogs = serve(
        dialogs_port,
        dialogs_log,
        &[
            ("DATABASE_URL", &database_url),
            ("SERVICE", "dialogs"),
            // The unread counters, kept from the dialog events through the outbox and RabbitMQ.
            ("REDIS_URL", &redis_url),
            ("REDIS_KEY_PREFIX", &prefix),
            ("AMQP_URL", &amqp_url),
            ("AMQP_PREFIX", &prefix),
            ("AMQP_QUEUE_EXPIRES_MS", "60000"),
            traces[0],
            traces[1],
            traces[2],
        ],
    );
    wait_ready(&main).await;

    let anna = main.user("Анна", "Трасса").await;
    let boris = main.user("Борис", "Трасса").await;
    main.follow(&boris, &anna).await;
    let post_trace = format!("post-{name}");
    let dialog_trace = format!("dialog-{name}");
    let sent = |user: &TestUser, path: String, body: Value, trace: &str| {
        main.client
            .post(main.url(&path))
            .bearer_auth(&user.token)
            .header("x-request-id", trace)
            .json(&body)
            .send()
    };
    let response = sent(
        &anna,
        "/post/create".into(),
        json!({"text": "след"}),
        &post_trace,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = sent(
        &anna,
        format!("/dialog/{}/send", boris.id),
        json!({"text": "привет"}),
        &dialog_trace,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], dialog_trace.as_str());

    // The post's event went through the outbox and RabbitMQ to the feed consumer.
    let main_post_lines = eventually(Duration::from_secs(30), || async {
        let lines = lines_of(main_log, &post_trace);
        if messages(&lines).contains(&"feed event applied") {
            Ok(lines)
        } else {
            Err(format!("{:?}", messages(&lines)))
        }
    })
    .await;
    let said = messages(&main_post_lines);
    assert!(said.contains(&"request finished"), "{said:?}");
    let consumed = main_post_lines
        .iter()
        .find(|line| line["message"] == "feed event applied")
        .unwrap();
    let event_span = consumed["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|span| span["name"] == "event")
        .unwrap_or_else(|| panic!("no event span: {consumed}"));
    assert_eq!(event_span["consumer"], "feed");

    // The dialog: the hop on the main service, the request on the dialog service.
    let main_dialog = messages(&lines_of(main_log, &dialog_trace))
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(
        main_dialog.iter().any(|m| m == "forwarded"),
        "{main_dialog:?}"
    );
    assert!(
        main_dialog.iter().any(|m| m == "request finished"),
        "{main_dialog:?}"
    );
    // The message's event, through the dialog service's outbox and RabbitMQ, to its counters'
    // consumer.
    let dialog_lines = eventually(Duration::from_secs(30), || async {
        let lines = lines_of(dialogs_log, &dialog_trace);
        if messages(&lines).contains(&"dialog event applied") {
            Ok(lines)
        } else {
            Err(format!("{:?}", messages(&lines)))
        }
    })
    .await;
    assert!(
        messages(&dialog_lines).contains(&"request finished"),
        "{:?}",
        messages(&dialog_lines)
    );
    let counted = dialog_lines
        .iter()
        .find(|line| line["message"] == "dialog event applied")
        .unwrap();
    assert!(
        counted["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|span| span["name"] == "event" && span["consumer"] == "unread"),
        "{counted}"
    );
    // And the post was not the dialog service's business.
    assert!(lines_of(dialogs_log, &post_trace).is_empty());

    // Every line naming either id names it as the request's own, nowhere else.
    for log in [main_log, dialogs_log] {
        for line in std::fs::read_to_string(log).unwrap().lines() {
            for trace in [&post_trace, &dialog_trace] {
                if line.contains(trace.as_str()) {
                    let line: Value = serde_json::from_str(line).unwrap();
                    assert!(
                        line["spans"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|span| span["request_id"] == trace.as_str()),
                        "{line}"
                    );
                }
            }
        }
    }

    // The traces: each request id's spans in one trace, from every process that handled it.
    let has = |spans: &[(String, String, String)], service: &str, name: &str, consumer: &str| {
        spans
            .iter()
            .any(|(s, n, c)| s == service && n == name && c == consumer)
    };
    let post_spans = eventually(Duration::from_secs(30), || async {
        let spans = receiver.trace_of(&post_trace);
        if has(&spans, "socialnet", "request", "") && has(&spans, "socialnet", "event", "feed") {
            Ok(spans)
        } else {
            Err(format!("{spans:?}"))
        }
    })
    .await;
    assert!(
        post_spans.iter().all(|(s, _, _)| s == "socialnet"),
        "{post_spans:?}"
    );
    eventually(Duration::from_secs(30), || async {
        let spans = receiver.trace_of(&dialog_trace);
        if has(&spans, "socialnet", "request", "")
            && has(&spans, "socialnet", "forward", "")
            && has(&spans, "socialnet-dialogs", "request", "")
            && has(&spans, "socialnet-dialogs", "event", "unread")
        {
            Ok(())
        } else {
            Err(format!("{spans:?}"))
        }
    })
    .await;
}
