//! The engagement consumer: reads the event topic in a consumer group, stores events through the
//! [`EngagementEventStore`] port, and commits offsets only once a batch is stored.
//!
//! Delivery is at least once: a crash between storing and committing replays the batch, and the
//! store is idempotent by `event_id`. A message that cannot be read goes to the dead-letter topic,
//! so it never holds back its partition.

use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::group::{
    Backoff, Batching, DEFAULT_BATCH_MAX_SIZE, DEFAULT_BATCH_MAX_WAIT, DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_RETRY_BACKOFF, DEFAULT_RETRY_BACKOFF_MAX, DEFAULT_SESSION_TIMEOUT, GroupConsumer,
    Membership, Outcome, ProcessBatch, Shutdown, clients, consume, count_error,
    register_error_metrics, store_isolating,
};
use crate::message::{MessageError, TopicMessage};
use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vrs_application::ports::EngagementEventStore;
use vrs_domain::{EngagementEvent, EventType, Exposure};

/// Dead-letter topic of unreadable engagement messages unless configured otherwise.
pub const DEFAULT_DLQ_TOPIC: &str = "engagement-events.dlq";
/// Counter of events newly stored (not duplicates), labelled by event `type`.
pub const EVENTS_RECORDED_METRIC: &str = "engagement_events_recorded_total";
/// Gauge: seconds from the Kafka timestamp of the oldest message of the last stored batch (the
/// time the API published it) to the moment the batch was stored.
pub const PROCESSING_LAG_METRIC: &str = "engagement_event_processing_lag_seconds";
/// Counter of experiment exposures newly stored (not duplicates).
pub const EXPOSURES_RECORDED_METRIC: &str = "experiment_exposures_recorded_total";

/// Where the consumer reads, how it batches, and how it retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngagementConsumerConfig {
    /// Bootstrap servers, comma separated (`host:port,host:port`).
    pub brokers: String,
    /// Consumer group; the committed offsets belong to it.
    pub group_id: String,
    /// Topic of the engagement events.
    pub topic: String,
    /// Topic unreadable messages are moved to, with the reason in headers.
    pub dlq_topic: String,
    /// Most messages per batch.
    pub batch_max_size: usize,
    /// Longest a batch waits for more messages once its first one arrived.
    pub batch_max_wait: Duration,
    /// First pause before a retry; doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Longest pause between two retries.
    pub retry_backoff_max: Duration,
    /// Group session timeout (librdkafka `session.timeout.ms`); brokers bound it, 6 s at least by
    /// default.
    pub session_timeout: Duration,
    /// Longest the consumer may go without polling before the group evicts it (librdkafka
    /// `max.poll.interval.ms`, at least the session timeout). A batch retried for longer keeps
    /// polling with its partitions paused, so this bounds a stuck process, not a slow store.
    pub max_poll_interval: Duration,
}

impl EngagementConsumerConfig {
    /// A configuration with the defaults for everything but the brokers and the group.
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            topic: crate::config::DEFAULT_TOPIC.to_owned(),
            dlq_topic: DEFAULT_DLQ_TOPIC.to_owned(),
            batch_max_size: DEFAULT_BATCH_MAX_SIZE,
            batch_max_wait: DEFAULT_BATCH_MAX_WAIT,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            retry_backoff_max: DEFAULT_RETRY_BACKOFF_MAX,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            max_poll_interval: DEFAULT_MAX_POLL_INTERVAL,
        }
    }
}

/// Why the consumer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngagementConsumerError {
    /// The consumer or dead-letter producer configuration was refused, or subscribing failed.
    #[error("kafka consumer: {0}")]
    Kafka(#[from] KafkaError),
}

/// Consumes engagement events from Kafka into an [`EngagementEventStore`].
pub struct EngagementConsumer {
    // Shared so a synchronous commit can run on a blocking thread.
    consumer: Arc<GroupConsumer>,
    dlq: FutureProducer,
    store: Arc<dyn EngagementEventStore>,
    config: EngagementConsumerConfig,
}

