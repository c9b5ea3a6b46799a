//! The replayer: republishes spooled events in order, removing them only once Kafka acknowledged.

use crate::sink::Inner;
use rdkafka::producer::Producer;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Records sent per replay round; bounds the time one round holds the broker.
const REPLAY_BATCH: usize = 500;

/// Replays until the sink is dropped.
pub(crate) async fn run(inner: Weak<Inner>, interval: Duration) {
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // Drain without pausing while rounds succeed; pause after an empty or failed round.
        if !replay_round(&inner).await {
            drop(inner);
            tokio::time::sleep(interval).await;
        }
    }
}

/// One round; `true` when records were delivered and more remain.
async fn replay_round(inner: &Arc<Inner>) -> bool {
    let shared = inner.shared.clone();
    let batch = match tokio::task::spawn_blocking(move || shared.spool.peek(REPLAY_BATCH)).await {
        Ok(batch) => batch,
        Err(_) => return false,
    };
    if batch.is_empty() {
        if !inner.shared.broker_reachable.load(Ordering::Relaxed) {
            check_broker(inner).await;
        }
        return false;
    }
    let acked = inner.send_all(&batch).await;
    // Only the acknowledged prefix is removed, so the spool keeps its order; records after a
    // failure are sent again next round (Kafka may then hold them twice, which is allowed).
    let delivered = acked.iter().take_while(|&&ok| ok).count();
    if delivered == 0 {
        return false;
    }
    let shared = inner.shared.clone();
    let removed = tokio::task::spawn_blocking(move || shared.spool.remove_first(delivered)).await;
    match removed {
        Ok(Ok(())) => {
            tracing::info!(delivered, "replayed spooled engagement events");
            delivered == batch.len() && !inner.shared.spool.is_empty()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not remove replayed events from the spool");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "event spool task failed");
            false
        }
    }
}

/// Refreshes the reachability flag when there is nothing to deliver.
async fn check_broker(inner: &Arc<Inner>) {
    let probe = inner.clone();
    let reachable = tokio::task::spawn_blocking(move || {
        probe
            .producer()
            .client()
            .fetch_metadata(Some(&probe.topic), probe.delivery_timeout)
            .is_ok()
    })
    .await
    .unwrap_or(false);
    inner
        .shared
        .broker_reachable
        .store(reachable, Ordering::Relaxed);
}
