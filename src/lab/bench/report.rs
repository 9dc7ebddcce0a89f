//! Benchmark results: the JSON a run writes, its Markdown table, and `compare`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::load::Tally;
use super::plot::{line_chart, Series};

/// One run: every scenario, every step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub name: String,
    pub started_at: String,
    pub target: String,
    /// `closed` or `open`.
    pub mode: String,
    /// Open loop: requests per second asked for, across all connections.
    pub rate: Option<f64>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub cpus: usize,
    pub scenarios: Vec<ScenarioResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub steps: Vec<StepResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub connections: usize,
    pub requests: u64,
    pub seconds: f64,
    /// Every answered or failed request per second.
    pub throughput_rps: f64,
    /// 2xx responses per second: the work actually done.
    pub ok_rps: f64,
    pub latency_ms: Percentiles,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<String, u64>,
    /// Requests that got no HTTP response, by kind (connect, send, body, …).
    pub errors: BTreeMap<String, u64>,
    /// Responses that were not 2xx, plus transport errors.
    pub failed: u64,
    /// CPU the generator itself spent per request, in microseconds.
    pub generator_cpu_us_per_request: f64,
    /// CPU the server process spent per request, when its pid was given.
    pub server_cpu_us_per_request: Option<f64>,
    /// CPU µs per request of each process given with `--node-pid` (with its children).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes_cpu_us_per_request: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl StepResult {
    pub fn from_tally(
        connections: usize,
        tally: &Tally,
        seconds: f64,
        generator_cpu_secs: f64,
        server_cpu_secs: Option<f64>,
    ) -> Self {
        let h = &tally.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let requests = tally.requests();
        let failed = tally
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(_, n)| n)
            .sum::<u64>()
            + tally.errors.values().sum::<u64>();
        let per_request = |secs: f64| secs * 1e6 / requests.max(1) as f64;
        StepResult {
            connections,
            requests,
            seconds,
            throughput_rps: requests as f64 / seconds.max(1e-9),
            ok_rps: (requests - failed) as f64 / seconds.max(1e-9),
            latency_ms: Percentiles {
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                p999: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
                mean: h.mean() / 1000.0,
            },
            statuses: tally
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            errors: tally.errors.clone(),
            failed,
            generator_cpu_us_per_request: per_request(generator_cpu_secs),
            server_cpu_us_per_request: server_cpu_secs.map(per_request),
            nodes_cpu_us_per_request: BTreeMap::new(),
        }
    }
}

impl RunResult {
    /// Writes `result.json`, `report.md`, and two SVG plots per scenario into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("result.json"), serde_json::to_vec_pretty(self)?)?;
        let mut md = format!(
            "# {}\n\n{} against {} on {} CPUs, {} loop{}, {:.0} s warm-up + {:.0} s per step.\n",
            self.name,
            self.started_at,
            self.target,
            self.cpus,
            self.mode,
            self.rate
                .map(|r| format!(" at {r:.0} requests/s"))
                .unwrap_or_default(),
            self.warmup_secs,
            self.duration_secs
        );
        for scenario in &self.scenarios {
            let stem = &scenario.scenario;
            let _ = write!(
                md,
                "\n## {stem}\n\n![throughput]({stem}-throughput.svg) ![latency]({stem}-latency.svg)\n\n\
                 | connections | requests/s | ok/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | failed | generator µs/req | server µs/req |\n\
                 |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            );
            for s in &scenario.steps {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {} |",
                    s.connections,
                    s.throughput_rps,
                    s.ok_rps,
                    s.latency_ms.p50,
                    s.latency_ms.p90,
                    s.latency_ms.p99,
                    s.latency_ms.p999,
                    s.latency_ms.max,
                    s.failed,
                    s.generator_cpu_us_per_request,
                    s.server_cpu_us_per_request
                        .map(|v| format!("{v:.1}"))
                        .unwrap_or_else(|| "–".into())
                );
            }
            let nodes: Vec<&String> = scenario
                .steps
                .first()
                .map(|s| s.nodes_cpu_us_per_request.keys().collect())
                .unwrap_or_default();
            if !nodes.is_empty() {
                let _ = write!(
                    md,
                    "\nCPU µs per request of each database node (postmaster and backends):\n\n\
                     | connections | {} |\n|---:|{}\n",
                    nodes
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(" | "),
                    "---:|".repeat(nodes.len())
                );
                for s in &scenario.steps {
                    let cells: Vec<String> = nodes
                        .iter()
                        .map(|n| {
                            s.nodes_cpu_us_per_request
                                .get(*n)
                                .map_or_else(|| "–".into(), |v| format!("{v:.1}"))
                        })
                        .collect();
                    let _ = writeln!(md, "| {} | {} |", s.connections, cells.join(" | "));
                }
            }
            std::fs::write(
                dir.join(format!("{stem}-throughput.svg")),
                throughput_chart(&format!("{stem}: throughput"), &[(&self.name, scenario)]),
            )?;
            std::fs::write(
                dir.join(format!("{stem}-latency.svg")),
                latency_chart(&format!("{stem}: latency"), &[(&self.name, scenario)]),
            )?;
        }
        std::fs::write(dir.join("report.md"), md)?;
        Ok(())
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let path = if path.is_dir() {
            path.join("result.json")
        } else {
            path.to_owned()
        };
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}

