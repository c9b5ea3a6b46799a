//! The Kafka event sink against an in-process mock Kafka cluster (real protocol over loopback):
//! delivery with key and versioned JSON, spooling while the broker is down, replay once it is back,
//! the spool bound, and replay of a spool left by a crashed process.

mod common;

use common::{PARTITIONS, config, event, eventually, ids, ids_of, read_topic_async, user};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use std::time::{Duration, Instant};
use vrs_adapter_kafka::{EngagementMessage, EventSpool, KafkaEventSink, SpoolRecord, key_hash};
use vrs_application::ports::{EventSink, HealthProbe, PortError};
use vrs_domain::UserId;

const BROKERS: i32 = 1;

fn cluster(topic: &str) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(BROKERS).expect("mock cluster");
    cluster.create_topic(topic, PARTITIONS, 1).expect("topic");
    cluster
}

fn set_brokers(cluster: &MockCluster<'static, DefaultProducerContext>, up: bool) {
    for id in 1..=BROKERS {
        if up {
            cluster.broker_up(id).expect("broker up");
        } else {
            cluster.broker_down(id).expect("broker down");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_per_user_with_key_and_versioned_json() {
    let cluster = cluster("events");
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaEventSink::start(config(&brokers, "events", dir.path())).expect("sink");
    let (alice, bob) = (user(), user());
    let first: Vec<_> = (0..5)
        .map(|i| event(if i % 2 == 0 { alice } else { bob }))
        .collect();
    let second: Vec<_> = (0..5).map(|_| event(alice)).collect();

    for batch in [&first, &second] {
        let outcome = sink.publish(batch).await.expect("publish");
        assert_eq!(outcome.accepted, batch.len());
        assert_eq!(outcome.duplicates, 0);
    }
    assert_eq!(sink.spooled(), 0);

    let consumed = read_topic_async(&brokers, "events", 10, Duration::from_secs(10)).await;
    assert_eq!(consumed.len(), 10);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    let of = |u| {
        all.iter()
            .filter(|e| e.user_id == u)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(ids_of(&consumed, alice), ids(&of(alice)));
    assert_eq!(ids_of(&consumed, bob), ids(&of(bob)));

    let like = &first[0];
    let message = consumed
        .iter()
        .find(|c| c.value["event_id"] == like.event_id.to_string())
        .expect("first event");
    assert_eq!(message.key, alice.to_string());
    assert_eq!(message.value["schema_version"], 1);
    assert_eq!(message.value["type"], "like");
    assert_eq!(message.value["user_id"], alice.to_string());
    assert_eq!(message.value["video_id"], like.video_id.to_string());
    assert_eq!(message.value["creator_id"], like.creator_id.to_string());
    let decoded = EngagementMessage::decode(message.value.to_string().as_bytes()).expect("decode");
    assert_eq!(decoded.into_event(), *like);
    sink.health_probe().check().await.expect("healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_spools_within_the_timeout_and_replays_once_it_is_back() {
    let cluster = cluster("outage");
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaEventSink::start(config(&brokers, "outage", dir.path())).expect("sink");
    let alice = user();
    let before = vec![event(alice)];
    sink.publish(&before).await.expect("publish while up");

    set_brokers(&cluster, false);
    let during: Vec<_> = (0..4).map(|_| event(alice)).collect();
    let started = Instant::now();
    let outcome = sink
        .publish(&during[..2])
        .await
        .expect("publish while down");
    let took = started.elapsed();
    assert_eq!(outcome.accepted, 2);
    // The delivery timeout (2 s) plus the slack for librdkafka's once-a-second timeout scan.
    assert!(took < Duration::from_secs(4), "publish took {took:?}");
    assert_eq!(sink.spooled(), 2);
    // With events spooled, later ones queue behind them at once instead of waiting on Kafka.
    let started = Instant::now();
    sink.publish(&during[2..])
        .await
        .expect("publish behind spool");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(sink.spooled(), 4);
    let probe = sink.health_probe();
    assert!(matches!(
        probe.check().await,
        Err(PortError::Unavailable(_))
    ));

    set_brokers(&cluster, true);
    let emptied = eventually(Duration::from_secs(15), || sink.spooled() == 0).await;
    assert!(emptied, "spool still holds {} events", sink.spooled());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("spool dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|name| name.to_string_lossy().ends_with(".spool"))
        .collect();
    assert!(left.is_empty(), "drained segments are deleted: {left:?}");
    let after = vec![event(alice)];
    sink.publish(&after).await.expect("publish after recovery");

    // The timed-out sends may reach Kafka too (delivery is at least once), so compare the
    // first occurrence of each id: the order per user must hold.
    let consumed = read_topic_async(&brokers, "outage", 6, Duration::from_secs(10)).await;
    let mut seen = Vec::new();
    for id in ids_of(&consumed, alice) {
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    let expected: Vec<_> = before
        .iter()
        .chain(&during)
        .chain(&after)
        .cloned()
        .collect();
    assert_eq!(seen, ids(&expected));
    probe.check().await.expect("healthy again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_rejects_the_batch() {
    let cluster = cluster("full");
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(&brokers, "full", dir.path());
    config.spool_max_bytes = 1000;
    let sink = KafkaEventSink::start(config).expect("sink");
    set_brokers(&cluster, false);
    let alice = user();
    sink.publish(&[event(alice)]).await.expect("first fits");
    let before = sink.spooled();
    let batch: Vec<_> = (0..5).map(|_| event(alice)).collect();
    let err = sink.publish(&batch).await.expect_err("over the bound");
    assert!(matches!(err, PortError::Rejected(_)), "{err:?}");
    assert_eq!(sink.spooled(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_left_by_a_crashed_process_is_replayed_on_start() {
    let cluster = cluster("restart");
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = user();
    let events: Vec<_> = (0..3).map(|_| event(alice)).collect();
    {
        // What a process killed right after spooling leaves behind: fsynced records, no cleanup.
        let spool = EventSpool::open(dir.path(), 1 << 20).expect("spool");
        let records: Vec<_> = events
            .iter()
            .map(|e| SpoolRecord {
                key: EngagementMessage::key(e).into_bytes(),
                value: EngagementMessage::encode(e),
            })
            .collect();
        spool.append(&records).expect("append");
    }
    let sink = KafkaEventSink::start(config(&brokers, "restart", dir.path())).expect("sink");
    let emptied = eventually(Duration::from_secs(10), || sink.spooled() == 0).await;
    assert!(emptied, "spool still holds {} events", sink.spooled());
    let consumed = read_topic_async(&brokers, "restart", 3, Duration::from_secs(10)).await;
    assert_eq!(ids_of(&consumed, alice), ids(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_does_not_wait_for_an_unreachable_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    // Port 9 (discard) on loopback: nothing listens there.
    let sink = KafkaEventSink::start(config("127.0.0.1:9", "nowhere", dir.path())).expect("sink");
    // Bounds far above the 2 s delivery timeout, so a loaded machine does not fail them, and far
    // below what waiting on the broker would cost (librdkafka's default message timeout: 300 s).
    assert!(started.elapsed() < Duration::from_secs(5));
    let started = Instant::now();
    sink.publish(&[event(user())]).await.expect("spooled");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(sink.spooled(), 1);
}

/// A fresh user whose events Kafka's default partitioner puts on `partition`.
fn user_on(partition: i32) -> UserId {
    loop {
        let u = user();
        if key_hash(u.to_string().as_bytes()) % PARTITIONS as u32 == partition as u32 {
            return u;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_partition_holds_back_only_its_own_users() {
    // Three brokers, each leading one partition: a broker down is one partition unavailable.
    let cluster = MockCluster::new(3).expect("mock cluster");
    cluster
        .create_topic("partial", PARTITIONS, 1)
        .expect("topic");
    for p in 0..PARTITIONS {
        cluster
            .partition_leader("partial", p, Some(p + 1))
            .expect("leader");
    }
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaEventSink::start(config(&brokers, "partial", dir.path())).expect("sink");
    let (stuck, fine) = (user_on(0), user_on(1));
    // Warm up: both partitions deliver, and the sink learns the partition count.
    let warm = vec![event(stuck), event(fine)];
    sink.publish(&warm).await.expect("publish");
    assert_eq!(sink.spooled(), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.broker_down(1).expect("partition 0's leader down");
    let first = vec![event(stuck)];
    sink.publish(&first).await.expect("spooled");
    assert_eq!(sink.spooled(), 1, "partition 0's event waits in the spool");
    let started = Instant::now();
    let others = vec![event(fine)];
    sink.publish(&others).await.expect("delivered");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "another partition's user is not held back: {:?}",
        started.elapsed()
    );
    assert_eq!(sink.spooled(), 1, "and not spooled");
    let started = Instant::now();
    let more = vec![event(stuck), event(stuck)];
    sink.publish(&more).await.expect("spooled");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a failing partition's next events go to the spool at once: {:?}",
        started.elapsed()
    );
    assert_eq!(sink.spooled(), 3);

    cluster.broker_up(1).expect("back");
    let emptied = eventually(Duration::from_secs(20), || sink.spooled() == 0).await;
    assert!(emptied, "spool still holds {} events", sink.spooled());
    let consumed = read_topic_async(&brokers, "partial", 6, Duration::from_secs(10)).await;
    let mut seen = Vec::new();
    for id in ids_of(&consumed, stuck) {
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    let expected: Vec<_> = [&warm[..1], &first[..], &more[..]].concat();
    assert_eq!(seen, ids(&expected), "the stuck user's events, in order");
    assert_eq!(
        ids_of(&consumed, fine),
        ids(&[warm[1].clone(), others[0].clone()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_drains_partition_by_partition() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    cluster.create_topic("drain", PARTITIONS, 1).expect("topic");
    for p in 0..PARTITIONS {
        cluster
            .partition_leader("drain", p, Some(p + 1))
            .expect("leader");
    }
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaEventSink::start(config(&brokers, "drain", dir.path())).expect("sink");
    let users: Vec<UserId> = (0..PARTITIONS).map(user_on).collect();
    let warm = vec![event(users[0])];
    sink.publish(&warm).await.expect("warm up");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for b in 1..=3 {
        cluster.broker_down(b).expect("down");
    }
    let spooled: Vec<_> = users
        .iter()
        .flat_map(|u| (0..20).map(|_| event(*u)))
        .collect();
    sink.publish(&spooled).await.expect("spooled");
    assert_eq!(sink.spooled(), spooled.len());
    // Partitions 1 and 2 come back; partition 0 stays down.
    cluster.broker_up(2).expect("up");
    cluster.broker_up(3).expect("up");
    let drained = eventually(Duration::from_secs(20), || sink.spooled() == 20).await;
    assert!(
        drained,
        "the available partitions drain while one is down: {} left",
        sink.spooled()
    );
    cluster.broker_up(1).expect("up");
    assert_eq!(sink.drain(Duration::from_secs(20)).await, 0);
    let consumed = read_topic_async(&brokers, "drain", 61, Duration::from_secs(10)).await;
    for u in &users {
        let seen: std::collections::BTreeSet<String> = ids_of(&consumed, *u).into_iter().collect();
        let sent: std::collections::BTreeSet<String> = ids(&[&warm[..], &spooled[..]].concat())
            .into_iter()
            .filter(|id| {
                spooled
                    .iter()
                    .chain(&warm)
                    .any(|e| e.event_id.to_string() == *id && e.user_id == *u)
            })
            .collect();
        assert_eq!(seen, sent, "every event of {u:?}, each at least once");
    }
}
