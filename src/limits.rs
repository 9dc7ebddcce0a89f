//! Rate limits on the calls a client can repeat to its advantage: logins (guessing a password),
//! registrations, and the writes (posts, messages, follows). Each is a GCRA, as governor
//! implements it: a quota of N per period lets N through at once, then one every period / N.
//!
//! With Redis (`REDIS_URL`) the state lives there and every instance shares it: a script runs the
//! same GCRA on Redis' own clock, so instances whose clocks differ still agree. governor's state
//! is in process memory and its store is synchronous, which is why the shared limiter is a script
//! and not governor itself. Without Redis, and whenever Redis does not answer in time, each
//! instance limits on its own with governor: limits are never lifted by a Redis outage, at worst
//! they count per instance.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use redis::aio::ConnectionManager;

use crate::config::{CacheConfig, OnOff, Rate, RateConfig};

/// What a client is limited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Logins from one client address.
    LoginPerAddress,
    /// Logins to one account, from anywhere: guesses at one password, spread over addresses.
    LoginPerAccount,
    /// Registrations from one client address.
    RegisterPerAddress,
    /// Writes (posts, messages, follows) of one account.
    WritesPerAccount,
    /// Writes from one client address.
    WritesPerAddress,
}

const LIMITS: [Limit; 5] = [
    Limit::LoginPerAddress,
    Limit::LoginPerAccount,
    Limit::RegisterPerAddress,
    Limit::WritesPerAccount,
    Limit::WritesPerAddress,
];

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::LoginPerAddress => "login_per_address",
            Limit::LoginPerAccount => "login_per_account",
            Limit::RegisterPerAddress => "register_per_address",
            Limit::WritesPerAccount => "writes_per_account",
            Limit::WritesPerAddress => "writes_per_address",
        }
    }

    fn index(self) -> usize {
        LIMITS.iter().position(|&l| l == self).unwrap_or(0)
    }

    fn rate(self, config: &RateConfig) -> Rate {
        match self {
            Limit::LoginPerAddress => config.rate_login_per_address,
            Limit::LoginPerAccount => config.rate_login_per_account,
            Limit::RegisterPerAddress => config.rate_register_per_address,
            Limit::WritesPerAccount => config.rate_writes_per_account,
            Limit::WritesPerAddress => config.rate_writes_per_address,
        }
    }
}

/// governor's quota of a rate: `count` at once, then one cell every `interval`.
fn quota(rate: Rate) -> Quota {
    Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
        .map(|quota| quota.allow_burst(rate.count))
        .unwrap_or_else(|| Quota::per_second(rate.count))
}

/// A call refused by a limit, and when the client may try again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("too many requests ({}): retry in {} s", .limit.name(), .retry_after.as_secs().max(1))]
pub struct Limited {
    pub limit: Limit,
    pub retry_after: Duration,
}

/// The proxies whose `X-Forwarded-For` is believed (the balancers in front of the instances).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client behind a connection from `peer`: `peer` itself, unless it is a trusted proxy;
    /// then the nearest address in `X-Forwarded-For` that is not one (read from the right: the
    /// leftmost entries are whatever the client chose to send).
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut nearest = peer;
        for entry in forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .rev()
        {
            match entry.trim().parse::<IpAddr>() {
                Ok(address) if self.trusts(address) => nearest = address,
                Ok(address) => return address,
                Err(_) => return nearest,
            }
        }
        nearest
    }
}

/// The rate limits of this instance: off, or on with each limit's local state and, when Redis is
/// configured, the shared one.
#[derive(Clone)]
pub struct RateLimits(Option<Arc<Limits>>);

struct Limits {
    rates: [Rate; 5],
    local: [DefaultKeyedRateLimiter<String>; 5],
    shared: Option<Shared>,
}

struct Shared {
    redis: ConnectionManager,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
}

/// One or more limits checked together, in one round trip: KEYS[i] is a limit's key, ARGV[2i-1]
/// its interval between cells and ARGV[2i] its burst tolerance (interval × (N − 1)), in
/// microseconds. Either every limit has a cell and each gives one (returns {0, 0}), or none gives
/// any and the answer is {microseconds to wait, the 1-based index of the limit that waits
/// longest}. Time is Redis' own, in microseconds: in milliseconds a quota over 1,000/s would
/// round to one cell per millisecond. (Lua's numbers are doubles, exact to 2^53 µs, some 285
/// years.)
const GCRA: &str = r"
local time = redis.call('time')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tats = {}
local longest, which = 0, 0
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('get', key)) or now
  if tat < now then tat = now end
  local wait = tat - tonumber(ARGV[2 * i]) - now
  if wait > longest then longest, which = wait, i end
  tats[i] = tat