fn throughput_chart(title: &str, runs: &[(&str, &ScenarioResult)]) -> String {
    let series: Vec<Series> = runs
        .iter()
        .enumerate()
        .map(|(i, (name, scenario))| Series {
            label: name.to_string(),
            colour: i,
            dash: 0,
            points: scenario
                .steps
                .iter()
                .map(|s| (s.connections as f64, s.ok_rps))
                .collect(),
        })
        .collect();
    line_chart(title, "connections", "successful requests/s", &series)
}

fn latency_chart(title: &str, runs: &[(&str, &ScenarioResult)]) -> String {
    let mut series = Vec::new();
    for (run, (name, scenario)) in runs.iter().enumerate() {
        for (n, (label, pick)) in [
            ("p50", (|p: &Percentiles| p.p50) as fn(&Percentiles) -> f64),
            ("p99", |p: &Percentiles| p.p99),
            ("p99.9", |p: &Percentiles| p.p999),
        ]
        .into_iter()
        .enumerate()
        {
            // One run: a colour per percentile. Several: a colour per run, a dash per percentile.
            let (colour, dash) = if runs.len() > 1 { (run, n) } else { (n, 0) };
            series.push(Series {
                colour,
                dash,
                label: if runs.len() > 1 {
                    format!("{name} {label}")
                } else {
                    label.to_owned()
                },
                points: scenario
                    .steps
                    .iter()
                    .map(|s| (s.connections as f64, pick(&s.latency_ms)))
                    .collect(),
            });
        }
    }
    line_chart(title, "connections", "latency, ms", &series)
}

/// Draws two runs on the same axes and tabulates the ratio (B / A) per step; writes
/// `compare.md` and SVGs into `dir` and returns the Markdown.
pub fn compare(a: &RunResult, b: &RunResult, dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let mut md = format!(
        "# {} vs {}\n\nRatios are B / A, with A = {} and B = {}.\n",
        a.name, b.name, a.name, b.name
    );
    let mut common = 0;
    for (sa, sb) in paired_scenarios(a, b) {
        common += 1;
        let stem = &sa.scenario;
        let _ = write!(
            md,
            "\n## {stem}\n\n![throughput]({stem}-throughput.svg) ![latency]({stem}-latency.svg)\n\n\
             | connections | A ok/s | B ok/s | ratio | A p99 ms | B p99 ms | ratio | A failed | B failed |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        );
        for (step_a, step_b) in paired_steps(sa, sb) {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {} | {} | {} |",
                step_a.connections,
                step_a.ok_rps,
                step_b.ok_rps,
                ratio(step_b.ok_rps, step_a.ok_rps),
                step_a.latency_ms.p99,
                step_b.latency_ms.p99,
                ratio(step_b.latency_ms.p99, step_a.latency_ms.p99),
                step_a.failed,
                step_b.failed,
            );
        }
        let runs = [(a.name.as_str(), sa), (b.name.as_str(), sb)];
        std::fs::write(
            dir.join(format!("{stem}-throughput.svg")),
            throughput_chart(&format!("{stem}: throughput"), &runs),
        )?;
        std::fs::write(
            dir.join(format!("{stem}-latency.svg")),
            latency_chart(&format!("{stem}: latency"), &runs),
        )?;
    }
    anyhow::ensure!(common > 0, "the two runs have no scenario in common");
    std::fs::write(dir.join("compare.md"), &md)?;
    Ok(md)
}

/// The scenarios both runs measured, in A's order.
pub fn paired_scenarios<'r>(
    a: &'r RunResult,
    b: &'r RunResult,
) -> impl Iterator<Item = (&'r ScenarioResult, &'r ScenarioResult)> {
    a.scenarios.iter().filter_map(move |sa| {
        let sb = b.scenarios.iter().find(|s| s.scenario == sa.scenario)?;
        Some((sa, sb))
    })
}

/// The steps (connection counts) both scenarios measured, in A's order.
pub fn paired_steps<'r>(
    a: &'r ScenarioResult,
    b: &'r ScenarioResult,
) -> impl DoubleEndedIterator<Item = (&'r StepResult, &'r StepResult)> {
    a.steps.iter().filter_map(move |sa| {
        let sb = b.steps.iter().find(|s| s.connections == sa.connections)?;
        Some((sa, sb))
    })
}

/// `b / a` with three significant digits, or `–` when `a` is zero.
pub fn ratio(b: f64, a: f64) -> String {
    if a <= 0.0 {
        return "–".to_owned();
    }
    let r = b / a;
    let decimals = if r >= 100.0 {
        0
    } else if r >= 10.0 {
        1
    } else if r >= 1.0 {
        2
    } else {
        (-r.log10().floor() as usize + 2).min(6)
    };
    format!("{r:.decimals$}×")
}

#[cfg(test)]
mod tests {
    use super::ratio;

    #[test]
    fn ratios_keep_three_significant_digits() {
        assert_eq!(ratio(2.0, 1.0), "2.00×");
        assert_eq!(ratio(1470.15, 1.0), "1470×");
        assert_eq!(ratio(17.45, 2828.29), "0.00617×");
        assert_eq!(ratio(1.0, 0.0), "–");
    }
}
