//! `socialnet lab index`: one offline page (`index.html` in the lab folder) with every
//! technique's before/after plots and a one-line reading of each comparison, computed from the
//! runs' own results so that it is true of whatever run wrote the folder.
//!
//! The page links the plots (`<img>` with paths relative to the folder): it opens from disk, with
//! nothing fetched from elsewhere. A comparison the folder lacks (a part that run skipped, e.g.
//! Citus where it is not installed) is listed as not measured.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::bench::outage::OutageResult;
use super::bench::plot::escape;
use super::bench::report::{paired_scenarios, paired_steps, ratio};
use super::bench::RunResult;

/// One technique: what it asks, the report that reads it at length, and its evidence.
struct Technique {
    title: &'static str,
    report: &'static str,
    question: &'static str,
    items: &'static [Item],
}

enum Item {
    /// `bench compare` of two `bench run` folders: the plots of `dir`, a reading from A and B.
    Compare {
        what: &'static str,
        dir: &'static str,
        a: &'static str,
        b: &'static str,
    },
    /// `bench outage`: its two plots and a reading of its counts.
    Outage {
        what: &'static str,
        dir: &'static str,
    },
    /// One `bench run` folder's own plots (no baseline to compare against).
    Run {
        what: &'static str,
        dir: &'static str,
    },
    /// A table or text a script wrote, shown as it is.
    Text {
        what: &'static str,
        file: &'static str,
    },
}

