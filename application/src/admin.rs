//! Operator use cases: ranking weights, cache invalidation and warm-up.

use crate::ports::{PortError, Ports, WeightSet};
use crate::warmup::{CacheWarmer, WarmupReport};
use std::sync::Arc;
use vrs_domain::{UserId, Weights};

/// Most users one warm-up may rank.
pub const MAX_WARMUP_USERS: usize = 100_000;
/// Most users ranked at the same time by one warm-up.
pub const MAX_WARMUP_BATCH: usize = 100;
/// Most user ids one invalidation request may name.
pub const MAX_INVALIDATE_USERS: usize = 10_000;
/// Versions listed next to the active weights.
pub const WEIGHT_HISTORY: usize = 20;

/// Why an operator request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request is outside the documented bounds.
    #[error("{0}")]
    Invalid(String),
    /// A store the operation needs is unavailable.
    #[error("unavailable: {0}")]
    Unavailable(#[from] PortError),
}

/// The active weights and the versions before them.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightsOverview {
    pub active: WeightSet,
    /// Newest first, the active version included.
    pub history: Vec<WeightSet>,
}

/// What to drop from the feed cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    Users(Vec<UserId>),
    All,
}

/// The operator use cases.
pub struct AdminService {
    ports: Ports,
    warmer: Arc<CacheWarmer>,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService").finish_non_exhaustive()
    }
}

impl AdminService {
    pub fn new(ports: Ports, warmer: Arc<CacheWarmer>) -> Self {
        Self { ports, warmer }
    }

    /// The active weights and recent versions.
    pub async fn weights(&self) -> Result<WeightsOverview, AdminError> {
        let (active, history) = tokio::join!(
            self.ports.ranking_config.active_set(),
            self.ports.ranking_config.history(WEIGHT_HISTORY)
        );
        Ok(WeightsOverview {
            active: active?,
            history: history?,
        })
    }

    /// Activates `weights` as a new version. Every replica's snapshot refresh picks it up, so new
    /// rankings use it within one refresh interval; sessions already cached keep their order until
    /// they expire or are invalidated.
    pub async fn set_weights(&self, weights: Weights) -> Result<WeightSet, AdminError> {
        let set = self.ports.ranking_config.activate(weights).await?;
        tracing::info!(version = set.version, weights = ?set.weights, "ranking weights activated");
        Ok(set)
    }

    /// Drops current feed sessions, so the next first page is ranked anew; returns how many users'
    /// sessions were dropped (for a list: how many were named).
    pub async fn invalidate(&self, what: Invalidation) -> Result<u64, AdminError> {
        match what {
            Invalidation::All => Ok(self.ports.feed_cache.invalidate_all().await?),
            Invalidation::Users(users) => {
                if users.is_empty() || users.len() > MAX_INVALIDATE_USERS {
                    return Err(AdminError::Invalid(format!(
                        "user_ids must name 1 to {MAX_INVALIDATE_USERS} users"
                    )));
                }
                for user in &users {
                    self.ports.feed_cache.invalidate(*user).await?;
                }
                Ok(users.len() as u64)
            }
        }
    }

    /// Warms the sessions of the `user_count` most active users, `batch_size` at a time.
    /// `Unavailable` when the signal store cannot list them or not one session could be stored.
    pub async fn warm_up(
        &self,
        user_count: usize,
        batch_size: usize,
        progress: impl Fn(usize) + Send + Sync,
    ) -> Result<WarmupReport, AdminError> {
        if !(1..=MAX_WARMUP_USERS).contains(&user_count) {
            return Err(AdminError::Invalid(format!(
                "user_count must be between 1 and {MAX_WARMUP_USERS}"
            )));
        }
        if !(1..=MAX_WARMUP_BATCH).contains(&batch_size) {
            return Err(AdminError::Invalid(format!(
                "batch_size must be between 1 and {MAX_WARMUP_BATCH}"
            )));
        }
        let report = self
            .warmer
            .warm_most_active(user_count, batch_size, progress)
            .await?;
        // Every user failing means a store is down, not that these users are special.
        if report.warmed == 0 && report.failed > 0 {
            return Err(AdminError::Unavailable(PortError::Unavailable(format!(
                "none of the {} users could be warmed",
                report.failed
            ))));
        }
        tracing::info!(
            warmed = report.warmed,
            failed = report.failed,
            duration_ms = report.duration.as_millis() as u64,
            "feed cache warm-up finished"
        );
        Ok(report)
    }
}
