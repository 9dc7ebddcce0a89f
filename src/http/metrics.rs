//! Prometheus metrics: request counts and latencies per route, plus pool gauges at scrape time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, from a cache hit to a request that times out: the fastest routes
/// answer in 0.1–0.4 ms at the median on one machine (a user by id, a dialog page), a send in
/// about 0.5 ms, a login's password hash in tens of milliseconds, and the slowest wait is a
/// timeout (seconds); roughly 2.5× apart, so any quantile is read within a bucket's width.
const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The counters the parts record, unlabelled, with what each counts: described for Prometheus'
/// `# HELP` lines and created at zero when the recorder is installed, so that each exists (and a
/// rate over it is 0 rather than "no data") before its first event. Gauges are not: a gauge at 0
/// would claim a state (no broker session, say) that an instance without the part is not in.
const COUNTERS: &[(&str, &str)] = &[
    (
        "broker_events_unreadable",
        "Events dropped because their JSON could not be read.",
    ),
    (
        "broker_session_failures",
        "RabbitMQ sessions that ended (each followed by a reconnection).",
    ),
    (
        "db_replica_fallbacks",
        "Reads meant for a replica served by the primary instead.",
    ),
    (
        "feed_cache_fallbacks",
        "Feed reads served by SQL because Redis failed or was slow.",
    ),
    ("feed_cache_hits", "Feed reads served from the Redis cache."),
    (
        "feed_cache_misses",
        "Feed reads that built the cached feed first.",
    ),
    ("feed_fanout_writes", "Feed entries written by post events."),
    ("live_frames_sent", "Live-feed frames handed to sockets."),
    (
        "live_posts_broadcast",
        "Celebrities' posts broadcast to every instance.",
    ),
    (
        "live_posts_routed",
        "Posts routed to their followers' instances.",
    ),
    (
        "live_sockets_dropped_slow",
        "Live-feed sockets closed for not keeping up.",
    ),
    (
        "live_sockets_refused",
        "Live-feed sockets refused (over a limit).",
    ),
    (
        "live_sockets_replaced",
        "Live-feed sockets closed for a newer one of the same user.",
    ),
    ("outbox_published", "Outbox events published to RabbitMQ."),
    (
        "rate_limit_redis_failures",
        "Rate-limit checks that could not reach Redis.",
    ),
    (
        "unread_events_applied",
        "Dialog events applied to the unread counters by a consumer.",
    ),
    (
        "unread_events_failed",
        "Dialog events not applied in process (repaired by a rebuild).",
    ),
    (
        "unread_rebuilds",
        "Rebuilds of the unread counters from the messages.",
    ),
    (
        "unread_repairs",
        "Dialogs whose event a write could not record, merged into the unread counters from the store.",
    ),
];

/// The metrics recorded with labels or as gauges and histograms, with what each measures.
const DESCRIBED: &[(&str, &str)] = &[
    (
        "http_requests_total",
        "Answered requests, by route template, method and status.",
    ),
    (
        "http_request_duration_seconds",
        "Time to answer a request, by route template and method.",
    ),
    (
        "db_pool_connections",
        "Connections open in a database pool.",
    ),
    ("db_pool_available", "Connections idle in a database pool."),
    (
        "db_pool_waiting",
        "Requests waiting for a connection of a database pool.",
    ),
    (
        "db_pool_max_size",
        "The most connections a database pool opens.",
    ),
    ("db_replica_up", "1 while a replica answers as a replica."),
    ("db_replica_lag_seconds", "How stale a replica is."),
    ("db_replica_reads", "Reads served by a replica."),
    (
        "broker_connected",
        "1 while this instance has a RabbitMQ session.",
    ),
    ("outbox_rows", "Events waiting in the outbox."),
    (
        "outbox_oldest_seconds",
        "How long the oldest event in the outbox has waited.",
    ),
    ("live_sockets", "Live-feed sockets open on this instance."),
    ("password_hash_busy", "Password hashes running."),
    (
        "password_hash_waiting",
        "Logins and registrations waiting for a hashing thread.",
    ),
    (
        "rate_limited",
        "Requests refused by a rate limit, by limit.",
    ),
    (
        "rate_limit_local_full",
        "Calls let through uncounted because the instance's own limit state was full, by limit.",
    ),
    (
        "tarantool_calls_total",
        "Calls of the Tarantool dialog store, by function and outcome.",
    ),
    (
        "tarantool_call_seconds",
        "Time of a Tarantool call, by function.",
    ),
    (
        "upstream_requests_total",
        "Requests forwarded to another service, by outcome.",
    ),
    (
        "upstream_request_seconds",
        "Time of a forwarded request's whole exchange.",
    ),
];

/// How often recorded latencies are folded into their histograms' buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process-wide recorder (the `metrics` facade has one global recorder per process).
///
/// The recorder keeps every latency it is given as a raw sample until something folds them into
/// the buckets: a scrape does, and so does its upkeep. Installed this way it runs no upkeep of its
/// own, so without a scraper the samples piled up, 8 bytes and more per request, without end (the
/// leak is measured in docs/benchmarks/users.md). A thread of ours runs it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Histograms with buckets (not summaries), so that Prometheus can add instances up
        // and take any quantile of the sum.
        let mut builder = PrometheusBuilder::new();
        for name in [
            "http_request_duration_seconds",
            "tarantool_call_seconds",
            "upstream_request_seconds",
        ] {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.into()), LATENCY_BUCKETS)
                .expect("buckets are not empty");
        }
        let handle = builder
            .install_recorder()
            .expect("no other metrics recorder is installed");
        for (name, help) in COUNTERS {
            metrics::describe_counter!(*name, *help);
            metrics::counter!(*name).increment(0);
        }
        for (name, help) in DESCRIBED {
            metrics::describe_gauge!(*name, *help);
        }
        let upkept = handle.clone();
        // A thread, not a task: the recorder outlives any one runtime (tests start many).
        let started = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkept.run_upkeep();
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the metrics upkeep thread; latencies are folded only when scraped");
        }
        handle
    })
}

