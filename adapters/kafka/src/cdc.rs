//! The CDC consumer: reads Debezium change events of the upstream posts service's `videos` table
//! and applies them to the catalog through the [`VideoCatalog`] port, committing offsets only once
//! a batch is stored.
//!
//! Every applied change is stamped with the consumer's clock (never older than the row's own
//! `updated_at`), so the catalog's change stream, read past an `(updated_at, id)` watermark, cannot
//! miss a change that arrived late. Upserts are idempotent, so a replayed batch is harmless.

use crate::cdc_message::{self, CdcChange};
use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::group::{
    Backoff, Batching, DEFAULT_BATCH_MAX_SIZE, DEFAULT_BATCH_MAX_WAIT, DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_RETRY_BACKOFF, DEFAULT_RETRY_BACKOFF_MAX, DEFAULT_SESSION_TIMEOUT, Membership, Outcome,
    ProcessBatch, Shutdown, clients, consume, count_error, register_error_metrics, store_isolating,
};
use chrono::Utc;
use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use vrs_application::ports::VideoCatalog;
use vrs_domain::{Video, VideoId, VideoStatus};

/// Topic of the posts service's video changes unless configured otherwise.
pub const DEFAULT_CDC_TOPIC: &str = "cdc.posts";
/// Dead-letter topic of unreadable change events unless configured otherwise.
pub const DEFAULT_CDC_DLQ_TOPIC: &str = "cdc.posts.dlq";
/// Counter of changes applied to the catalog, labelled by Debezium `op` (`c`, `u`, `r`, `d`).
pub const CDC_EVENTS_APPLIED_METRIC: &str = "cdc_events_applied_total";

/// Where the CDC consumer reads, how it batches, and how it retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdcConsumerConfig {
    /// Bootstrap servers, comma separated (`host:port,host:port`).
    pub brokers: String,
    /// Consumer group; the committed offsets belong to it.
    pub group_id: String,
    /// Topic of the Debezium change events.
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
    /// Group session timeout (librdkafka `session.timeout.ms`).
    pub session_timeout: Duration,
    /// Longest the consumer may go without polling before the group evicts it (librdkafka
    /// `max.poll.interval.ms`, at least the session timeout). A batch retried for longer keeps
    /// polling with its partitions paused, so this bounds a stuck process, not a slow store.
    pub max_poll_interval: Duration,
}

impl CdcConsumerConfig {
    /// A configuration with the defaults for everything but the brokers and the group.
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            topic: DEFAULT_CDC_TOPIC.to_owned(),
            dlq_topic: DEFAULT_CDC_DLQ_TOPIC.to_owned(),
            batch_max_size: DEFAULT_BATCH_MAX_SIZE,
            batch_max_wait: DEFAULT_BATCH_MAX_WAIT,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            retry_backoff_max: DEFAULT_RETRY_BACKOFF_MAX,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            max_poll_interval: DEFAULT_MAX_POLL_INTERVAL,
        }
    }
}

/// Why the CDC consumer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CdcConsumerError {
    /// The consumer or dead-letter producer configuration was refused, or subscribing failed.
    #[error("kafka cdc consumer: {0}")]
    Kafka(#[from] KafkaError),
}

/// Applies Debezium video changes from Kafka to a [`VideoCatalog`].
pub struct CdcConsumer {
    consumer: Arc<crate::group::GroupConsumer>,
    dlq: FutureProducer,
    catalog: Arc<dyn VideoCatalog>,
    config: CdcConsumerConfig,
}

impl std::fmt::Debug for CdcConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdcConsumer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CdcConsumer {
    /// Creates the consumer (auto-commit off) and the dead-letter producer, and subscribes to the
    /// topic; never waits for the broker.
    pub fn new(
        config: CdcConsumerConfig,
        catalog: Arc<dyn VideoCatalog>,
    ) -> Result<Self, CdcConsumerError> {
        register_error_metrics();
        for op in ["c", "u", "r", "d"] {
            metrics::counter!(CDC_EVENTS_APPLIED_METRIC, "op" => op).increment(0);
        }
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
            catalog,
            config,
        })
    }

    /// Consumes until `shutdown` resolves; then finishes the batch in hand, commits it and returns.
    /// A batch still being retried at shutdown is left uncommitted, for redelivery.
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
        tracing::info!(group = %self.config.group_id, "cdc consumer stopped");
    }
}

