//! The Kafka [`EventSink`]: acknowledged by Kafka or fsynced to the spool before `publish` says Ok.

use crate::config::KafkaConfig;
use crate::health::EventSpoolProbe;
use crate::message::EngagementMessage;
use crate::replay;
use crate::spool::{EventSpool, SpoolError, SpoolRecord};
use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use vrs_application::ports::{EventSink, PortError, PublishOutcome};
use vrs_domain::EngagementEvent;

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
}

pub(crate) struct Inner {
    /// Replaced by a fresh one after a fatal error (see [`Inner::renew_if_fatal`]).
    producer: std::sync::RwLock<FutureProducer>,
    /// What the producer is built from, for renewals.
    producer_config: ClientConfig,
    pub(crate) topic: String,
    pub(crate) delivery_timeout: Duration,
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
        let spool = EventSpool::open(&config.spool_dir, config.spool_max_bytes)?;
        let timeout_ms = config.delivery_timeout.as_millis().max(1).to_string();
        let mut producer_config = ClientConfig::new();
        producer_config
            .set("bootstrap.servers", &config.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", &timeout_ms)
            .set("request.timeout.ms", &timeout_ms)
            .set("linger.ms", "5")
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
            shared: Arc::new(Shared {
                spool,
                // Unknown until the first delivery or the replayer's first broker check.
                broker_reachable: AtomicBool::new(false),
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
    pub(crate) async fn send_all(&self, records: &[SpoolRecord]) -> Vec<bool> {
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
        for delivery in pending {
            let ok = match delivery {
                None => false,
                Some(delivery) => match tokio::time::timeout_at(deadline, delivery).await {
                    Ok(Ok(Ok(_))) => true,
                    Ok(Ok(Err((e, _)))) => {
                        count_error(&e);
                        false
                    }
                    Ok(Err(_canceled)) => {
                        metrics::counter!(PRODUCER_ERRORS_METRIC, "error_type" => "canceled")
                            .increment(1);
                        false
                    }
                    Err(_elapsed) => {
                        metrics::counter!(PRODUCER_ERRORS_METRIC, "error_type" => "timeout")
                            .increment(1);
                        false
                    }
                },
            };
            acked.push(ok);
        }
        if !acked.is_empty() {
            let all = acked.iter().all(|&ok| ok);
            let any = acked.iter().any(|&ok| ok);
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

    /// Appends records to the spool on a blocking thread.
    pub(crate) async fn spool(&self, records: Vec<SpoolRecord>) -> Result<(), PortError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.spool.append(&records))
            .await
            .map_err(|e| PortError::Unavailable(format!("event spool task: {e}")))?
            .map_err(|e| match e {
                SpoolError::Full { .. } => PortError::Rejected(e.to_string()),
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
        let accepted = PublishOutcome {
            accepted: events.len(),
            duplicates: 0,
        };
        let inner = &self.inner;
        // While older events wait in the spool, new ones queue behind them: sending them straight
        // to Kafka would overtake a user's spooled events, and would wait out the timeout again.
        if !inner.shared.spool.is_empty() {
            inner.spool(records).await?;
            return Ok(accepted);
        }
        let acked = inner.send_all(&records).await;
        let unacked: Vec<SpoolRecord> = records
            .into_iter()
            .zip(acked)
            .filter_map(|(r, ok)| (!ok).then_some(r))
            .collect();
        if !unacked.is_empty() {
            tracing::warn!(
                events = unacked.len(),
                "kafka did not acknowledge events in time; spooling them"
            );
            // An unacknowledged event may still reach Kafka later, so the replay can repeat it;
            // the pipeline is idempotent by event_id.
            inner.spool(unacked).await?;
        }
        Ok(accepted)
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