impl std::fmt::Debug for EngagementConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngagementConsumer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EngagementConsumer {
    /// Creates the consumer (auto-commit off) and the dead-letter producer, and subscribes to the
    /// topic; never waits for the broker.
    pub fn new(
        config: EngagementConsumerConfig,
        store: Arc<dyn EngagementEventStore>,
    ) -> Result<Self, EngagementConsumerError> {
        register_error_metrics();
        for event_type in EventType::ALL {
            metrics::counter!(EVENTS_RECORDED_METRIC, "type" => event_type.as_str()).increment(0);
        }
        metrics::counter!(EXPOSURES_RECORDED_METRIC).increment(0);
        let (consumer, dlq) = clients(&Membership {
            brokers: &config.brokers,
            group_id: &config.group_id,
            topic: &config.topic,
            session_timeout: config.session_timeout,
            max_poll_interval: config.max_poll_interval,
        })?;
        Ok(Self {
            consumer,
            dlq,
            store,
            config,
        })
    }

    /// Consumes until `shutdown` resolves; then finishes the batch in hand, commits it and returns.
    ///
    /// If shutdown comes while a batch is being retried (store down), the batch is left
    /// uncommitted and will be redelivered to the group. The same holds for a batch whose
    /// partitions were revoked by a rebalance, and for messages whose dead letters are still
    /// pending.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let batching = Batching {
            max_size: self.config.batch_max_size,
            max_wait: self.config.batch_max_wait,
            retry_backoff: self.config.retry_backoff,
            retry_backoff_max: self.config.retry_backoff_max,
        };
        let dead_letters = DeadLetterQueue::start(
            self.dlq.clone(),
            crate::dead_letter::producer_config(&self.config.brokers),
            self.config.dlq_topic.clone(),
            self.config.group_id.clone(),
            (self.config.retry_backoff, self.config.retry_backoff_max),
        );
        consume(&self.consumer, batching, &dead_letters, shutdown, &self).await;
        tracing::info!(group = %self.config.group_id, "engagement consumer stopped");
    }
}

impl ProcessBatch for EngagementConsumer {
    /// Stores the readable events, retrying until they are; what cannot be read, or what the store
    /// refuses, comes back as dead letters.
    ///
    /// Its span links to the producer span of every message (see [`crate::propagation`]).
    #[tracing::instrument(skip_all, fields(
        otel.name = %format_args!("process {}", self.config.topic),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = %self.config.topic,
        messaging.consumer.group.name = %self.config.group_id,
        messaging.batch.message_count = batch.len(),
    ))]
    async fn process<F: Future<Output = ()> + Send>(
        &self,
        batch: &[OwnedMessage],
        shutdown: &mut Shutdown<F>,
    ) -> Outcome {
        crate::propagation::link_producers(&tracing::Span::current(), batch);
        let mut dead: Vec<DeadLetter> = Vec::new();
        let mut events: Vec<EngagementEvent> = Vec::with_capacity(batch.len());
        // The message each event came from, by the event's index.
        let mut origin: Vec<&OwnedMessage> = Vec::with_capacity(batch.len());
        let mut exposures: Vec<Exposure> = Vec::new();
        let mut exposure_origin: Vec<&OwnedMessage> = Vec::new();
        for message in batch {
            let decoded = match message.payload() {
                None => Err(("missing_payload", "message has no payload".to_owned())),
                Some(bytes) => TopicMessage::decode(bytes).map_err(|e| {
                    let kind = match e {
                        MessageError::Malformed(_) => "malformed",
                        MessageError::UnsupportedVersion(_) | MessageError::UnsupportedKind(_) => {
                            "unsupported_version"
                        }
                    };
                    (kind, e.to_string())
                }),
            };
            match decoded {
                Ok(TopicMessage::Event(event)) => {
                    events.push(event);
                    origin.push(message);
                }
                Ok(TopicMessage::Exposure(exposure)) => {
                    exposures.push(exposure);
                    exposure_origin.push(message);
                }
                Err((kind, reason)) => {
                    count_error(kind);
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        %reason,
                        "unreadable engagement message; dead-lettering it"
                    );
                    dead.push(DeadLetter::new(message, kind, reason));
                }
            }
        }

        let backoff = || Backoff::new(self.config.retry_backoff, self.config.retry_backoff_max);
        // The readable events are stored first, so a failing dead-letter topic never holds them
        // back. One insert for the whole batch; the store names the events that were new, so a
        // retry or a replay counts nothing twice in the recorded-events metric. An event the store
        // can never hold is dead-lettered with the reason, and the rest of the batch is stored.
        if !events.is_empty() {
            let stored = store_isolating(
                backoff,
                shutdown,
                "storing engagement events",
                events.len(),
                |part| self.store.insert_events(&events[part]),
            )
            .await;
            let Some((results, refused)) = stored else {
                return Outcome::Abandoned;
            };
            let mut new = Vec::new();
            let mut rejected: Vec<(usize, String)> = refused;
            for result in results {
                new.extend(result.new);
                for r in result.rejected {
                    if let Some(index) = events.iter().position(|e| e.event_id == r.event_id) {
                        rejected.push((index, r.reason));
                    }
                }
            }
            for (index, reason) in rejected {
                count_error("rejected");
                let message = origin[index];
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    %reason,
                    "the store refused an engagement event; dead-lettering it"
                );
                dead.push(DeadLetter::new(message, "rejected", reason));
            }
            count_recorded(&events, &new);
            record_lag(batch, &events);
        }
        // Exposures likewise, by exposure id.
        if !exposures.is_empty() {
            let stored = store_isolating(
                backoff,
                shutdown,
                "storing experiment exposures",
                exposures.len(),
                |part| self.store.insert_exposures(&exposures[part]),
            )
            .await;
            let Some((results, refused)) = stored else {
                return Outcome::Abandoned;
            };
            let new: usize = results.iter().map(Vec::len).sum();
            metrics::counter!(EXPOSURES_RECORDED_METRIC).increment(new as u64);
            for (index, reason) in refused {
                count_error("rejected");
                let message = exposure_origin[index];
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    %reason,
                    "the store refused an experiment exposure; dead-lettering it"
                );
                dead.push(DeadLetter::new(message, "rejected", reason));
            }
        }
        Outcome::Done(dead)
    }

    /// Waits for the store to settle the writes of the partitions' previous owner.
    async fn fence(&self) -> Result<(), vrs_application::ports::PortError> {
        self.store.fence().await
    }
}

