use crate::lock_error;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use vrs_application::ports::{CatalogWatermark, PortError, VideoCatalog};
use vrs_domain::{Video, VideoId};

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<VideoId, Video>,
    /// The change stream: (updated_at, id) of each video's current record.
    changes: BTreeMap<CatalogWatermark, ()>,
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
            if let Some(old) = inner.by_id.insert(v.id, v.clone()) {
                inner.changes.remove(&CatalogWatermark::of(&old));
            }
            inner.changes.insert(CatalogWatermark::of(v), ());
        }
        Ok(())
    }
}