impl ProcessBatch for CdcConsumer {
    /// Applies the readable changes, retrying until they are; what cannot be read, or what the
    /// catalog refuses, comes back as dead letters.
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
        let mut dead: Vec<DeadLetter> = Vec::new();
        let mut changes: Vec<CdcChange> = Vec::new();
        // The message each change came from, by the change's index.
        let mut origin: Vec<&OwnedMessage> = Vec::new();
        for message in batch {
            let decoded = match message.payload() {
                Some(bytes) => cdc_message::decode(bytes),
                None => Ok(None),
            };
            // A tombstone (no value) deletes its key's video: after a delete event it changes
            // nothing, and with Debezium's record flattening it may be the only trace of a hard
            // delete.
            let decoded = match decoded {
                Ok(None) => match message.key().map(cdc_message::decode_key) {
                    Some(Ok(id)) => Ok(Some(CdcChange::Delete { id, row: None })),
                    Some(Err(e)) => Err(e),
                    None => Err(cdc_message::CdcError::Malformed(
                        "a tombstone without a key".into(),
                    )),
                },
                other => other,
            };
            match decoded {
                Ok(Some(change)) => {
                    changes.push(change);
                    origin.push(message);
                }
                Ok(None) => {}
                Err(e) => {
                    let kind = e.kind();
                    count_error(kind);
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        reason = %e,
                        "unreadable change event; dead-lettering it"
                    );
                    dead.push(DeadLetter::new(message, kind, e.to_string()));
                }
            }
        }

        let backoff = || Backoff::new(self.config.retry_backoff, self.config.retry_backoff_max);
        // Changes are applied first, so a failing dead-letter topic never holds them back; a change
        // the catalog refuses for its content is dead-lettered with the reason, the rest applied.
        if !changes.is_empty() {
            let applied = store_isolating(
                backoff,
                shutdown,
                "applying video changes",
                changes.len(),
                |part| self.apply(&changes[part]),
            )
            .await;
            let Some((_, refused)) = applied else {
                return Outcome::Abandoned;
            };
            let refused_at: std::collections::HashSet<usize> =
                refused.iter().map(|(index, _)| *index).collect();
            for (index, change) in changes.iter().enumerate() {
                if !refused_at.contains(&index) {
                    metrics::counter!(CDC_EVENTS_APPLIED_METRIC, "op" => change.op().as_str())
                        .increment(1);
                }
            }
            for (index, reason) in refused {
                count_error("rejected");
                let message = origin[index];
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    %reason,
                    "the catalog refused a video change; dead-lettering it"
                );
                dead.push(DeadLetter::new(message, "rejected", reason));
            }
        }
        Outcome::Done(dead)
    }
}

impl CdcConsumer {
    /// Upserts the last change of each video in the batch; deletes without the whole row take
    /// the catalog's current record, and are skipped for a video the catalog never had.
    async fn apply(&self, changes: &[CdcChange]) -> Result<(), vrs_application::ports::PortError> {
        let mut last: HashMap<VideoId, &CdcChange> = HashMap::new();
        let mut order: Vec<VideoId> = Vec::new();
        for change in changes {
            if last.insert(change.id(), change).is_none() {
                order.push(change.id());
            }
        }
        let missing: Vec<VideoId> = order
            .iter()
            .filter(|id| matches!(last.get(id), Some(CdcChange::Delete { row: None, .. })))
            .copied()
            .collect();
        let known: HashMap<VideoId, Video> = if missing.is_empty() {
            HashMap::new()
        } else {
            let found = self.catalog.videos_by_ids(&missing).await?;
            found.into_iter().map(|v| (v.id, v)).collect()
        };
        let now = Utc::now();
        let mut videos = Vec::with_capacity(order.len());
        for id in &order {
            let video = match last.get(id) {
                Some(CdcChange::Upsert { video, .. }) => Some(video.clone()),
                Some(CdcChange::Delete { row, .. }) => {
                    row.clone().or_else(|| known.get(id).cloned()).map(|mut v| {
                        v.status = VideoStatus::Deleted;
                        v.deleted_at = v.deleted_at.or(Some(now));
                        v
                    })
                }
                None => None,
            };
            if let Some(mut video) = video {
                // The consumer's clock, so a change committed upstream before the catalog's
                // watermark moved past it still lands after the watermark.
                video.updated_at = video.updated_at.max(now);
                videos.push(video);
            }
        }
        if videos.is_empty() {
            return Ok(());
        }
        self.catalog.upsert_videos(&videos).await
    }
}
