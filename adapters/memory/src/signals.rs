use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use uuid::Uuid;
use vrs_application::model::Engagement;
use vrs_application::ports::{PortError, SignalStore};
use vrs_domain::experiment::ExposureOutcome;
use vrs_domain::{
    CreatorId, EngagementEvent, EventType, Exposure, Hidden, SessionId, UserId, VariantTotals,
    VideoId, VideoStats, signals,
};

/// An event an exposure's outcome is read from: type, watch_ms, when.
type OutcomeEvent = (EventType, Option<u64>, DateTime<Utc>);

/// Most events kept per (user, video) for joining experiment exposures: the latest ones.
const EVENTS_PER_PAIR: usize = 64;

/// Hourly buckets, like the `video_ranking_signals_1h` table: windows are whole hours.
fn hour(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

#[derive(Debug, Default)]
struct Inner {
    videos: HashMap<VideoId, BTreeMap<i64, VideoStats>>,
    affinity: HashMap<UserId, HashMap<CreatorId, BTreeMap<i64, f64>>>,
    activity: HashMap<UserId, BTreeMap<i64, u64>>,
    /// Per user, when each video was last watched (`user_watch_history_realtime`).
    watched: HashMap<UserId, HashMap<VideoId, DateTime<Utc>>>,
    /// Per user, what they hid (`user_hidden`).
    hidden: HashMap<UserId, Hidden>,
    /// Per (user, video), the affinity weights of their events by hour: what training reads.
    pairs: HashMap<(UserId, VideoId), (CreatorId, BTreeMap<i64, f64>)>,
    /// Per experiment, its exposures by id (`experiment_exposures`).
    exposures: HashMap<Uuid, HashMap<Uuid, Exposure>>,
    /// Per (user, video), the latest events an exposure's outcome is read from (type,
    /// watch_ms, at), kept for users with exposures only.
    outcomes: HashMap<(UserId, VideoId), Vec<OutcomeEvent>>,
    /// Users with exposures in any experiment: their events are kept for the outcomes. (An
    /// event stored before its user's first exposure, within the exposure publisher's linger,
    /// is not kept: the in-process store is for the demo and tests.)
    exposed: HashSet<UserId>,
}

/// Engagement aggregates in memory, fed by [`crate::MemoryEventSink`].
#[derive(Debug, Default)]
pub struct MemorySignalStore {
    inner: RwLock<Inner>,
}

impl MemorySignalStore {
    /// Adds events to the aggregates. Callers deduplicate: every event given is counted.
    pub fn apply(&self, events: &[EngagementEvent]) -> Result<(), PortError> {
        let mut inner = self.inner.write().map_err(lock_error)?;
        for e in events {
            let h = hour(e.occurred_at);
            if inner.exposed.contains(&e.user_id)
                && matches!(
                    e.event_type,
                    EventType::View
                        | EventType::Watch
                        | EventType::Complete
                        | EventType::Skip
                        | EventType::Like
                        | EventType::Share
                )
            {
                let kept = inner.outcomes.entry((e.user_id, e.video_id)).or_default();
                kept.push((e.event_type, e.watch_ms, e.occurred_at));
                if kept.len() > EVENTS_PER_PAIR {
                    kept.sort_by_key(|(_, _, at)| *at);
                    let excess = kept.len() - EVENTS_PER_PAIR;
                    kept.drain(..excess);
                }
            }
            inner
                .videos
                .entry(e.video_id)
                .or_default()
                .entry(h)
                .or_default()
                .add(e);
            *inner
                .affinity
                .entry(e.user_id)
                .or_default()
                .entry(e.creator_id)
                .or_default()
                .entry(h)
                .or_default() += e.event_type.affinity_weight();
            *inner
                .pairs
                .entry((e.user_id, e.video_id))
                .or_insert_with(|| (e.creator_id, BTreeMap::new()))
                .1
                .entry(h)
                .or_default() += e.event_type.affinity_weight();
            *inner
                .activity
                .entry(e.user_id)
                .or_default()
                .entry(h)
                .or_default() += 1;
            if e.event_type.is_watch() {
                let last = inner
                    .watched
                    .entry(e.user_id)
                    .or_default()
                    .entry(e.video_id)
                    .or_insert(e.occurred_at);
                *last = (*last).max(e.occurred_at);
            }
            match e.event_type {
                EventType::NotInterested => {
                    inner
                        .hidden
                        .entry(e.user_id)
                        .or_default()
                        .videos
                        .insert(e.video_id);
                }
                EventType::HideCreator => {
                    inner
                        .hidden
                        .entry(e.user_id)
                        .or_default()
                        .creators
                        .insert(e.creator_id);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Stores exposures, once per id; returns the ids that were new.
    pub fn insert_exposures(&self, exposures: &[Exposure]) -> Result<Vec<Uuid>, PortError> {
        let mut inner = self.inner.write().map_err(lock_error)?;
        let mut new = Vec::new();
        for x in exposures {
            inner.exposed.insert(x.user_id);
            let of = inner.exposures.entry(x.experiment_id).or_default();
            if let std::collections::hash_map::Entry::Vacant(slot) = of.entry(x.exposure_id) {
                slot.insert(x.clone());
                new.push(x.exposure_id);
            }
        }
        Ok(new)
    }

    fn stats_since(inner: &Inner, since: i64) -> impl Iterator<Item = (VideoId, VideoStats)> + '_ {
        inner.videos.iter().filter_map(move |(id, buckets)| {
            let mut total = VideoStats::default();
            let mut any = false;
            for stats in buckets.range(since..).map(|(_, s)| s) {
                total.merge(stats);
                any = true;
            }
            any.then_some((*id, total))
        })
    }
}

#[async_trait]
impl SignalStore for MemorySignalStore {
    async fn video_stats(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(VideoId, VideoStats)>, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        Ok(Self::stats_since(&inner, hour(since)).collect())
    }

    async fn trending(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<VideoId>, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        let mut scored: Vec<(f64, VideoId)> = Self::stats_since(&inner, hour(since))
            .filter(|(_, s)| s.views > 0)
            .map(|(id, s)| (signals::engagement(&s), id))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored.into_iter().take(limit).map(|(_, id)| id).collect())
    }

    async fn creator_affinity(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(CreatorId, f64)>, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        let since = hour(since);
        let mut rows: Vec<(CreatorId, f64)> = inner
            .affinity
            .get(&user)
            .into_iter()
            .flatten()
            .map(|(creator, buckets)| {
                (
                    *creator,
                    buckets.range(since..).map(|(_, w)| w).sum::<f64>(),
                )
            })
            .filter(|(_, strength)| *strength > 0.0)
            .collect();
        rows.sort_by_key(|a| a.0);
        Ok(rows)
    }

    async fn watched_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        let mut videos: Vec<VideoId> = inner
            .watched
            .get(&user)
            .into_iter()
            .flatten()
            .filter(|(_, at)| **at >= since)
            .map(|(v, _)| *v)
            .collect();
        videos.sort_unstable();
        Ok(videos)
    }

    async fn engagement_pairs(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Engagement>, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        let since = hour(since);
        let mut out: Vec<Engagement> = inner
            .pairs
            .iter()
            .filter_map(|(&(user, video), (creator, hours))| {
                let window = hours.range(since..);
                let last = window.clone().next_back()?.0;
                let strength: f64 = window.map(|(_, w)| w).sum();
                (strength > 0.0).then(|| Engagement {
                    user,
                    video,
                    creator: *creator,
                    strength: strength as f32,
                    at: DateTime::from_timestamp(last * 3600, 0).unwrap_or_default(),
                })
            })
            .collect();
        // The most recent pairs first, as the ClickHouse query: a limit keeps the freshest data.
        out.sort_by_key(|e| (std::cmp::Reverse(e.at), e.user, e.video));
        out.truncate(limit);
        Ok(out)
    }

    async fn hidden(&self, user: UserId) -> Result<Hidden, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        Ok(inner.hidden.get(&user).cloned().unwrap_or_default())
    }

    async fn most_active_users(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<UserId>, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        let since = hour(since);
        let mut users: Vec<(u64, UserId)> = inner
            .activity
            .iter()
            .map(|(user, buckets)| (buckets.range(since..).map(|(_, n)| n).sum(), *user))
            .filter(|(n, _)| *n > 0)
            .collect();
        users.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(users.into_iter().take(limit).map(|(_, u)| u).collect())
    }

    async fn experiment_totals(
        &self,
        experiment: Uuid,
        attribution: std::time::Duration,
    ) -> Result<Vec<VariantTotals>, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        let window = i64::try_from(attribution.as_secs())
            .map_err(|e| PortError::Rejected(format!("attribution window: {e}")))?;
        // Per variant and user: the sessions and the outcome of each exposure.
        type PerUser = HashMap<UserId, (HashSet<SessionId>, Vec<ExposureOutcome>)>;
        let mut by_variant: BTreeMap<&str, PerUser> = BTreeMap::new();
        for x in inner
            .exposures
            .get(&experiment)
            .into_iter()
            .flatten()
            .map(|(_, x)| x)
        {
            let mut outcome = ExposureOutcome::default();
            for (event_type, watch_ms, at) in inner
                .outcomes
                .get(&(x.user_id, x.video_id))
                .into_iter()
                .flatten()
            {
                if vrs_domain::experiment::attributed(x.served_at, *at, window) {
                    outcome.observe(*event_type, *watch_ms);
                }
            }
            let (sessions, outcomes) = by_variant
                .entry(x.variant.as_str())
                .or_default()
                .entry(x.user_id)
                .or_default();
            sessions.insert(x.session_id);
            outcomes.push(outcome);
        }
        Ok(by_variant
            .into_iter()
            .map(|(variant, users)| {
                let mut totals = VariantTotals::new(variant);
                for (sessions, outcomes) in users.values() {
                    totals.add_user(sessions.len() as u64, outcomes);
                }
                totals
            })
            .collect())
    }
}
