//! The consume loop both consumers share (engagement events, catalog changes): a consumer group
//! member that gathers batches, has its [`ProcessBatch`] store them, hands what can never be
//! stored to the [`DeadLetterQueue`], and commits offsets only up to what is stored and
//! dead-lettered.
//!
//! Guarantees, whatever the store does:
//! - **At least once.** An offset is committed only after everything before it was stored or
//!   dead-lettered, so a crash replays, and the idempotent stores absorb the replay.
//! - **One writer per partition.** A batch retried for long (a store down) keeps the member in
//!   its group: its partitions are paused and it keeps polling, so `max.poll.interval.ms` never
//!   expires and the batch is never handed to a second member while the first still writes it.
//! - **No input stalls the group.** The store splits a refused batch until the culprit stands
//!   alone; the culprit goes to the dead-letter topic and the rest is stored.

use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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
/// librdkafka's default `max.poll.interval.ms`.
pub const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Counter of partition assignments, revocations and rebalance errors, by `group` and `event`.
pub const REBALANCES_METRIC: &str = "kafka_consumer_rebalances_total";
/// Gauge: Unix time when the batch in hand was received, by `group`; 0 while no batch is in hand.
/// A batch held for long means a store that is down.
pub const BATCH_IN_PROGRESS_METRIC: &str =
    "kafka_consumer_batch_in_progress_since_timestamp_seconds";
/// Gauge: Unix time the last batch was stored, by `group` (the start time before the first one).
pub const LAST_BATCH_STORED_METRIC: &str = "kafka_consumer_last_batch_stored_timestamp_seconds";
/// Gauge per assigned partition (`group`, `topic`, `partition`): messages between the group's
/// committed offset and the partition's high watermark, as the brokers report them.
pub const CONSUMER_LAG_METRIC: &str = "kafka_consumer_lag_messages";
/// Gauge per assigned partition: the group's committed offset. With the lag, it tells a
/// partition that no longer advances (a stuck fetch) from one that is merely behind.
pub const COMMITTED_OFFSET_METRIC: &str = "kafka_consumer_committed_offset";
/// How often the lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// Counter of consumer-side failures, labelled by `error_type`.
pub const CONSUMER_ERRORS_METRIC: &str = "kafka_consumer_errors_total";

/// Most dead letters pending before the loop waits for the dead-letter topic.
const MAX_PENDING_DEAD_LETTERS: usize = 10_000;
/// Longest a batch is processed before the consumer pauses its partitions and polls while it
/// waits; a healthy batch takes milliseconds.
const KEEPALIVE_AFTER: Duration = Duration::from_secs(1);
/// How often offsets held back by pending dead letters are committed while no batch arrives.
const COMMIT_TICK: Duration = Duration::from_secs(1);

/// What became of a batch.
pub(crate) enum Outcome {
    /// Stored: its offsets may be committed once these dead letters are acknowledged.
    Done(Vec<DeadLetter>),
    /// Shutdown came while retrying: nothing is committed, the batch will be redelivered.
    Abandoned,
}

/// What became of a batch in the consume loop.
enum Handled {
    Outcome(Outcome),
    /// A rebalance took (some of) its partitions while it was retried: it was given up,
    /// uncommitted, so only their new owner writes it.
    Revoked,
}

/// What a consumer does with one batch.
pub(crate) trait ProcessBatch: Sync {
    /// Stores what can be stored, retrying transient failures, and returns the rest as dead
    /// letters; `Abandoned` when shutdown came while retrying.
    fn process<F: Future<Output = ()> + Send>(
        &self,
        batch: &[OwnedMessage],
        shutdown: &mut Shutdown<F>,
    ) -> impl Future<Output = Outcome> + Send;

