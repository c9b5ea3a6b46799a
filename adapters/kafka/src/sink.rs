//! The Kafka [`EventSink`]: acknowledged by Kafka or fsynced to the spool before `publish` says Ok.

use crate::config::KafkaConfig;
use crate::health::EventSpoolProbe;
use crate::message::{EngagementMessage, ExposureMessage};
use crate::replay;
use crate::spool::{EventSpool, SpoolError, SpoolOptions, SpoolRecord, key_hash};
use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use vrs_application::ports::{EventSink, PortError, PublishOutcome};
use vrs_domain::{EngagementEvent, Exposure};

/// Counter of failed sends and deliveries, labelled by `error_type`.
pub const PRODUCER_ERRORS_METRIC: &str = "kafka_producer_errors_total";

/// Slack over the delivery timeout before a delivery is given up on without librdkafka's verdict:
/// librdkafka scans for timed-out messages about once a second.
const DELIVERY_SLACK: Duration = Duration::from_millis(1500);

/// Why the sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// The producer configuration was refused.
    #[error("kafka producer: {0}")]
    Kafka(#[from] KafkaError),
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// State shared by the sink, its replayer and its health probe.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) spool: EventSpool,
    /// Whether the last delivery attempt or broker check succeeded.
    pub(crate) broker_reachable: AtomicBool,
    pub(crate) partitions: Partitions,
}

/// What the sink knows of the topic's partitions: how many there are, and which failed lately.
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    /// The partition count; 0 while unknown.
    count: AtomicI32,
    /// Partitions whose last delivery failed, with when the replayer may try them again. `None`
    /// stands for every partition (a failure before any partition was known).
    stuck: Mutex<HashMap<Option<i32>, Instant>>,
}

impl Partitions {
    pub(crate) fn set_count(&self, count: i32) {
        self.count.store(count.max(0), Ordering::Relaxed);
    }

    /// The partition of a key hash (Kafka's default partitioner), when the count is known.
    pub(crate) fn of(&self, key_hash: u32) -> Option<i32> {
        let count = self.count.load(Ordering::Relaxed);
        (count > 0).then(|| (key_hash % count as u32) as i32)
    }

    fn stuck(&self) -> std::sync::MutexGuard<'_, HashMap<Option<i32>, Instant>> {
        self.stuck.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the key's partition (or every partition) failed and has not delivered since. A
    /// failure nobody tried again for [`FAILING_EXPIRES`] past its retry time (the replayer had
    /// none of its records to probe with) no longer counts: the next event probes it directly.
    pub(crate) fn is_failing(&self, key_hash: u32) -> bool {
        let stuck = self.stuck();
        if stuck.is_empty() {
            return false;
        }
        let now = Instant::now();
        let current = |p: &Option<i32>| {
            stuck
                .get(p)
                .is_some_and(|retry_at| now < *retry_at + FAILING_EXPIRES)
        };
        current(&None) || current(&self.of(key_hash))
    }

    /// Every failing partition with the time from which it may be tried again.
    pub(crate) fn failing(&self) -> HashMap<Option<i32>, Instant> {
        self.stuck().clone()
    }

    /// Records deliveries: a failed partition backs off for `backoff`, a delivering one (and, once
    /// anything was delivered, the "every partition" entry) is cleared.
    pub(crate) fn record(&self, outcomes: &[Delivered], backoff: Duration) {
        if outcomes.is_empty() {
            return;
        }
        let retry_at = Instant::now() + backoff;
        let mut stuck = self.stuck();
        for o in outcomes {
            if o.ok {
                stuck.remove(&o.partition);
                stuck.remove(&None);
            }
        }
        for o in outcomes.iter().filter(|o| !o.ok) {
            stuck.insert(o.partition, retry_at);
        }
        metrics::gauge!(FAILING_PARTITIONS_METRIC).set(stuck.len() as f64);
    }
}

