//! Dead letters: messages that can never be stored, moved to a `.dlq` topic with the reason in
//! headers, by a background task that retries with backoff.
//!
//! The consume loop never waits for the dead-letter topic: it hands the dead letters over and
//! goes on storing later messages of every partition. Until a dead letter is acknowledged, its
//! partition's committed offset stays at the dead letter (see [`DeadLetterQueue::floor`]): after a
//! crash the group resumes there, stores the later messages again (the stores are idempotent) and
//! dead-letters the message again. A dead-letter topic that keeps failing therefore delays commits,
//! never storage, and is counted (`kafka_consumer_errors_total{error_type="dlq_produce"}`) and
//! gauged (`kafka_consumer_dead_letters_pending`).

use crate::group::{Backoff, count_error};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// Dead-letter header naming why the message was refused (`malformed`, `unsupported_version`,
/// `unsupported_op`, `missing_payload`, or `rejected` when the store refused a readable message).
pub const DLQ_ERROR_TYPE_HEADER: &str = "dlq.error_type";
/// Dead-letter header with the decoding error's or the store's text.
pub const DLQ_REASON_HEADER: &str = "dlq.reason";
/// Dead-letter header with the source topic.
pub const DLQ_TOPIC_HEADER: &str = "dlq.topic";
/// Dead-letter header with the source partition (decimal).
pub const DLQ_PARTITION_HEADER: &str = "dlq.partition";
/// Dead-letter header with the source offset (decimal).
pub const DLQ_OFFSET_HEADER: &str = "dlq.offset";
/// Gauge: dead letters handed over but not yet acknowledged by the dead-letter topic, by `group`.
pub const DEAD_LETTERS_PENDING_METRIC: &str = "kafka_consumer_dead_letters_pending";

/// The dead-letter producer's configuration: idempotent, every attempt bounded (librdkafka's
/// default is 5 min), so an unreachable dead-letter topic is retried with backoff.
pub(crate) fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "10000");
    config
}

/// A message to move to the dead-letter topic, with why.
#[derive(Clone, Debug)]
pub(crate) struct DeadLetter {
    pub(crate) message: OwnedMessage,
    /// The `dlq.error_type` header (a bounded set of values).
    pub(crate) kind: &'static str,
    /// The `dlq.reason` header.
    pub(crate) reason: String,
}

impl DeadLetter {
    pub(crate) fn new(message: &OwnedMessage, kind: &'static str, reason: String) -> Self {
        Self {
            message: message.clone(),
            kind,
            reason,
        }
    }

    fn position(&self) -> ((String, i32), i64) {
        (
            (self.message.topic().to_owned(), self.message.partition()),
            self.message.offset(),
        )
    }
}

/// Source offsets of the dead letters not yet acknowledged, per `(topic, partition)`.
type Pending = Arc<Mutex<HashMap<(String, i32), BTreeSet<i64>>>>;

/// Hands dead letters to a background producer task; knows which are still pending.
pub(crate) struct DeadLetterQueue {
    sender: mpsc::UnboundedSender<DeadLetter>,
    pending: Pending,
    group: String,
}

impl DeadLetterQueue {
    /// Spawns the task producing to `topic`; it stops once the queue is dropped (what it still
    /// holds then is redelivered to the group, since its offsets were never committed).
    pub(crate) fn start(
        producer: FutureProducer,
        config: ClientConfig,
        topic: String,
        group: String,
        backoff: (Duration, Duration),
    ) -> Self {
        let pending: Pending = Arc::default();
        let (sender, receiver) = mpsc::unbounded_channel();
        metrics::gauge!(DEAD_LETTERS_PENDING_METRIC, "group" => group.clone()).set(0.0);
        tokio::spawn(produce_loop(
            producer,
            config,
            topic,
            group.clone(),
            backoff,
            receiver,
            pending.clone(),
        ));
        Self {
            sender,
            pending,
            group,
        }
    }

    /// Queues dead letters for production; never waits.
    pub(crate) fn push(&self, dead: Vec<DeadLetter>) {
        if dead.is_empty() {
            return;
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for d in &dead {
                let (partition, offset) = d.position();
                pending.entry(partition).or_default().insert(offset);
            }
        }
        self.gauge();
        for d in dead {
            if self.sender.send(d).is_err() {
                tracing::error!("the dead-letter task stopped; the message is redelivered later");
            }
        }
    }