const TECHNIQUES: &[Technique] = &[
    Technique {
        title: "Indexes",
        report: "indexes.md",
        question: "What a trigram index does for the prefix search of /user/search.",
        items: &[Item::Compare {
            what: "without the index (A) → with it (B)",
            dir: "indexes/compare",
            a: "indexes/without-index",
            b: "indexes/with-index",
        }],
    },
    Technique {
        title: "Feed cache",
        report: "feed.md",
        question: "GET /post/feed computed by SQL, or served from the Redis feed cache.",
        items: &[Item::Compare {
            what: "SQL feed (A) → cached feed (B)",
            dir: "feed/compare",
            a: "feed/sql-feed",
            b: "feed/cached-feed",
        }],
    },
    Technique {
        title: "Live feed: websockets and a broker",
        report: "live.md",
        question: "How long a post takes from its create call to each follower's socket, by set-up.",
        items: &[
            Item::Compare {
                what: "in process (A) → through the outbox and RabbitMQ (B)",
                dir: "live/compare-broker",
                a: "live/in-process",
                b: "live/broker",
            },
            Item::Compare {
                what: "direct exchange (A) → topic exchange (B)",
                dir: "live/compare-exchange",
                a: "live/broker-direct",
                b: "live/broker",
            },
            Item::Compare {
                what: "one message per follower (A) → batches of followers' keys (B)",
                dir: "live/compare-batch",
                a: "live/broker-per-follower",
                b: "live/broker",
            },
            Item::Compare {
                what: "one instance (A) → two behind HAProxy (B)",
                dir: "live/compare-balanced",
                a: "live/broker",
                b: "live/balanced",
            },
            Item::Compare {
                what: "a celebrity's burst routed follower by follower (A) → broadcast (B)",
                dir: "live/burst/compare",
                a: "live/burst/by-follower",
                b: "live/burst/broadcast",
            },
            Item::Text {
                what: "each server's peak memory",
                file: "live/memory.md",
            },
        ],
    },
    Technique {
        title: "Read replicas",
        report: "replicas.md",
        question: "Reads spread over streaming replicas, and what synchronous replication costs writes.",
        items: &[
            Item::Compare {
                what: "no replica (A) → one (B)",
                dir: "replicas/compare-one",
                a: "replicas/no-replicas",
                b: "replicas/one-replica",
            },
            Item::Compare {
                what: "no replica (A) → two (B)",
                dir: "replicas/compare-two",
                a: "replicas/no-replicas",
                b: "replicas/two-replicas",
            },
            Item::Compare {
                what: "asynchronous (A) → synchronous to the first replica (B)",
                dir: "replicas/compare-sync-first",
                a: "replicas/writes-async",
                b: "replicas/writes-first",
            },
            Item::Compare {
                what: "asynchronous (A) → synchronous to any one (B)",
                dir: "replicas/compare-sync-quorum",
                a: "replicas/writes-async",
                b: "replicas/writes-quorum",
            },
            Item::Text {
                what: "the replicas' replay lag during those writes",
                file: "replicas/sync-lag.md",
            },
            Item::Text {
                what: "read-after-write against two replicas",
                file: "replicas/read-your-writes.md",
            },
        ],
    },
    Technique {
        title: "Failover",
        report: "replicas.md",
        question: "The primary killed under load (pg_auto_failover): what clients saw, what was lost.",
        items: &[
            Item::Outage {
                what: "synchronous, killed at once",
                dir: "replicas/failover-sync-kill",
            },
            Item::Outage {
                what: "synchronous, killed after its network to the standby failed",
                dir: "replicas/failover-sync-cut",
            },
            Item::Outage {
                what: "asynchronous, killed at once",
                dir: "replicas/failover-async-kill",
            },
            Item::Outage {
                what: "asynchronous, killed after its network to the standby failed",
                dir: "replicas/failover-async-cut",
            },
        ],
    },
    Technique {
        title: "Load balancing",
        report: "replicas.md",
        question: "One of two instances killed behind a balancer: what clients saw.",
        items: &[
            Item::Outage {
                what: "HAProxy (active health checks)",
                dir: "replicas/instance-kill-haproxy",
            },
            Item::Outage {
                what: "nginx (passive checks)",
                dir: "replicas/instance-kill-nginx",
            },
            Item::Text {
                what: "how long each balancer took to notice",
                file: "replicas/balancers-notice.md",
            },
        ],
    },
    Technique {
        title: "Sharding with Citus",
        report: "dialogs.md",
        question: "Dialogs on one PostgreSQL, at two sizes, and sharded over Citus workers.",
        items: &[
            Item::Compare {
                what: "plain PostgreSQL: the first size (A) → ten times the messages (B)",
                dir: "dialogs/compare-size",
                a: "dialogs/plain-1m",
                b: "dialogs/plain-10m",
            },
            Item::Compare {
                what: "plain PostgreSQL (A) → Citus, two workers (B)",
                dir: "dialogs/compare-citus",
                a: "dialogs/plain-1m",
                b: "dialogs/citus-1m",
            },
            Item::Run {
                what: "sends while a second worker joins and the shards rebalance",
                dir: "dialogs/rebalance",
            },
            Item::Text {
                what: "the rebalance's time",
                file: "dialogs/rebalance-time.txt",
            },
        ],
    },
    Technique {
        title: "In-memory store: Tarantool",
        report: "dialogs.md",
        question: "The dialogs kept in Tarantool instead of PostgreSQL (or Citus), same data.",
        items: &[
            Item::Compare {
                what: "PostgreSQL (A) → Tarantool (B), first size",
                dir: "dialogs/compare-memory-1m",
                a: "dialogs/postgres-1m",
                b: "dialogs/tarantool-1m",
            },
            Item::Compare {
                what: "PostgreSQL (A) → Tarantool (B), ten times the messages",
                dir: "dialogs/compare-memory-10m",
                a: "dialogs/postgres-10m",
                b: "dialogs/tarantool-10m",
            },
            Item::Compare {
                what: "PostgreSQL (A) → Tarantool flushing its log on every send (B)",
                dir: "dialogs/compare-fsync-1m",
                a: "dialogs/postgres-1m",
                b: "dialogs/tarantool-fsync-1m",
            },
            Item::Compare {
                what: "PostgreSQL (A) → Citus (B), same data",
                dir: "dialogs/compare-stores-citus-1m",
                a: "dialogs/postgres-1m",
                b: "dialogs/citus-stores-1m",
            },
            Item::Text {
                what: "memory, disk and restart times",
                file: "dialogs/memory.md",
            },
        ],
    },
    Technique {
        title: "A service split out",
        report: "dialogs.md",
        question: "The dialog service loaded directly, or through the main service that forwards to it.",
        items: &[Item::Compare {
            what: "direct (A) → forwarded by the main service (B)",
            dir: "dialogs/compare-hop",
            a: "dialogs/hop-direct",
            b: "dialogs/hop-forwarded",
        }],
    },
    Technique {
        title: "Queues: unread counters",
        report: "dialogs.md",
        question: "What keeping unread counters in Redis costs a send, in process or through the outbox and RabbitMQ.",
        items: &[
            Item::Compare {
                what: "counters off (A) → kept in process (B)",
                dir: "dialogs/compare-unread-in-process",
                a: "dialogs/unread-off",
                b: "dialogs/unread-in-process",
            },
            Item::Compare {
                what: "counters off (A) → kept through the outbox and RabbitMQ (B)",
                dir: "dialogs/compare-unread-outbox",
                a: "dialogs/unread-off",
                b: "dialogs/unread-outbox",
            },
            Item::Text {
                what: "rebuilding the counters, and Redis' memory",
                file: "dialogs/unread-rebuild.txt",
            },
        ],
    },
];

