//! Contract test suites: one per port, run unchanged against every adapter.
//!
//! Each suite takes a factory and runs every case against a fresh adapter from it; a failing
//! assertion panics with the case's message. Cases use fresh random ids (and the catalog cases a
//! random time range), so they may also run concurrently against shared servers.
//!
//! Two allowances keep the suites fair to real backends:
//! - Timestamps are whole microseconds, the precision of PostgreSQL and ClickHouse `DateTime64(6)`.
//! - Signal stores aggregate into hourly buckets and may apply events asynchronously, so signal
//!   cases keep events hours away from every window boundary and poll until the data settles.
//!
//! Enabled by the `contract` feature; only adapters' tests use it.

pub mod catalog;
pub mod event_ledger;
pub mod events;
pub mod experiments;
pub mod feed_cache;
pub mod follows;
pub mod history;
pub mod model_registry;
pub mod ranking_config;
pub mod signals;

use crate::ports::{EventSink, SignalStore};
use chrono::{DateTime, Duration, DurationRound, Utc};
use std::future::Future;
use std::sync::Arc;
use uuid::Uuid;
use vrs_domain::{CreatorId, EngagementEvent, EventType, UserId, VideoId};

/// A signal store and the event sink that feeds it: the signal store port has no write method,
/// so its data arrives through the sink, as in production.
#[derive(Clone)]
pub struct SignalPipeline {
    pub sink: Arc<dyn EventSink>,
    pub store: Arc<dyn SignalStore>,
}

impl std::fmt::Debug for SignalPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalPipeline").finish_non_exhaustive()
    }
}

/// How long an asynchronous pipeline may take to apply accepted events.
pub const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn uuid() -> Uuid {
    Uuid::new_v4()
}

pub(crate) fn user() -> UserId {
    UserId(uuid())
}

pub(crate) fn creator() -> CreatorId {
    CreatorId(uuid())
}

pub(crate) fn video_id() -> VideoId {
    VideoId(uuid())
}

/// The current time, truncated to whole microseconds.
pub(crate) fn now_micros() -> DateTime<Utc> {
    micros(Utc::now())
}

pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::microseconds(1)).unwrap_or(t)
}

/// One engagement event with a fresh id.
pub(crate) fn event(
    user: UserId,
    video: VideoId,
    creator: CreatorId,
    event_type: EventType,
    occurred_at: DateTime<Utc>,
) -> EngagementEvent {
    EngagementEvent {
        event_id: uuid(),
        user_id: user,
        video_id: video,
        creator_id: creator,
        event_type,
        watch_ms: None,
        completion: None,
        occurred_at,
    }
}

/// Polls `probe` until `settled` accepts its value or [`SETTLE_TIMEOUT`] passes, and returns the
/// last value; the caller asserts on it, so a pipeline that never settles fails with its state.
pub(crate) async fn eventually<T, F, Fut>(mut probe: F, settled: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let value = probe().await;
        if settled(&value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Publishes a batch that the case expects to be accepted.
pub(crate) async fn publish(sink: &dyn EventSink, events: &[EngagementEvent]) {
    let outcome = sink.publish(events).await.expect("publish");
    assert_eq!(
        outcome.accepted,
        events.len(),
        "every fresh event is accepted"
    );
}
