//! The engagement consumer: reads the event topic in a consumer group, stores events through the
//! [`EngagementEventStore`] port, and commits offsets only once a batch is stored.
//!
//! Delivery is at least once: a crash between storing and committing replays the batch, and the
//! store is idempotent by `event_id`. A message that cannot be read goes to the dead-letter topic,
//! so it never holds back its partition.

use crate::message::{EngagementMessage, MessageError};
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;
use vrs_application::ports::EngagementEventStore;
use vrs_domain::{EngagementEvent, EventType};

/// Dead-letter topic of unreadable engagement messages unless configured otherwise.
pub const DEFAULT_DLQ_TOPIC: &str = "engagement-events.dlq";
/// Most messages stored and committed together.
pub const DEFAULT_BATCH_MAX_SIZE: usize = 500;
/// Longest a batch waits for more messages once its first one arrived.
pub const DEFAULT_BATCH_MAX_WAIT: Duration = Duration::from_millis(200);
/// First pause before retrying a failed store insert or dead-letter produce; doubles per attempt.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two retries.
pub const DEFAULT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long the group waits for a silent member before reassigning its partitions (librdkafka's
/// default).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// Counter of events newly stored (not duplicates), labelled by event `type`.
pub const EVENTS_RECORDED_METRIC: &str = "engagement_events_recorded_total";
/// Gauge: seconds from the Kafka timestamp of the oldest message of the last stored batch (the
/// time the API published it) to the moment the batch was stored.
pub const PROCESSING_LAG_METRIC: &str = "engagement_event_processing_lag_seconds";
/// Counter of partition assignments, revocations and rebalance errors, by `group` and `event`.
pub const REBALANCES_METRIC: &str = "kafka_consumer_rebalances_total";
/// Gauge: Unix time when the batch in hand was received, by `group`; 0 while no batch is in hand.
/// A batch held for long means a store that is down, a poison input or a failing dead-letter topic.
pub const BATCH_IN_PROGRESS_METRIC: &str =
    "kafka_consumer_batch_in_progress_since_timestamp_seconds";
/// Gauge: Unix time the last batch was stored and committed, by `group` (the start time before the
/// first one).
pub const LAST_BATCH_STORED_METRIC: &str = "kafka_consumer_last_batch_stored_timestamp_seconds";
/// Counter of consumer-side failures, labelled by `error_type`.
pub const CONSUMER_ERRORS_METRIC: &str = "kafka_consumer_errors_total";

/// Dead-letter header naming why the message was refused (`malformed`, `unsupported_version`,
/// `missing_payload`).
pub const DLQ_ERROR_TYPE_HEADER: &str = "dlq.error_type";
/// Dead-letter header with the decoding error's text.
pub const DLQ_REASON_HEADER: &str = "dlq.reason";
/// Dead-letter header with the source topic.
pub const DLQ_TOPIC_HEADER: &str = "dlq.topic";
/// Dead-letter header with the source partition (decimal).
pub const DLQ_PARTITION_HEADER: &str = "dlq.partition";
/// Dead-letter header with the source offset (decimal).
pub const DLQ_OFFSET_HEADER: &str = "dlq.offset";

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

/// What became of a batch.
pub(crate) enum Outcome {
    /// Stored (and dead letters acknowledged): its offsets may be committed.
    Done,
    /// Shutdown came while retrying: nothing is committed, the batch will be redelivered.
    Abandoned,
}

/// The shutdown signal, remembered once it fired.
pub(crate) struct Shutdown<F> {
    signal: Pin<Box<F>>,
    pub(crate) fired: bool,
}

impl<F: Future<Output = ()>> Shutdown<F> {
    /// Wraps a shutdown future.
    pub(crate) fn new(signal: F) -> Self {
        Self {
            signal: Box::pin(signal),
            fired: false,
        }
    }

    /// Resolves once shutdown was requested (at once if it already was).
    pub(crate) async fn requested(&mut self) {
        if !self.fired {
            (&mut self.signal).await;
            self.fired = true;
        }
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
        let (consumer, dlq) = clients(
            &config.brokers,
            &config.group_id,
            &config.topic,
            config.session_timeout,
        )?;
        Ok(Self {
            consumer,
            dlq,
            store,
            config,
        })
    }

    /// Consumes until `shutdown` resolves; then finishes the batch in hand, commits it and returns.
    ///
    /// If shutdown comes while a batch is being retried (store or dead-letter topic down), the
    /// batch is left uncommitted and will be redelivered to the group. The same holds for a batch
    /// whose partitions were revoked by a rebalance before its commit.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let batching = Batching {
            max_size: self.config.batch_max_size,
            max_wait: self.config.batch_max_wait,
        };
        consume(&self.consumer, batching, shutdown, &self).await;
        tracing::info!(group = %self.config.group_id, "engagement consumer stopped");
    }
}