    /// Called after this member received partitions, before it processes their messages: waits
    /// until no write a previous owner may have started is still running in the store.
    fn fence(&self) -> impl Future<Output = Result<(), vrs_application::ports::PortError>> + Send {
        async { Ok(()) }
    }
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

/// The consumers' client: a stream consumer whose group rebalances are logged and counted.
pub(crate) type GroupConsumer = StreamConsumer<GroupContext>;

/// Logs and counts partition assignments and revocations. A batch whose partitions were revoked
/// before its commit is redelivered to their new owner, which the idempotent stores absorb; the
/// log line and the counter explain the repeat.
pub(crate) struct GroupContext {
    group: String,
    /// The partitions this member owns now, kept by the rebalance callbacks.
    owned: std::sync::Mutex<HashSet<(String, i32)>>,
    /// Counts the assignments this member received, so the loop knows when to fence.
    assignments: std::sync::atomic::AtomicU64,
    /// Counts the revocations, so the loop knows when a batch in hand lost its partitions.
    revocations: std::sync::atomic::AtomicU64,
    /// Counts the commits the broker refused, so the loop sends them again.
    commit_failures: std::sync::atomic::AtomicU64,
    /// Offsets commits must not pass, per partition: a message that could not be sought back
    /// after it was read during a pause. Cleared when the partition is revoked (its next owner
    /// reads from the committed offset, so the message is read again).
    holds: std::sync::Mutex<HashMap<(String, i32), i64>>,
}

impl GroupContext {
    fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            owned: std::sync::Mutex::default(),
            assignments: std::sync::atomic::AtomicU64::new(0),
            revocations: std::sync::atomic::AtomicU64::new(0),
            holds: std::sync::Mutex::default(),
            commit_failures: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn commit_failures(&self) -> u64 {
        self.commit_failures
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn hold(&self, topic: &str, partition: i32) -> Option<i64> {
        self.holds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    fn assignments(&self) -> u64 {
        self.assignments.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn revocations(&self) -> u64 {
        self.revocations.load(std::sync::atomic::Ordering::SeqCst)
    }
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

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut owned = self
            .owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match rebalance {
            Rebalance::Assign(list) => {
                // A partition paused while an earlier batch was retried must not stay paused
                // when it comes back.
                if let Err(e) = consumer.resume(list) {
                    tracing::warn!(group = %self.group, error = %e, "could not resume assigned partitions");
                }
                owned.extend(
                    list.elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition())),
                );
                self.assignments
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Rebalance::Revoke(list) => {
                let mut holds = self
                    .holds
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for e in list.elements() {
                    owned.remove(&(e.topic().to_owned(), e.partition()));
                    holds.remove(&(e.topic().to_owned(), e.partition()));
                }
                self.revocations
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Rebalance::Error(_) => {}
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            self.commit_failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            count_error("commit");
            tracing::warn!(group = %self.group, error = %e, "offset commit failed; messages may be redelivered");
        }
    }
}

/// Where a group member connects and how long the group waits for it.
pub(crate) struct Membership<'a> {
    pub(crate) brokers: &'a str,
    pub(crate) group_id: &'a str,
    pub(crate) topic: &'a str,
    pub(crate) session_timeout: Duration,
    pub(crate) max_poll_interval: Duration,
}

/// A consumer subscribed to the topic with manual offset commits, and an idempotent dead-letter
/// producer.
pub(crate) fn clients(
    member: &Membership<'_>,
) -> Result<(Arc<GroupConsumer>, FutureProducer), KafkaError> {
    let mut config = ClientConfig::new();
    // Static membership: a member restarted under the same instance id (the pod name) takes its
    // partitions back at once, instead of waiting for its old session to time out.
    if let Some(instance) = group_instance_id(member.group_id) {
        config.set("group.instance.id", instance);
    }
    let consumer: GroupConsumer = config
        .set("bootstrap.servers", member.brokers)
        .set("group.id", member.group_id)
        // Offsets are committed explicitly, after the batch is stored.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group must not skip messages published before it first joined.
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            member.session_timeout.as_millis().to_string(),
        )
        .set(
            "max.poll.interval.ms",
            member
                .max_poll_interval
                .max(member.session_timeout)
                .as_millis()
                .to_string(),
        )
        .create_with_context(GroupContext::new(member.group_id))?;
    for event in ["assign", "revoke", "error"] {
        metrics::counter!(REBALANCES_METRIC, "group" => member.group_id.to_owned(), "event" => event)
            .increment(0);
    }
    consumer.subscribe(&[member.topic])?;
    let dlq: FutureProducer = crate::dead_letter::producer_config(member.brokers).create()?;
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
    /// First pause before retrying the store's fence; doubles up to `retry_backoff_max`.
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
}

/// Offsets processed and committed, per `(topic, partition)`.
#[derive(Default)]
struct Progress {
    /// The offset just past the last processed message.
    processed: HashMap<(String, i32), i64>,
    /// What was last committed.
    committed: HashMap<(String, i32), i64>,
    /// The revocation count this progress belongs to.
    revocations: u64,
    /// The failed-commit count last seen.
    commit_failures: u64,
}

impl Progress {
    fn record(&mut self, batch: &[OwnedMessage]) {
        for m in batch {
            let next = self
                .processed
                .entry((m.topic().to_owned(), m.partition()))
                .or_insert(0);
            *next = (*next).max(m.offset() + 1);
        }
    }