    /// The lowest offset of `partition` whose dead letter is still pending: commits must not go
    /// past it.
    pub(crate) fn floor(&self, topic: &str, partition: i32) -> Option<i64> {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .get(&(topic.to_owned(), partition))
            .and_then(|offsets| offsets.first().copied())
    }

    /// How many dead letters are pending.
    pub(crate) fn len(&self) -> usize {
        count(&self.pending)
    }

    fn gauge(&self) {
        metrics::gauge!(DEAD_LETTERS_PENDING_METRIC, "group" => self.group.clone())
            .set(self.len() as f64);
    }
}

fn count(pending: &Pending) -> usize {
    pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .map(BTreeSet::len)
        .sum()
}

/// Produces what arrives, retrying the failures with backoff, until the queue is dropped.
async fn produce_loop(
    mut producer: FutureProducer,
    config: ClientConfig,
    topic: String,
    group: String,
    (first, max): (Duration, Duration),
    mut receiver: mpsc::UnboundedReceiver<DeadLetter>,
    pending: Pending,
) {
    let mut waiting: Vec<DeadLetter> = Vec::new();
    let mut backoff = Backoff::new(first, max);
    loop {
        if waiting.is_empty() {
            match receiver.recv().await {
                Some(d) => waiting.push(d),
                None => return,
            }
        }
        while let Ok(d) = receiver.try_recv() {
            waiting.push(d);
        }
        let acked = produce(&producer, &topic, &waiting).await;
        let mut done = Vec::new();
        let mut flags = acked.into_iter();
        waiting.retain(|d| {
            let ok = flags.next().unwrap_or(false);
            if ok {
                done.push(d.position());
            }
            !ok
        });
        {
            let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (partition, offset) in done {
                if let Some(offsets) = pending.get_mut(&partition) {
                    offsets.remove(&offset);
                    if offsets.is_empty() {
                        pending.remove(&partition);
                    }
                }
            }
        }
        metrics::gauge!(DEAD_LETTERS_PENDING_METRIC, "group" => group.clone())
            .set(count(&pending) as f64);
        if waiting.is_empty() {
            backoff = Backoff::new(first, max);
            continue;
        }
        // After a fatal error (an idempotent producer that lost its sequence, an authorization
        // failure) every later send fails: start over with a fresh producer.
        if let Some((code, reason)) = producer.client().fatal_error() {
            tracing::error!(?code, %reason, "fatal dead-letter producer error; building a new one");
            match config.create::<FutureProducer>() {
                Ok(fresh) => producer = fresh,
                Err(e) => tracing::error!(error = %e, "could not build a new dead-letter producer"),
            }
        }
        // Wait before the next attempt; stop if the queue is dropped meanwhile.
        let pause = backoff.next_pause();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            received = receiver.recv() => match received {
                Some(d) => waiting.push(d),
                None => return,
            },
        }
    }
}

/// Produces every dead letter and waits for the verdicts; `true` per acknowledged one.
async fn produce(producer: &FutureProducer, topic: &str, dead: &[DeadLetter]) -> Vec<bool> {
    let deliveries: Vec<_> = dead
        .iter()
        .map(|d| {
            let message = &d.message;
            let (partition, offset) = (
                message.partition().to_string(),
                message.offset().to_string(),
            );
            let headers = OwnedHeaders::new()
                .insert(header(DLQ_ERROR_TYPE_HEADER, d.kind))
                .insert(header(DLQ_REASON_HEADER, &d.reason))
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
            producer.send_result(record).map_err(|(e, _)| e)
        })
        .collect();
    let mut acked = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let ok = match delivery {
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => true,
                Ok(Err((e, _))) => {
                    tracing::warn!(error = %e, "dead-letter produce failed");
                    false
                }
                Err(_canceled) => false,
            },
            Err(e) => {
                tracing::warn!(error = %e, "dead-letter produce failed");
                false
            }
        };
        if !ok {
            count_error("dlq_produce");
        }
        acked.push(ok);
    }
    acked
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
