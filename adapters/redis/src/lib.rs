//! Redis adapters of the video ranking service: the feed cache, the view history and the `redis`
//! health probe, all on one shared client.
//!
//! Every key of a user starts with `feed:u:{<user id>}`; the braces are a Redis Cluster hash tag,
//! so no command ever spans users' slots. The client connects in the background and reconnects
//! with backoff; while it is disconnected every call fails at once, so the service degrades
//! instead of waiting for Redis.

mod codec;
mod config;
mod connection;
mod feed_cache;
mod health;
mod history;
mod keys;
mod ledger;

pub use config::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, RedisConfig};
pub use connection::{CONNECTION_ERRORS_METRIC, RedisConnection, RedisError};
pub use feed_cache::RedisFeedCache;
pub use health::{MIN_PING_TIMEOUT, RedisHealthProbe};
pub use history::{HISTORY_CAP, RedisViewHistory, SERVED_TTL, WATCHED_TTL};
pub use ledger::{LEDGER_CAP, LEDGER_RETENTION, RedisEventLedger};

use std::sync::Arc;

/// Every Redis adapter, sharing one connection.
#[derive(Clone, Debug)]
pub struct RedisAdapters {
    /// The shared client, e.g. to check whether it is connected.
    pub connection: RedisConnection,
    pub feed_cache: Arc<RedisFeedCache>,
    pub history: Arc<RedisViewHistory>,
    pub event_ledger: Arc<RedisEventLedger>,
    /// The `redis` health probe (PING).
    pub probe: Arc<RedisHealthProbe>,
}

impl RedisAdapters {
    /// Starts connecting in the background and returns at once; see [`RedisConnection::start`].
    pub fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        let connection = RedisConnection::start(config)?;
        Ok(Self {
            feed_cache: Arc::new(RedisFeedCache::new(connection.clone())),
            history: Arc::new(RedisViewHistory::new(connection.clone())),
            event_ledger: Arc::new(RedisEventLedger::new(connection.clone())),
            probe: Arc::new(RedisHealthProbe::new(
                connection.clone(),
                config.command_timeout,
            )),
            connection,
        })
    }
}
