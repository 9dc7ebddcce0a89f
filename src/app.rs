//! Building and running the server: the database (created, migrated, sharded), the state and
//! its background tasks, the listener.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{secret, PasswordHasher, TokenKeys};
use crate::broker::{Broker, BrokerDeps, DialogEvents, PostEvents};
use crate::cache::{FeedCache, UnreadCounters};
use crate::config::{AuthConfig, Config, DbConfig, Service};
use crate::db::{self, Db};
use crate::dialogs::DialogStore;
use crate::http;
use crate::limits::{RateLimits, TrustedProxies};
use crate::live::{LiveFanout, LiveHub, SocketLimits};
use crate::posts::feed::Feeds;
use crate::posts::FEED_WINDOW;
use crate::shards::{self, CitusLayout, Sharding};
use crate::state::{AppParts, AppState};
use crate::upstream::Upstream;
use crate::users::KnownUsers;

/// A server whose listener is bound and whose database is migrated, ready to run.
pub struct Application {
    listener: TcpListener,
    /// `METRICS_BIND`'s own listener, when `/metrics` is kept off the API's port.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    /// The broker supervisor, stopped when the server stops.
    broker_task: Option<JoinHandle<()>>,
    /// The replicas' watcher (`DATABASE_READ_URLS`), stopped when the server stops.
    replica_watcher: Option<JoinHandle<()>>,
    /// With the feed cache, the task that moves it to a new namespace when the database's
    /// identity changes; stopped when the server stops.
    identity_watcher: Option<JoinHandle<()>>,
    /// With the unread counters, the task that keeps them whole; stopped when the server stops.
    reconciler: Option<JoinHandle<()>>,
}

impl Application {
    /// Binds the listener (port 0 picks one), then creates the database if needed and applies
    /// migrations. The port first: one already taken is said at once, not after the database.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {} (BIND): is another server on it?", config.bind))?;
        let metrics_listener = match config.serve.metrics_bind {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding {address} for /metrics (METRICS_BIND)"))?,
            ),
            None => None,
        };
        db::wait_and_ensure_database(&config.db.database_url, config.db.startup_wait()).await?;
        let db = Db::new(&config.db)?;
        migrate(db.pool(), &config.db).await?;
        let tokens = token_keys(&config.auth, &db).await?;
        let redis_url = config
            .cache
            .redis_url
            .as_deref()
            .filter(|url| !url.is_empty());
        let namespace = match redis_url {
            Some(_) => {
                let client = db.get().await.context("reading the database's identity")?;
                Some(db::cache_namespace(&**client).await?)
            }
            None => None,
        };
        let feed_cache = match &namespace {
            // The dialog service keeps no feeds.
            Some(namespace) if config.serve.service == Service::All => {
                FeedCache::from_config(&config.cache, FEED_WINDOW, namespace).await
            }
            _ => None,
        };
        let counters = match (redis_url, &namespace) {
            (Some(url), Some(namespace)) if serves_dialogs(&config) => {
                unread_counters(&config, url, namespace).await
            }
            _ => None,
        };
        let limits = RateLimits::from_config(&config.rate, &config.cache).await?;
        let replica_watcher = db.watch_replicas();
        let identity_watcher = feed_cache
            .clone()
            .map(|cache| tokio::spawn(follow_database_identity(db.clone(), cache)));
        let (state, broker_task) = assemble(config, db, tokens, feed_cache, counters, limits)?;
        let reconciler = state.counters.clone().map(|counters| {
            tokio::spawn(crate::dialogs::unread::reconcile(
                state.dialogs.clone(),
                state.db.clone(),
                counters,
                Duration::from_millis(state.config.dialogs.unread_reconcile_ms),
            ))
        });
        http::metrics::handle();
        Ok(Application {
            listener,
            metrics_listener,
            state,
            broker_task,
            replica_watcher,
            identity_watcher,
            reconciler,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The port of `/metrics`' own listener, when `METRICS_BIND` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (for at most
    /// `SHUTDOWN_GRACE_MS`).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = self.listener.local_addr()?;
        let base = format!("http://{address}");
        match self.state.config.serve.service {
            Service::All => tracing::info!(
                %address,
                "listening: the API's documentation at {base}/docs, the live feed's page at \
                 {base}/demo/live"
            ),
            Service::Dialogs => tracing::info!(
                %address,
                "listening: the dialog service's documentation at {base}/docs"
            ),
        }
        let pool = self.state.db.pool().clone();
        let (stopping, stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stopping.send(true);
        });
        let stopped = |mut stop: watch::Receiver<bool>| async move {
            drop(stop.wait_for(|stopping| *stopping).await);
        };
        let config = &self.state.config.serve;
        let api = http::serve::serve(
            self.listener,
            http::router(self.state.clone()),
            config,
            stopped(stop.clone()),
        );
        match self.metrics_listener {
            Some(metrics_listener) => {
                tracing::info!(address = %metrics_listener.local_addr()?, "serving /metrics");
                let metrics = http::serve::serve(
                    metrics_listener,
                    http::metrics_router(self.state.clone()),
                    config,
                    stopped(stop),
                );
                tokio::join!(api, metrics);
            }
            None => api.await,
        }
        let tasks = [
            self.broker_task,
            self.replica_watcher,
            self.identity_watcher,
            self.reconciler,
        ];
        for task in tasks.into_iter().flatten() {
            task.abort();
        }
        pool.close();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Whether this instance serves the dialog routes itself (rather than forwarding them).
fn serves_dialogs(config: &Config) -> bool {
    config.serve.service == Service::Dialogs || config.dialogs.dialog_service().is_none()
}

/// The unread counters on `url`. A Redis that cannot be reached at start-up is reported and left
/// out, as for the feed cache: the dialogs work, `GET /dialog/unread` answers 503, and the
/// counters are built once an instance starts with Redis there.
async fn unread_counters(config: &Config, url: &str, namespace: &str) -> Option<UnreadCounters> {
    let timeout = Duration::from_millis(config.cache.redis_timeout_ms);
    match UnreadCounters::connect(url, &config.cache.redis_key_prefix, namespace, timeout).await {
        Ok(counters) => {
            tracing::info!("unread counters: Redis connected");
            Some(counters)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "unread counters: Redis unreachable at start-up; counters are off");
            None
        }
    }
}

