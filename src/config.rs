//! Runtime configuration: one struct, read from flags or environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, CommandFactory, FromArgMatches, Parser, ValueEnum};

/// Everything `serve` needs. Every field has a flag and an environment variable; see `.env.example`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbConfig,

    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    #[command(flatten)]
    pub auth: AuthConfig,

    /// Longest time one request may take before it is answered with 503.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Largest request body accepted; larger bodies get 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,

    #[command(flatten)]
    pub serve: ServeConfig,

    #[command(flatten)]
    pub live: LiveConfig,

    #[command(flatten)]
    pub rate: RateConfig,

    /// Users one user may follow at most; one more follow is a 400. A feed shows the latest
    /// 1,000 posts of the users followed, and its cost (a rebuild reads up to 1,000 posts of
    /// each) grows with their number.
    #[arg(long, env = "MAX_FOLLOWS", default_value_t = 1_000,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub max_follows: i64,

    #[command(flatten)]
    pub cache: CacheConfig,

    #[command(flatten)]
    pub broker: BrokerConfig,

    #[command(flatten)]
    pub dialogs: DialogsConfig,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How connections are served: the timeouts and caps that keep slow or greedy clients from
/// holding the server (see docs/hardening.md).
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Which API this process serves: `all` (the whole API) or `dialogs` (the dialog service:
    /// the dialog API, old paths and `/v2/dialogs`, with its store and nothing else; the main
    /// service reaches it at DIALOGS_URL).
    #[arg(long, env = "SERVICE", value_enum, default_value_t = Service::All)]
    pub service: Service,

    /// Longest a client may take to send a request's headers, on a new connection or between two
    /// requests of a kept-alive one (so also the idle timeout); then the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// Largest request head (request line and headers) accepted; a larger one is answered 431.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Most connections (websockets included) open at once; past it, new ones wait to be
    /// accepted. Default: the descriptor limit, raised to its hard limit at start-up, less 256
    /// for the pools, the broker and files.
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// How long requests in flight may run on after a shutdown signal; then every connection
    /// still open is closed.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// Serves `/metrics` on this address instead of the API's, to keep it off a public port.
    /// Unset: `/metrics` is served on BIND with the API (a lone server, the lab).
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
}

/// The API one process serves (`SERVICE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    All,
    Dialogs,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// A quota as written in the settings: `N/s`, `N/min` or `N/h` (N at once, then one every
/// period / N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not N/s, N/min or N/h"))?;
        let count: NonZeroU32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{count:?} is not a positive count"))?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("{other:?} is not s, min or h")),
        };
        Ok(Rate { count, period })
    }
}

impl Rate {
    /// The time between two cells.
    pub fn interval(self) -> Duration {
        self.period / self.count.get()
    }
}

/// Rate limits (see `crate::limits` and docs/hardening.md). A quota is `N/s`, `N/min` or `N/h`:
/// N at once, then one every period / N.
#[derive(Debug, Clone, Args)]
pub struct RateConfig {
    /// Off only to measure the server without its limiter (the lab does, and says so).
    #[arg(long, env = "RATE_LIMITS", value_enum, default_value_t = OnOff::On)]
    pub rate_limits: OnOff,

    /// Logins from one client address, right or wrong.
    #[arg(long, env = "RATE_LOGIN_PER_ADDRESS", default_value = "20/min")]
    pub rate_login_per_address: Rate,

    /// Failed logins to one account from one client address: one guesser at one account, who
    /// does not lock the owner out elsewhere.
    #[arg(long, env = "RATE_LOGIN_PER_ACCOUNT_ADDRESS", default_value = "10/h")]
    pub rate_login_per_account_address: Rate,

    /// Failed logins to one account from anywhere: the ceiling on guesses at one password, which
    /// only an attack from many addresses reaches (100 an hour: NIST SP 800-63B allows at most
    /// 100 failures; ten times what one address may try).
    #[arg(long, env = "RATE_LOGIN_PER_ACCOUNT", default_value = "100/h")]
    pub rate_login_per_account: Rate,

    /// Registrations from one client address.
    #[arg(long, env = "RATE_REGISTER_PER_ADDRESS", default_value = "10/h")]
    pub rate_register_per_address: Rate,

    /// Writes (posts, messages, follows) of one account.
    #[arg(long, env = "RATE_WRITES_PER_ACCOUNT", default_value = "120/min")]
    pub rate_writes_per_account: Rate,

