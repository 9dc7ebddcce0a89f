//! Rate limits on the calls a client can repeat to its advantage: logins (guessing a password),
//! registrations, and the writes (posts, messages, follows). Each is a GCRA: a quota of N per
//! period lets N through at once, then one every period / N.
//!
//! With Redis (`REDIS_URL`) the state lives there and every instance shares it: a script runs the
//! GCRA on Redis' own clock, so instances whose clocks differ still agree. Without Redis, and
//! whenever Redis does not answer in time, each instance runs the same GCRA in its own memory
//! ([`LocalCells`]): limits are never lifted by a Redis outage, at worst they count per instance.
//!
//! Logins count failures, not attempts (see [`RateLimits::check_login`]): a cell is taken before
//! the password is looked at, so concurrent guesses cannot overshoot, and given back when the
//! password was right.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use redis::aio::ConnectionManager;

use crate::config::{CacheConfig, OnOff, Rate, RateConfig};

/// What a client is limited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Logins from one client address, right or wrong.
    LoginPerAddress,
    /// Failed logins to one account from one address: one guesser at one account.
    LoginPerAccountAddress,
    /// Failed logins to one account from anywhere: the ceiling on guesses at one password that
    /// only an attack from many addresses reaches.
    LoginPerAccount,
    /// Registrations from one client address.
    RegisterPerAddress,
    /// Writes (posts, messages, follows) of one account.
    WritesPerAccount,
    /// Writes from one client address.
    WritesPerAddress,
}

const LIMITS: [Limit; 6] = [
    Limit::LoginPerAddress,
    Limit::LoginPerAccountAddress,
    Limit::LoginPerAccount,
    Limit::RegisterPerAddress,
    Limit::WritesPerAccount,
    Limit::WritesPerAddress,
];

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::LoginPerAddress => "login_per_address",
            Limit::LoginPerAccountAddress => "login_per_account_address",
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
            Limit::LoginPerAccountAddress => config.rate_login_per_account_address,
            Limit::LoginPerAccount => config.rate_login_per_account,
            Limit::RegisterPerAddress => config.rate_register_per_address,
            Limit::WritesPerAccount => config.rate_writes_per_account,
            Limit::WritesPerAddress => config.rate_writes_per_address,
        }
    }
}

/// A limit's GCRA parameters, in microseconds: the time between two cells, and how far ahead of
/// now the next cell's time may run (interval × (N − 1)) before a call is refused.
#[derive(Debug, Clone, Copy)]
struct Cells {
    interval_us: u64,
    tolerance_us: u64,
}

impl Cells {
    fn of(rate: Rate) -> Cells {
        let interval_us = u64::try_from(rate.interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        Cells {
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(rate.count.get() - 1)),
        }
    }
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
            match forwarded_address(entry) {
                Some(address) if self.trusts(address) => nearest = address,
                Some(address) => return address,
                None => return nearest,
            }
        }
        nearest
    }
}

/// The address of one `X-Forwarded-For` entry, as proxies write them: `203.0.113.5`,
/// `203.0.113.5:5555`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:443`.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
}

/// The rate limits of this instance: off, or on with their local state and, when Redis is
/// configured, the shared one.
#[derive(Clone)]
pub struct RateLimits(Option<Arc<Limits>>);

struct Limits {
    cells: [Cells; 6],
    local: LocalCells,
    shared: Option<Shared>,
}

struct Shared {
    redis: ConnectionManager,
    take: redis::Script,
    give_back: redis::Script,
    prefix: String,
    timeout: Duration,
}

/// One or more limits checked together, in one round trip: KEYS[i] is a limit's key, ARGV[2i-1]
/// its interval between cells and ARGV[2i] its tolerance, in microseconds. Either every limit
/// has a cell and each gives one (returns {0, 0}), or none gives any and the answer is
/// {microseconds to wait, the 1-based index of the limit that waits longest}. Time is Redis' own,
/// in microseconds: in milliseconds a quota over 1,000/s would round to one cell per millisecond.
/// (Lua's numbers are doubles, exact to 2^53 µs, some 285 years.)
const TAKE: &str = r"
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

