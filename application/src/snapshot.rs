//! The candidate snapshot: every servable video with its aggregated signals, refreshed in the
//! background and swapped atomically, so a feed request does no catalog or signal-store I/O.

use crate::ports::{CatalogWatermark, ModelInfo, PortError, Ports};
use arc_swap::ArcSwapOption;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Mutex;
use vrs_domain::{CandidatePool, Experiment, Video, VideoId, VideoStats, Weights};

/// How many catalog changes one refresh reads per round trip.
const CATALOG_PAGE: usize = 5_000;
/// How far before the watermark each catalog refresh starts reading again: how late a writer's
/// commit may land after the `updated_at` it wrote and still be seen.
pub const CATALOG_OVERLAP: Duration = Duration::seconds(30);
/// Window of the per-video aggregates (completion, engagement).
pub const SIGNAL_WINDOW: Duration = Duration::days(30);
/// Window of the trending source.
pub const TRENDING_WINDOW: Duration = Duration::hours(24);
/// How many trending videos the snapshot keeps.
pub const TRENDING_SIZE: usize = 200;

/// One consistent view of the catalog, its signals and the active weights.
#[derive(Debug)]
pub struct SnapshotState {
    pub pool: CandidatePool,
    pub weights: Weights,
    pub built_at: DateTime<Utc>,
    /// Whether the signal store answered for this snapshot (else the last good signals were used).
    pub signals_fresh: bool,
    /// The active model; the model signal is used only while there is one.
    pub model: Option<ModelInfo>,
    /// The running experiments, the earliest started first.
    pub experiments: Vec<Experiment>,
}

/// The current snapshot, readable without locks by every request.
#[derive(Debug, Default)]
pub struct CandidateSnapshot {
    current: ArcSwapOption<SnapshotState>,
    /// Videos scored by the active model since the registry's counter was last updated.
    pending_inferences: AtomicU64,
}

impl CandidateSnapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot; `None` until the first refresh succeeded.
    pub fn load(&self) -> Option<Arc<SnapshotState>> {
        self.current.load_full()
    }

    pub fn store(&self, state: SnapshotState) {
        self.current.store(Some(Arc::new(state)));
    }

    /// Counts videos scored by the active model; the refresher adds them to the registry.
    pub fn count_inferences(&self, videos: u64) {
        self.pending_inferences.fetch_add(videos, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct RefresherState {
    videos: HashMap<VideoId, Video>,
    watermark: Option<CatalogWatermark>,
    stats: HashMap<VideoId, VideoStats>,
    trending: Vec<VideoId>,
    weights: Option<Weights>,
    model: Option<ModelInfo>,
    experiments: Vec<Experiment>,
    /// The variant model versions that last failed to load, and when.
    variant_failures: HashMap<String, std::time::Instant>,
    /// The version that last failed to load, and when: retried after [`MODEL_RETRY`], not at
    /// every refresh (an artifact can be tens of MB).
    model_failure: Option<(String, std::time::Instant)>,
}

/// How long a version that failed to load is left alone before the next try.
pub const MODEL_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// What one refresh did.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshReport {
    pub videos: usize,
    pub catalog_changes: usize,
    /// Parts that failed and were served from the previous snapshot instead.
    pub degraded: Vec<&'static str>,
}

/// Rebuilds the snapshot from the catalog (incrementally, past a watermark), the signal store and
/// the ranking configuration.
pub struct SnapshotRefresher {
    ports: Ports,
    snapshot: Arc<CandidateSnapshot>,
    state: Mutex<RefresherState>,
    /// Engagement and completion are shrunk toward the catalog's means by a prior worth this
    /// many views (0: the raw values).
    prior_views: f64,
}

/// The default prior of the smoothed signals: a video's own engagement and completion outweigh
/// the catalog's mean from 10 views (watches) on.
pub const DEFAULT_PRIOR_VIEWS: f64 = 10.0;

impl std::fmt::Debug for SnapshotRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotRefresher").finish_non_exhaustive()
    }
}

impl SnapshotRefresher {
    pub fn new(ports: Ports, snapshot: Arc<CandidateSnapshot>) -> Self {
        metrics::counter!("model_load_failures_total").increment(0);
        Self {
            ports,
            snapshot,
            state: Mutex::new(RefresherState::default()),
            prior_views: DEFAULT_PRIOR_VIEWS,
        }
    }

    /// Sets the prior of the smoothed signals (0 ranks on the raw values).
    pub fn with_prior_views(mut self, prior_views: f64) -> Self {
        self.prior_views = if prior_views.is_finite() {
            prior_views.max(0.0)
        } else {
            0.0
        };
        self
    }