/// How often a server with the feed cache checks that its database is still the one it caches.
const IDENTITY_CHECK: Duration = Duration::from_secs(1);

/// Keeps the feed cache's namespace that of the database the primary pool reaches: after a
/// failover (a new timeline) or a restore, within `IDENTITY_CHECK`, the cache starts afresh under
/// a new one instead of serving entries made for the database before.
async fn follow_database_identity(db: Db, cache: FeedCache) {
    let mut ticks = tokio::time::interval(IDENTITY_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let namespace = match db.get().await {
            Ok(client) => db::cache_namespace(&**client).await,
            Err(e) => Err(e),
        };
        match namespace {
            Ok(namespace) if cache.set_namespace(&namespace) => tracing::warn!(
                %namespace,
                "the database's identity changed (a failover or a restore): the feed cache \
                 starts afresh under a new namespace"
            ),
            Ok(_) => {}
            // No primary for now (a failover under way): the cache keeps its namespace.
            Err(e) => tracing::debug!(error = %e, "cannot read the database's identity"),
        }
    }
}

/// Applies the migrations, then the Citus step when the database has Citus (see `crate::shards`):
/// the dialog tables are distributed once the migrations have created them.
pub async fn migrate(pool: &Pool, config: &DbConfig) -> anyhow::Result<Vec<i32>> {
    let applied = db::migrate(pool).await?;
    let client = pool.get().await.context("connecting for the citus step")?;
    let layout = shards::prepare(&client, &Sharding::from_config(config)?).await?;
    if layout != CitusLayout::Plain {
        tracing::info!(?layout, "citus");
    }
    Ok(applied)
}