/// How long past its retry time a failure still routes new events to the spool.
const FAILING_EXPIRES: Duration = Duration::from_secs(10);

/// Gauge of the partitions whose deliveries fail (1 for "all" before any partition is known).
pub const FAILING_PARTITIONS_METRIC: &str = "kafka_producer_failing_partitions";

/// Kafka's verdict on one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) ok: bool,
    /// Where it went or would have gone, when known.
    pub(crate) partition: Option<i32>,
}

pub(crate) struct Inner {
    /// Replaced by a fresh one after a fatal error (see [`Inner::renew_if_fatal`]).
    producer: std::sync::RwLock<FutureProducer>,
    /// What the producer is built from, for renewals.
    producer_config: ClientConfig,
    pub(crate) topic: String,
    pub(crate) delivery_timeout: Duration,
    pub(crate) replay_interval: Duration,
    pub(crate) shared: Arc<Shared>,
}

/// Publishes engagement events to Kafka, spooling what Kafka does not acknowledge in time.
#[derive(Clone)]
pub struct KafkaEventSink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaEventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaEventSink")
            .field("topic", &self.inner.topic)
            .field("spooled", &self.inner.shared.spool.len())
            .finish_non_exhaustive()
    }
}

impl KafkaEventSink {
    /// Opens the spool, creates the producer and spawns the replayer; never waits for the broker.
    ///
    /// Must be called within a Tokio runtime. The replayer stops once every clone is dropped.
    pub fn start(config: KafkaConfig) -> Result<Self, KafkaSinkError> {
        // Every series exists from the start, so the first error shows in rate() at once.
        for error_type in [
            "timeout",
            "queue_full",
            "transport",
            "broker",
            "client",
            "canceled",
            "fatal",
        ] {
            metrics::counter!(PRODUCER_ERRORS_METRIC, "error_type" => error_type).increment(0);
        }
        metrics::gauge!(FAILING_PARTITIONS_METRIC).set(0.0);
        let spool = EventSpool::open_with(
            &config.spool_dir,
            SpoolOptions {
                max_bytes: config.spool_max_bytes,
                segment_bytes: config.spool_segment_bytes,
            },
        )?;
        let timeout_ms = config.delivery_timeout.as_millis().max(1).to_string();
        let mut producer_config = ClientConfig::new();
        producer_config
            .set("bootstrap.servers", &config.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", &timeout_ms)
            .set("request.timeout.ms", &timeout_ms)
            .set("linger.ms", "5")
            // Java's default partitioner, which the spool's replay scheduling mirrors.
            .set("partitioner", "murmur2_random")
            // The replayer should notice a returning broker within about a second, not the
            // default 10 s reconnect backoff.
            .set("reconnect.backoff.max.ms", "1000");
        let producer: FutureProducer = producer_config.create()?;
        let spooled = spool.len();
        if spooled > 0 {
            tracing::info!(
                spooled,
                "event spool holds events from an earlier run; replaying"
            );
        }
        let inner = Arc::new(Inner {
            producer: std::sync::RwLock::new(producer),
            producer_config,
            topic: config.topic,
            delivery_timeout: config.delivery_timeout,
            replay_interval: config.replay_interval,
            shared: Arc::new(Shared {
                spool,
                // Unknown until the first delivery or the replayer's first broker check.
                broker_reachable: AtomicBool::new(false),
                partitions: Partitions::default(),
            }),
        });
        tokio::spawn(replay::run(Arc::downgrade(&inner), config.replay_interval));
        Ok(Self { inner })
    }

    /// The `event_spool` health probe of this sink.
    pub fn health_probe(&self) -> EventSpoolProbe {
        EventSpoolProbe::new(self.inner.shared.clone())
    }

    /// Number of events waiting in the spool.
    pub fn spooled(&self) -> usize {
        self.inner.shared.spool.len()
    }

    /// Waits until the replayer has delivered every spooled event, or `timeout` passed; returns
    /// how many still wait (they stay in the spool for the next process on its directory).
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.spooled();
            // Also until the drained segments are deleted, so the next process replays nothing.
            let done = left == 0 && self.inner.shared.spool.segments() == 0;
            if done || Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Inner {
    /// The current producer (a cheap handle).
    pub(crate) fn producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// After a fatal error (an idempotent producer that lost its sequence, an authorization
    /// failure) librdkafka fails every later send; the producer is then replaced by a fresh one,
    /// counted under `error_type="fatal"`. Events not acknowledged meanwhile are in the spool.
    pub(crate) fn renew_if_fatal(&self) {
        let current = self.producer();
        let Some((code, reason)) = current.client().fatal_error() else {
            return;
        };
        metrics::counter!(PRODUCER_ERRORS_METRIC, "error_type" => "fatal").increment(1);
        tracing::error!(?code, %reason, "fatal Kafka producer error; building a new producer");
        match self.producer_config.create::<FutureProducer>() {
            Ok(fresh) => match self.producer.write() {
                Ok(mut p) => *p = fresh,
                Err(poisoned) => *poisoned.into_inner() = fresh,
            },
            Err(e) => tracing::error!(error = %e, "could not build a new Kafka producer"),
        }
    }

    /// Sends every record and waits for Kafka's verdicts; `true` per acknowledged record.
    ///
    /// Each message carries the W3C trace context of this call's producer span in its headers.
    #[tracing::instrument(skip_all, fields(
        otel.name = %format_args!("send {}", self.topic),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = %self.topic,
        messaging.batch.message_count = records.len(),
    ))]
    pub(crate) async fn send_all(&self, records: &[SpoolRecord]) -> Vec<Delivered> {
        let deadline = Instant::now() + self.delivery_timeout + DELIVERY_SLACK;
        let trace_headers = crate::propagation::headers(&tracing::Span::current());
        let producer = self.producer();
        let pending: Vec<Option<DeliveryFuture>> = records
            .iter()
            .map(|r| {
                let mut record = FutureRecord::to(&self.topic).key(&r.key).payload(&r.value);
                if let Some(headers) = &trace_headers {
                    record = record.headers(headers.clone());
                }
                match producer.send_result(record) {
                    Ok(delivery) => Some(delivery),
                    Err((e, _)) => {
                        count_error(&e);
                        None
                    }
                }
            })
            .collect();
        let mut acked = Vec::with_capacity(pending.len());
        for (record, delivery) in records.iter().zip(pending) {
            let computed = self.shared.partitions.of(key_hash(&record.key));
            let failed = Delivered {
                ok: false,
                partition: computed,
            };
            let outcome = match delivery {
                None => failed,
                Some(delivery) => match tokio::time::timeout_at(deadline, delivery).await {
                    Ok(Ok(Ok(done))) => Delivered {
                        ok: true,
                        partition: Some(done.partition),
                    },
                    Ok(Ok(Err((e, message)))) => {
                        count_error(&e);
                        use rdkafka::Message;
                        let partition = message.partition();
                        Delivered {
                            ok: false,
                            partition: if partition >= 0 {
                                Some(partition)
                            } else {
                                computed
                            },
                        }
                    }
                    Ok(Err(_canceled)) => {
                        metrics::counter!(PRODUCER_ERRORS_METRIC, "error_type" => "canceled")
                            .increment(1);
                        failed
                    }
                    Err(_elapsed) => {
                        metrics::counter!(PRODUCER_ERRORS_METRIC, "error_type" => "timeout")
                            .increment(1);
                        failed
                    }
                },
            };
            acked.push(outcome);
        }
        self.shared.partitions.record(&acked, self.retry_backoff());
        if !acked.is_empty() {
            let all = acked.iter().all(|d| d.ok);
            let any = acked.iter().any(|d| d.ok);
            if all || !any {
                self.shared.broker_reachable.store(all, Ordering::Relaxed);
            }
            if !all {
                tracing::Span::current().record("otel.status_code", "ERROR");
                self.renew_if_fatal();
            }
        }
        acked
    }

    /// How long a failed partition is left alone before the replayer tries it again.
    pub(crate) fn retry_backoff(&self) -> Duration {
        self.replay_interval.max(Duration::from_secs(1))
    }

    /// Appends records to the spool on a blocking thread.
    pub(crate) async fn spool(&self, records: Vec<SpoolRecord>) -> Result<(), PortError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.spool.append(&records))
            .await
            .map_err(|e| PortError::Unavailable(format!("event spool task: {e}")))?
            .map_err(|e| match e {
                SpoolError::Full { .. } | SpoolError::KeyTooLong(_) => {
                    PortError::Rejected(e.to_string())
                }
                other => PortError::Unavailable(other.to_string()),
            })
    }
}

