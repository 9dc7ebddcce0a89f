//! One retry schedule for everything that waits for a dependency to come back (the database at
//! start-up, the broker session, events whose consumer failed, the outbox relay): delays that
//! double from `first` up to `max`, each drawn at random from the upper half of its range
//! ("equal jitter"), so that instances which lost the same server at the same moment do not
//! all knock on it again at the same moment.

use std::time::Duration;

use rand::Rng;

/// The delays before successive retries of one thing.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// The upper bound of the next delay.
    ceiling: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        let first = first.min(max);
        Backoff {
            first,
            max,
            ceiling: first,
        }
    }

    /// The delay before the next attempt: between half the current ceiling and the ceiling,
    /// which then doubles (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(self.max);
        let half = ceiling / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=ceiling - half)
    }

    /// Sleeps for [`Backoff::next_delay`]; returns how long.
    pub async fn wait(&mut self) -> Duration {
        let delay = self.next_delay();
        tokio::time::sleep(delay).await;
        delay
    }

    /// After a success: the next failure starts again from `first`.
    pub fn reset(&mut self) {
        self.ceiling = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_within_the_upper_half_of_each_step() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(1_000));
        for ceiling in [100, 200, 400, 800, 1_000, 1_000, 1_000] {
            let delay = backoff.next_delay();
            assert!(
                delay >= ms(ceiling / 2) && delay <= ms(ceiling),
                "{delay:?} outside {}..={ceiling} ms",
                ceiling / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= ms(100));
    }

    #[test]
    fn instances_that_fail_together_do_not_retry_together() {
        let delays: Vec<Duration> = (0..20)
            .map(|_| {
                let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
                backoff.next_delay();
                backoff.next_delay()
            })
            .collect();
        let first = delays[0];
        assert!(delays.iter().any(|&d| d != first), "{delays:?}");
    }
}
