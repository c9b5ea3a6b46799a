//! [`ViewHistory`] on Redis: per user, a sorted set of video ids scored by Unix milliseconds.

use crate::connection::{RedisConnection, command_error};
use crate::keys;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fred::prelude::{KeysInterface, SortedSetsInterface};
use fred::types::sorted_sets::Ordering;
use std::time::Duration;
use uuid::Uuid;
use vrs_application::ports::{PortError, ViewHistory};
use vrs_domain::{UserId, VideoId};

/// Per user, at most this many videos are remembered in each history; the oldest go first.
pub const HISTORY_CAP: usize = 5_000;
/// A served history lives this long after its last write: serves only filter the next pages.
pub const SERVED_TTL: Duration = Duration::from_secs(48 * 3_600);
/// A watched history lives this long after its last write.
pub const WATCHED_TTL: Duration = Duration::from_secs(31 * 24 * 3_600);

/// Served and watched history in Redis sorted sets, bounded and expiring.
#[derive(Clone, Debug)]
pub struct RedisViewHistory {
    redis: RedisConnection,
}

impl RedisViewHistory {
    /// A view history on a shared connection.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    async fn since(&self, key: String, since: DateTime<Utc>) -> Result<Vec<VideoId>, PortError> {
        // Scores are whole milliseconds, rounded down on both sides: `since` stays inclusive.
        let members: Vec<String> = self
            .redis
            .client()
            .zrangebyscore(key, since.timestamp_millis(), "+inf", false, None)
            .await
            .map_err(|e| command_error("ZRANGEBYSCORE", e))?;
        members
            .iter()
            .map(|m| {
                Uuid::parse_str(m)
                    .map(VideoId)
                    .map_err(|e| PortError::InvalidData(format!("history video id: {e}")))
            })
            .collect()
    }

    async fn record(
        &self,
        key: String,
        ttl: Duration,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        if videos.is_empty() {
            return Ok(());
        }
        // Unix milliseconds stay far below 2^53, so the f64 score is exact.
        let score = at.timestamp_millis() as f64;
        let members: Vec<(f64, String)> = videos.iter().map(|v| (score, v.to_string())).collect();
        let keep = i64::try_from(HISTORY_CAP).unwrap_or(i64::MAX);
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let pipeline = self.redis.pipeline();
        // GT: a video recorded again keeps its latest time, even when an older time arrives late.
        let queued: Result<(), _> = pipeline
            .zadd(
                key.as_str(),
                None,
                Some(Ordering::GreaterThan),
                false,
                false,
                members,
            )
            .await;
        queued.map_err(|e| command_error("ZADD", e))?;
        // Ranks run from the oldest; everything below the newest `HISTORY_CAP` goes.
        let queued: Result<(), _> = pipeline.zremrangebyrank(key.as_str(), 0, -keep - 1).await;
        queued.map_err(|e| command_error("ZREMRANGEBYRANK", e))?;
        let queued: Result<(), _> = pipeline.expire(key.as_str(), ttl, None).await;
        queued.map_err(|e| command_error("EXPIRE", e))?;
        pipeline
            .all::<()>()
            .await
            .map_err(|e| command_error("record history", e))
    }
}

#[async_trait]
impl ViewHistory for RedisViewHistory {
    async fn served_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        self.since(keys::served(user), since).await
    }

    async fn record_served(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.record(keys::served(user), SERVED_TTL, videos, at)
            .await
    }

    async fn watched_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        self.since(keys::watched(user), since).await
    }

    async fn record_watched(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.record(keys::watched(user), WATCHED_TTL, videos, at)
            .await
    }
}