#[async_trait]
impl EventSink for KafkaEventSink {
    async fn publish(&self, events: &[EngagementEvent]) -> Result<PublishOutcome, PortError> {
        if events.is_empty() {
            return Ok(PublishOutcome::default());
        }
        let records: Vec<SpoolRecord> = events
            .iter()
            .map(|e| SpoolRecord {
                key: EngagementMessage::key(e).into_bytes(),
                value: EngagementMessage::encode(e),
            })
            .collect();
        self.publish_records(records).await?;
        Ok(PublishOutcome {
            accepted: events.len(),
            duplicates: 0,
        })
    }

    async fn publish_exposures(&self, exposures: &[Exposure]) -> Result<(), PortError> {
        if exposures.is_empty() {
            return Ok(());
        }
        let records: Vec<SpoolRecord> = exposures
            .iter()
            .map(|x| SpoolRecord {
                key: ExposureMessage::key(x).into_bytes(),
                value: ExposureMessage::encode(x),
            })
            .collect();
        self.publish_records(records).await
    }
}

impl KafkaEventSink {
    /// Sends records to Kafka, spooling what it does not acknowledge in time; `Ok` once every
    /// record is acknowledged or spooled.
    async fn publish_records(&self, records: Vec<SpoolRecord>) -> Result<(), PortError> {
        let inner = &self.inner;
        // An event goes straight to Kafka unless older events of its key wait in the spool (it
        // queues behind them, keeping the key's order) or its partition is failing (it would only
        // wait out the delivery timeout). Other users' events are not held back by either.
        let mut direct = Vec::with_capacity(records.len());
        let mut spooled = Vec::new();
        for record in records {
            let hash = key_hash(&record.key);
            if inner.shared.spool.has_key(hash) || inner.shared.partitions.is_failing(hash) {
                spooled.push(record);
            } else {
                direct.push(record);
            }
        }
        if !direct.is_empty() {
            let acked = inner.send_all(&direct).await;
            let unacked: Vec<SpoolRecord> = direct
                .into_iter()
                .zip(acked)
                .filter_map(|(r, d)| (!d.ok).then_some(r))
                .collect();
            if !unacked.is_empty() {
                tracing::warn!(
                    events = unacked.len(),
                    "kafka did not acknowledge events in time; spooling them"
                );
                // An unacknowledged event may still reach Kafka later, so the replay can repeat
                // it; the pipeline is idempotent by event_id.
                spooled.extend(unacked);
            }
        }
        if !spooled.is_empty() {
            inner.spool(spooled).await?;
        }
        Ok(())
    }
}

/// Counts a producer error under a bounded label.
pub(crate) fn count_error(e: &KafkaError) {
    let error_type = match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => "timeout",
        Some(RDKafkaErrorCode::QueueFull) => "queue_full",
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown) => {
            "transport"
        }
        Some(_) => "broker",
        None => "client",
    };
    metrics::counter!(PRODUCER_ERRORS_METRIC, "error_type" => error_type).increment(1);
}