    /// Reads what changed and swaps in a new snapshot.
    ///
    /// Fails only when the catalog cannot be read and no snapshot exists yet; a failing signal store
    /// or ranking configuration keeps their last good values (reported in `degraded`).
    #[tracing::instrument(name = "snapshot.refresh", skip_all)]
    pub async fn refresh(&self) -> Result<RefreshReport, PortError> {
        let started = std::time::Instant::now();
        let mut state = self.state.lock().await;
        let now = self.ports.clock.now();
        let mut degraded = Vec::new();

        let mut changes = 0;
        // Each refresh reads again the changes of the last CATALOG_OVERLAP before the watermark:
        // a writer whose transaction committed after an earlier refresh had read past its
        // `updated_at` is picked up by the next one. Re-applying a video is idempotent.
        let seen = state.watermark;
        let mut cursor = seen.map(|w| CatalogWatermark {
            updated_at: w.updated_at - CATALOG_OVERLAP,
            video_id: VideoId(uuid::Uuid::nil()),
        });
        let catalog_result = loop {
            match self.ports.catalog.changed_since(cursor, CATALOG_PAGE).await {
                Ok(page) => {
                    let full = page.len() == CATALOG_PAGE;
                    for video in page {
                        let mark = CatalogWatermark::of(&video);
                        cursor = Some(mark);
                        if Some(mark) > seen {
                            changes += 1;
                        }
                        state.watermark = state.watermark.max(Some(mark));
                        if video.is_servable() {
                            state.videos.insert(video.id, video);
                        } else {
                            state.videos.remove(&video.id);
                        }
                    }
                    if !full {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = catalog_result {
            if self.snapshot.load().is_none() && state.watermark.is_none() {
                return Err(e);
            }
            tracing::warn!(error = %e, "catalog refresh failed; keeping the videos already known");
            degraded.push("catalog");
        }

        self.flush_inferences(state.model.as_ref()).await;
        let (stats, trending, weights, model, experiments) = tokio::join!(
            self.ports.signals.video_stats(now - SIGNAL_WINDOW),
            self.ports
                .signals
                .trending(now - TRENDING_WINDOW, TRENDING_SIZE),
            self.ports.ranking_config.active_weights(),
            self.ports.model_registry.active_model(),
            self.ports.experiments.running(),
        );
        let mut signals_fresh = true;
        match stats {
            Ok(rows) => state.stats = rows.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "signal store unavailable; keeping the last signals");
                degraded.push("signals");
                signals_fresh = false;
            }
        }
        match trending {
            Ok(ids) => state.trending = ids,
            Err(e) => {
                tracing::warn!(error = %e, "trending unavailable; keeping the last list");
                if signals_fresh {
                    degraded.push("signals");
                }
                signals_fresh = false;
            }
        }
        match weights {
            Ok(w) => state.weights = Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "ranking configuration unavailable; keeping the last weights");
                degraded.push("ranking_config");
            }
        }

        match model {
            Ok(Some(m)) => {
                let waiting = state
                    .model_failure
                    .as_ref()
                    .is_some_and(|(v, at)| *v == m.version && at.elapsed() < MODEL_RETRY);
                if waiting {
                    degraded.push("model");
                } else {
                    match self.load_model(&m).await {
                        Ok(()) => {
                            state.model = Some(m);
                            state.model_failure = None;
                        }
                        Err(e) => {
                            // The version loaded before (if any) keeps scoring; retried later.
                            metrics::counter!("model_load_failures_total").increment(1);
                            tracing::warn!(error = %e, version = %m.version, "could not load the active model; keeping the last one");
                            state.model_failure =
                                Some((m.version.clone(), std::time::Instant::now()));
                            degraded.push("model");
                        }
                    }
                }
            }
            Ok(None) => state.model = None,
            Err(e) => {
                tracing::warn!(error = %e, "model registry unavailable; keeping the last model");
                degraded.push("model_registry");
            }
        }

        match experiments {
            Ok(mut running) => {
                running.sort_by_key(|e| (e.started_at, e.id));
                state.experiments = running;
            }
            Err(e) => {
                tracing::warn!(error = %e, "experiments unavailable; keeping the running ones known");
                degraded.push("experiments");
            }
        }
        if !self.load_variant_models(&mut state).await {
            degraded.push("model");
        }
        // An experiment runs here only once every model its variants score with is loaded:
        // a variant ranked without its model would be compared as if it had it.
        let loaded: Vec<String> = self
            .ports
            .model
            .as_ref()
            .map(|m| m.variant_versions())
            .unwrap_or_default();
        let (ready, waiting): (Vec<Experiment>, Vec<Experiment>) =
            state.experiments.iter().cloned().partition(|e| {
                e.variants
                    .iter()
                    .filter_map(|v| v.model_version.as_ref())
                    .all(|m| loaded.contains(m))
            });
        if !waiting.is_empty() {
            let names: Vec<&str> = waiting.iter().map(|e| e.name.as_str()).collect();
            tracing::warn!(
                ?names,
                "experiments wait for their variants' models to load"
            );
            degraded.push("experiments");
        }
        metrics::gauge!("experiments_running").set(ready.len() as f64);
        let wanted: Vec<String> = state
            .experiments
            .iter()
            .flat_map(|e| e.variants.iter().filter_map(|v| v.model_version.clone()))
            .collect();

        let mut pool = CandidatePool::build(
            state.videos.values().cloned(),
            &state.stats,
            &state.trending,
        );
        pool.smooth(self.prior_views);
        let videos = pool.len();
        self.snapshot.store(SnapshotState {
            pool,
            weights: state.weights.unwrap_or_default(),
            built_at: now,
            signals_fresh,
            model: state.model.clone(),
            experiments: ready,
        });
        if let Some(scorer) = &self.ports.model {
            scorer.retain_variants(&wanted);
        }
        metrics::gauge!("candidate_snapshot_videos").set(videos as f64);
        metrics::gauge!("candidate_snapshot_built_timestamp_seconds").set(now.timestamp() as f64);
        metrics::histogram!("candidate_snapshot_refresh_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(RefreshReport {
            videos,
            catalog_changes: changes,
            degraded,
        })
    }

    /// Makes the scorer hold `model`'s artifact: read from the registry and decoded (off the
    /// async workers) only when the active version changed.
    async fn load_model(&self, model: &ModelInfo) -> Result<(), PortError> {
        let Some(scorer) = self.ports.model.clone() else {
            return Ok(());
        };
        if scorer.loaded_version().as_deref() == Some(model.version.as_str()) {
            return Ok(());
        }
        let artifact = self
            .ports
            .model_registry
            .artifact(&model.version)
            .await?
            .ok_or_else(|| {
                PortError::InvalidData(format!("model {} has no artifact", model.version))
            })?;
        let version = model.version.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || scorer.load(&version, &artifact))
            .await
            .map_err(|e| PortError::Unavailable(format!("loading the model: {e}")))??;
        tracing::info!(
            version = %model.version,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded the active model"
        );
        Ok(())
    }

    /// Makes the scorer hold the model versions of the running experiments' variants (and only
    /// those); `false` when one failed to load (the variant then ranks without the model signal
    /// until it loads; retried after [`MODEL_RETRY`]).
    async fn load_variant_models(&self, state: &mut RefresherState) -> bool {
        let Some(scorer) = self.ports.model.clone() else {
            return true;
        };
        let mut wanted: Vec<String> = state
            .experiments
            .iter()
            .flat_map(|e| e.variants.iter().filter_map(|v| v.model_version.clone()))
            .collect();
        wanted.sort();
        wanted.dedup();
        // Versions no running experiment names are dropped after the new snapshot is stored
        // (`refresh`): requests on the previous one may still score with them.
        state.variant_failures.retain(|v, _| wanted.contains(v));
        let loaded = scorer.variant_versions();
        let mut ok = true;
        for version in wanted.iter().filter(|v| !loaded.contains(v)) {
            if state
                .variant_failures
                .get(version)
                .is_some_and(|at| at.elapsed() < MODEL_RETRY)
            {
                ok = false;
                continue;
            }
            let artifact = match self.ports.model_registry.artifact(version).await {
                Ok(Some(a)) => Ok(a),
                Ok(None) => Err(PortError::InvalidData(format!(
                    "model {version} has no artifact"
                ))),
                Err(e) => Err(e),
            };
            let result = match artifact {
                Ok(artifact) => {
                    let (scorer, version) = (scorer.clone(), version.clone());
                    tokio::task::spawn_blocking(move || scorer.load_variant(&version, &artifact))
                        .await
                        .map_err(|e| PortError::Unavailable(format!("loading a model: {e}")))
                        .and_then(|r| r)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    state.variant_failures.remove(version);
                    tracing::info!(%version, "loaded an experiment variant's model");
                }
                Err(e) => {
                    metrics::counter!("model_load_failures_total").increment(1);
                    tracing::warn!(error = %e, %version, "could not load an experiment variant's model");
                    state
                        .variant_failures
                        .insert(version.clone(), std::time::Instant::now());
                    ok = false;
                }
            }
        }
        ok
    }

    /// Adds the inferences counted since the last refresh to the registry (kept for the next
    /// refresh when it fails).
    async fn flush_inferences(&self, model: Option<&ModelInfo>) {
        let Some(model) = model else { return };
        let count = self.snapshot.pending_inferences.swap(0, Ordering::Relaxed);
        if count == 0 {
            return;
        }
        if let Err(e) = self
            .ports
            .model_registry
            .record_inferences(&model.version, count)
            .await
        {
            tracing::warn!(error = %e, "could not update the model's inference counter");
            self.snapshot.count_inferences(count);
        }
    }

    /// Refreshes every `interval` until `shutdown` resolves.
    pub async fn run(
        self: Arc<Self>,
        interval: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::error!(error = %e, "candidate snapshot refresh failed");
                    }
                }
            }
        }
    }
}