impl ProcessBatch for EngagementConsumer {
    /// Dead-letters what cannot be read and stores the rest, retrying until both succeeded.
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
        let mut dead: Vec<DeadLetter<'_>> = Vec::new();
        let mut events: Vec<EngagementEvent> = Vec::with_capacity(batch.len());
        // The message each event came from, by the event's index.
        let mut origin: Vec<&OwnedMessage> = Vec::with_capacity(batch.len());
        for message in batch {
            let decoded = match message.payload() {
                None => Err(("missing_payload", "message has no payload".to_owned())),
                Some(bytes) => EngagementMessage::decode(bytes).map_err(|e| {
                    let kind = match e {
                        MessageError::Malformed(_) => "malformed",
                        MessageError::UnsupportedVersion(_) => "unsupported_version",
                    };
                    (kind, e.to_string())
                }),
            };
            match decoded {
                Ok(m) => {
                    events.push(m.into_event());
                    origin.push(message);
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
                    dead.push((message, kind, reason));
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
                dead.push((message, "rejected", reason));
            }
            count_recorded(&events, &new);
            record_lag(batch, &events);
        }
        if !dead_letter_all(&self.dlq, &self.config.dlq_topic, dead, backoff(), shutdown).await {
            return Outcome::Abandoned;
        }
        Outcome::Done
    }
}

/// Stores the items `0..len` with `attempt` (given a range of them), retrying transient failures with backoff. When the store refuses
/// a part for its content (`PortError::Rejected`), that part is split in halves until each culprit
/// stands alone: the culprits come back as `(index, reason)`, everything else is stored. `None`
/// when shutdown came while retrying.
pub(crate) async fn store_isolating<R, F: Future<Output = ()>, A>(
    backoff: impl Fn() -> Backoff,
    shutdown: &mut Shutdown<F>,
    what: &'static str,
    len: usize,
    mut attempt: impl FnMut(std::ops::Range<usize>) -> A,
) -> Option<(Vec<R>, Vec<(usize, String)>)>
where
    A: Future<Output = Result<R, vrs_application::ports::PortError>>,
{
    let mut done = Vec::new();
    let mut refused = Vec::new();
    let mut parts: Vec<std::ops::Range<usize>> = Vec::new();
    parts.push(0..len);
    while let Some(part) = parts.pop() {
        if part.is_empty() {
            continue;
        }
        let mut wait = backoff();
        loop {
            match attempt(part.clone()).await {
                Ok(result) => {
                    done.push(result);
                    break;
                }
                Err(vrs_application::ports::PortError::Rejected(reason)) => {
                    if part.len() == 1 {
                        refused.push((part.start, reason));
                    } else {
                        let mid = part.start + part.len() / 2;
                        parts.push(mid..part.end);
                        parts.push(part.start..mid);
                    }
                    break;
                }
                Err(e) => {
                    count_error("store");
                    tracing::warn!(error = %e, "{what} failed; retrying");
                    if !wait.wait(shutdown).await {
                        return None;
                    }
                }
            }
        }
    }
    Some((done, refused))
}

/// The consumers' client: a stream consumer whose group rebalances are logged and counted.
pub(crate) type GroupConsumer = StreamConsumer<GroupContext>;

