//! The engagement consumer against an in-process mock Kafka cluster, storing into the memory
//! adapters: each event counted once despite replays, unreadable messages dead-lettered without
//! holding back their partition, offsets committed only after the store succeeded, and a restarted
//! consumer resuming where its group left off.

mod common;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{PARTITIONS, config, event, eventually, user};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;
use vrs_adapter_kafka::{
    DLQ_ERROR_TYPE_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER, DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER, EngagementConsumer, EngagementConsumerConfig, EngagementMessage,
    KafkaEventSink,
};
use vrs_adapter_memory::{MemoryAdapters, MemoryEventSink};
use vrs_application::ports::{
    EngagementEventStore, EventSink, PortError, SignalStore, StoredEvents,
};
use vrs_domain::{EngagementEvent, EventType, UserId, VideoStats};

const TOPIC: &str = "engagement-events";
const DLQ: &str = "engagement-events.dlq";
/// Bound on every wait; a consumer group join on the mock cluster takes about 3 s.
const WAIT: Duration = Duration::from_secs(15);

/// The process-wide metrics recorder; tests share it, so each checks labels only it produces.
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("metrics recorder")
    })
}

/// The value of one rendered series, e.g. `name{label="value"}`.
fn metric(series: &str) -> Option<f64> {
    metrics().render().lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|value| value.trim().parse().expect("metric value"))
    })
}

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    cluster.create_topic(DLQ, 1, 1).expect("dlq topic");
    cluster
}

fn consumer_config(brokers: &str, group: &str) -> EngagementConsumerConfig {
    let mut config = EngagementConsumerConfig::new(brokers, group);
    config.batch_max_wait = Duration::from_millis(100);
    config.retry_backoff = Duration::from_millis(100);
    config.retry_backoff_max = Duration::from_millis(500);
    // The mock coordinator keeps a group whose last member left in rebalance for the session
    // timeout less a second, so a restart in the same group waits that long (a real broker
    // empties the group at once).
    config.session_timeout = Duration::from_secs(6);
    config
}

/// A running consumer and the means to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn start(brokers: &str, group: &str, store: Arc<dyn EngagementEventStore>) -> Running {
    let consumer =
        EngagementConsumer::new(consumer_config(brokers, group), store).expect("consumer");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("consumer stops in time")
            .expect("consumer task");
    }
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer")
}

/// Produces raw message values under `key`, in order, waiting for each acknowledgement.
async fn produce(producer: &FutureProducer, key: &str, values: &[Vec<u8>]) {
    for value in values {
        producer
            .send(
                FutureRecord::to(TOPIC).key(key).payload(value),
                Duration::from_secs(5),
            )
            .await
            .expect("produce");
    }
}

/// Sum of the offsets `group` committed on the event topic (the messages it consumed).
async fn committed(brokers: &str, group: &str) -> i64 {
    let (brokers, group) = (brokers.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .create()
            .expect("offset reader");
        let mut partitions = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            partitions.add_partition(TOPIC, p);
        }
        consumer
            .committed_offsets(partitions, Duration::from_secs(5))
            .expect("committed offsets")
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => n,
                _ => 0,
            })
            .sum()
    })
    .await
    .expect("offset reader task")
}

/// Polls until `group` committed `n` messages.
async fn wait_committed(brokers: &str, group: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = committed(brokers, group).await;
        if got == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group} committed {got} of {n} messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One aggregate summed over every video, as the signal store holds it.
async fn total(signals: &dyn SignalStore, field: fn(&VideoStats) -> u64) -> u64 {
    let since = DateTime::<Utc>::UNIX_EPOCH;
    signals
        .video_stats(since)
        .await
        .expect("video stats")
        .iter()
        .map(|(_, stats)| field(stats))
        .sum()
}

/// Likes across every video.
async fn total_likes(signals: &dyn SignalStore) -> u64 {
    total(signals, |s| s.likes).await
}

/// Shares across every video.
async fn total_shares(signals: &dyn SignalStore) -> u64 {
    total(signals, |s| s.shares).await
}

/// A fresh `share` event of `user` (a type only one test uses, so its metric series is its own).
fn share(user: UserId) -> EngagementEvent {
    EngagementEvent {
        event_type: EventType::Share,
        ..event(user)
    }
}