/// Gives back a cell taken by [`TAKE`] under each key (KEYS and ARGV as there): the next cell's
/// time moves one interval back; a key with nothing owed any more goes.
const GIVE_BACK: &str = r"
local time = redis.call('time')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('get', key))
  if tat then
    tat = tat - tonumber(ARGV[2 * i - 1])
    if tat > now then
      redis.call('set', key, string.format('%d', tat), 'px', math.ceil((tat - now) / 1000))
    else
      redis.call('del', key)
    end
  end
end
return 0
";

/// How often the local state forgets keys whose cells are all back.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The most keys the local state keeps per limit (about 100 bytes each). Past it, with every
/// key still owing, a new key's call goes through uncounted (`rate_limit_local_full`): the local
/// state is the fallback of Redis, and bounded memory matters more there than exact limits.
const MAX_LOCAL_KEYS: usize = 100_000;

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
        let shared = match cache.redis_url.as_deref().filter(|url| !url.is_empty()) {
            None => None,
            Some(url) => {
                let timeout = Duration::from_millis(cache.redis_timeout_ms);
                match connect(url, timeout).await {
                    Ok(redis) => Some(Shared {
                        redis,
                        take: redis::Script::new(TAKE),
                        give_back: redis::Script::new(GIVE_BACK),
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
            cells: LIMITS.map(|limit| Cells::of(limit.rate(config))),
            local: LocalCells::new(),
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
                limits.local.prune();
            }
        });
        Ok(RateLimits(Some(limits)))
    }

    /// Takes a cell of `limit` for `key`, or says when one will be there.
    pub async fn check(&self, limit: Limit, key: &str) -> Result<(), Limited> {
        self.check_all(&[(limit, key)]).await.map(drop)
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
        .map(drop)
    }

    /// A login to `account` from `address`, before its password is looked at: a cell of the
    /// address's limit (every attempt counts there) and one of each failure limit, the
    /// account's from this address and the account's from anywhere. The failure limits' cells
    /// are given back by [`RateLimits::login_not_failed`]: only wrong guesses (a wrong password,
    /// an unknown id) stay counted. An IPv6 client is counted here by its /48, so that one host
    /// cannot spread its guesses over the /64s of its own network.
    pub async fn check_login(
        &self,
        account: impl std::fmt::Display,
        address: IpAddr,
    ) -> Result<LoginAttempt, Limited> {
        if self.0.is_none() {
            return Ok(LoginAttempt(Counted::Nowhere));
        }
        let (account, address) = (account.to_string(), login_address_key(address));
        let from_here = format!("{account}@{address}");
        self.check_all(&[
            (Limit::LoginPerAddress, &address),
            (Limit::LoginPerAccountAddress, &from_here),
            (Limit::LoginPerAccount, &account),
        ])
        .await
        .map(LoginAttempt)
    }

    /// A login let through by [`RateLimits::check_login`] did not fail (its password was right,
    /// or it got no verdict: a 503): its failure cells come back, to where they were taken, so
    /// the owner's logins never count against them.
    pub async fn login_not_failed(
        &self,
        attempt: LoginAttempt,
        account: impl std::fmt::Display,
        address: IpAddr,
    ) {
        let Some(limits) = &self.0 else {
            return;
        };
        let (account, address) = (account.to_string(), login_address_key(address));
        let from_here = format!("{account}@{address}");
        let checks = [
            (Limit::LoginPerAccountAddress, from_here.as_str()),
            (Limit::LoginPerAccount, account.as_str()),
        ];
        match (attempt.0, &limits.shared) {
            (Counted::Shared, Some(shared)) => {
                if let Err(e) = shared.give_back(&limits.cells, &checks).await {
                    tracing::warn!(error = %e, "rate limits: Redis failed; a right login's cells stay taken");
                }
            }
            (Counted::Local, _) => limits.local.give_back(&limits.cells, &checks),
            _ => {}
        }
    }

    /// Takes a cell of every limit, or of none and says when the longest wait ends; in one Redis
    /// call when the limits are shared, else here. Says where the cells were taken.
    async fn check_all(&self, checks: &[(Limit, &str)]) -> Result<Counted, Limited> {
        let Some(limits) = &self.0 else {
            return Ok(Counted::Nowhere);
        };
        let outcome = match &limits.shared {
            Some(shared) => match shared.take(&limits.cells, checks).await {
                Ok(outcome) => outcome.map(|()| Counted::Shared),
                Err(e) => {
                    metrics::counter!("rate_limit_redis_failures").increment(1);
                    tracing::warn!(error = %e, "rate limits: Redis failed; counting on this instance");
                    limits
                        .local
                        .take(&limits.cells, checks)
                        .map(|()| Counted::Local)
                }
            },
            None => limits
                .local
                .take(&limits.cells, checks)
                .map(|()| Counted::Local),
        };
        outcome.inspect_err(|limited| {
            metrics::counter!("rate_limited", "limit" => limited.limit.name()).increment(1);
        })
    }
}

