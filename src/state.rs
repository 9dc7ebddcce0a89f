//! What every handler can reach: the parts `Application::build` makes, behind one reference count.

use std::sync::Arc;

use crate::auth::{PasswordHasher, TokenKeys};
use crate::broker::{DialogEvents, PostEvents};
use crate::cache::UnreadCounters;
use crate::config::Config;
use crate::db::Db;
use crate::dialogs::DialogStore;
use crate::limits::{RateLimits, TrustedProxies};
use crate::live::LiveHub;
use crate::posts::feed::Feeds;
use crate::upstream::Upstream;
use crate::users::KnownUsers;

/// The application state. axum clones it several times per request (into the route's service,
/// then into the `State` extractor), and each clone of a struct of shared parts was a dozen
/// atomic increments and as many decrements afterwards: one `Arc` makes it one.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The keys that check a request's token (the `AuthUser` extractor).
impl AsRef<TokenKeys> for AppState {
    fn as_ref(&self) -> &TokenKeys {
        &self.tokens
    }
}

/// The database, whose replicas the `Reader` extractor asks about.
impl AsRef<Db> for AppState {
    fn as_ref(&self) -> &Db {
        &self.db
    }
}

/// The proxies whose `X-Forwarded-For` names the client (the `ClientIp` extractor).
impl AsRef<TrustedProxies> for AppState {
    fn as_ref(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }
}

/// The limits the `Writer` extractor checks.
impl AsRef<RateLimits> for AppState {
    fn as_ref(&self) -> &RateLimits {
        &self.limits
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    pub db: Db,
    pub tokens: TokenKeys,
    pub hasher: PasswordHasher,
    pub config: Arc<Config>,
    /// The sockets of the live feed open on this instance.
    pub live: LiveHub,
    /// News feeds: read from the Redis cache when `REDIS_URL` is set, by SQL otherwise.
    pub feeds: Feeds,
    /// Where a post's event goes after its write: applied here, or through the outbox and
    /// RabbitMQ when `AMQP_URL` is set.
    pub events: PostEvents,
    /// Where dialogs are kept: PostgreSQL, or Tarantool (`DIALOG_STORE`).
    pub dialogs: DialogStore,
    /// The unread counters in Redis, on an instance that serves dialogs and has `REDIS_URL`.
    pub counters: Option<UnreadCounters>,
    /// Where a dialog write's event goes: to the counters here, through the outbox and RabbitMQ,
    /// or nowhere without counters.
    pub dialog_events: DialogEvents,
    /// The dialog service the dialog routes are forwarded to (`DIALOGS_URL`); `None`: they are
    /// served here, from `dialogs`.
    pub dialog_service: Option<Upstream>,
    /// Limits on logins, registrations and writes (off in tests and in lab runs).
    pub limits: RateLimits,
    /// The users this instance has found to exist (a token's user on an empty answer).
    pub known_users: KnownUsers,
    pub trusted_proxies: TrustedProxies,
}