/// Logs and counts partition assignments and revocations. A batch whose partitions were revoked
/// before its commit is redelivered to their new owner, which the idempotent stores absorb; the
/// log line and the counter explain the repeat.
pub(crate) struct GroupContext {
    group: String,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (event, partitions) = match rebalance {
            Rebalance::Assign(list) => ("assign", list.count()),
            Rebalance::Revoke(list) => ("revoke", list.count()),
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "consumer group rebalance failed");
                ("error", 0)
            }
        };
        if event != "error" {
            tracing::info!(group = %self.group, event, partitions, "consumer group rebalance");
        }
        metrics::counter!(REBALANCES_METRIC, "group" => self.group.clone(), "event" => event)
            .increment(1);
    }
}

/// A consumer subscribed to `topic` with manual offset commits, and an idempotent dead-letter
/// producer.
pub(crate) fn clients(
    brokers: &str,
    group_id: &str,
    topic: &str,
    session_timeout: Duration,
) -> Result<(Arc<GroupConsumer>, FutureProducer), KafkaError> {
    let mut config = ClientConfig::new();
    // Static membership: a member restarted under the same instance id (the pod name) takes its
    // partitions back at once, instead of waiting for its old session to time out.
    if let Some(instance) = group_instance_id(group_id) {
        config.set("group.instance.id", instance);
    }
    let consumer: GroupConsumer = config
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        // Offsets are committed explicitly, after the batch is stored.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group must not skip messages published before it first joined.
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            session_timeout.as_millis().to_string(),
        )
        .create_with_context(GroupContext {
            group: group_id.to_owned(),
        })?;
    for event in ["assign", "revoke", "error"] {
        metrics::counter!(REBALANCES_METRIC, "group" => group_id.to_owned(), "event" => event)
            .increment(0);
    }
    consumer.subscribe(&[topic])?;
    let dlq: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Bounds each dead-letter attempt (librdkafka's default is 5 min), so an unreachable
        // dead-letter topic is retried with backoff and shutdown is noticed between attempts.
        .set("message.timeout.ms", "10000")
        .create()?;
    Ok((Arc::new(consumer), dlq))
}

/// The static group member id: `KAFKA_GROUP_INSTANCE_ID`, else `POD_NAME` (set from the pod's
/// metadata in `deploy/`), suffixed with the group so that the two consumers of one process are
/// two members. `None` (dynamic membership) when neither is set.
fn group_instance_id(group_id: &str) -> Option<String> {
    ["KAFKA_GROUP_INSTANCE_ID", "POD_NAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .map(|base| format!("{}-{group_id}", base.trim()))
}

/// How a consumer gathers its batches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batching {
    pub(crate) max_size: usize,
    pub(crate) max_wait: Duration,
}

/// The consume loop both consumers share: gathers a batch, has `process` handle it, commits it
/// when done; until shutdown, after which the batch in hand is finished and committed. A batch
/// `process` abandons (shutdown while retrying) is left uncommitted for redelivery.
pub(crate) async fn consume<F: Future<Output = ()> + Send, P: ProcessBatch>(
    consumer: &Arc<GroupConsumer>,
    batching: Batching,
    shutdown: F,
    processor: &P,
) {
    let mut shutdown = Shutdown::new(shutdown);
    let group = group_name(consumer);
    metrics::gauge!(BATCH_IN_PROGRESS_METRIC, "group" => group.clone()).set(0.0);
    metrics::gauge!(LAST_BATCH_STORED_METRIC, "group" => group.clone()).set(unix_now());
    while !shutdown.fired {
        let batch = collect(
            consumer,
            batching.max_size,
            batching.max_wait,
            &mut shutdown,
        )
        .await;
        if batch.is_empty() {
            continue;
        }
        metrics::gauge!(BATCH_IN_PROGRESS_METRIC, "group" => group.clone()).set(unix_now());
        let outcome = keeping_membership(consumer, processor.process(&batch, &mut shutdown)).await;
        match outcome {
            Outcome::Done => {
                commit(consumer, &batch).await;
                metrics::gauge!(LAST_BATCH_STORED_METRIC, "group" => group.clone()).set(unix_now());
                metrics::gauge!(BATCH_IN_PROGRESS_METRIC, "group" => group.clone()).set(0.0);
            }
            Outcome::Abandoned => break,
        }
    }
    metrics::gauge!(BATCH_IN_PROGRESS_METRIC, "group" => group).set(0.0);
}

