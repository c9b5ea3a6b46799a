//! Cache warm-up: rank and cache the sessions of the most active users ahead of their requests.

use crate::feed::FeedService;
use crate::ports::{PortError, Ports};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vrs_domain::UserId;

/// What a warm-up did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmupReport {
    pub warmed: usize,
    pub failed: usize,
    pub duration: Duration,
}

/// The warm-caches use case.
pub struct CacheWarmer {
    ports: Ports,
    feed: Arc<FeedService>,
}

impl std::fmt::Debug for CacheWarmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWarmer").finish_non_exhaustive()
    }
}

impl CacheWarmer {
    pub fn new(ports: Ports, feed: Arc<FeedService>) -> Self {
        Self { ports, feed }
    }

    /// Warms the `user_count` users with the most engagement over the last 7 days, `concurrency` at a
    /// time. `progress` is called after each user.
    pub async fn warm_most_active(
        &self,
        user_count: usize,
        concurrency: usize,
        progress: impl Fn(usize) + Send + Sync,
    ) -> Result<WarmupReport, PortError> {
        let since = self.ports.clock.now() - chrono::Duration::days(7);
        let users = self
            .ports
            .signals
            .most_active_users(since, user_count)
            .await?;
        Ok(self.warm(users, concurrency, progress).await)
    }

    /// Warms the given users, `concurrency` at a time.
    pub async fn warm(
        &self,
        users: Vec<UserId>,
        concurrency: usize,
        progress: impl Fn(usize) + Send + Sync,
    ) -> WarmupReport {
        let started = Instant::now();
        let results: Vec<bool> = futures::stream::iter(users)
            .map(|user| {
                let progress = &progress;
                async move {
                    let ok = match self.feed.warm(user).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(%user, error = %e, "cache warm-up failed for a user");
                            false
                        }
                    };
                    progress(1);
                    ok
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let warmed = results.iter().filter(|ok| **ok).count();
        WarmupReport {
            warmed,
            failed: results.len() - warmed,
            duration: started.elapsed(),
        }
    }
}