/// Reads every dead letter (up to `n`) with its headers.
fn read_dlq(brokers: &str, n: usize) -> Vec<(Vec<u8>, HashMap<String, String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "dlq-reader")
        .create()
        .expect("dlq reader");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(DLQ, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&partitions).expect("assign");
    let deadline = std::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("dead letter");
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                            (h.key.to_owned(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((message.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    out
}

/// A store that fails its first `failures` inserts, takes `delay` per insert, and counts what it
/// was given.
struct CountingStore {
    inner: Arc<MemoryEventSink>,
    failures: AtomicUsize,
    delay: Duration,
    calls: AtomicUsize,
    events: AtomicUsize,
    /// An event id whose batches are refused for their content.
    poison: std::sync::Mutex<Option<Uuid>>,
}

impl CountingStore {
    fn new(inner: Arc<MemoryEventSink>, failures: usize) -> Arc<Self> {
        Self::slow(inner, failures, Duration::ZERO)
    }

    fn slow(inner: Arc<MemoryEventSink>, failures: usize, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner,
            failures: AtomicUsize::new(failures),
            delay,
            calls: AtomicUsize::new(0),
            events: AtomicUsize::new(0),
            poison: std::sync::Mutex::new(None),
        })
    }
}

#[async_trait]
impl EngagementEventStore for CountingStore {
    async fn insert_events(&self, events: &[EngagementEvent]) -> Result<StoredEvents, PortError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // A batch holding a poison event is refused whole, as a server refuses a block.
        if let Some(poison) = *self.poison.lock().expect("lock")
            && events.iter().any(|e| e.event_id == poison)
        {
            return Err(PortError::Rejected(format!(
                "event {poison} cannot be stored"
            )));
        }
        tokio::time::sleep(self.delay).await;
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(PortError::Unavailable("store down".to_owned()));
        }
        self.events.fetch_add(events.len(), Ordering::SeqCst);
        self.inner.insert_events(events).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_count_once_and_unreadable_messages_are_dead_lettered_without_blocking() {
    metrics();
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaEventSink::start(config(&brokers, TOPIC, dir.path())).expect("sink");
    let alice = user();
    let key = alice.to_string();
    let first: Vec<_> = (0..5)
        .map(|i| share(if i % 2 == 0 { alice } else { user() }))
        .collect();
    sink.publish(&first).await.expect("publish");
    let raw = producer(&brokers);
    let mut unsupported: serde_json::Value =
        serde_json::from_slice(&EngagementMessage::encode(&share(alice))).expect("json");
    unsupported["schema_version"] = 99.into();
    // The unreadable messages sit on alice's partition, ahead of her later events.
    let bad = vec![b"{not json".to_vec(), unsupported.to_string().into_bytes()];
    produce(&raw, &key, &bad).await;
    // Redelivered duplicates, as a replaying producer would send them.
    for e in &first {
        produce(
            &raw,
            &e.user_id.to_string(),
            &[EngagementMessage::encode(e)],
        )
        .await;
    }
    let later: Vec<_> = (0..3).map(|_| share(alice)).collect();
    let encoded: Vec<_> = later.iter().map(EngagementMessage::encode).collect();
    produce(&raw, &key, &encoded).await;
    let total = (first.len() * 2 + bad.len() + later.len()) as i64;

    let memory = MemoryAdapters::default();
    let running = start(&brokers, "ranker", memory.events.clone());
    wait_committed(&brokers, "ranker", total).await;
    assert_eq!(total_shares(memory.signals.as_ref()).await, 8);

    let (b, r) = (brokers.clone(), 2);
    let dead = tokio::task::spawn_blocking(move || read_dlq(&b, r))
        .await
        .expect("dlq reader task");
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, bad[0]);
    assert_eq!(dead[0].1[DLQ_ERROR_TYPE_HEADER], "malformed");
    assert!(dead[0].1[DLQ_REASON_HEADER].contains("malformed"));
    assert_eq!(dead[0].1[DLQ_TOPIC_HEADER], TOPIC);
    assert_eq!(dead[1].0, bad[1]);
    assert_eq!(dead[1].1[DLQ_ERROR_TYPE_HEADER], "unsupported_version");
    assert!(dead[1].1[DLQ_REASON_HEADER].contains("99"));
    assert_eq!(
        dead[0].1[DLQ_PARTITION_HEADER],
        dead[1].1[DLQ_PARTITION_HEADER]
    );
    let offset = |i: usize| -> i64 { dead[i].1[DLQ_OFFSET_HEADER].parse().expect("offset") };
    assert_eq!(offset(1), offset(0) + 1);
    running.shutdown().await;

    // Another group replays the whole topic into the same store: nothing counts twice.
    let replay = start(&brokers, "replay", memory.events.clone());
    wait_committed(&brokers, "replay", total).await;
    assert_eq!(total_shares(memory.signals.as_ref()).await, 8);
    replay.shutdown().await;

    // Only newly stored events are counted; errors by bounded type; the lag of a stored batch.
    let recorded = metric(r#"engagement_events_recorded_total{type="share"}"#);
    assert_eq!(recorded, Some(8.0));
    for error_type in ["malformed", "unsupported_version"] {
        let series = format!(r#"kafka_consumer_errors_total{{error_type="{error_type}"}}"#);
        assert!(metric(&series) >= Some(2.0), "{series}");
    }
    let lag = metric("engagement_event_processing_lag_seconds").expect("lag gauge");
    assert!((0.0..60.0).contains(&lag), "lag {lag}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_from_the_committed_offsets() {
    metrics();
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let raw = producer(&brokers);
    let alice = user();
    let encode = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| EngagementMessage::encode(&event(alice)))
            .collect()
    };
    produce(&raw, &alice.to_string(), &encode(4)).await;
    let memory = MemoryAdapters::default();
    let store = CountingStore::new(memory.events.clone(), 0);

    let running = start(&brokers, "resumer", store.clone());
    wait_committed(&brokers, "resumer", 4).await;
    running.shutdown().await;
    assert_eq!(store.events.load(Ordering::SeqCst), 4);

    produce(&raw, &alice.to_string(), &encode(3)).await;
    let restarted = start(&brokers, "resumer", store.clone());
    wait_committed(&brokers, "resumer", 7).await;
    restarted.shutdown().await;
    // Only the new messages were delivered after the restart.
    assert_eq!(store.events.load(Ordering::SeqCst), 7);
    assert_eq!(total_likes(memory.signals.as_ref()).await, 7);
    // Each start joined the group and was assigned its partitions.
    let assigned = metric(r#"kafka_consumer_rebalances_total{group="resumer",event="assign"}"#);
    assert!(assigned >= Some(2.0), "{assigned:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_is_retried_and_nothing_is_committed_until_it_succeeds() {
    metrics();
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let raw = producer(&brokers);
    let alice = user();
    let values: Vec<_> = (0..3)
        .map(|_| EngagementMessage::encode(&event(alice)))
        .collect();
    produce(&raw, &alice.to_string(), &values).await;
    let memory = MemoryAdapters::default();
    // Backoff 100, 200, 400, 500 ms: about 1.2 s of failures.
    let store = CountingStore::new(memory.events.clone(), 4);

    let running = start(&brokers, "ranker", store.clone());
    let failing = eventually(WAIT, || store.calls.load(Ordering::SeqCst) >= 2).await;
    assert!(failing, "the store was never called");
    assert_eq!(committed(&brokers, "ranker").await, 0);
    assert_eq!(total_likes(memory.signals.as_ref()).await, 0);

    wait_committed(&brokers, "ranker", 3).await;
    assert_eq!(store.calls.load(Ordering::SeqCst), 5);
    assert_eq!(total_likes(memory.signals.as_ref()).await, 3);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_batch_in_hand_or_leaves_it_uncommitted_if_the_store_is_down() {
    metrics();
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let raw = producer(&brokers);
    let alice = user();
    let values: Vec<_> = (0..3)
        .map(|_| EngagementMessage::encode(&event(alice)))
        .collect();
    produce(&raw, &alice.to_string(), &values).await;
    let memory = MemoryAdapters::default();

    let slow = CountingStore::slow(memory.events.clone(), 0, Duration::from_secs(1));
    let running = start(&brokers, "ranker", slow.clone());
    let storing = eventually(WAIT, || slow.calls.load(Ordering::SeqCst) >= 1).await;
    assert!(storing, "the store was never called");
    running.shutdown().await;
    // The insert in progress at shutdown was finished and committed before `run` returned.
    assert_eq!(committed(&brokers, "ranker").await, 3);
    assert_eq!(total_likes(memory.signals.as_ref()).await, 3);

    // A store that stays down: shutdown gives the batch up uncommitted, for redelivery.
    let down = CountingStore::new(memory.events.clone(), usize::MAX);
    let stuck = start(&brokers, "stuck", down.clone());
    let retrying = eventually(WAIT, || down.calls.load(Ordering::SeqCst) >= 2).await;
    assert!(retrying, "the store was never retried");
    stuck.shutdown().await;
    assert_eq!(committed(&brokers, "stuck").await, 0);
    assert!(metric(r#"kafka_consumer_errors_total{error_type="store"}"#) >= Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_topic_holds_the_batch_uncommitted_but_not_its_good_events() {
    use rdkafka::mocking::MockCoordinator;
    metrics();
    // Two brokers: the dead-letter topic alone on the second, so it can fail by itself.
    let cluster = MockCluster::new(2).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    cluster.create_topic(DLQ, 1, 1).expect("dlq topic");
    for p in 0..PARTITIONS {
        cluster.partition_leader(TOPIC, p, Some(1)).expect("leader");
    }
    cluster
        .partition_leader(DLQ, 0, Some(2))
        .expect("dlq leader");
    cluster
        .coordinator(MockCoordinator::Group("dlq-down".into()), 1)
        .expect("coordinator");
    let brokers = cluster.bootstrap_servers();
    let alice = user();
    let raw = producer(&brokers);
    // Comments: a type no other test records, so the process-wide metrics stay per test.
    let good: Vec<_> = (0..2)
        .map(|_| EngagementEvent {
            event_type: EventType::Comment,
            ..event(alice)
        })
        .collect();
    let mut values = vec![b"\xff not json".to_vec()];
    values.extend(good.iter().map(EngagementMessage::encode));
    produce(&raw, &alice.to_string(), &values).await;

    // The dead-letter topic's broker is down: every dead-letter produce fails (after the
    // producer's 10 s message timeout). (A leaderless partition would model a missing topic more
    // closely, but librdkafka's mock broker crashes answering produce requests for one.)
    cluster.broker_down(2).expect("dlq broker down");
    let series = r#"kafka_consumer_errors_total{error_type="dlq_produce"}"#;
    let before = metric(series).unwrap_or(0.0);
    let memory = MemoryAdapters::default();
    let running = start(&brokers, "dlq-down", memory.events.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(series).unwrap_or(0.0) <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead-letter failure was counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        committed(&brokers, "dlq-down").await,
        0,
        "nothing is committed while the dead letter is not acknowledged"
    );
    assert_eq!(
        total(memory.signals.as_ref(), |s| s.comments).await,
        2,
        "the readable events are stored without waiting for the dead-letter topic"
    );
    // Later messages of the same partition are stored too; the commit stays at the dead letter.
    let later: Vec<_> = (0..2)
        .map(|_| EngagementEvent {
            event_type: EventType::Comment,
            ..event(alice)
        })
        .collect();
    let encoded: Vec<_> = later.iter().map(EngagementMessage::encode).collect();
    produce(&raw, &alice.to_string(), &encoded).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while total(memory.signals.as_ref(), |s| s.comments).await < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "later events wait behind a failing dead-letter topic"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        committed(&brokers, "dlq-down").await,
        0,
        "the commit does not pass the dead letter until it is acknowledged"
    );
    values.extend(encoded);

    // Once the topic is back, the dead letter lands and everything is committed.
    cluster.broker_up(2).expect("dlq broker up");
    wait_committed(&brokers, "dlq-down", values.len() as i64).await;
    let (b, n) = (brokers.clone(), 1);
    let dead = tokio::task::spawn_blocking(move || read_dlq(&b, n))
        .await
        .expect("dlq reader task");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, values[0]);
    assert_eq!(total(memory.signals.as_ref(), |s| s.comments).await, 4);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_store_refuses_is_dead_lettered_and_the_rest_of_its_batch_stored() {
    metrics();
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let raw = producer(&brokers);
    let alice = user();
    // Unlikes: a type no other test records.
    let events: Vec<_> = (0..7)
        .map(|_| EngagementEvent {
            event_type: EventType::Unlike,
            ..event(alice)
        })
        .collect();
    let poison = events[3].clone();
    let values: Vec<_> = events.iter().map(EngagementMessage::encode).collect();
    produce(&raw, &alice.to_string(), &values).await;
    let memory = MemoryAdapters::default();
    let store = CountingStore::new(memory.events.clone(), 0);
    *store.poison.lock().expect("lock") = Some(poison.event_id);

    let running = start(&brokers, "poison", store.clone());
    wait_committed(&brokers, "poison", values.len() as i64).await;
    assert_eq!(
        total(memory.signals.as_ref(), |s| s.unlikes).await,
        6,
        "every event but the refused one is stored"
    );
    let b = brokers.clone();
    let dead = tokio::task::spawn_blocking(move || read_dlq(&b, 1))
        .await
        .expect("dlq reader task");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, EngagementMessage::encode(&poison));
    assert_eq!(
        dead[0].1.get("dlq.error_type").map(String::as_str),
        Some("rejected")
    );
    assert!(
        dead[0]
            .1
            .get("dlq.reason")
            .is_some_and(|r| r.contains(&poison.event_id.to_string())),
        "{:?}",
        dead[0].1
    );
    assert!(metric(r#"kafka_consumer_errors_total{error_type="rejected"}"#) >= Some(1.0));

    // Later events flow on.
    let later = EngagementEvent {
        event_type: EventType::Unlike,
        ..event(alice)
    };
    produce(
        &raw,
        &alice.to_string(),
        &[EngagementMessage::encode(&later)],
    )
    .await;
    wait_committed(&brokers, "poison", values.len() as i64 + 1).await;
    assert_eq!(total(memory.signals.as_ref(), |s| s.unlikes).await, 7);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposures_share_the_topic_and_count_once_despite_redelivery() {
    use vrs_domain::{Exposure, SessionId, VideoId};
    metrics();
    let cluster = cluster();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaEventSink::start(config(&brokers, TOPIC, dir.path())).expect("sink");
    let experiment = Uuid::new_v4();
    let session = SessionId(Uuid::new_v4());
    let alice = user();
    let exposures: Vec<Exposure> = (0..6u32)
        .map(|position| Exposure {
            exposure_id: Exposure::id_of(experiment, session, position),
            experiment_id: experiment,
            variant: if position % 2 == 0 {
                "control"
            } else {
                "treatment"
            }
            .into(),
            user_id: alice,
            session_id: session,
            video_id: VideoId(Uuid::new_v4()),
            position,
            served_at: Utc::now(),
        })
        .collect();
    sink.publish_exposures(&exposures).await.expect("publish");
    // A page served again logs the same exposures; events travel alongside.
    sink.publish_exposures(&exposures[..3])
        .await
        .expect("publish again");
    // (A view: the share counter is another test's to check, in this process-wide recorder.)
    let mut view = share(alice);
    view.event_type = EventType::View;
    sink.publish(&[view]).await.expect("publish event");
    let messages = 6 + 3 + 1;

    let memory = MemoryAdapters::default();
    let running = start(&brokers, "exposures", memory.events.clone());
    wait_committed(&brokers, "exposures", messages).await;
    running.shutdown().await;
    // Another group replays the topic into the same store.
    let replay = start(&brokers, "exposures-replay", memory.events.clone());
    wait_committed(&brokers, "exposures-replay", messages).await;
    replay.shutdown().await;

    let totals = memory
        .signals
        .experiment_totals(experiment, Duration::from_secs(3600))
        .await
        .expect("totals");
    let exposed: u64 = totals.iter().map(|t| t.exposures).sum();
    assert_eq!(exposed, 6, "each exposure once: {totals:?}");
    assert_eq!(totals.len(), 2, "both variants: {totals:?}");
    assert_eq!(
        total(memory.signals.as_ref(), |s| s.views).await,
        1,
        "the event beside them is stored too"
    );
    assert!(metric("experiment_exposures_recorded_total") >= Some(6.0));
}