/// Longest a batch is processed before the consumer pauses its partitions and polls while it
/// waits; a healthy batch takes milliseconds.
const KEEPALIVE_AFTER: Duration = Duration::from_secs(1);

/// Runs `work` (one batch's processing) while keeping the consumer in its group. Once the work
/// takes longer than [`KEEPALIVE_AFTER`] (a store down, a dead-letter topic failing), every
/// assigned partition is paused and the consumer polls while it waits, so `max.poll.interval.ms`
/// never expires: the group does not hand the batch to another member that would write it a
/// second time. A message that arrives all the same (a partition assigned meanwhile) is sought
/// back and its partition paused, so it is read again after the batch.
pub(crate) async fn keeping_membership<T>(
    consumer: &GroupConsumer,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return out,
        () = tokio::time::sleep(KEEPALIVE_AFTER) => {}
    }
    if let Ok(assigned) = consumer.assignment()
        && let Err(e) = consumer.pause(&assigned)
    {
        tracing::warn!(error = %e, "could not pause partitions while a batch is retried");
    }
    let out = loop {
        tokio::select! {
            biased;
            out = &mut work => break out,
            received = consumer.recv() => match received {
                Ok(message) => {
                    let (topic, partition, offset) =
                        (message.topic().to_owned(), message.partition(), message.offset());
                    drop(message);
                    let mut one = TopicPartitionList::new();
                    one.add_partition(&topic, partition);
                    if let Err(e) = consumer.pause(&one) {
                        tracing::warn!(error = %e, "could not pause a partition");
                    }
                    if let Err(e) = consumer.seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(1)) {
                        count_error("receive");
                        tracing::warn!(error = %e, topic, partition, offset, "could not seek back a message read while paused; it is redelivered after a restart");
                    }
                }
                Err(e) => {
                    count_error("receive");
                    tracing::warn!(error = %e, "kafka consumer error");
                }
            },
        }
    };
    if let Ok(assigned) = consumer.assignment()
        && let Err(e) = consumer.resume(&assigned)
    {
        tracing::warn!(error = %e, "could not resume partitions");
    }
    out
}

/// The consumer's group id, for metric labels (two groups at most per process).
fn group_name(consumer: &GroupConsumer) -> String {
    consumer.context().group.clone()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What a consumer does with one batch.
pub(crate) trait ProcessBatch: Sync {
    /// Dead-letters what cannot be read and stores the rest, retrying until both succeeded;
    /// `Abandoned` when shutdown came while retrying.
    fn process<F: Future<Output = ()> + Send>(
        &self,
        batch: &[OwnedMessage],
        shutdown: &mut Shutdown<F>,
    ) -> impl Future<Output = Outcome> + Send;
}

/// An unreadable message, with the error type and text its dead letter carries.
pub(crate) type DeadLetter<'a> = (&'a OwnedMessage, &'static str, String);

/// Produces the dead letters until every one is acknowledged; `false` when shutdown came first.
pub(crate) async fn dead_letter_all<F: Future<Output = ()>>(
    producer: &FutureProducer,
    topic: &str,
    mut dead: Vec<DeadLetter<'_>>,
    mut backoff: Backoff,
    shutdown: &mut Shutdown<F>,
) -> bool {
    while !dead.is_empty() {
        let acked = dead_letter(producer, topic, &dead).await;
        let mut acked = acked.into_iter();
        dead.retain(|_| !acked.next().unwrap_or(false));
        if !dead.is_empty() && !backoff.wait(shutdown).await {
            return false;
        }
    }
    true
}

/// Waits for a first message, then gathers more until the size or time bound, or shutdown.
pub(crate) async fn collect<F: Future<Output = ()>>(
    consumer: &GroupConsumer,
    max_size: usize,
    max_wait: Duration,
    shutdown: &mut Shutdown<F>,
) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    let mut deadline = None;
    while batch.len() < max_size.max(1) {
        let wait = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = shutdown.requested() => break,
            () = wait => break,
            received = consumer.recv() => match received {
                Ok(message) => {
                    batch.push(message.detach());
                    deadline.get_or_insert_with(|| Instant::now() + max_wait);
                }
                Err(e) => {
                    // librdkafka retries by itself; this is reported for visibility only.
                    count_error("receive");
                    tracing::warn!(error = %e, "kafka consumer error");
                }
            },
        }
    }
    batch
}