/// Counts every routed request and records its latency, labelled by route template (not raw path,
/// which would make one series per user id).
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    ROUTES.with_borrow_mut(|routes| {
        let (duration, count) = routes.handles(route, method, status);
        duration.record(elapsed);
        count.increment(1);
    });
    response
}

/// The method as a label: the standard ones by name, any other token a client invents as `other`,
/// so that no client can create series without end.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

thread_local! {
    /// This thread's handles to the series it has recorded into. Naming a series through the
    /// `metrics` macros builds its key (label strings and all), hashes it and looks it up in the
    /// registry on every call; a handle is the same series, found once per thread.
    static ROUTES: RefCell<RouteSeries> = RefCell::default();
}

/// Series handles by route template, then method, then status (a handful of each).
#[derive(Default)]
struct RouteSeries(HashMap<Box<str>, Vec<MethodSeries>>);

struct MethodSeries {
    method: &'static str,
    duration: Histogram,
    by_status: Vec<(u16, Counter)>,
}

impl RouteSeries {
    fn handles(
        &mut self,
        route: &str,
        method: &'static str,
        status: u16,
    ) -> (&Histogram, &Counter) {
        if !self.0.contains_key(route) {
            self.0.insert(route.into(), Vec::new());
        }
        let methods = self.0.get_mut(route).expect("inserted above");
        let at = match methods.iter().position(|m| m.method == method) {
            Some(at) => at,
            None => {
                let duration = metrics::histogram!("http_request_duration_seconds",
                    "method" => method, "route" => route.to_owned());
                methods.push(MethodSeries {
                    method,
                    duration,
                    by_status: Vec::new(),
                });
                methods.len() - 1
            }
        };
        let series = &mut methods[at];
        let counter = match series.by_status.iter().position(|(s, _)| *s == status) {
            Some(at) => at,
            None => {
                let counter = metrics::counter!("http_requests_total",
                    "method" => method, "route" => route.to_owned(),
                    "status" => status.to_string());
                series.by_status.push((status, counter));
                series.by_status.len() - 1
            }
        };
        (&series.duration, &series.by_status[counter].1)
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    /// Without upkeep the recorder keeps every latency sample until a scrape: memory grows with
    /// every request on a server nobody scrapes.
    #[test]
    fn the_recorder_comes_with_its_upkeep_thread() {
        handle();
        let thread_names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .expect("Linux /proc")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        };
        // A new thread names itself once it runs, which may be a moment after it is spawned.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut names = thread_names();
        while !names.iter().any(|name| name == "metrics-upkeep") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            names = thread_names();
        }
        assert!(
            names.iter().any(|name| name == "metrics-upkeep"),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn each_route_method_and_status_counts_into_its_own_series() {
        let handle = handle();
        let router = Router::new()
            .route(
                "/metrics-unit/{n}",
                get(
                    |axum::extract::Path(n): axum::extract::Path<u32>| async move {
                        if n % 2 == 0 {
                            StatusCode::OK
                        } else {
                            StatusCode::NOT_FOUND
                        }
                    },
                )
                .post(|| async { StatusCode::CREATED }),
            )
            .route_layer(axum::middleware::from_fn(track_requests));
        for (method, path) in [
            ("GET", "/metrics-unit/2"),
            ("GET", "/metrics-unit/4"),
            ("GET", "/metrics-unit/1"),
            ("GET", "/metrics-unit/6"),
            ("POST", "/metrics-unit/3"),
            ("GET", "/metrics-unit/3"),
            ("FROBNICATE", "/metrics-unit/2"),
            ("WIBBLE", "/metrics-unit/2"),
        ] {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        let text = handle.render();
        let count = |labels: &str| {
            text.lines()
                .find(|line| line.starts_with(&format!("http_requests_total{{{labels}}}")))
                .and_then(|line| line.rsplit(' ').next())
                .map(str::to_owned)
        };
        let route = r#"route="/metrics-unit/{n}""#;
        for (method, status, expected) in [
            ("GET", 200, "3"),
            ("GET", 404, "2"),
            ("POST", 201, "1"),
            // Methods a client makes up share one label.
            ("other", 405, "2"),
        ] {
            let labels = format!(r#"method="{method}",{route},status="{status}""#);
            assert_eq!(
                count(&labels).as_deref(),
                Some(expected),
                "{labels}\n{text}"
            );
        }
        assert!(
            !text.contains("FROBNICATE") && !text.contains("WIBBLE"),
            "{text}"
        );
        let durations = text
            .lines()
            .find(|line| {
                line.starts_with("http_request_duration_seconds_count")
                    && line.contains(r#"method="GET""#)
                    && line.contains(route)
            })
            .unwrap_or_else(|| panic!("{text}"));
        assert!(durations.ends_with(" 5"), "{durations}");
    }
}
