//! The `redis` health probe.

use crate::connection::RedisConnection;
use async_trait::async_trait;
use fred::prelude::ClientLike;
use std::time::Duration;
use vrs_application::ports::{HealthProbe, PortError};

/// The shortest PING timeout: a health report should not flap on one reply slower than the
/// command timeout, and must not hang either.
pub const MIN_PING_TIMEOUT: Duration = Duration::from_millis(250);

/// Reports Redis healthy when it answers PING in time; unhealthy at once while disconnected.
#[derive(Clone, Debug)]
pub struct RedisHealthProbe {
    redis: RedisConnection,
    timeout: Duration,
}

impl RedisHealthProbe {
    /// A probe that waits `timeout` (at least [`MIN_PING_TIMEOUT`]) for PONG.
    pub fn new(redis: RedisConnection, timeout: Duration) -> Self {
        Self {
            redis,
            timeout: timeout.max(MIN_PING_TIMEOUT),
        }
    }
}

#[async_trait]
impl HealthProbe for RedisHealthProbe {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<(), PortError> {
        self.redis
            .traced(
                "PING",
                self.redis
                    .client_with_timeout(self.timeout)
                    .ping::<()>(None),
            )
            .await
    }
}
