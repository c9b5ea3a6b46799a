//! [`ViewHistory`] on Redis: per user, a sorted set of video ids scored by Unix milliseconds.

use crate::connection::RedisConnection;
use crate::keys;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fred::prelude::{SortedSetsInterface, Value};
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;
use vrs_application::ports::{PortError, SeenAmong, ViewHistory};
use vrs_domain::{CreatorId, Hidden, UserId, VideoId};

/// Per user, at most this many videos are remembered in each history; the oldest go first.
pub const HISTORY_CAP: usize = 5_000;
/// A served history lives this long after its last write: serves only filter the next pages.
pub const SERVED_TTL: Duration = Duration::from_secs(48 * 3_600);
/// A watched history lives this long after its last write.
pub const WATCHED_TTL: Duration = Duration::from_secs(31 * 24 * 3_600);
/// What a user hid lives this long after their last "not interested" or "hide creator" (the
/// signal store keeps it for good: a new session merges both).
pub const HIDDEN_TTL: Duration = Duration::from_secs(400 * 24 * 3_600);

/// Adds videos at one time (GT: a video recorded again keeps its latest time, even when an older
/// time arrives late), keeps the newest `ARGV[2]` (ranks run from the oldest) and refreshes the
/// TTL, atomically in one round trip. A script for the same reason as the feed cache's: fred never
/// replays a timed-out single command after a reconnect, but does replay pipelines.
/// `ARGV`: score (Unix ms), cap, TTL (s), video ids. ZADD goes in batches because Lua's `unpack`
/// is limited to a few thousand values.
const RECORD: &str = r#"
local batch = {}
for i = 4, #ARGV do
  batch[#batch + 1] = ARGV[1]
  batch[#batch + 1] = ARGV[i]
  if #batch >= 1000 then
    redis.call('ZADD', KEYS[1], 'GT', unpack(batch))
    batch = {}
  end
end
if #batch > 0 then
  redis.call('ZADD', KEYS[1], 'GT', unpack(batch))
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"#;

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
        Ok(self
            .members(key, since)
            .await?
            .into_iter()
            .map(VideoId)
            .collect())
    }

    async fn members(&self, key: String, since: DateTime<Utc>) -> Result<Vec<Uuid>, PortError> {
        // Scores are whole milliseconds, rounded down on both sides: `since` stays inclusive.
        let members: Vec<String> = self
            .redis
            .traced(
                "ZRANGEBYSCORE",
                self.redis.client().zrangebyscore(
                    key,
                    since.timestamp_millis(),
                    "+inf",
                    false,
                    None,
                ),
            )
            .await?;
        members
            .iter()
            .map(|m| {
                Uuid::parse_str(m).map_err(|e| PortError::InvalidData(format!("history id: {e}")))
            })
            .collect()
    }

    /// The score of each member (`None` for one not in the set), in their order.
    async fn scores(
        &self,
        key: String,
        members: Vec<String>,
    ) -> Result<Vec<Option<f64>>, PortError> {
        let expected = members.len();
        let scores: Vec<Option<f64>> = self
            .redis
            .traced("ZMSCORE", self.redis.client().zmscore(key, members))
            .await?;
        if scores.len() != expected {
            return Err(PortError::InvalidData(format!(
                "ZMSCORE answered {} scores for {expected} members",
                scores.len()
            )));
        }
        Ok(scores)
    }

    async fn record(
        &self,
        key: String,
        ttl: Duration,
        videos: &[Uuid],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        if videos.is_empty() {
            return Ok(());
        }
        let cap = i64::try_from(HISTORY_CAP).unwrap_or(i64::MAX);
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let mut args = Vec::with_capacity(3 + videos.len());
        args.extend([
            Value::Integer(at.timestamp_millis()),
            Value::Integer(cap),
            Value::Integer(ttl),
        ]);
        args.extend(videos.iter().map(|v| Value::from(v.to_string())));
        self.redis
            .eval("EVAL record_history", RECORD, &[key], args)
            .await
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
        let ids: Vec<Uuid> = videos.iter().map(|v| v.0).collect();
        self.record(keys::served(user), SERVED_TTL, &ids, at).await
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
        let ids: Vec<Uuid> = videos.iter().map(|v| v.0).collect();
        self.record(keys::watched(user), WATCHED_TTL, &ids, at)
            .await
    }

    async fn hidden_since(&self, user: UserId, since: DateTime<Utc>) -> Result<Hidden, PortError> {
        // Both reads leave together on the multiplexed connection: one round trip.
        let (videos, creators) = tokio::try_join!(
            self.members(keys::hidden_videos(user), since),
            self.members(keys::hidden_creators(user), since),
        )?;
        Ok(Hidden {
            videos: videos.into_iter().map(VideoId).collect(),
            creators: creators.into_iter().map(CreatorId).collect(),
        })
    }

    /// Four ZMSCOREs that leave together (one round trip); each costs Redis a lookup per item,
    /// whatever the size of the set.
    async fn seen_among(
        &self,
        user: UserId,
        items: &[(VideoId, CreatorId)],
        served_since: DateTime<Utc>,
        watched_since: DateTime<Utc>,
    ) -> Result<SeenAmong, PortError> {
        if items.is_empty() {
            return Ok(SeenAmong::default());
        }
        let videos: Vec<String> = items.iter().map(|(v, _)| v.to_string()).collect();
        let mut creators: Vec<CreatorId> = items.iter().map(|(_, c)| *c).collect();
        creators.sort_unstable();
        creators.dedup();
        let creator_names: Vec<String> = creators.iter().map(ToString::to_string).collect();
        let (served, watched, hidden_videos, hidden_creators) = tokio::try_join!(
            self.scores(keys::served(user), videos.clone()),
            self.scores(keys::watched(user), videos.clone()),
            self.scores(keys::hidden_videos(user), videos),
            self.scores(keys::hidden_creators(user), creator_names),
        )?;
        let since = |scores: &[Option<f64>], since: DateTime<Utc>| -> HashSet<VideoId> {
            let since = since.timestamp_millis() as f64;
            items
                .iter()
                .zip(scores)
                .filter(|(_, s)| s.is_some_and(|s| s >= since))
                .map(|((v, _), _)| *v)
                .collect()
        };
        Ok(SeenAmong {
            served: since(&served, served_since),
            watched: since(&watched, watched_since),
            hidden: Hidden {
                videos: items
                    .iter()
                    .zip(&hidden_videos)
                    .filter(|(_, s)| s.is_some())
                    .map(|((v, _), _)| *v)
                    .collect(),
                creators: creators
                    .iter()
                    .zip(&hidden_creators)
                    .filter(|(_, s)| s.is_some())
                    .map(|(c, _)| *c)
                    .collect(),
            },
        })
    }

    async fn record_hidden(
        &self,
        user: UserId,
        videos: &[VideoId],
        creators: &[CreatorId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let videos: Vec<Uuid> = videos.iter().map(|v| v.0).collect();
        let creators: Vec<Uuid> = creators.iter().map(|c| c.0).collect();
        tokio::try_join!(
            self.record(keys::hidden_videos(user), HIDDEN_TTL, &videos, at),
            self.record(keys::hidden_creators(user), HIDDEN_TTL, &creators, at),
        )?;
        Ok(())
    }
}
