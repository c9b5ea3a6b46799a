//! The event spool's drain, measured on the built binary: a spool filled with MIB MiB of engagement
//! events (default 64) is drained into librdkafka's mock cluster (3 brokers, 3 partitions, in this
//! process) by `serve` (embedded mode, release build) while it takes 200 POST /api/v1/events per
//! second and closed-loop feed traffic (4 connections). The same load first runs against a `serve`
//! with an empty spool. Prints the drain time and throughput, and the feed's p50/p99 with and
//! without the drain.
//!
//! ```sh
//! cargo build --release -p video-ranking-service
//! cargo run --release -p video-ranking-service --example spool_drain -- 64
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use uuid::Uuid;
use vrs_adapter_kafka::{EngagementMessage, EventSpool, SpoolRecord};
use vrs_domain::{CreatorId, EngagementEvent, EventType, UserId, VideoId};

const FEED_CONNECTIONS: usize = 4;
const POSTS_PER_SECOND: u64 = 200;
const USERS: u64 = 50;

fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no target directory"))?;
    let bin = dir.join("video-ranking-service");
    anyhow::ensure!(
        bin.exists(),
        "{} missing: cargo build --release -p video-ranking-service",
        bin.display()
    );
    Ok(bin)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

async fn start_serve(
    bin: &Path,
    data: &Path,
    spool: &Path,
    brokers: &str,
) -> anyhow::Result<Serve> {
    let port = free_port()?;
    let child = Command::new(bin)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_HOST", "127.0.0.1")
        .env("APP_PORT", port.to_string())
        .env("DATA_DIR", data)
        .env("EVENT_SPOOL_DIR", spool)
        .env("KAFKA_BROKERS", brokers)
        .env("RUN_CONSUMERS", "false")
        .env("RATE_LIMIT_PER_SECOND", "0")
        .env("DEMO_VIDEOS", "3000")
        .env("DEMO_USERS", "300")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while client
        .get(format!("{base}/api/v1/health/ready"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        anyhow::ensure!(Instant::now() < deadline, "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Serve { child, base })
}

fn token(bin: &Path, data: &Path, user: u64) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(["dev-token", "--demo-user", &user.to_string()])
        .env("DATA_DIR", data)
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Fills `dir` with about `mib` MiB of spooled engagement events; returns how many.
fn fill(dir: &Path, mib: u64) -> anyhow::Result<usize> {
    let spool = EventSpool::open(dir, u64::MAX)?;
    let mut n = 0;
    while spool.bytes() < mib * 1024 * 1024 {
        let batch: Vec<SpoolRecord> = (0..1000)
            .map(|i| {
                let event = EngagementEvent {
                    event_id: Uuid::new_v4(),
                    user_id: UserId(Uuid::from_u128(1 + (n + i) as u128 % 2000)),
                    video_id: VideoId(Uuid::new_v4()),
                    creator_id: CreatorId(Uuid::new_v4()),
                    event_type: EventType::View,
                    watch_ms: Some(7_500),
                    completion: Some(0.4),
                    occurred_at: chrono::Utc::now(),
                };
                SpoolRecord {
                    key: EngagementMessage::key(&event).into_bytes(),
                    value: EngagementMessage::encode(&event),
                }
            })
            .collect();
        spool.append(&batch)?;
        n += batch.len();
    }
    Ok(n)
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "spool"))
            .count()
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Runs the load for `length` (or until `stop`); returns the feed latencies with their start
/// times, and the POST statuses that were not 202.
async fn load(
    base: &str,
    tokens: &[String],
    videos: &[String],
    length: Duration,
) -> (Vec<(Instant, Duration)>, usize) {
    let until = Instant::now() + length;
    let samples = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..FEED_CONNECTIONS {
        let (base, tokens, samples) = (base.to_owned(), tokens.to_vec(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = c;
            while Instant::now() < until {
                let started = Instant::now();
                let ok = client
                    .get(format!("{base}/api/v1/reels?limit=40"))
                    .bearer_auth(&tokens[i % tokens.len()])
                    .send()
                    .await
                    .and_then(|r| r.error_for_status());
                if let Ok(r) = ok {
                    let _ = r.bytes().await;
                    samples.lock().await.push((started, started.elapsed()));
                }
                i += FEED_CONNECTIONS;
            }
        }));
    }
    {
        let (base, tokens, videos, refused, stop) = (
            base.to_owned(),
            tokens.to_vec(),
            videos.to_vec(),
            refused.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut tick =
                tokio::time::interval(Duration::from_micros(1_000_000 / POSTS_PER_SECOND));
            let mut i = 0usize;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (client, base, refused) = (client.clone(), base.clone(), refused.clone());
                let token = tokens[i % tokens.len()].clone();
                let body = serde_json::json!({"events": [{"event_id": Uuid::new_v4(),
                    "video_id": videos[i % videos.len()], "type": "view"}]});
                tokio::spawn(async move {
                    let status = client
                        .post(format!("{base}/api/v1/events"))
                        .bearer_auth(token)
                        .json(&body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    if status != 202 {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                });
                i += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let samples = samples.lock().await.clone();
    (samples, refused.load(Ordering::Relaxed))
}

fn report(name: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    println!(
        "{name}: {} feed requests, p50 {:.2} ms, p99 {:.2} ms",
        sorted.len(),
        percentile(&sorted, 0.5).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mib: u64 = std::env::args().nth(1).map_or(Ok(64), |n| n.parse())?;
    let bin = binary()?;
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let (empty, full) = (work.path().join("empty"), work.path().join("full"));
    let filled = fill(&full, mib)?;
    println!(
        "spool: {filled} events in {mib} MiB ({} segments)",
        segments(&full)
    );

    let cluster = rdkafka::mocking::MockCluster::new(3)?;
    cluster.create_topic("engagement-events", 3, 1)?;
    let brokers = cluster.bootstrap_servers();

    let serve = start_serve(&bin, &data, &empty, &brokers).await?;
    let tokens: Vec<String> = (1..=USERS)
        .map(|u| token(&bin, &data, u))
        .collect::<Result<_, _>>()?;
    let page: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/reels?limit=40", serve.base))
        .bearer_auth(&tokens[0])
        .send()
        .await?
        .json()
        .await?;
    let videos: Vec<String> = page["videos"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(!videos.is_empty(), "no videos in {page}");

    let (baseline, refused) = load(&serve.base, &tokens, &videos, Duration::from_secs(15)).await;
    let baseline: Vec<Duration> = baseline.into_iter().map(|(_, d)| d).collect();
    report("no drain", &baseline);
    println!("  POSTs not answered 202: {refused}");
    drop(serve);

    // The spool is replayed from the moment serve starts; the load starts once it is ready.
    let started = Instant::now();
    let serve = start_serve(&bin, &data, &full, &brokers).await?;
    let ready = started.elapsed();
    let watch = {
        let full = full.clone();
        tokio::spawn(async move {
            while segments(&full) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Instant::now()
        })
    };
    let (during, refused) = load(&serve.base, &tokens, &videos, Duration::from_secs(15)).await;
    let drained_at = watch.await?;
    let drain = drained_at - started;
    println!(
        "drain: {filled} events ({mib} MiB) in {:.2} s from process start (ready after {:.2} s): {:.0} events/s, {:.1} MiB/s",
        drain.as_secs_f64(),
        ready.as_secs_f64(),
        filled as f64 / drain.as_secs_f64(),
        mib as f64 / drain.as_secs_f64()
    );
    let while_draining: Vec<Duration> = during
        .iter()
        .filter(|(at, _)| *at < drained_at)
        .map(|(_, d)| *d)
        .collect();
    report("while draining", &while_draining);
    report(
        "whole second run",
        &during.iter().map(|(_, d)| *d).collect::<Vec<_>>(),
    );
    println!("  POSTs not answered 202: {refused}");
    drop(serve);
    Ok(())
}