end
if which > 0 then return {longest, which} end
for i, key in ipairs(KEYS) do
  local tat = tats[i] + tonumber(ARGV[2 * i - 1])
  redis.call('set', key, string.format('%d', tat), 'px', math.ceil((tat - now) / 1000))
end
return {0, 0}
";

/// How often the local state forgets keys whose cells are all back.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl RateLimits {
    /// No limits (tests, and lab runs that measure the server rather than its limiter).
    pub fn off() -> Self {
        RateLimits(None)
    }

    /// The limits of `config`; shared through Redis when `REDIS_URL` is set and answers.
    pub async fn from_config(config: &RateConfig, cache: &CacheConfig) -> anyhow::Result<Self> {
        if config.rate_limits == OnOff::Off {
            tracing::info!("rate limits are off (RATE_LIMITS=off)");
            return Ok(RateLimits::off());
        }
        // Each limit's series exists from the start, at zero.
        for limit in LIMITS {
            metrics::counter!("rate_limited", "limit" => limit.name()).increment(0);
        }
        let rates = LIMITS.map(|limit| limit.rate(config));
        let local = rates.map(|rate| DefaultKeyedRateLimiter::keyed(quota(rate)));
        let shared = match cache.redis_url.as_deref().filter(|url| !url.is_empty()) {
            None => None,
            Some(url) => {
                let timeout = Duration::from_millis(cache.redis_timeout_ms);
                match connect(url, timeout).await {
                    Ok(redis) => Some(Shared {
                        redis,
                        script: redis::Script::new(GCRA),
                        prefix: cache.redis_key_prefix.clone(),
                        timeout,
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "rate limits: Redis unreachable at start-up; each instance counts on its own");
                        None
                    }
                }
            }
        };
        let limits = Arc::new(Limits {
            rates,
            local,
            shared,
        });
        let pruned = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PRUNE_EVERY);
            loop {
                every.tick().await;
                let Some(limits) = pruned.upgrade() else {
                    return;
                };
                for local in &limits.local {
                    local.retain_recent();
                    local.shrink_to_fit();
                }
            }
        });
        Ok(RateLimits(Some(limits)))
    }

    /// Takes a cell of `limit` for `key`, or says when one will be there.
    pub async fn check(&self, limit: Limit, key: &str) -> Result<(), Limited> {
        self.check_all(&[(limit, key)]).await
    }

    /// A write of `account` from `address`: both write limits must let it through.
    pub async fn check_write(
        &self,
        account: impl std::fmt::Display,
        address: IpAddr,
    ) -> Result<(), Limited> {
        if self.0.is_none() {
            return Ok(());
        }
        let account = account.to_string();
        let address = address_key(address);
        self.check_all(&[
            (Limit::WritesPerAccount, &account),
            (Limit::WritesPerAddress, &address),
        ])
        .await
    }

    /// Takes a cell of every limit, or of none and says when the longest wait ends. Shared
    /// limits are checked in one Redis call, atomically; local ones in order (a refusal by a
    /// later one leaves the earlier ones' cells taken: a fallback's inexactness).
    async fn check_all(&self, checks: &[(Limit, &str)]) -> Result<(), Limited> {
        let Some(limits) = &self.0 else {
            return Ok(());
        };
        let outcome = match &limits.shared {
            Some(shared) => match shared.check(&limits.rates, checks).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    metrics::counter!("rate_limit_redis_failures").increment(1);
                    tracing::warn!(error = %e, "rate limits: Redis failed; counting on this instance");
                    limits.check_local(checks)
                }
            },
            None => limits.check_local(checks),
        };
        outcome.inspect_err(|limited| {
            metrics::counter!("rate_limited", "limit" => limited.limit.name()).increment(1);
        })
    }
}

/// The key of a client address: the address itself for IPv4, its /64 for IPv6 (a single host
/// commonly has the whole /64, and would otherwise have 2^64 keys to rotate through).
pub fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
    }
}

