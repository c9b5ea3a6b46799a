use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::RwLock;
use vrs_application::ports::{PortError, ViewHistory};
use vrs_domain::{CreatorId, Hidden, UserId, VideoId};

/// Per user, at most this many videos are remembered in each history; the oldest go first.
pub const HISTORY_CAP: usize = 5_000;

type PerUser<K = VideoId> = HashMap<UserId, HashMap<K, DateTime<Utc>>>;

/// Served and watched history, and what users hid, in memory.
#[derive(Debug, Default)]
pub struct MemoryViewHistory {
    served: RwLock<PerUser>,
    watched: RwLock<PerUser>,
    hidden_videos: RwLock<PerUser>,
    hidden_creators: RwLock<PerUser<CreatorId>>,
}

fn since(
    map: &RwLock<PerUser>,
    user: UserId,
    since: DateTime<Utc>,
) -> Result<Vec<VideoId>, PortError> {
    let map = map.read().map_err(lock_error)?;
    let mut list: Vec<VideoId> = map
        .get(&user)
        .into_iter()
        .flatten()
        .filter(|(_, at)| **at >= since)
        .map(|(v, _)| *v)
        .collect();
    list.sort_unstable();
    Ok(list)
}

fn record<K: Copy + Eq + Ord + std::hash::Hash>(
    map: &RwLock<PerUser<K>>,
    user: UserId,
    videos: &[K],
    at: DateTime<Utc>,
) -> Result<(), PortError> {
    let mut map = map.write().map_err(lock_error)?;
    let entries = map.entry(user).or_default();
    for v in videos {
        let t = entries.entry(*v).or_insert(at);
        *t = (*t).max(at);
    }
    if entries.len() > HISTORY_CAP {
        let mut by_age: Vec<(DateTime<Utc>, K)> = entries.iter().map(|(v, t)| (*t, *v)).collect();
        by_age.sort_unstable();
        for (_, v) in by_age.iter().take(entries.len() - HISTORY_CAP) {
            entries.remove(v);
        }
    }
    Ok(())
}

#[async_trait]
impl ViewHistory for MemoryViewHistory {
    async fn served_since(
        &self,
        user: UserId,
        from: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        since(&self.served, user, from)
    }

    async fn record_served(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        record(&self.served, user, videos, at)
    }

    async fn watched_since(
        &self,
        user: UserId,
        from: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        since(&self.watched, user, from)
    }

    async fn record_watched(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        record(&self.watched, user, videos, at)
    }

    async fn hidden_since(&self, user: UserId, from: DateTime<Utc>) -> Result<Hidden, PortError> {
        let videos = self.hidden_videos.read().map_err(lock_error)?;
        let creators = self.hidden_creators.read().map_err(lock_error)?;
        Ok(Hidden {
            videos: videos
                .get(&user)
                .into_iter()
                .flatten()
                .filter(|(_, at)| **at >= from)
                .map(|(v, _)| *v)
                .collect(),
            creators: creators
                .get(&user)
                .into_iter()
                .flatten()
                .filter(|(_, at)| **at >= from)
                .map(|(c, _)| *c)
                .collect(),
        })
    }

    async fn record_hidden(
        &self,
        user: UserId,
        videos: &[VideoId],
        creators: &[CreatorId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        record(&self.hidden_videos, user, videos, at)?;
        record(&self.hidden_creators, user, creators, at)
    }
}