/// The page for the lab folder `dir`, and how many comparisons it found and missed.
pub struct Page {
    pub html: String,
    pub found: usize,
    pub missing: usize,
}

pub fn render(dir: &Path) -> anyhow::Result<Page> {
    let mut page = Page {
        html: String::new(),
        found: 0,
        missing: 0,
    };
    let mut body = String::new();
    let mut contents = String::new();
    for (n, technique) in TECHNIQUES.iter().enumerate() {
        let anchor = format!("t{}", n + 1);
        let _ = write!(
            contents,
            "<li><a href=\"#{anchor}\">{}</a></li>",
            escape(technique.title)
        );
        // The report is linked where it is beside the page (a quick run's folder has none).
        let report = if dir.join(technique.report).exists() {
            format!(" <a href=\"{}\">The report</a>.", escape(technique.report))
        } else {
            String::new()
        };
        let _ = writeln!(
            body,
            "<section id=\"{anchor}\"><h2>{}</h2><p class=\"question\">{}{report}</p>",
            escape(technique.title),
            escape(technique.question),
        );
        for item in technique.items {
            match render_item(dir, item)? {
                Some(html) => {
                    page.found += 1;
                    body.push_str(&html);
                }
                None => {
                    page.missing += 1;
                    let _ = writeln!(
                        body,
                        "<div class=\"item missing\"><h3>{}</h3><p>Not measured in this run.</p></div>",
                        escape(item_what(item))
                    );
                }
            }
        }
        body.push_str("</section>\n");
    }
    page.html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>socialnet lab</title><style>{STYLE}</style></head><body>\n\
         <h1>socialnet lab: every technique, before and after</h1>\n\
         <p>Each comparison is two runs of <code>socialnet bench</code> on one machine, one after \
         the other; A is the baseline, B the technique, ratios are B / A. Readings are at the \
         largest connection count both runs measured. {} comparisons here, {} not measured in \
         this run.</p>\n<ul class=\"contents\">{contents}</ul>\n{body}</body></html>\n",
        page.found, page.missing
    );
    Ok(page)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:75em;margin:1em auto;padding:0 1em;\
color:#222}h2{border-bottom:1px solid #ccc;margin-top:2em}.question{color:#444}\
.reading{font-weight:bold}.item{margin:1em 0 2em}.plots img{width:30em;max-width:100%;\
margin:0 1em 1em 0;vertical-align:top}.missing p{color:#999}pre{background:#f6f6f6;\
padding:.5em;overflow-x:auto}.contents{columns:2}";

