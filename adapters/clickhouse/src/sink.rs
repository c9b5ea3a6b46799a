//! An [`EventSink`] that writes straight into ClickHouse, for deployments without Kafka in between:
//! an event is durable once ClickHouse acknowledged its insert.

use crate::ClickHouseSignalStore;
use async_trait::async_trait;
use std::sync::Arc;
use uuid::Uuid;
use vrs_application::ports::{
    EngagementEventStore, EventSink, PortError, PublishOutcome, StoredEvents,
};
use vrs_domain::{EngagementEvent, Exposure};

/// Publishes events by inserting them (idempotently by `event_id`) into the raw events table.
#[derive(Clone, Debug)]
pub struct ClickHouseEventSink {
    store: Arc<ClickHouseSignalStore>,
}

impl ClickHouseEventSink {
    /// A sink inserting through `store`.
    pub fn new(store: Arc<ClickHouseSignalStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl EventSink for ClickHouseEventSink {
    async fn publish(&self, events: &[EngagementEvent]) -> Result<PublishOutcome, PortError> {
        let inserted = self.store.insert_batch(events).await?;
        Ok(PublishOutcome {
            accepted: inserted,
            duplicates: events.len() - inserted,
        })
    }

    async fn publish_exposures(&self, exposures: &[Exposure]) -> Result<(), PortError> {
        self.store.store_exposures(exposures).await.map(|_| ())
    }
}

#[async_trait]
impl EngagementEventStore for ClickHouseSignalStore {
    async fn insert_events(&self, events: &[EngagementEvent]) -> Result<StoredEvents, PortError> {
        self.store_events(events).await
    }

    async fn insert_exposures(&self, exposures: &[Exposure]) -> Result<Vec<Uuid>, PortError> {
        self.store_exposures(exposures).await
    }

    async fn fence(&self) -> Result<(), PortError> {
        ClickHouseSignalStore::fence(self).await
    }
}
