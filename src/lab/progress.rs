//! Progress of a long generator step: a bar on a terminal, plain lines otherwise (about every
//! 10 %), each with the rate and the time left, so that no step runs for minutes in silence.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub(crate) struct Progress {
    /// `fake users`, `fake social: follows`…: what the lines start with.
    what: &'static str,
    /// What is counted: rows, users, posts.
    unit: &'static str,
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    next_line: Cell<u64>,
}

impl Progress {
    pub(crate) fn new(what: &'static str, unit: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{what}: {{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}"
                ))
                .expect("valid template"),
            );
            bar
        });
        Progress {
            what,
            unit,
            bar,
            total,
            started: Instant::now(),
            next_line: Cell::new(total / 10),
        }
    }

    pub(crate) fn update(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if done >= self.next_line.get() && done < self.total {
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let eta = (self.total - done) as f64 / rate.max(1.0);
            eprintln!(
                "{}: {done}/{} {} ({:.0}%), {rate:.0}/s, eta {eta:.0}s",
                self.what,
                self.total,
                self.unit,
                100.0 * done as f64 / self.total.max(1) as f64
            );
            self.next_line.set(done + (self.total / 10).max(1));
        }
    }

    pub(crate) fn finish(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{}: {done} {} in {:.1}s",
            self.what,
            self.unit,
            self.started.elapsed().as_secs_f64()
        );
    }
}
