use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::RwLock;
use vrs_application::ports::{PortError, ViewHistory};
use vrs_domain::{UserId, VideoId};

/// Per user, at most this many videos are remembered in each history; the oldest go first.
pub const HISTORY_CAP: usize = 5_000;

type PerUser = HashMap<UserId, HashMap<VideoId, DateTime<Utc>>>;

/// Served and watched history in memory.
#[derive(Debug, Default)]
pub struct MemoryViewHistory {
    served: RwLock<PerUser>,
    watched: RwLock<PerUser>,
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

fn record(
    map: &RwLock<PerUser>,
    user: UserId,
    videos: &[VideoId],
    at: DateTime<Utc>,
) -> Result<(), PortError> {
    let mut map = map.write().map_err(lock_error)?;
    let entries = map.entry(user).or_default();
    for v in videos {
        let t = entries.entry(*v).or_insert(at);
        *t = (*t).max(at);
    }
    if entries.len() > HISTORY_CAP {
        let mut by_age: Vec<(DateTime<Utc>, VideoId)> =
            entries.iter().map(|(v, t)| (*t, *v)).collect();
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
}