/// Produces unreadable messages to the dead-letter topic; `true` per acknowledged one.
pub(crate) async fn dead_letter(
    producer: &FutureProducer,
    topic: &str,
    dead: &[DeadLetter<'_>],
) -> Vec<bool> {
    let mut acked = Vec::with_capacity(dead.len());
    for (message, kind, reason) in dead {
        let (partition, offset) = (
            message.partition().to_string(),
            message.offset().to_string(),
        );
        let headers = OwnedHeaders::new()
            .insert(header(DLQ_ERROR_TYPE_HEADER, kind))
            .insert(header(DLQ_REASON_HEADER, reason))
            .insert(header(DLQ_TOPIC_HEADER, message.topic()))
            .insert(header(DLQ_PARTITION_HEADER, &partition))
            .insert(header(DLQ_OFFSET_HEADER, &offset));
        // The original bytes are kept verbatim, whatever they are, so they can be replayed.
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        let ok = match producer.send(record, Timeout::Never).await {
            Ok(_) => true,
            Err((e, _)) => {
                count_error("dlq_produce");
                tracing::warn!(error = %e, "dead-letter produce failed");
                false
            }
        };
        acked.push(ok);
    }
    acked
}

/// Commits the offsets just past the batch, synchronously.
///
/// A failed commit is not retried: the next batch's commit covers it, and otherwise the batch
/// is redelivered, which the idempotent store absorbs.
pub(crate) async fn commit(consumer: &Arc<GroupConsumer>, batch: &[OwnedMessage]) {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for m in batch {
        let entry = next.entry((m.topic(), m.partition())).or_insert(0);
        *entry = (*entry).max(m.offset() + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        if let Err(e) = offsets.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            count_error("commit");
            tracing::warn!(error = %e, "invalid offset to commit");
            return;
        }
    }
    let consumer = consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync)).await;
    match committed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            count_error("commit");
            tracing::warn!(error = %e, "offset commit failed; the batch may be redelivered");
        }
        Err(e) => {
            count_error("commit");
            tracing::warn!(error = %e, "offset commit task failed");
        }
    }
}

/// Exponential backoff between retries, cut short by shutdown.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `first`, doubling up to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// Sleeps before the next attempt; `false` when shutdown was requested instead.
    pub(crate) async fn wait<F: Future<Output = ()>>(
        &mut self,
        shutdown: &mut Shutdown<F>,
    ) -> bool {
        if shutdown.fired {
            return false;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            () = shutdown.requested() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }
}

pub(crate) fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
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

/// The consumers' `error_type` label values.
const CONSUMER_ERROR_TYPES: [&str; 9] = [
    "receive",
    "malformed",
    "unsupported_version",
    "unsupported_op",
    "missing_payload",
    "rejected",
    "dlq_produce",
    "store",
    "commit",
];

/// Creates the consumers' series at zero, so the first error shows in rate() at once.
pub(crate) fn register_error_metrics() {
    for error_type in CONSUMER_ERROR_TYPES {
        metrics::counter!(CONSUMER_ERRORS_METRIC, "error_type" => error_type).increment(0);
    }
}

pub(crate) fn count_error(error_type: &'static str) {
    metrics::counter!(CONSUMER_ERRORS_METRIC, "error_type" => error_type).increment(1);
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