impl Limits {
    fn check_local(&self, checks: &[(Limit, &str)]) -> Result<(), Limited> {
        for &(limit, key) in checks {
            self.local[limit.index()]
                .check_key(&key.to_owned())
                .map_err(|not_until| Limited {
                    limit,
                    retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                })?;
        }
        Ok(())
    }
}

impl Shared {
    async fn check(
        &self,
        rates: &[Rate; 5],
        checks: &[(Limit, &str)],
    ) -> Result<Result<(), Limited>, String> {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut invocation = self.script.prepare_invoke();
        for &(limit, key) in checks {
            let rate = rates[limit.index()];
            let interval = rate.interval();
            invocation
                .key(format!("{}:rate:{}:{key}", self.prefix, limit.name()))
                .arg(micros(interval).max(1))
                .arg(micros(interval * (rate.count.get() - 1)));
        }
        let mut redis = self.redis.clone();
        let (wait_us, which): (u64, usize) =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut redis))
                .await
                .map_err(|_| "Redis did not answer in time".to_owned())?
                .map_err(|e| e.to_string())?;
        if wait_us == 0 {
            return Ok(Ok(()));
        }
        let limit = which
            .checked_sub(1)
            .and_then(|i| checks.get(i))
            .map_or(checks[0].0, |&(limit, _)| limit);
        Ok(Err(Limited {
            limit,
            retry_after: Duration::from_micros(wait_us),
        }))
    }
}

async fn connect(url: &str, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout.max(Duration::from_millis(500)))
        .set_response_timeout(timeout)
        .set_number_of_retries(1);
    Ok(tokio::time::timeout(
        Duration::from_secs(5),
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| anyhow::anyhow!("redis at {url} did not answer in 5 s"))??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_as_a_count_per_period() {
        let rate: Rate = "20/min".parse().unwrap();
        assert_eq!(rate.count.get(), 20);
        assert_eq!(rate.interval(), Duration::from_secs(3));
        assert!("0/min".parse::<Rate>().is_err());
        assert!("5/day".parse::<Rate>().is_err());
        assert!("five".parse::<Rate>().is_err());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // From a client directly: its own address, whatever it claims.
        assert_eq!(
            proxies.client(ip("203.0.113.7"), &["1.2.3.4"]),
            ip("203.0.113.7")
        );
        // Through the balancer: the address the balancer saw, not what the client added.
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &["1.2.3.4, 198.51.100.9"]),
            ip("198.51.100.9")
        );
        // Through two trusted hops.
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &["198.51.100.9", "10.0.0.3"]),
            ip("198.51.100.9")
        );
        // A trusted proxy that forwarded nothing: the proxy itself.
        assert_eq!(proxies.client(ip("10.0.0.2"), &[]), ip("10.0.0.2"));
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
    }

    #[tokio::test]
    async fn the_local_limiter_lets_a_burst_through_then_says_when() {
        let mut config = crate::config::Config::defaults().rate;
        config.rate_login_per_account = "3/min".parse().unwrap();
        let limits = RateLimits::from_config(&config, &crate::config::Config::defaults().cache)
            .await
            .unwrap();
        for _ in 0..3 {
            limits.check(Limit::LoginPerAccount, "42").await.unwrap();
        }
        let refused = limits
            .check(Limit::LoginPerAccount, "42")
            .await
            .unwrap_err();
        assert!(refused.retry_after > Duration::from_secs(15), "{refused:?}");
        assert!(
            refused.retry_after <= Duration::from_secs(20),
            "{refused:?}"
        );
        // Another account is counted apart.
        limits.check(Limit::LoginPerAccount, "43").await.unwrap();
    }

    #[tokio::test]
    async fn with_redis_unreachable_each_instance_still_limits() {
        let mut config = crate::config::Config::defaults();
        config.rate.rate_writes_per_account = "2/min".parse().unwrap();
        // Nothing listens on port 1: the connection is refused at once.
        config.cache.redis_url = Some("redis://127.0.0.1:1".to_owned());
        let limits = RateLimits::from_config(&config.rate, &config.cache)
            .await
            .unwrap();
        let address = IpAddr::from([192, 0, 2, 1]);
        limits.check_write(7, address).await.unwrap();
        limits.check_write(7, address).await.unwrap();
        assert!(limits.check_write(7, address).await.is_err());
    }
}
