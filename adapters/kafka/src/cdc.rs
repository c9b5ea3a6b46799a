//! The CDC consumer: reads Debezium change events of the upstream posts service's `videos` table
//! and applies them to the catalog through the [`VideoCatalog`] port, committing offsets only once
//! a batch is stored.
//!
//! Each change carries its position in the source's history (Debezium's `source.ts_ms`/`ts_us` and
//! `source.lsn`, else the row's `updated_at`); the catalog applies a change only when it is not
//! older than the one it holds, so a redelivered batch, a reordering across a rebalance, or a
//! consumer that lost its partitions mid-batch never overwrites a newer change or brings a deleted
//! video back. A tombstone deletes its key's video; a truncate deletes every older video.
//!
//! The record's `updated_at` is stamped with the consumer's clock (never older than the row's
//! own), so the catalog's change stream, read past an `(updated_at, id)` watermark, cannot miss a
//! change that arrived late; that stamp never decides which change wins.

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
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use vrs_application::ports::{PortError, VideoCatalog, VideoChange};
use vrs_domain::VideoStatus;

/// Topic of the posts service's video changes unless configured otherwise.
pub const DEFAULT_CDC_TOPIC: &str = "cdc.posts";
/// Dead-letter topic of unreadable change events unless configured otherwise.
pub const DEFAULT_CDC_DLQ_TOPIC: &str = "cdc.posts.dlq";
/// Counter of changes processed, labelled by Debezium `op` (`c`, `u`, `r`, `d`, `t`): applied, or
/// skipped as older than the catalog's (those are also in [`CDC_EVENTS_STALE_METRIC`]).
pub const CDC_EVENTS_APPLIED_METRIC: &str = "cdc_events_applied_total";
/// Counter of changes not applied because the catalog already held a newer change of the video
/// (redeliveries of a newer change's predecessors, reorderings) or never knew the deleted video.
pub const CDC_EVENTS_STALE_METRIC: &str = "cdc_events_stale_total";
/// Gauge: seconds between the source's commit of the newest change in the last applied batch and
/// its application to the catalog.
pub const CDC_LAG_METRIC: &str = "cdc_source_lag_seconds";
/// Gauge: the source commit time (Unix seconds) of the newest change applied so far.
pub const CDC_LAST_APPLIED_METRIC: &str = "cdc_last_applied_source_timestamp_seconds";
/// Counter of videos deleted by truncate events.
pub const CDC_TRUNCATED_METRIC: &str = "cdc_truncated_videos_total";

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
        for op in ["c", "u", "r", "d", "t"] {
            metrics::counter!(CDC_EVENTS_APPLIED_METRIC, "op" => op).increment(0);
        }
        metrics::counter!(CDC_EVENTS_STALE_METRIC).increment(0);
        // 0 until the first change is applied.
        metrics::gauge!(CDC_LAG_METRIC).set(0.0);
        metrics::gauge!(CDC_LAST_APPLIED_METRIC).set(0.0);
        metrics::counter!(CDC_TRUNCATED_METRIC).increment(0);
        for column in ["status", "visibility"] {
            metrics::counter!(cdc_message::CDC_UNKNOWN_VALUES_METRIC, "column" => column)
                .increment(0);
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
                    Some(Ok(id)) => Ok(Some(CdcChange::Delete {
                        id,
                        row: None,
                        position: None,
                    })),
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
            let mut newest = None;
            for (index, change) in changes.iter().enumerate() {
                if !refused_at.contains(&index) {
                    metrics::counter!(CDC_EVENTS_APPLIED_METRIC, "op" => change.op().as_str())
                        .increment(1);
                    newest = newest.max(change.position());
                }
            }
            if let Some(committed_at) = newest.and_then(|p| p.committed_at()) {
                let lag = (Utc::now() - committed_at).num_milliseconds().max(0) as f64 / 1e3;
                metrics::gauge!(CDC_LAG_METRIC).set(lag);
                metrics::gauge!(CDC_LAST_APPLIED_METRIC)
                    .set(committed_at.timestamp_millis() as f64 / 1e3);
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
    /// Applies the changes in stream order; the catalog keeps only what is not older than what it
    /// holds. A truncate applies after the changes before it and before those after it.
    async fn apply(&self, changes: &[CdcChange]) -> Result<(), PortError> {
        let now = Utc::now();
        let mut pending: Vec<VideoChange> = Vec::with_capacity(changes.len());
        let mut stale = 0;
        for change in changes {
            match change {
                CdcChange::Upsert {
                    video, position, ..
                } => {
                    let mut video = video.clone();
                    // The consumer's clock, so a change committed upstream before the catalog's
                    // watermark moved past it still lands after the watermark.
                    video.updated_at = video.updated_at.max(now);
                    pending.push(VideoChange::Upsert {
                        video,
                        position: *position,
                    });
                }
                // The whole row with a position: written as a deleted record, so even a video the
                // catalog never had is known as deleted and an older create cannot bring it in.
                CdcChange::Delete {
                    row: Some(row),
                    position: Some(position),
                    ..
                } => {
                    let mut video = row.clone();
                    video.status = VideoStatus::Deleted;
                    video.deleted_at = video.deleted_at.or(Some(now));
                    video.updated_at = video.updated_at.max(now);
                    pending.push(VideoChange::Upsert {
                        video,
                        position: *position,
                    });
                }
                CdcChange::Delete { id, position, .. } => pending.push(VideoChange::Delete {
                    id: *id,
                    position: *position,
                    updated_at: now,
                }),
                CdcChange::Truncate { position } => {
                    stale += self.apply_pending(&mut pending).await?;
                    let deleted = self.catalog.truncate(*position, now).await?;
                    metrics::counter!(CDC_TRUNCATED_METRIC).increment(deleted);
                    tracing::warn!(
                        deleted,
                        committed_at_us = position.committed_at_us,
                        "the source table was truncated; deleted every older video"
                    );
                }
            }
        }
        stale += self.apply_pending(&mut pending).await?;
        if stale > 0 {
            metrics::counter!(CDC_EVENTS_STALE_METRIC).increment(stale as u64);
            tracing::debug!(stale, "skipped changes older than the catalog's");
        }
        Ok(())
    }

    /// Applies and clears `pending`; returns how many were not applied.
    async fn apply_pending(&self, pending: &mut Vec<VideoChange>) -> Result<usize, PortError> {
        if pending.is_empty() {
            return Ok(0);
        }
        let applied = self.catalog.apply_changes(pending).await?;
        let stale = pending.len().saturating_sub(applied);
        pending.clear();
        Ok(stale)
    }
}