    /// What may be committed now: per assigned partition, the processed offset, held back to the
    /// first pending dead letter; only what differs from the last commit.
    fn committable(
        &mut self,
        consumer: &GroupConsumer,
        dead_letters: &DeadLetterQueue,
    ) -> Vec<((String, i32), i64)> {
        // A revoked partition belongs to another member now: committing it would move that
        // member's offset back.
        let assigned: HashSet<(String, i32)> = consumer
            .assignment()
            .map(|list| {
                list.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect()
            })
            .unwrap_or_default();
        self.processed.retain(|tp, _| assigned.contains(tp));
        self.committed.retain(|tp, _| assigned.contains(tp));
        self.processed
            .iter()
            .map(|((topic, partition), next)| {
                let floor = [
                    dead_letters.floor(topic, *partition),
                    consumer.context().hold(topic, *partition),
                ]
                .into_iter()
                .flatten()
                .min();
                let allowed = floor.map_or(*next, |f| f.min(*next));
                ((topic.clone(), *partition), allowed)
            })
            .filter(|(tp, allowed)| self.committed.get(tp) != Some(allowed))
            .collect()
    }

    /// Whether some processed offset is not committed yet.
    fn behind(&self) -> bool {
        self.processed
            .iter()
            .any(|(tp, next)| self.committed.get(tp) != Some(next))
    }
}

/// The consume loop: gathers a batch, has `process` handle it, hands its dead letters over, and
/// commits what is stored and dead-lettered; until shutdown, after which the batch in hand is
/// finished and committed. A batch `process` abandons (shutdown while retrying) is left
/// uncommitted for redelivery.
pub(crate) async fn consume<F: Future<Output = ()> + Send, P: ProcessBatch>(
    consumer: &Arc<GroupConsumer>,
    batching: Batching,
    dead_letters: &DeadLetterQueue,
    shutdown: F,
    processor: &P,
) {
    let mut shutdown = Shutdown::new(shutdown);
    let group = consumer.context().group.clone();
    let mut progress = Progress::default();
    let mut fenced_for = 0;
    let lag = tokio::spawn(report_lag(Arc::downgrade(consumer), group.clone()));
    metrics::gauge!(BATCH_IN_PROGRESS_METRIC, "group" => group.clone()).set(0.0);
    metrics::gauge!(LAST_BATCH_STORED_METRIC, "group" => group.clone()).set(unix_now());
    while !shutdown.fired {
        if dead_letters.len() > MAX_PENDING_DEAD_LETTERS {
            // Back-pressure: the dead-letter topic has been failing for a long while.
            let drained = keeping_membership(consumer, async {
                while dead_letters.len() > MAX_PENDING_DEAD_LETTERS {
                    tokio::select! {
                        () = shutdown.requested() => return false,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                true
            })
            .await;
            if !drained {
                break;
            }
        }
        // After a revocation every partition's progress starts over from what its (new or same)
        // owner reads; and a failed commit is sent again.
        let context = consumer.context();
        if context.revocations() != progress.revocations {
            progress = Progress {
                revocations: context.revocations(),
                ..Progress::default()
            };
        }
        if context.commit_failures() != progress.commit_failures {
            progress.commit_failures = context.commit_failures();
            progress.committed.clear();
        }
        retry_holds(consumer, &mut progress);
        let tick = progress.behind().then_some(COMMIT_TICK);
        // A revocation from here on means the batch may belong to another member by now.
        let revocations_before = consumer.context().revocations();
        let batch = collect(consumer, batching, tick, &mut shutdown).await;
        if !batch.is_empty() {
            metrics::gauge!(BATCH_IN_PROGRESS_METRIC, "group" => group.clone()).set(unix_now());
            let assignments = consumer.context().assignments();
            if assignments != fenced_for {
                if !keeping_membership(consumer, fence(processor, &batching, &mut shutdown)).await {
                    break;
                }
                fenced_for = assignments;
            }
            let handled = handle(
                consumer,
                revocations_before,
                processor.process(&batch, &mut shutdown),
            )
            .await;
            match handled {
                Handled::Revoked => {
                    tracing::info!(
                        group = %group,
                        "a rebalance took partitions of the batch in hand; their new owner stores it"
                    );
                    rewind_owned(consumer, &batch);
                    metrics::gauge!(BATCH_IN_PROGRESS_METRIC, "group" => group.clone()).set(0.0);
                }
                Handled::Outcome(Outcome::Done(dead)) => {
                    dead_letters.push(dead);
                    progress.record(&batch);
                    metrics::gauge!(LAST_BATCH_STORED_METRIC, "group" => group.clone())
                        .set(unix_now());
                    metrics::gauge!(BATCH_IN_PROGRESS_METRIC, "group" => group.clone()).set(0.0);
                }
                Handled::Outcome(Outcome::Abandoned) => break,
            }
        }
        commit(consumer, &mut progress, dead_letters, CommitMode::Async).await;
    }
    commit(consumer, &mut progress, dead_letters, CommitMode::Sync).await;
    metrics::gauge!(BATCH_IN_PROGRESS_METRIC, "group" => group).set(0.0);
    lag.abort();
}

/// Measures, every [`LAG_INTERVAL`], each assigned partition's committed offset and its lag
/// behind the high watermark, asking the brokers (not the consumer's own fetch state, which a
/// stalled fetch would leave stale). Partitions no longer assigned report a lag of 0.
async fn report_lag(consumer: std::sync::Weak<GroupConsumer>, group: String) {
    let mut reported: HashSet<(String, i32)> = HashSet::new();
    loop {
        tokio::time::sleep(LAG_INTERVAL).await;
        let Some(c) = consumer.upgrade() else {
            return;
        };
        let measured = tokio::task::spawn_blocking(move || {
            let assigned = c.assignment().ok()?;
            if assigned.count() == 0 {
                return Some(Vec::new());
            }
            let committed = c.committed_offsets(assigned, Duration::from_secs(5)).ok()?;
            let mut out = Vec::new();
            for e in committed.elements() {
                let (topic, partition) = (e.topic().to_owned(), e.partition());
                let Ok((low, high)) = c.fetch_watermarks(&topic, partition, Duration::from_secs(5))
                else {
                    continue;
                };
                let at = match e.offset() {
                    Offset::Offset(at) => at,
                    _ => low,
                };
                out.push((topic, partition, at, (high - at).max(0)));
            }
            Some(out)
        })
        .await
        .ok()
        .flatten();
        let Some(measured) = measured else {
            continue;
        };
        let now: HashSet<(String, i32)> = measured
            .iter()
            .map(|(t, p, _, _)| (t.clone(), *p))
            .collect();
        for (topic, partition) in reported.difference(&now) {
            metrics::gauge!(CONSUMER_LAG_METRIC, "group" => group.clone(), "topic" => topic.clone(),
                "partition" => partition.to_string())
            .set(0.0);
        }
        for (topic, partition, at, lag) in measured {
            let labels = [
                ("group", group.clone()),
                ("topic", topic),
                ("partition", partition.to_string()),
            ];
            metrics::gauge!(CONSUMER_LAG_METRIC, &labels).set(lag as f64);
            metrics::gauge!(COMMITTED_OFFSET_METRIC, &labels).set(at as f64);
        }
        reported.extend(now);
    }
}

/// Fences the store for newly assigned partitions, retrying with backoff; `false` when shutdown
/// came first.
async fn fence<P: ProcessBatch, F: Future<Output = ()>>(
    processor: &P,
    batching: &Batching,
    shutdown: &mut Shutdown<F>,
) -> bool {
    let mut backoff = Backoff::new(batching.retry_backoff, batching.retry_backoff_max);
    loop {
        match processor.fence().await {
            Ok(()) => return true,
            Err(e) => {
                count_error("store");
                tracing::warn!(error = %e, "waiting for a previous owner's writes failed; retrying");
                if !backoff.wait(shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// Processes a batch while keeping the membership (see [`keeping_membership`]); gives the batch
/// up as soon as a rebalance revokes partitions (an eager rebalance revokes them all), so two
/// members never write it at once.
async fn handle(
    consumer: &GroupConsumer,
    revocations_before: u64,
    work: impl Future<Output = Outcome>,
) -> Handled {
    let context = consumer.context();
    // Checked before the work on every poll (and at least every 50 ms): once a revocation was
    // seen, the work is never polled again, so no insert starts after it.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let revoked = std::future::poll_fn(|cx| {
        if context.revocations() != revocations_before {
            return std::task::Poll::Ready(());
        }
        while tick.poll_tick(cx).is_ready() {}
        std::task::Poll::Pending
    });
    let work = async {
        tokio::select! {
            biased;
            () = revoked => Handled::Revoked,
            outcome = work => Handled::Outcome(outcome),
        }
    };
    keeping_membership(consumer, work).await
}

/// Rewinds the partitions of a given-up batch that this member still owns to the batch's first
/// message of each, so nothing of it is skipped.
fn rewind_owned(consumer: &GroupConsumer, batch: &[OwnedMessage]) {
    let mut first: HashMap<(String, i32), i64> = HashMap::new();
    for m in batch {
        let at = first
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert(m.offset());
        *at = (*at).min(m.offset());
    }
    let context = consumer.context();
    for ((topic, partition), offset) in first {
        let owned = context
            .owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&(topic.clone(), partition));
        if owned
            && let Err(e) = consumer.seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(1),
            )
        {
            tracing::warn!(error = %e, topic, partition, offset, "could not rewind a partition");
            hold(consumer, &topic, partition, offset);
        }
    }
}

/// Keeps commits of `partition` below `offset` until that message is read again.
fn hold(consumer: &GroupConsumer, topic: &str, partition: i32, offset: i64) {
    let mut holds = consumer
        .context()
        .holds
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let at = holds.entry((topic.to_owned(), partition)).or_insert(offset);
    *at = (*at).min(offset);
}

/// Tries again to rewind every held partition; on success its progress restarts at the held
/// offset, so commits advance only as the messages are stored again.
fn retry_holds(consumer: &GroupConsumer, progress: &mut Progress) {
    let holds: Vec<((String, i32), i64)> = consumer
        .context()
        .holds
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    for ((topic, partition), offset) in holds {
        if consumer
            .seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(1),
            )
            .is_ok()
        {
            progress
                .processed
                .insert((topic.clone(), partition), offset);
            consumer
                .context()
                .holds
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&(topic, partition));
        }
    }
}

/// Runs `work` (one batch's processing) while keeping the consumer in its group. Once the work
/// takes longer than [`KEEPALIVE_AFTER`] (a store down), every assigned partition is paused and
/// the consumer polls while it waits, so `max.poll.interval.ms` never expires: the group does
/// not hand the batch to another member that would write it a second time. A message that
/// arrives all the same (a partition assigned meanwhile) is sought back and its partition
/// paused, so it is read again after the batch.
pub(crate) async fn keeping_membership<T>(
    consumer: &GroupConsumer,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return out,
        () = tokio::time::sleep(KEEPALIVE_AFTER) => {}
    }
    if let Ok(assigned) = consumer.assignment() {
        tracing::info!(
            partitions = assigned.count(),
            "batch still in hand after {KEEPALIVE_AFTER:?}; pausing the partitions and polling"
        );
        if let Err(e) = consumer.pause(&assigned) {
            tracing::warn!(error = %e, "could not pause partitions while a batch is retried");
        }
    }
    let out = loop {
        tokio::select! {
            // The consumer first: rebalance callbacks run in its poll, so the work sees a
            // revocation before it takes another step.
            biased;
            received = consumer.recv() => match received {
                Ok(message) => {
                    let (topic, partition, offset) =
                        (message.topic().to_owned(), message.partition(), message.offset());
                    drop(message);
                    seek_back(consumer, &topic, partition, offset);
                }
                Err(e) => {
                    count_error("receive");
                    tracing::warn!(error = %e, "kafka consumer error");
                }
            },
            out = &mut work => break out,
        }
    };
    if let Ok(assigned) = consumer.assignment()
        && let Err(e) = consumer.resume(&assigned)
    {
        tracing::warn!(error = %e, "could not resume partitions");
    }
    out
}

/// Pauses a partition and rewinds it to `offset`, so that message is read again on resume.
fn seek_back(consumer: &GroupConsumer, topic: &str, partition: i32, offset: i64) {
    tracing::info!(
        topic,
        partition,
        offset,
        "a message read while paused; rewinding to read it after the batch"
    );
    let mut one = TopicPartitionList::new();
    one.add_partition(topic, partition);
    if let Err(e) = consumer.pause(&one) {
        tracing::warn!(error = %e, "could not pause a partition");
    }
    if let Err(e) = consumer.seek(
        topic,
        partition,
        Offset::Offset(offset),
        Duration::from_secs(1),
    ) {
        count_error("receive");
        tracing::warn!(
            error = %e, topic, partition, offset,
            "could not seek back a message read while paused; commits stay below it until it is read again"
        );
        hold(consumer, topic, partition, offset);
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Waits for a first message, then gathers more until the size or time bound, or shutdown. With
/// `idle`, returns empty once that long passed without a message.
async fn collect<F: Future<Output = ()>>(
    consumer: &GroupConsumer,
    batching: Batching,
    idle: Option<Duration>,
    shutdown: &mut Shutdown<F>,
) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    let mut deadline = idle.map(|d| Instant::now() + d);
    while batch.len() < batching.max_size.max(1) {
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
                    if batch.is_empty() {
                        deadline = Some(Instant::now() + batching.max_wait);
                    }
                    batch.push(message.detach());
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

/// Commits what [`Progress::committable`] allows: asynchronously while consuming, synchronously
/// on the way out.
///
/// A failed commit is not retried: the next commit covers it, and otherwise the messages are
/// redelivered, which the idempotent stores absorb.
async fn commit(
    consumer: &Arc<GroupConsumer>,
    progress: &mut Progress,
    dead_letters: &DeadLetterQueue,
    mode: CommitMode,
) {
    let offsets = progress.committable(consumer, dead_letters);
    if offsets.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &offsets {
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            count_error("commit");
            tracing::warn!(error = %e, "invalid offset to commit");
            return;
        }
    }
    if let CommitMode::Async = mode {
        // The broker's verdict comes to GroupContext::commit_callback; a failed commit is covered
        // by the next one or, at worst, replays (the stores are idempotent).
        match consumer.commit(&list, CommitMode::Async) {
            Ok(()) => progress.committed.extend(offsets),
            Err(e) => {
                count_error("commit");
                tracing::warn!(error = %e, "offset commit failed; messages may be redelivered");
            }
        }
        return;
    }
    let client = consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || client.commit(&list, CommitMode::Sync)).await;
    match committed {
        Ok(Ok(())) => progress.committed.extend(offsets),
        Ok(Err(e)) => {
            count_error("commit");
            tracing::warn!(error = %e, "offset commit failed; messages may be redelivered");
        }
        Err(e) => {
            count_error("commit");
            tracing::warn!(error = %e, "offset commit task failed");
        }
    }
}

/// Stores the items `0..len` with `attempt` (given a range of them), retrying transient
/// failures with backoff. When the store refuses a part for its content (`PortError::Rejected`),
/// that part is split in halves until each culprit stands alone: the culprits come back as
/// `(index, reason)`, everything else is stored. `None` when shutdown came while retrying.
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

    /// The pause before the next attempt; doubles the one after.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// Sleeps before the next attempt; `false` when shutdown was requested instead.
    pub(crate) async fn wait<F: Future<Output = ()>>(
        &mut self,
        shutdown: &mut Shutdown<F>,
    ) -> bool {
        if shutdown.fired {
            return false;
        }
        let pause = self.next_pause();
        tokio::select! {
            () = shutdown.requested() => false,
            () = tokio::time::sleep(pause) => true,
        }
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