    /// Writes from one client address.
    #[arg(long, env = "RATE_WRITES_PER_ADDRESS", default_value = "300/min")]
    pub rate_writes_per_address: Rate,

    /// Proxies (addresses or networks, comma-separated) whose `X-Forwarded-For` names the
    /// client: the balancers in front of the instances. Unset: the connection's peer is the
    /// client, whatever a request claims.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The live feed's websockets on one instance.
#[derive(Debug, Clone, Args)]
pub struct LiveConfig {
    /// Sockets one user may hold open on an instance; opening one more closes that user's
    /// oldest (a reconnect after a network change replaces the socket it left behind).
    #[arg(long, env = "LIVE_SOCKETS_PER_USER", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub live_sockets_per_user: usize,

    /// Sockets open on an instance at most (about 8 KB each); past it a handshake is refused
    /// with 503 and `Retry-After`.
    #[arg(long, env = "LIVE_MAX_SOCKETS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub live_max_sockets: usize,
}

impl ServeConfig {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// The primary PostgreSQL database and its connection pool.
#[derive(Debug, Clone, Args)]
pub struct DbConfig {
    /// PostgreSQL URL of the primary; the database is created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/socialnet"
    )]
    pub database_url: DatabaseUrl,

    /// Most connections the pool keeps open. Defaults to twice the number of CPUs, the usual rule
    /// for a database on the same machine; see docs/benchmarks/users.md for 4 against 16.
    #[arg(long, env = "DB_POOL_SIZE")]
    pub db_pool_size: Option<usize>,

    /// Longest a request waits for a free connection before it gets 503.
    #[arg(long, env = "DB_POOL_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_pool_timeout_ms: u64,

    /// Server-side limit on a single statement (PostgreSQL `statement_timeout`).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_statement_timeout_ms: u64,

    /// Shared connections on which primary-key reads (`/user/get`, `/post/get`) are pipelined;
    /// 0 sends them through the pool like everything else. Defaults to half the CPUs (at least
    /// one): fewer connections carry bigger batches, which costs both sides fewer system calls.
    /// Searches and SQL feeds always use the pool: pipelined, they held each other up.
    /// See docs/benchmarks/users.md.
    #[arg(long, env = "DB_PIPELINED_READS")]
    pub db_pipelined_reads: Option<usize>,

    /// PostgreSQL URLs of streaming replicas, comma-separated: each gets a read pool (and its
    /// pipelined connections) of the primary's size. Profile reads, searches, SQL feeds and
    /// `/post/get` go to a healthy replica; writes, transactions, logins and dialogs stay on the
    /// primary. A caller who just wrote reads from the primary until a replica has replayed the
    /// write. Unset: everything runs on the primary. See docs/lab/replicas.md.
    #[arg(long, env = "DATABASE_READ_URLS", value_delimiter = ',')]
    pub database_read_urls: Vec<DatabaseUrl>,

    /// A replica further behind the primary than this is skipped until it catches up.
    #[arg(long, env = "READ_MAX_LAG_MS", default_value_t = 1_000)]
    pub read_max_lag_ms: u64,

    /// How often each replica's health and replay position are checked (and the primary's WAL
    /// position sampled, which is what lag and read-your-writes are measured against).
    #[arg(long, env = "REPLICA_CHECK_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub replica_check_ms: u64,

    /// Shards of each dialog table when they are first distributed over Citus workers (change it
    /// later with `socialnet shards set-count`).
    #[arg(long, env = "CITUS_SHARD_COUNT", default_value_t = 32)]
    pub citus_shard_count: u32,

    /// Host (and port) at which Citus workers reach the coordinator, as HOST or HOST:PORT;
    /// default: the host and port of DATABASE_URL.
    #[arg(long, env = "CITUS_COORDINATOR")]
    pub citus_coordinator: Option<String>,

    /// How long start-up keeps retrying while the database is not reachable yet (e.g. a container
    /// that is still starting); 0 fails at once.
    #[arg(long, env = "DB_STARTUP_WAIT_SECS", default_value_t = 30)]
    pub db_startup_wait_secs: u64,
}