/// Adds the newly stored events to the recorded-events counter, by type.
fn count_recorded(events: &[EngagementEvent], new: &[Uuid]) {
    let new: HashSet<&Uuid> = new.iter().collect();
    let mut by_type: HashMap<EventType, u64> = HashMap::new();
    let mut counted = HashSet::new();
    for e in events {
        // A repeat within the batch is one new event at most.
        if new.contains(&e.event_id) && counted.insert(e.event_id) {
            *by_type.entry(e.event_type).or_default() += 1;
        }
    }
    for (event_type, n) in by_type {
        metrics::counter!(EVENTS_RECORDED_METRIC, "type" => event_type.as_str()).increment(n);
    }
}

/// Sets the lag gauge from the oldest message of a stored batch; falls back to the events'
/// `occurred_at` when the messages carry no timestamp.
fn record_lag(batch: &[OwnedMessage], events: &[EngagementEvent]) {
    let oldest_ms = batch
        .iter()
        .filter_map(|m| m.timestamp().to_millis())
        .min()
        .or_else(|| {
            events
                .iter()
                .map(|e| e.occurred_at.timestamp_millis())
                .min()
        });
    if let Some(oldest_ms) = oldest_ms {
        let lag_ms = chrono::Utc::now().timestamp_millis() - oldest_ms;
        metrics::gauge!(PROCESSING_LAG_METRIC).set(lag_ms.max(0) as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use vrs_domain::{CreatorId, UserId, VideoId};

    fn event(event_type: EventType) -> EngagementEvent {
        EngagementEvent {
            event_id: Uuid::new_v4(),
            user_id: UserId(Uuid::new_v4()),
            video_id: VideoId(Uuid::new_v4()),
            creator_id: CreatorId(Uuid::new_v4()),
            event_type,
            watch_ms: None,
            completion: None,
            occurred_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn recorded_events_are_counted_by_type_once_each() {
        let (like, share, old) = (
            event(EventType::Like),
            event(EventType::Share),
            event(EventType::Like),
        );
        // A repeat within the batch, and an event the store already had.
        let batch = [like.clone(), share.clone(), like.clone(), old];
        let new = [like.event_id, share.event_id];
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || count_recorded(&batch, &new));
        let text = handle.render();
        assert!(
            text.contains(r#"engagement_events_recorded_total{type="like"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"engagement_events_recorded_total{type="share"} 1"#),
            "{text}"
        );
    }
}
