use crate::MemorySignalStore;
use async_trait::async_trait;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vrs_application::ports::{
    EngagementEventStore, EventSink, PortError, PublishOutcome, StoredEvents,
};
use vrs_domain::{EngagementEvent, Exposure};

/// How long an event id is remembered for deduplication.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The in-process event pipeline: deduplicates by `event_id` and applies events straight to the
/// memory signal store.
pub struct MemoryEventSink {
    signals: Arc<MemorySignalStore>,
    seen: Cache<Uuid, ()>,
}

impl std::fmt::Debug for MemoryEventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEventSink")
            .field("seen", &self.seen.entry_count())
            .finish()
    }
}

impl MemoryEventSink {
    pub fn new(signals: Arc<MemorySignalStore>) -> Self {
        Self {
            signals,
            seen: Cache::builder()
                .max_capacity(10_000_000)
                .time_to_live(DEDUP_WINDOW)
                .build(),
        }
    }
}

impl MemoryEventSink {
    /// Applies the events not seen before to the signal store; returns them.
    fn apply_fresh(&self, events: &[EngagementEvent]) -> Result<Vec<EngagementEvent>, PortError> {
        let fresh: Vec<EngagementEvent> = events
            .iter()
            .filter(|e| self.seen.entry(e.event_id).or_insert(()).is_fresh())
            .cloned()
            .collect();
        if let Err(e) = self.signals.apply(&fresh) {
            for event in &fresh {
                self.seen.invalidate(&event.event_id);
            }
            return Err(e);
        }
        Ok(fresh)
    }
}

#[async_trait]
impl EventSink for MemoryEventSink {
    async fn publish(&self, events: &[EngagementEvent]) -> Result<PublishOutcome, PortError> {
        let fresh = self.apply_fresh(events)?;
        Ok(PublishOutcome {
            accepted: fresh.len(),
            duplicates: events.len() - fresh.len(),
        })
    }

    async fn publish_exposures(&self, exposures: &[Exposure]) -> Result<(), PortError> {
        self.signals.insert_exposures(exposures).map(|_| ())
    }
}

/// The in-process pipeline's write side: the same idempotent application to the signal store.
#[async_trait]
impl EngagementEventStore for MemoryEventSink {
    async fn insert_events(&self, events: &[EngagementEvent]) -> Result<StoredEvents, PortError> {
        Ok(StoredEvents {
            new: self
                .apply_fresh(events)?
                .into_iter()
                .map(|e| e.event_id)
                .collect(),
            rejected: Vec::new(),
        })
    }

    async fn insert_exposures(&self, exposures: &[Exposure]) -> Result<Vec<Uuid>, PortError> {
        self.signals.insert_exposures(exposures)
    }
}