/// The Redis feed cache.
#[derive(Debug, Clone, Args)]
pub struct CacheConfig {
    /// Redis URL of the feed cache (e.g. redis://127.0.0.1:6379). Unset: feeds are computed by
    /// SQL on every read.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every cache key, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "socialnet")]
    pub redis_key_prefix: String,

    /// Longest a cache call may take before the feed is served from PostgreSQL instead.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,

    /// Authors with more followers than this are "celebrities": their posts are not pushed onto
    /// each follower's cached feed but merged into it when the follower reads.
    #[arg(long, env = "FEED_CELEBRITY_FOLLOWERS", default_value_t = 10_000)]
    pub feed_celebrity_followers: i64,
}

/// Where dialogs are kept.
#[derive(Debug, Clone, Args)]
pub struct DialogsConfig {
    /// postgres: the dialog tables of DATABASE_URL (sharded when it is a Citus coordinator);
    /// tarantool: the in-memory store at TARANTOOL_URL (deploy/tarantool/dialogs.lua).
    #[arg(long, env = "DIALOG_STORE", value_enum, default_value_t = DialogStoreKind::Postgres)]
    pub dialog_store: DialogStoreKind,

    /// Tarantool of DIALOG_STORE=tarantool, as [user[:password]@]host:port.
    #[arg(
        long,
        env = "TARANTOOL_URL",
        default_value = "socialnet:socialnet@127.0.0.1:3301",
        hide_env_values = true
    )]
    pub tarantool_url: crate::tarantool::Address,

    /// Longest a Tarantool call may take before the request is answered 503.
    #[arg(long, env = "TARANTOOL_TIMEOUT_MS", default_value_t = 1_000)]
    pub tarantool_timeout_ms: u64,

    /// The dialog service (`serve --service dialogs`), as http://host:port. Set: this service
    /// forwards the `/dialog/…` routes to it, one hop on kept-alive connections;
    /// unset or empty: it serves them itself from DIALOG_STORE.
    #[arg(long, env = "DIALOGS_URL")]
    pub dialogs_url: Option<String>,

    /// Longest the dialog service may take to answer a forwarded request (the whole answer);
    /// then the request is answered 503 with Retry-After, as when it is down.
    #[arg(long, env = "DIALOGS_TIMEOUT_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub dialogs_timeout_ms: u64,

    /// How often an instance that keeps the unread counters (in Redis, with REDIS_URL) checks
    /// that they are whole, and rebuilds them from the messages when Redis lost them or an
    /// event could not be applied.
    #[arg(long, env = "UNREAD_RECONCILE_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub unread_reconcile_ms: u64,
}

impl DialogsConfig {
    /// The dialog service to forward to, when one is configured.
    pub fn dialog_service(&self) -> Option<&str> {
        self.dialogs_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DialogStoreKind {
    Postgres,
    Tarantool,
}

/// The RabbitMQ event bus.
#[derive(Debug, Clone, Args)]
pub struct BrokerConfig {
    /// AMQP URL of RabbitMQ (e.g. amqp://guest:guest@127.0.0.1:5672/%2f); several, comma-separated,
    /// for the nodes of a cluster, tried in turn. Set: post events go through an outbox and the
    /// broker, feeds are kept by its consumers and live posts reach followers on every instance.
    /// Unset: events are applied in process and live posts reach this instance's sockets only.
    #[arg(long, env = "AMQP_URL")]
    pub amqp_url: Option<String>,

    /// Prefix of every exchange and queue name, so several deployments can share one broker.
    #[arg(long, env = "AMQP_PREFIX", default_value = "socialnet")]
    pub amqp_prefix: String,

    /// For tests and experiments: the broker deletes this deployment's shared queues after they
    /// have gone unused this long (and then its exchanges). 0 keeps them, as production should.
    #[arg(long, env = "AMQP_QUEUE_EXPIRES_MS", default_value_t = 0)]
    pub amqp_queue_expires_ms: u64,

    /// Followers named by one routed live post: its `BCC` header lists up to this many routing
    /// keys. 1 sends a message per follower (RabbitMQ's per-message cost then dominates; see
    /// docs/lab/live.md). At most 4000, so that the header stays well inside RabbitMQ's default
    /// 128 KiB frame.
    #[arg(long, env = "LIVE_ROUTE_BATCH", default_value_t = 1_000,
          value_parser = clap::value_parser!(u16).range(1..=4000).map(usize::from))]
    pub live_route_batch: usize,