fn item_what(item: &Item) -> &'static str {
    match item {
        Item::Compare { what, .. }
        | Item::Outage { what, .. }
        | Item::Run { what, .. }
        | Item::Text { what, .. } => what,
    }
}

/// An item's HTML, or `None` when the folder does not hold it.
fn render_item(dir: &Path, item: &Item) -> anyhow::Result<Option<String>> {
    let what = escape(item_what(item));
    let html = match *item {
        Item::Compare {
            dir: compare, a, b, ..
        } => {
            let (Some(a), Some(b)) = (read_run(dir, a)?, read_run(dir, b)?) else {
                return Ok(None);
            };
            let plots = plots(dir, compare)?;
            if plots.is_empty() {
                return Ok(None);
            }
            plotted(
                &what,
                &compare_reading(&a, &b),
                &format!("A: {}, B: {}", a.started_at, b.started_at),
                &plots,
            )
        }
        Item::Outage { dir: outage, .. } => {
            let path = dir.join(outage).join("outage.json");
            if !path.exists() {
                return Ok(None);
            }
            let text =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let result: OutageResult = serde_json::from_slice(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            plotted(
                &what,
                &outage_reading(&result),
                &result.started_at,
                &plots(dir, outage)?,
            )
        }
        Item::Run { dir: run, .. } => {
            let Some(result) = read_run(dir, run)? else {
                return Ok(None);
            };
            plotted(
                &what,
                &run_reading(&result),
                &result.started_at,
                &plots(dir, run)?,
            )
        }
        Item::Text { file, .. } => {
            let path = dir.join(file);
            if !path.exists() {
                return Ok(None);
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            format!(
                "<div class=\"item\"><h3>{what}</h3><pre>{}</pre></div>\n",
                escape(text.trim_end())
            )
        }
    };
    Ok(Some(html))
}

/// One item with plots: its title (escaped already), reading, when it was measured, and the
/// `<img>` tags.
fn plotted(what: &str, reading: &str, when: &str, plots: &str) -> String {
    format!(
        "<div class=\"item\"><h3>{what}</h3><p class=\"reading\">{}</p>\
         <p class=\"when\">{}.</p><div class=\"plots\">{plots}</div></div>\n",
        escape(reading),
        escape(when)
    )
}

fn read_run(dir: &Path, run: &str) -> anyhow::Result<Option<RunResult>> {
    let path = dir.join(run).join("result.json");
    if !path.exists() {
        return Ok(None);
    }
    RunResult::read(&path).map(Some)
}

/// `<img>` tags for the SVG plots of `sub`, in name order.
fn plots(dir: &Path, sub: &str) -> anyhow::Result<String> {
    let folder = dir.join(sub);
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .with_context(|| format!("listing {}", folder.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".svg"))
        .collect();
    names.sort();
    Ok(names
        .iter()
        .map(|name| {
            let stem = name.trim_end_matches(".svg");
            format!(
                "<img src=\"{}/{}\" alt=\"{}\">",
                escape(sub),
                escape(name),
                escape(stem)
            )
        })
        .collect())
}

/// Per scenario both runs measured: ok/s and p99 of A and B, and their ratios, at the largest
/// connection count both measured.
fn compare_reading(a: &RunResult, b: &RunResult) -> String {
    let mut parts = Vec::new();
    for (sa, sb) in paired_scenarios(a, b) {
        let Some((step_a, step_b)) = paired_steps(sa, sb).next_back() else {
            continue;
        };
        let mut part = format!(
            "{} at {} connections: {:.0} → {:.0} ok/s ({}), p99 {:.2} → {:.2} ms ({})",
            sa.scenario,
            step_a.connections,
            step_a.ok_rps,
            step_b.ok_rps,
            ratio(step_b.ok_rps, step_a.ok_rps),
            step_a.latency_ms.p99,
            step_b.latency_ms.p99,
            ratio(step_b.latency_ms.p99, step_a.latency_ms.p99)
        );
        if step_a.failed + step_b.failed > 0 {
            let _ = write!(part, ", failed {} → {}", step_a.failed, step_b.failed);
        }
        parts.push(part);
    }
    if parts.is_empty() {
        "The two runs share no scenario.".to_owned()
    } else {
        parts.join("; ") + "."
    }
}

fn run_reading(run: &RunResult) -> String {
    let parts: Vec<String> = run
        .scenarios
        .iter()
        .filter_map(|s| {
            let step = s.steps.last()?;
            Some(format!(
                "{} at {} connections: {:.0} ok/s, p99 {:.2} ms, {} failed",
                s.scenario, step.connections, step.ok_rps, step.latency_ms.p99, step.failed
            ))
        })
        .collect();
    parts.join("; ") + "."
}

/// Requests sent, failed and, for writes, acknowledged and then lost.
fn outage_reading(outage: &OutageResult) -> String {
    let sent: u64 = outage.kinds.iter().map(|k| k.sent).sum();
    let ok: u64 = outage.kinds.iter().map(|k| k.ok).sum();
    let lost: u64 = outage.kinds.iter().filter_map(|k| k.lost).sum();
    let last_failure = outage
        .kinds
        .iter()
        .filter_map(|k| k.last_failure_s)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    let mut reading = format!(
        "{} of {} requests failed over {:.0} s with {} connections",
        sent - ok,
        sent,
        outage.duration_secs,
        outage.connections
    );
    if let Some(at) = outage.event_at_s {
        let _ = write!(reading, ", the kill at {at:.1} s");
    }
    if let Some(last) = last_failure {
        let _ = write!(reading, ", the last failure {last:.2} s after it");
    }
    let _ = write!(reading, "; {lost} acknowledged writes lost.");
    reading
}

/// Writes `dir/index.html`; with `check`, only compares it with what is there.
pub fn write(dir: &Path, check: bool) -> anyhow::Result<Page> {
    let page = render(dir)?;
    let path = dir.join("index.html");
    if check {
        let there = std::fs::read_to_string(&path).unwrap_or_default();
        anyhow::ensure!(
            there == page.html,
            "{} is not what the lab folder's results give: run `socialnet lab index --dir {}`",
            path.display(),
            dir.display()
        );
    } else {
        std::fs::write(&path, &page.html).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/lab")
    }

    #[test]
    fn every_item_of_the_committed_lab_is_on_the_page() {
        let page = render(&lab()).unwrap();
        // The committed lab is a full one: every item is there.
        assert_eq!(page.missing, 0, "{}", page.html);
        assert!(page.found > 30);
        assert!(page
            .html
            .contains("src=\"indexes/compare/user-search-throughput.svg\""));
        assert!(!page.html.contains("http://") && !page.html.contains("https://"));
    }

    #[test]
    fn a_reading_names_both_runs_numbers_and_their_ratio() {
        let a = RunResult::read(&lab().join("indexes/without-index")).unwrap();
        let b = RunResult::read(&lab().join("indexes/with-index")).unwrap();
        let reading = compare_reading(&a, &b);
        let last_a = a.scenarios[0].steps.last().unwrap();
        let last_b = b.scenarios[0].steps.last().unwrap();
        assert!(reading.starts_with(&format!(
            "user-search at {} connections: {:.0} → {:.0} ok/s ({})",
            last_a.connections,
            last_a.ok_rps,
            last_b.ok_rps,
            ratio(last_b.ok_rps, last_a.ok_rps)
        )));
    }

    #[test]
    fn an_empty_folder_gives_a_page_of_missing_items() {
        let dir = std::env::temp_dir().join(format!("socialnet-lab-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let page = render(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(page.found, 0);
        assert!(page.missing > 30);
    }
}