/// Every part of a server on `config`, wired together, and the broker session started when
/// `AMQP_URL` is set. Nothing here waits for a connection (pools connect lazily).
pub fn assemble(
    config: Config,
    db: Db,
    tokens: TokenKeys,
    feed_cache: Option<FeedCache>,
    counters: Option<UnreadCounters>,
    limits: RateLimits,
) -> anyhow::Result<(AppState, Option<JoinHandle<()>>)> {
    // At most half the pool fans posts out at once (feeds and the live feed together), so a
    // burst of posts cannot take every connection from requests.
    let fanout_slots = Arc::new(tokio::sync::Semaphore::new(
        (config.db.pool_size() / 2).max(1),
    ));
    let live = LiveHub::new(SocketLimits {
        per_user: config.live.live_sockets_per_user,
        total: config.live.live_max_sockets,
    });
    let live_fanout = LiveFanout::new(db.clone(), fanout_slots.clone(), live.clone());
    let feeds = Feeds::new(
        db.clone(),
        feed_cache,
        fanout_slots,
        config.cache.feed_celebrity_followers,
    );
    // The dialog service carries no post events, only dialog events.
    let posts = config.serve.service == Service::All;
    let broker = (!config.broker.urls().is_empty()).then(|| {
        let deps = BrokerDeps {
            db: db.clone(),
            posts,
            counters: counters.clone(),
            feeds: feeds.clone(),
            live: live_fanout.clone(),
            live_route_batch: config.broker.live_route_batch,
            live_broadcast_followers: config.broker.live_broadcast_followers,
        };
        Broker::start(&config.broker, deps)
    });
    let events = match &broker {
        Some((broker, _)) if posts => PostEvents::Outbox(broker.clone()),
        _ => PostEvents::InProcess {
            feeds: feeds.clone(),
            live: live_fanout,
        },
    };
    let dialog_events = match (&counters, &broker) {
        (None, _) => DialogEvents::Off,
        (Some(counters), None) => DialogEvents::InProcess(counters.clone()),
        (Some(_), Some((broker, _))) => DialogEvents::Outbox(broker.clone()),
    };
    let broker_task = broker.map(|(_, task)| task);
    let dialog_service = match config.dialogs.dialog_service() {
        Some(_) if config.serve.service == Service::Dialogs => anyhow::bail!(
            "the dialog service serves dialogs itself: unset DIALOGS_URL for --service dialogs"
        ),
        Some(url) => Some(Upstream::new(
            "dialogs",
            url,
            Duration::from_millis(config.dialogs.dialogs_timeout_ms),
        )?),
        None => None,
    };
    let state = AppState::new(AppParts {
        db,
        tokens,
        hasher: password_hasher(&config.auth)?,
        limits,
        known_users: KnownUsers::default(),
        trusted_proxies: TrustedProxies(config.rate.trusted_proxies.clone()),
        // Forwarding, this service keeps no dialogs: the routes never reach a store.
        dialogs: match dialog_service {
            Some(_) => DialogStore::Postgres,
            None => DialogStore::from_config(&config.dialogs, counters.clone()),
        },
        counters,
        dialog_events,
        dialog_service,
        config: Arc::new(config),
        live,
        feeds,
        events,
    });
    Ok((state, broker_task))
}

/// Signing keys: from `TOKEN_SECRET` (refused when short or a published placeholder), or from
/// the secret the deployment keeps in its database (see `auth::secret`).
pub async fn token_keys(auth: &AuthConfig, db: &Db) -> anyhow::Result<TokenKeys> {
    let client = db.get().await.context("reading the token secret")?;
    let secret = secret::token_secret(auth.token_secret.as_deref(), &**client).await?;
    Ok(TokenKeys::new(
        &secret,
        Duration::from_secs(auth.token_ttl_secs),
    ))
}

pub fn password_hasher(auth: &AuthConfig) -> anyhow::Result<PasswordHasher> {
    PasswordHasher::new(
        auth.argon2_memory_kib,
        auth.argon2_iterations,
        auth.hash_concurrency(),
        Duration::from_millis(auth.hash_queue_timeout_ms),
    )
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