/// Where a call's cells were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// In Redis, shared by the instances.
    Shared,
    /// In this instance (no Redis, or Redis failed).
    Local,
    /// Nowhere: the limits are off.
    Nowhere,
}

/// A login let through its limits, to be told whether it failed (see
/// [`RateLimits::login_not_failed`]).
#[derive(Debug, Clone, Copy)]
pub struct LoginAttempt(Counted);

/// The GCRA of [`TAKE`] and [`GIVE_BACK`], kept in this process: for each limit and key, the
/// time of its next cell in microseconds since the instance started. A key whose cells are all
/// back holds no entry (after [`LocalCells::prune`]).
struct LocalCells {
    started: Instant,
    /// Per limit (by [`Limit::index`]), each key's next cell.
    next_cell: Mutex<[HashMap<String, u64>; 6]>,
}

impl LocalCells {
    fn new() -> Self {
        LocalCells {
            started: Instant::now(),
            next_cell: Mutex::new(Default::default()),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Takes a cell of every limit, or of none: as [`TAKE`].
    fn take(&self, cells: &[Cells; 6], checks: &[(Limit, &str)]) -> Result<(), Limited> {
        let now = self.now_us();
        let mut next_cell = self
            .next_cell
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut longest: Option<(u64, Limit)> = None;
        for &(limit, key) in checks {
            let tat = next_cell[limit.index()]
                .get(key)
                .map_or(now, |&tat| tat.max(now));
            let wait = tat.saturating_sub(cells[limit.index()].tolerance_us + now);
            if wait > 0 && longest.is_none_or(|(longest, _)| wait > longest) {
                longest = Some((wait, limit));
            }
        }
        if let Some((wait_us, limit)) = longest {
            return Err(Limited {
                limit,
                retry_after: Duration::from_micros(wait_us),
            });
        }
        for &(limit, key) in checks {
            let interval = cells[limit.index()].interval_us;
            let keys = &mut next_cell[limit.index()];
            match keys.get_mut(key) {
                Some(tat) => *tat = (*tat).max(now) + interval,
                None => {
                    if keys.len() >= MAX_LOCAL_KEYS {
                        keys.retain(|_, tat| *tat > now);
                    }
                    if keys.len() < MAX_LOCAL_KEYS {
                        keys.insert(key.to_owned(), now + interval);
                    } else {
                        metrics::counter!("rate_limit_local_full", "limit" => limit.name())
                            .increment(1);
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives a cell back under each key: as [`GIVE_BACK`].
    fn give_back(&self, cells: &[Cells; 6], checks: &[(Limit, &str)]) {
        let now = self.now_us();
        let mut next_cell = self
            .next_cell
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for &(limit, key) in checks {
            let keys = &mut next_cell[limit.index()];
            if let Some(tat) = keys.get_mut(key) {
                *tat = tat.saturating_sub(cells[limit.index()].interval_us);
                if *tat <= now {
                    keys.remove(key);
                }
            }
        }
    }

    /// Forgets the keys whose cells are all back.
    fn prune(&self) {
        let now = self.now_us();
        let mut next_cell = self
            .next_cell
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for keys in next_cell.iter_mut() {
            keys.retain(|_, tat| *tat > now);
            keys.shrink_to_fit();
        }
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

/// The key of a client address for the login limits: IPv4 as [`address_key`], IPv6 by its /48,
/// the network a site is commonly given whole.
fn login_address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let [a, b, c, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}::/48")
        }
        other => address_key(other),
    }
}

impl Shared {
    /// The keys and GCRA arguments of `checks` for one of the scripts.
    fn invocation<'a>(
        &self,
        script: &'a redis::Script,
        cells: &[Cells; 6],
        checks: &[(Limit, &str)],
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for &(limit, key) in checks {
            let cells = cells[limit.index()];
            invocation
                .key(format!("{}:rate:{}:{key}", self.prefix, limit.name()))
                .arg(cells.interval_us)
                .arg(cells.tolerance_us);
        }
        invocation
    }

    async fn take(
        &self,
        cells: &[Cells; 6],
        checks: &[(Limit, &str)],
    ) -> Result<Result<(), Limited>, String> {
        let invocation = self.invocation(&self.take, cells, checks);
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

    async fn give_back(&self, cells: &[Cells; 6], checks: &[(Limit, &str)]) -> Result<(), String> {
        let invocation = self.invocation(&self.give_back, cells, checks);
        let mut redis = self.redis.clone();
        tokio::time::timeout(self.timeout, invocation.invoke_async::<i64>(&mut redis))
            .await
            .map_err(|_| "Redis did not answer in time".to_owned())?
            .map(drop)
            .map_err(|e| e.to_string())
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
        // Entries with a port, or an IPv6 address in brackets, name their client too.
        for (entry, client) in [
            ("203.0.113.5:5555", "203.0.113.5"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            (" 2001:db8::2 ", "2001:db8::2"),
        ] {
            assert_eq!(
                proxies.client(ip("10.0.0.2"), &[entry]),
                ip(client),
                "{entry}"
            );
        }
        // What is no address stops the walk at the nearest trusted hop.
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &["198.51.100.9, unknown"]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn logins_count_an_ipv6_client_by_its_48() {
        let key = |s: &str| login_address_key(s.parse().unwrap());
        // Two /64s of one host's /56 are one guesser.
        assert_eq!(key("2001:db8:1:200::1"), key("2001:db8:1:2ff::9"));
        assert_ne!(key("2001:db8:1::1"), key("2001:db8:2::1"));
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
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

    #[test]
    fn local_cells_are_taken_from_every_limit_or_none_and_given_back() {
        let mut config = crate::config::Config::defaults().rate;
        config.rate_writes_per_account = "3/min".parse().unwrap();
        config.rate_writes_per_address = "1/min".parse().unwrap();
        let cells = LIMITS.map(|limit| Cells::of(limit.rate(&config)));
        let local = LocalCells::new();
        let write = [
            (Limit::WritesPerAccount, "7"),
            (Limit::WritesPerAddress, "192.0.2.1"),
        ];
        local.take(&cells, &write).unwrap();
        // The address is spent: refused, and the account's cell is not taken…
        let refused = local.take(&cells, &write).unwrap_err();
        assert_eq!(refused.limit, Limit::WritesPerAddress);
        assert!(refused.retry_after > Duration::from_secs(55), "{refused:?}");
        // …so the account has two left, from elsewhere.
        for address in ["192.0.2.2", "192.0.2.3"] {
            let write = [
                (Limit::WritesPerAccount, "7"),
                (Limit::WritesPerAddress, address),
            ];
            local.take(&cells, &write).unwrap();
        }
        let spent = [(Limit::WritesPerAccount, "7")];
        assert!(local.take(&cells, &spent).is_err());
        // A cell given back can be taken again; a key with nothing owed is forgotten.
        local.give_back(&cells, &spent);
        local.take(&cells, &spent).unwrap();
        local.give_back(&cells, &[(Limit::WritesPerAddress, "192.0.2.9")]);
        local.prune();
        let kept: usize = local
            .next_cell
            .lock()
            .unwrap()
            .iter()
            .map(HashMap::len)
            .sum();
        assert_eq!(kept, 4);
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
