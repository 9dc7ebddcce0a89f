//! Building and running the server: pool, migrations, state, listener.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::auth::{PasswordHasher, TokenKeys};
use crate::broker::Broker;
use crate::config::{AuthConfig, Config};
use crate::db;
use crate::http::{self, AppParts, AppState};

/// A server whose listener is bound and whose database is migrated, ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// The broker supervisor, stopped when the server stops.
    broker_task: Option<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Creates the database if needed, applies migrations, binds the listener (port 0 picks one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        db::wait_and_ensure_database(&config.db.database_url, config.db.startup_wait()).await?;
        let pool = db::build_pool(&config.db)?;
        db::migrate_and_shard(&pool, &config.db).await?;
        let feed_cache = config.cache.connect().await;
        let fanout_slots = (config.db.pool_size() / 2).max(1);
        let reads = match config.db.pipelined_reads() {
            0 => None,
            n => Some(Arc::new(db::reads::PipelinedReads::new(
                db::connection_config(&config.db)?,
                n,
            ))),
        };
        let state = AppState::new(AppParts {
            db: pool,
            tokens: token_keys(&config.auth),
            hasher: password_hasher(&config.auth)?,
            config: Arc::new(config),
            live: Default::default(),
            feed_cache,
            fanout_slots: Arc::new(tokio::sync::Semaphore::new(fanout_slots)),
            reads,
            broker: OnceLock::new(),
        });
        let broker_task = if state.config.broker.urls().is_empty() {
            None
        } else {
            let (broker, task) = Broker::start(&state.config.broker, state.clone());
            let _ = state.broker.set(broker);
            Some(task)
        };
        http::metrics::handle();
        let listener = TcpListener::bind(state.config.bind)
            .await
            .with_context(|| format!("binding {}", state.config.bind))?;
        Ok(Application {
            listener,
            state,
            broker_task,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = self.listener.local_addr()?;
        tracing::info!(%address, "listening");
        let pool = self.state.db.clone();
        // No Nagle delay: a response or a live-feed frame goes out as soon as it is written, not
        // when the client's (possibly delayed) ACK of the previous segment arrives.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(
            listener,
            axum::ServiceExt::into_make_service(http::router(self.state.clone())),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        if let Some(task) = self.broker_task {
            task.abort();
        }
        pool.close();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Signing keys from the configured secret, or a random one (with a warning) for a lone dev server.
pub fn token_keys(auth: &AuthConfig) -> TokenKeys {
    let ttl = Duration::from_secs(auth.token_ttl_secs);
    match &auth.token_secret {
        Some(secret) if !secret.is_empty() => TokenKeys::new(secret.as_bytes(), ttl),
        _ => {
            tracing::warn!(
                "TOKEN_SECRET is not set: using a random secret; tokens die with this process \
                 and are not accepted by other instances"
            );
            let secret: [u8; 32] = rand::random();
            TokenKeys::new(&secret, ttl)
        }
    }
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