    /// Authors with more followers have each live post broadcast to every instance, which finds
    /// its own connected followers among the users with a socket there (one index probe each),
    /// on a queue of its own, instead of the router reading every follower, connected or not,
    /// and naming them all. 0 broadcasts every post; `never` routes every post by follower, as
    /// before broadcasts existed (the lab compares the two). See docs/events.md.
    #[arg(long, env = "LIVE_BROADCAST_FOLLOWERS", default_value = "10000",
          value_parser = parse_broadcast_over)]
    pub live_broadcast_followers: i64,

    /// Kind of the exchange that routes live posts to instances. `topic` looks each key of a
    /// message up in a trie; `direct` (for the lab) matches a message with several keys against
    /// every binding of the exchange, which costs followers × connected users per post.
    #[arg(long, env = "LIVE_ROUTE_EXCHANGE", value_enum, default_value_t = LiveRouteExchange::Topic)]
    pub live_route_exchange: LiveRouteExchange,
}

/// `LIVE_BROADCAST_FOLLOWERS`: a count, or `never` (`i64::MAX`: no author has more).
fn parse_broadcast_over(text: &str) -> Result<i64, String> {
    if text.trim() == "never" {
        return Ok(i64::MAX);
    }
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|&n| n >= 0)
        .ok_or_else(|| format!("{text:?} is neither a follower count nor \"never\""))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LiveRouteExchange {
    Topic,
    Direct,
}

impl BrokerConfig {
    /// The configured URLs, none when unset or empty.
    pub fn urls(&self) -> Vec<String> {
        self.amqp_url
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Tokens and password hashing.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// Secret that signs tokens (HS256), at least 32 bytes and no published placeholder. Unset or
    /// empty: the secret kept in the database, generated by the first instance (see
    /// `auth::secret`), which every instance on that database shares.
    #[arg(long, env = "TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,

    /// How long a token from `/login` stays valid.
    #[arg(long, env = "TOKEN_TTL_SECS", default_value_t = 24 * 3600)]
    pub token_ttl_secs: u64,

    /// Passwords hashed or verified at the same time (each runs on a blocking thread).
    /// Defaults to the number of CPUs.
    #[arg(long, env = "HASH_CONCURRENCY")]
    pub hash_concurrency: Option<usize>,

    /// Longest a login or registration waits for a hashing slot before it gets 503.
    #[arg(long, env = "HASH_QUEUE_TIMEOUT_MS", default_value_t = 5_000)]
    pub hash_queue_timeout_ms: u64,

    /// Argon2id memory cost in KiB (19456 = 19 MiB, the OWASP baseline).
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations (time cost).
    #[arg(long, env = "ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
}

impl DbConfig {
    /// The database this configuration names.
    pub fn database(&self) -> Option<&str> {
        self.database_url.database()
    }

    pub fn pipelined_reads(&self) -> usize {
        self.db_pipelined_reads
            .unwrap_or_else(|| (available_cpus() / 2).max(1))
    }

    pub fn startup_wait(&self) -> Duration {
        Duration::from_secs(self.db_startup_wait_secs)
    }

    pub fn pool_size(&self) -> usize {
        self.db_pool_size
            .unwrap_or_else(|| 2 * available_cpus())
            .max(1)
    }

    pub fn pool_timeout(&self) -> Duration {
        Duration::from_millis(self.db_pool_timeout_ms)
    }

    pub fn read_max_lag(&self) -> Duration {
        Duration::from_millis(self.read_max_lag_ms)
    }

    pub fn replica_check(&self) -> Duration {
        Duration::from_millis(self.replica_check_ms)
    }
}

impl Config {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Every setting at its documented default, as `serve` would run with no flags and an empty
    /// environment (environment variables are not read).
    pub fn defaults() -> Config {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        let command = Defaults::command().mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command
            .try_get_matches_from(["socialnet"])
            .expect("every setting has a default");
        Defaults::from_arg_matches(&matches)
            .expect("defaults parse")
            .config
    }

