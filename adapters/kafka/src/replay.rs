//! The replayer: republishes spooled events, settling each only once Kafka answered for it.
//!
//! Work is scheduled by partition (Kafka's default partitioner, see [`crate::spool::key_hash`]):
//! up to [`MAX_ROUNDS`] rounds run at once, each on partitions no other round holds, so a key's
//! records are never in two rounds at once. A partition whose delivery failed is left out of the
//! rounds and probed alone, one record per back-off, while the others drain: one unavailable
//! partition delays only its own users. Delivered records are marked in the spool, which deletes
//! drained segments whole.

use crate::sink::Inner;
use crate::spool::Taken;
use rdkafka::producer::Producer;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::task::JoinSet;

/// Records sent per replay round; bounds the time one round holds the broker.
const REPLAY_BATCH: usize = 500;
/// Rounds in flight at once, on disjoint partitions.
pub(crate) const MAX_ROUNDS: usize = 4;
/// How often the partition count is read from the broker's metadata.
const METADATA_REFRESH: Duration = Duration::from_secs(30);

/// Partitions held by running rounds; `None` is "partition unknown" (before the partition count is
/// known), which holds everything.
type Busy = Arc<Mutex<HashSet<Option<i32>>>>;

fn busy(b: &Busy) -> std::sync::MutexGuard<'_, HashSet<Option<i32>>> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

/// Replays until the sink is dropped.
pub(crate) async fn run(inner: Weak<Inner>, interval: Duration) {
    let mut rounds: JoinSet<()> = JoinSet::new();
    let held: Busy = Arc::default();
    let mut metadata: Option<tokio::task::JoinHandle<bool>> = None;
    let mut metadata_at: Option<tokio::time::Instant> = None;
    loop {
        let Some(sink) = inner.upgrade() else {
            return;
        };
        sink.shared.spool.report();
        // The partition count, read in the background so a broker that does not answer never
        // delays the rounds: at start, then every METADATA_REFRESH.
        if metadata
            .as_ref()
            .is_some_and(tokio::task::JoinHandle::is_finished)
            && let Some(done) = metadata.take()
            && matches!(done.await, Ok(true))
        {
            metadata_at = Some(tokio::time::Instant::now());
        }
        if metadata.is_none() && metadata_at.is_none_or(|at| at.elapsed() >= METADATA_REFRESH) {
            let probe = sink.clone();
            metadata = Some(tokio::spawn(async move {
                refresh_partition_count(&probe).await
            }));
        }
        while rounds.len() < MAX_ROUNDS {
            match start_round(&sink, &held).await {
                Some(round) => {
                    rounds.spawn(round);
                }
                None => break,
            }
        }
        if rounds.is_empty()
            && sink.shared.spool.is_empty()
            && !sink.shared.broker_reachable.load(Ordering::Relaxed)
        {
            check_broker(&sink).await;
        }
        drop(sink);
        if rounds.is_empty() {
            tokio::time::sleep(interval).await;
        } else {
            // Start the next round as soon as one finishes; look again after the interval anyway
            // (a partition's back-off may have ended).
            tokio::select! {
                _ = rounds.join_next() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Takes the next records to send and returns the round that sends them; `None` when there is
/// nothing to send now. A failing partition whose back-off has passed is probed alone, with one
/// record, so a partition that is still down never holds back a round of healthy ones; until a
/// probe delivers, failing partitions are left out of the other rounds.
async fn start_round(
    sink: &Arc<Inner>,
    held: &Busy,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let shared = sink.shared.clone();
    if shared.spool.is_empty() {
        return None;
    }
    let failing = shared.partitions.failing();
    let taken_by_others: HashSet<Option<i32>> = busy(held).clone();
    if taken_by_others.contains(&None) {
        return None;
    }
    let now = tokio::time::Instant::now();
    let probes: Vec<Option<i32>> = failing
        .iter()
        .filter(|(p, retry_at)| **retry_at <= now && !taken_by_others.contains(p))
        .map(|(p, _)| *p)
        .collect();
    let picker = shared.clone();
    let taken = tokio::task::spawn_blocking(move || {
        let partitions = &picker.partitions;
        for probe in probes {
            // `None` (every partition failed): any one record probes the cluster.
            let one = picker
                .spool
                .take(1, |hash| probe.is_none() || partitions.of(hash) == probe)?;
            if !one.is_empty() {
                return Ok(one);
            }
        }
        picker.spool.take(REPLAY_BATCH, |hash| {
            let p = partitions.of(hash);
            !failing.contains_key(&None)
                && !failing.contains_key(&p)
                && !taken_by_others.contains(&p)
        })
    })
    .await;
    let taken = match taken {
        Ok(Ok(taken)) if !taken.is_empty() => taken,
        Ok(Ok(_)) => return None,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not read spooled events");
            return None;
        }
        Err(e) => {
            tracing::error!(error = %e, "event spool task failed");
            return None;
        }
    };
    let mine: HashSet<Option<i32>> = taken
        .iter()
        .map(|t| shared.partitions.of(t.key_hash))
        .collect();
    busy(held).extend(mine.iter().copied());
    let sink = sink.clone();
    let held = held.clone();
    Some(async move {
        replay(&sink, taken).await;
        let mut held = busy(&held);
        for p in &mine {
            held.remove(p);
        }
    })
}

/// Sends one round's records and settles them in the spool.
async fn replay(sink: &Arc<Inner>, taken: Vec<Taken>) {
    let records: Vec<_> = taken.iter().map(|t| t.record.clone()).collect();
    let outcomes = sink.send_all(&records).await;
    let mut delivered = Vec::new();
    let mut failed = Vec::new();
    for (t, outcome) in taken.iter().zip(&outcomes) {
        if outcome.ok {
            delivered.push(t.id);
        } else {
            failed.push(t.id);
        }
    }
    let count = delivered.len();
    let shared = sink.shared.clone();
    let settled =
        tokio::task::spawn_blocking(move || shared.spool.settle(&delivered, &failed)).await;
    match settled {
        Ok(Ok(())) if count > 0 => tracing::info!(
            delivered = count,
            left = sink.shared.spool.len(),
            "replayed spooled engagement events"
        ),
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "could not settle replayed events in the spool"),
        Err(e) => tracing::error!(error = %e, "event spool task failed"),
    }
}

/// Reads the topic's metadata: `None` when the broker did not answer, else the partition count
/// when the topic has partitions (which it records).
async fn read_metadata(sink: &Arc<Inner>) -> Option<Option<i32>> {
    let probe = sink.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let metadata = probe
            .producer()
            .client()
            .fetch_metadata(Some(&probe.topic), probe.delivery_timeout)
            .ok()?;
        let count = metadata.topics().first().and_then(|topic| {
            (topic.error().is_none() && !topic.partitions().is_empty())
                .then(|| topic.partitions().len() as i32)
        });
        Some(count)
    })
    .await
    .ok()
    .flatten();
    if let Some(Some(count)) = answer {
        sink.shared.partitions.set_count(count);
    }
    answer
}

/// Reads the topic's partition count; `true` when it was learnt.
async fn refresh_partition_count(sink: &Arc<Inner>) -> bool {
    matches!(read_metadata(sink).await, Some(Some(_)))
}

/// Refreshes the reachability flag when there is nothing to deliver.
async fn check_broker(sink: &Arc<Inner>) {
    let reachable = read_metadata(sink).await.is_some();
    sink.shared
        .broker_reachable
        .store(reachable, Ordering::Relaxed);
}
