//! What a rate-limit check costs, apart from the rest of a request: the write limits (two checks
//! per write) with each instance counting on its own, and shared through Redis.
//!
//!     cargo run --release --example limiter_cost [REDIS_URL]
//!
//! Quotas are set so high that nothing is refused: the time measured is the check itself. Ten
//! tasks check at once, as ten connections would. Results are in docs/hardening.md.

use std::net::IpAddr;
use std::time::Instant;

use socialnet::config::{Config, OnOff};
use socialnet::limits::RateLimits;

const TASKS: usize = 10;

async fn measure(name: &str, limits: RateLimits, checks_per_task: usize) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let limits = limits.clone();
            tokio::spawn(async move {
                let address = IpAddr::from([192, 0, 2, u8::try_from(task).unwrap_or(0)]);
                for _ in 0..checks_per_task {
                    if limits.check_write(task, address).await.is_err() {
                        return false;
                    }
                }
                true
            })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        refused += usize::from(!task.await.unwrap_or(false));
    }
    let elapsed = started.elapsed();
    let writes = TASKS * checks_per_task;
    println!(
        "{name}: {writes} writes checked in {:.2} s: {:.0} writes/s, {:.1} µs per write per task{}",
        elapsed.as_secs_f64(),
        writes as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / checks_per_task as f64,
        if refused > 0 {
            " (some refused: raise the quotas)"
        } else {
            ""
        },
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let redis_url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let mut config = Config::defaults();
    config.rate.rate_limits = OnOff::On;
    config.rate.rate_writes_per_account = "1000000/s".parse().map_err(anyhow::Error::msg)?;
    config.rate.rate_writes_per_address = "1000000/s".parse().map_err(anyhow::Error::msg)?;

    measure("off", RateLimits::off(), 100_000).await;
    let local = RateLimits::from_config(&config.rate, &config.cache).await?;
    measure("on, per instance", local, 100_000).await;
    config.cache.redis_url = Some(redis_url);
    config.cache.redis_key_prefix = format!("limiter-cost-{}", std::process::id());
    let shared = RateLimits::from_config(&config.rate, &config.cache).await?;
    measure("on, shared through Redis", shared, 5_000).await;
    Ok(())
}
