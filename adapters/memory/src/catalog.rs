use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use vrs_application::ports::{CatalogWatermark, PortError, VideoCatalog, VideoChange};
use vrs_domain::{SourcePosition, Video, VideoId, VideoStatus};

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<VideoId, Video>,
    /// The change stream: (updated_at, id) of each video's current record.
    changes: BTreeMap<CatalogWatermark, ()>,
    /// Source position of each video's last applied change.
    positions: HashMap<VideoId, SourcePosition>,
    /// The newest truncate applied: older changes are skipped.
    truncated_at: Option<SourcePosition>,
}

impl Inner {
    fn put(&mut self, video: Video) {
        if let Some(old) = self.by_id.remove(&video.id) {
            self.changes.remove(&CatalogWatermark::of(&old));
        }
        self.changes.insert(CatalogWatermark::of(&video), ());
        self.by_id.insert(video.id, video);
    }

    /// The position and deleted flag of a video's last applied change.
    fn stored(&self, id: VideoId) -> Option<(SourcePosition, bool)> {
        let video = self.by_id.get(&id)?;
        let at = self.positions.get(&id)?;
        Some((*at, video.status == VideoStatus::Deleted))
    }
}

fn deleted(mut video: Video, at: DateTime<Utc>) -> Video {
    video.status = VideoStatus::Deleted;
    video.deleted_at = video.deleted_at.or(Some(at));
    video.updated_at = at;
    video
}

/// The video catalog in memory.
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    inner: RwLock<Inner>,
}

impl MemoryCatalog {
    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.by_id.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl VideoCatalog for MemoryCatalog {
    async fn changed_since(
        &self,
        after: Option<CatalogWatermark>,
        limit: usize,
    ) -> Result<Vec<Video>, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        let range = match after {
            Some(w) => inner
                .changes
                .range((std::ops::Bound::Excluded(w), std::ops::Bound::Unbounded)),
            None => inner.changes.range(..),
        };
        Ok(range
            .take(limit)
            .filter_map(|(w, ())| inner.by_id.get(&w.video_id).cloned())
            .collect())
    }

    async fn videos_by_ids(&self, ids: &[VideoId]) -> Result<Vec<Video>, PortError> {
        let inner = self.inner.read().map_err(lock_error)?;
        Ok(ids
            .iter()
            .filter_map(|id| inner.by_id.get(id).cloned())
            .collect())
    }

    async fn upsert_videos(&self, videos: &[Video]) -> Result<(), PortError> {
        let mut inner = self.inner.write().map_err(lock_error)?;
        for v in videos {
            inner.put(v.clone());
        }
        Ok(())
    }

    async fn apply_changes(&self, changes: &[VideoChange]) -> Result<usize, PortError> {
        let mut inner = self.inner.write().map_err(lock_error)?;
        let mut applied = 0;
        for change in changes {
            let id = change.id();
            let before_truncate = change
                .position()
                .zip(inner.truncated_at)
                .is_some_and(|(at, truncated)| at < truncated);
            if before_truncate || !change.applies_over(inner.stored(id)) {
                continue;
            }
            let (video, position) = match change {
                VideoChange::Upsert { video, position } => (video.clone(), Some(*position)),
                VideoChange::Delete {
                    position,
                    updated_at,
                    ..
                } => match inner.by_id.get(&id) {
                    Some(current) => (deleted(current.clone(), *updated_at), *position),
                    None => continue,
                },
            };
            if let Some(at) = position {
                inner.positions.insert(id, at);
            }
            inner.put(video);
            applied += 1;
        }
        Ok(applied)
    }

    async fn truncate(
        &self,
        position: SourcePosition,
        updated_at: DateTime<Utc>,
    ) -> Result<u64, PortError> {
        let mut inner = self.inner.write().map_err(lock_error)?;
        inner.truncated_at = inner.truncated_at.max(Some(position));
        let doomed: Vec<Video> = inner
            .by_id
            .values()
            .filter(|v| v.status != VideoStatus::Deleted)
            .filter(|v| inner.positions.get(&v.id).is_none_or(|at| *at < position))
            .cloned()
            .collect();
        let count = doomed.len() as u64;
        for video in doomed {
            inner.positions.insert(video.id, position);
            inner.put(deleted(video, updated_at));
        }
        Ok(count)
    }
}