    /// The settings the tests run with: the defaults on `database_url` (the token secret too:
    /// generated and kept in the test's database), cheap password hashing (the production cost is measured by `socialnet bench`), a
    /// small pool, a free port and no start-up wait.
    pub fn for_tests(database_url: DatabaseUrl) -> Config {
        let mut config = Config::defaults();
        config.db.database_url = database_url;
        config.db.db_pool_size = Some(4);
        config.db.db_pool_timeout_ms = 1_000;
        config.db.db_startup_wait_secs = 0;
        config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        config.auth.token_ttl_secs = 3_600;
        config.auth.hash_concurrency = Some(2);
        config.auth.argon2_memory_kib = 1_024;
        config.auth.argon2_iterations = 1;
        // Tests log in and post far more often than people; the limits have tests of their own.
        config.rate.rate_limits = OnOff::Off;
        config
    }
}

/// A PostgreSQL URL, parsed once where it enters (a flag, the environment, a test) into the
/// driver's own configuration: every consumer takes this, so a malformed URL is refused before
/// anything starts. Its `Debug` hides the password.
#[derive(Clone)]
pub struct DatabaseUrl(tokio_postgres::Config);

/// Why a text is not a PostgreSQL URL.
#[derive(Debug, thiserror::Error)]
pub enum InvalidDatabaseUrl {
    #[error("not a valid PostgreSQL URL: {0}")]
    Malformed(tokio_postgres::Error),
    #[error("the PostgreSQL URL names no host (postgres://USER@HOST:PORT/DATABASE)")]
    NoHost,
}

impl FromStr for DatabaseUrl {
    type Err = InvalidDatabaseUrl;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let pg = tokio_postgres::Config::from_str(text).map_err(InvalidDatabaseUrl::Malformed)?;
        if pg.get_hosts().is_empty() && pg.get_hostaddrs().is_empty() {
            return Err(InvalidDatabaseUrl::NoHost);
        }
        Ok(DatabaseUrl(pg))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl DatabaseUrl {
    /// The driver's configuration.
    pub fn pg(&self) -> &tokio_postgres::Config {
        &self.0
    }

    /// The database the URL names, if it names one.
    pub fn database(&self) -> Option<&str> {
        self.0.get_dbname()
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, name: &str) -> DatabaseUrl {
        let mut pg = self.0.clone();
        pg.dbname(name);
        DatabaseUrl(pg)
    }

    /// The first host of the URL reached over TCP and its port (`localhost` for a socket).
    pub fn host_and_port(&self) -> (String, u16) {
        let host = match self.0.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "localhost".to_owned(),
        };
        let port = self.0.get_ports().first().copied().unwrap_or(5432);
        (host, port)
    }
}

impl AuthConfig {
    pub fn hash_concurrency(&self) -> usize {
        self.hash_concurrency.unwrap_or_else(available_cpus).max(1)
    }
}

fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broadcast_threshold_is_a_count_or_never() {
        assert_eq!(parse_broadcast_over("10000"), Ok(10_000));
        assert_eq!(parse_broadcast_over("0"), Ok(0));
        assert_eq!(parse_broadcast_over("never"), Ok(i64::MAX));
        assert!(parse_broadcast_over("-1").is_err());
        assert!(parse_broadcast_over("always").is_err());
        assert_eq!(Config::defaults().broker.live_broadcast_followers, 10_000);
    }

    #[test]
    fn the_defaults_are_those_the_flags_document() {
        let config = Config::defaults();
        assert_eq!(config.bind, SocketAddr::from(([127, 0, 0, 1], 8000)));
        assert_eq!(config.db.database(), Some("socialnet"));
        assert_eq!(config.cache.redis_key_prefix, "socialnet");
        assert_eq!(config.broker.live_route_batch, 1_000);
        assert_eq!(config.auth.argon2_memory_kib, 19_456);
    }

    #[test]
    fn a_database_url_is_parsed_once_and_hides_its_password() {
        let url: DatabaseUrl = "postgres://app:secret@db.example:6543/social"
            .parse()
            .unwrap();
        assert_eq!(url.database(), Some("social"));
        assert_eq!(url.host_and_port(), ("db.example".to_owned(), 6543));
        assert_eq!(url.with_database("postgres").database(), Some("postgres"));
        assert!(!format!("{url:?}").contains("secret"), "{url:?}");
        assert!("postgres://host:notaport/db"
            .parse::<DatabaseUrl>()
            .is_err());
        // An empty DATABASE_URL is refused where it enters, not when the first connection fails.
        assert!(matches!(
            "".parse::<DatabaseUrl>(),
            Err(InvalidDatabaseUrl::NoHost)
        ));
    }
}
