//! Throughput of the engagement consumer on real components: EVENTS engagement messages are
//! produced to librdkafka's mock cluster (3 partitions, in this process), then the consumer stores
//! them into a real ClickHouse; prints events per second from its first insert to the last.
//!
//! ```sh
//! CLICKHOUSE_URL=tcp://127.0.0.1:9000 \
//!   cargo run --release -p video-ranking-service --example consumer_throughput -- 25000
//! ```

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vrs_adapter_clickhouse::{ClickHouseConfig, ClickHouseSignalStore, init_schema};
use vrs_adapter_kafka::{EngagementConsumer, EngagementConsumerConfig, EngagementMessage};
use vrs_application::ports::{EngagementEventStore, PortError, StoredEvents};
use vrs_domain::{CreatorId, EngagementEvent, EventType, UserId, VideoId};

/// Counts what the store newly stored and when the first insert began.
struct Timed {
    store: ClickHouseSignalStore,
    stored: AtomicUsize,
    first: Mutex<Option<Instant>>,
}

#[async_trait]
impl EngagementEventStore for Timed {
    async fn insert_events(&self, events: &[EngagementEvent]) -> Result<StoredEvents, PortError> {
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert_with(Instant::now);
        }
        let stored = self.store.store_events(events).await?;
        self.stored.fetch_add(stored.new.len(), Ordering::SeqCst);
        Ok(stored)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args().nth(1).map_or(Ok(25_000), |n| n.parse())?;
    let url = std::env::var("CLICKHOUSE_URL")
        .map_err(|_| anyhow::anyhow!("CLICKHOUSE_URL: a ClickHouse server (tcp://host:port)"))?;
    let database = format!("vrs_consumer_bench_{}", std::process::id());
    init_schema(&url, &database).await?;
    let store = ClickHouseSignalStore::new(&ClickHouseConfig::new(url, database))?;

    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1)?;
    cluster.create_topic("engagement-events", 3, 1)?;
    let brokers = cluster.bootstrap_servers();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()?;
    let users: Vec<UserId> = (0..500).map(|_| UserId(Uuid::new_v4())).collect();
    let videos: Vec<(VideoId, CreatorId)> = (0..2_000)
        .map(|_| (VideoId(Uuid::new_v4()), CreatorId(Uuid::new_v4())))
        .collect();
    let sends = (0..total).map(|i| {
        let (video_id, creator_id) = videos[i * 7 % videos.len()];
        let event = EngagementEvent {
            event_id: Uuid::new_v4(),
            user_id: users[i % users.len()],
            video_id,
            creator_id,
            event_type: EventType::ALL[i % EventType::ALL.len()],
            watch_ms: None,
            completion: None,
            occurred_at: chrono::Utc::now(),
        };
        let key = event.user_id.to_string();
        let payload = EngagementMessage::encode(&event);
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to("engagement-events")
                        .key(&key)
                        .payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
        }
    });
    for result in futures::future::join_all(sends).await {
        result?;
    }
    println!("produced {total} events");

    let timed = Arc::new(Timed {
        store,
        stored: AtomicUsize::new(0),
        first: Mutex::new(None),
    });
    let consumer = EngagementConsumer::new(
        EngagementConsumerConfig::new(brokers, "consumer-bench"),
        timed.clone(),
    )?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(600);
    while timed.stored.load(Ordering::SeqCst) < total {
        anyhow::ensure!(Instant::now() < deadline, "not stored within 600 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = timed
        .first
        .lock()
        .ok()
        .and_then(|f| *f)
        .unwrap_or_else(Instant::now);
    let elapsed = first.elapsed();
    println!(
        "stored {total} events in {:.2} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    let _ = stop.send(());
    task.await?;
    Ok(())
}
