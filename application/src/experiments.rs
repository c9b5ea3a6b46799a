//! Experiments: define, start, stop and read the results of A/B tests of ranking weights and
//! models, and log what each variant served.
//!
//! Assignment is the domain's ([`vrs_domain::experiment`]): the feed asks the snapshot for the
//! running experiments and records the user's variants in the session, so every page of a
//! session is ranked and served by one variant. Each served page of such a session writes one
//! exposure per (experiment, item) through the event sink, with the events' guarantees; results
//! join the exposures with the users' events in the signal store.

use crate::feed::FeedPage;
use crate::ports::{EventSink, PortError, Ports, Transition};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vrs_domain::experiment::{ExperimentResults, analyze};
use vrs_domain::{Experiment, ExperimentDraft, ExperimentError, ExperimentState, Exposure, UserId};

/// Counter of exposures served, by experiment and variant.
pub const EXPOSURES_METRIC: &str = "experiment_exposures_total";
/// Counter of exposures that could not be logged, by experiment.
pub const EXPOSURES_LOST_METRIC: &str = "experiment_exposures_lost_total";
/// Most pages whose exposures wait for the publisher; past it a page's exposures are dropped and
/// counted, rather than queueing without bound behind a slow sink.
pub const MAX_QUEUED_PAGES: usize = 4_096;
/// Most exposures published in one batch.
pub const MAX_BATCH: usize = 5_000;
/// How long the publisher waits for more pages before it publishes what it has.
pub const LINGER: Duration = Duration::from_millis(250);
/// Pauses between the attempts to publish a batch (publishing is idempotent by exposure id, so
/// a batch whose outcome was unknown is simply sent again).
const RETRY_BACKOFF: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

enum Command {
    /// One page's exposures.
    Page(Vec<Exposure>, Vec<(Uuid, String)>),
    /// Publish what is queued, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Publishes the exposures of served pages in the background, in batches: a page never waits
/// for them, and the sink gets one write per batch (up to [`MAX_BATCH`] exposures or
/// [`LINGER`]), not one per page. A failed batch is retried; what still fails, or does not fit
/// the queue, is counted in `experiment_exposures_lost_total`.
#[derive(Clone)]
pub struct ExposureLog {
    sink: Arc<dyn EventSink>,
    /// The publisher's queue: started with the first page to log, on the runtime serving it,
    /// and started again should that publisher be gone (its runtime shut down).
    queue: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Sender<Command>>>>,
}

impl std::fmt::Debug for ExposureLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExposureLog")
            .field("started", &self.sender().is_some())
            .finish()
    }
}

fn count_lost(names: &[(Uuid, String)], exposures: &[Exposure]) {
    for (id, name) in names {
        let n = exposures.iter().filter(|x| x.experiment_id == *id).count();
        metrics::counter!(EXPOSURES_LOST_METRIC, "experiment" => name.clone()).increment(n as u64);
    }
}

impl ExposureLog {
    pub fn new(sink: Arc<dyn EventSink>) -> Self {
        Self {
            sink,
            queue: Arc::default(),
        }
    }

    /// The exposures of `page`, served to `user` at `at`: one per experiment of its session and
    /// item.
    pub fn exposures(user: UserId, page: &FeedPage, at: DateTime<Utc>) -> Vec<Exposure> {
        page.experiments
            .iter()
            .flat_map(|a| {
                page.items.iter().map(move |item| {
                    let position = u32::try_from(item.position).unwrap_or(u32::MAX);
                    Exposure {
                        exposure_id: Exposure::id_of(a.experiment_id, page.session_id, position),
                        experiment_id: a.experiment_id,
                        variant: a.variant.clone(),
                        user_id: user,
                        session_id: page.session_id,
                        video_id: item.video.id,
                        position,
                        served_at: at,
                    }
                })
            })
            .collect()
    }

    fn sender(&self) -> Option<tokio::sync::mpsc::Sender<Command>> {
        self.queue.lock().ok().and_then(|q| q.clone())
    }

    /// The running publisher's queue, starting a publisher when there is none.
    fn queue(&self) -> Option<tokio::sync::mpsc::Sender<Command>> {
        let mut queue = self.queue.lock().ok()?;
        match queue.as_ref() {
            Some(tx) if !tx.is_closed() => Some(tx.clone()),
            _ => {
                let (tx, rx) = tokio::sync::mpsc::channel(MAX_QUEUED_PAGES);
                tokio::spawn(publish_batches(self.sink.clone(), rx));
                *queue = Some(tx.clone());
                Some(tx)
            }
        }
    }

    /// Queues the page's exposures for publishing; returns at once.
    pub fn log(&self, user: UserId, page: &FeedPage, at: DateTime<Utc>) {
        if page.experiments.is_empty() || page.items.is_empty() {
            return;
        }
        for a in &page.experiments {
            metrics::counter!(
                EXPOSURES_METRIC,
                "experiment" => a.experiment.clone(),
                "variant" => a.variant.clone()
            )
            .increment(page.items.len() as u64);
            // The series exists from the first exposure, so a loss shows in rate() at once.
            metrics::counter!(EXPOSURES_LOST_METRIC, "experiment" => a.experiment.clone())
                .increment(0);
        }
        let names: Vec<(Uuid, String)> = page
            .experiments
            .iter()
            .map(|a| (a.experiment_id, a.experiment.clone()))
            .collect();
        let exposures = Self::exposures(user, page, at);
        use tokio::sync::mpsc::error::TrySendError;
        let Some(queue) = self.queue() else {
            count_lost(&names, &exposures);
            return;
        };
        match queue.try_send(Command::Page(exposures, names)) {
            Ok(()) => {}
            Err(TrySendError::Full(Command::Page(exposures, names))) => {
                tracing::warn!(
                    exposures = exposures.len(),
                    "the exposure queue is full; dropping this page's"
                );
                count_lost(&names, &exposures);
            }
            Err(TrySendError::Closed(Command::Page(exposures, names))) => {
                tracing::warn!(
                    exposures = exposures.len(),
                    "the exposure publisher is gone; dropping this page's"
                );
                count_lost(&names, &exposures);
            }
            Err(_) => {}
        }
    }

    /// Waits until every exposure queued so far is published (or counted lost), at most
    /// `timeout`; `false` when some were still waiting.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let Some(queue) = self.sender() else {
            return true;
        };
        let (done, answered) = tokio::sync::oneshot::channel();
        tokio::time::timeout(timeout, async {
            queue.send(Command::Flush(done)).await.is_ok() && answered.await.is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// The publisher: gathers queued pages into batches and publishes each, retrying.
async fn publish_batches(
    sink: Arc<dyn EventSink>,
    mut queue: tokio::sync::mpsc::Receiver<Command>,
) {
    let mut batch: Vec<Exposure> = Vec::new();
    let mut names: Vec<(Uuid, String)> = Vec::new();
    // When the batch being gathered is published at the latest: LINGER after its first page.
    let mut deadline = tokio::time::Instant::now();
    loop {
        let command = if batch.is_empty() {
            let Some(c) = queue.recv().await else { return };
            deadline = tokio::time::Instant::now() + LINGER;
            Some(c)
        } else {
            tokio::time::timeout_at(deadline, queue.recv())
                .await
                .unwrap_or(None)
        };
        let mut flushed = None;
        match command {
            Some(Command::Page(exposures, page_names)) => {
                batch.extend(exposures);
                for n in page_names {
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
                if batch.len() < MAX_BATCH {
                    continue;
                }
            }
            Some(Command::Flush(done)) => flushed = Some(done),
            // The linger passed (or every sender is gone): publish what is there.
            None => {}
        }
        if !batch.is_empty() {
            publish_with_retries(sink.as_ref(), &batch, &names).await;
            batch.clear();
            names.clear();
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

async fn publish_with_retries(sink: &dyn EventSink, batch: &[Exposure], names: &[(Uuid, String)]) {
    let mut attempt = 0;
    loop {
        match sink.publish_exposures(batch).await {
            Ok(()) => return,
            // Refused for its content: it would be refused again.
            Err(e @ PortError::Rejected(_)) => {
                tracing::warn!(error = %e, exposures = batch.len(), "the sink refused exposures");
                count_lost(names, batch);
                return;
            }
            Err(e) if attempt < RETRY_BACKOFF.len() => {
                tracing::warn!(error = %e, exposures = batch.len(), "publishing exposures failed; retrying");
                tokio::time::sleep(RETRY_BACKOFF[attempt]).await;
                attempt += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, exposures = batch.len(), "could not log exposures");
                count_lost(names, batch);
                return;
            }
        }
    }
}

/// Why an experiment request failed.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentServiceError {
    /// The definition is invalid; the field is named.
    #[error(transparent)]
    Invalid(#[from] ExperimentError),
    #[error("no experiment {0:?}")]
    NotFound(String),
    /// The request conflicts with the stored state (name taken, layer busy, wrong state).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Unavailable(#[from] PortError),
}

/// The experiment use cases.
pub struct ExperimentService {
    ports: Ports,
    /// Experiments whose gauges this process set while they ran, with their variants.
    gauged: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
    /// How long after an exposure its user's events on the video count for it: a session's
    /// lifetime.
    attribution: Duration,
}

impl std::fmt::Debug for ExperimentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExperimentService")
            .field("attribution", &self.attribution)
            .finish_non_exhaustive()
    }
}

impl ExperimentService {
    pub fn new(ports: Ports, attribution: Duration) -> Self {
        metrics::gauge!("experiments_running").set(0.0);
        Self {
            ports,
            attribution,
            gauged: std::sync::Mutex::default(),
        }
    }

    /// The attribution window of the results.
    pub fn attribution(&self) -> Duration {
        self.attribution
    }

    /// Validates and stores a new draft.
    pub async fn create(
        &self,
        draft: ExperimentDraft,
    ) -> Result<Experiment, ExperimentServiceError> {
        let experiment = draft.validate(crate::ports::new_uuid(), self.ports.clock.now())?;
        self.check_models(&experiment).await?;
        if !self.ports.experiments.create(&experiment).await? {
            return Err(ExperimentServiceError::Conflict(format!(
                "an experiment named {:?} exists",
                experiment.name
            )));
        }
        tracing::info!(experiment = %experiment.name, id = %experiment.id, "experiment created");
        Ok(experiment)
    }

    /// Every experiment, the most recently created first.
    pub async fn list(&self) -> Result<Vec<Experiment>, ExperimentServiceError> {
        Ok(self.ports.experiments.experiments().await?)
    }

    /// The experiment with this id or name.
    pub async fn get(&self, key: &str) -> Result<Experiment, ExperimentServiceError> {
        if let Ok(id) = Uuid::parse_str(key)
            && let Some(e) = self.ports.experiments.experiment(id).await?
        {
            return Ok(e);
        }
        self.ports
            .experiments
            .experiments()
            .await?
            .into_iter()
            .find(|e| e.name == key)
            .ok_or_else(|| ExperimentServiceError::NotFound(key.to_owned()))
    }

    /// Starts a draft. Refused when another experiment runs in its layer, or when a running
    /// experiment of another layer changes a knob (weights, model) this one changes: a user in
    /// both would get one of the two values, and neither comparison would be clean.
    pub async fn start(&self, key: &str) -> Result<Experiment, ExperimentServiceError> {
        let experiment = self.get(key).await?;
        if experiment.state != ExperimentState::Draft {
            return Err(wrong_state(&experiment.name, experiment.state));
        }
        self.check_models(&experiment).await?;
        let (weights, model) = experiment.knobs();
        let running = self.ports.experiments.running().await?;
        if running.len() >= vrs_domain::experiment::MAX_RUNNING {
            return Err(ExperimentServiceError::Conflict(format!(
                "{} experiments are running, the most at once; stop one first",
                running.len()
            )));
        }
        for other in running {
            let (w, m) = other.knobs();
            if other.layer != experiment.layer && ((weights && w) || (model && m)) {
                return Err(ExperimentServiceError::Conflict(format!(
                    "experiment {:?} (layer {:?}) already varies the {}",
                    other.name,
                    other.layer,
                    if weights && w { "weights" } else { "model" }
                )));
            }
        }
        match self
            .ports
            .experiments
            .start(experiment.id, self.ports.clock.now())
            .await?
        {
            Transition::Done(e) => {
                tracing::info!(experiment = %e.name, "experiment started");
                Ok(e)
            }
            Transition::NotFound => Err(ExperimentServiceError::NotFound(key.to_owned())),
            Transition::WrongState(state) => Err(wrong_state(&experiment.name, state)),
            Transition::LayerBusy(other) => Err(ExperimentServiceError::Conflict(format!(
                "experiment {other:?} is running in layer {:?}; stop it first",
                experiment.layer
            ))),
        }
    }

    /// Stops a running experiment: new sessions are ranked by the default again; sessions
    /// already ranked by a variant keep serving their pages until they expire.
    pub async fn stop(&self, key: &str) -> Result<Experiment, ExperimentServiceError> {
        let experiment = self.get(key).await?;
        match self
            .ports
            .experiments
            .stop(experiment.id, self.ports.clock.now())
            .await?
        {
            Transition::Done(e) => {
                tracing::info!(experiment = %e.name, "experiment stopped");
                Ok(e)
            }
            Transition::NotFound => Err(ExperimentServiceError::NotFound(key.to_owned())),
            Transition::WrongState(state) => Err(wrong_state(&experiment.name, state)),
            Transition::LayerBusy(other) => Err(ExperimentServiceError::Conflict(other)),
        }
    }

    /// The experiment's results so far, from the signal store.
    pub async fn results(
        &self,
        key: &str,
    ) -> Result<(Experiment, ExperimentResults), ExperimentServiceError> {
        let experiment = self.get(key).await?;
        let totals = self
            .ports
            .signals
            .experiment_totals(experiment.id, self.attribution)
            .await?;
        let results = analyze(&experiment, &totals);
        if experiment.state == ExperimentState::Running {
            publish_gauges(&experiment, &results);
            if let Ok(mut gauged) = self.gauged.lock() {
                gauged.insert(
                    experiment.name.clone(),
                    experiment.variants.iter().map(|v| v.name.clone()).collect(),
                );
            }
        }
        Ok((experiment, results))
    }

    /// Computes the results of every running experiment, which sets their Prometheus gauges.
    pub async fn refresh_gauges(&self) -> Result<usize, ExperimentServiceError> {
        let running = self.ports.experiments.running().await?;
        // A stopped experiment's gauges are NaN ("no value"): its alert resolves and its lines
        // end on the dashboard.
        if let Ok(mut gauged) = self.gauged.lock() {
            gauged.retain(|name, variants| {
                let still = running.iter().any(|e| &e.name == name);
                if !still {
                    clear_gauges(name, variants);
                }
                still
            });
        }
        for e in &running {
            if let Err(err) = self.results(&e.id.to_string()).await {
                tracing::warn!(error = %err, experiment = %e.name, "could not compute experiment results");
            }
        }
        Ok(running.len())
    }

    /// Every variant's model version must be registered with an artifact.
    async fn check_models(&self, experiment: &Experiment) -> Result<(), ExperimentServiceError> {
        let wanted: Vec<(usize, &str)> = experiment
            .variants
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.model_version.as_deref().map(|m| (i, m)))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let models = self.ports.model_registry.models().await?;
        for (i, version) in wanted {
            if !models
                .iter()
                .any(|m| m.version == version && m.artifact_bytes > 0)
            {
                return Err(ExperimentError {
                    field: format!("variants[{i}].model_version"),
                    message: format!(
                        "{version:?} is not a registered model version with an artifact"
                    ),
                }
                .into());
            }
        }
        Ok(())
    }
}

fn wrong_state(name: &str, state: ExperimentState) -> ExperimentServiceError {
    ExperimentServiceError::Conflict(format!("experiment {name:?} is {}", state.as_str()))
}

/// Sets a stopped experiment's gauges to NaN.
fn clear_gauges(name: &str, variants: &[String]) {
    metrics::gauge!("experiment_sample_ratio_p_value", "experiment" => name.to_owned())
        .set(f64::NAN);
    for v in variants {
        metrics::gauge!("experiment_users", "experiment" => name.to_owned(), "variant" => v.clone())
            .set(f64::NAN);
        for m in vrs_domain::Metric::ALL {
            metrics::gauge!(
                "experiment_metric",
                "experiment" => name.to_owned(),
                "variant" => v.clone(),
                "metric" => m.as_str()
            )
            .set(f64::NAN);
        }
    }
}

/// Sets the per-variant gauges of an experiment's results: bounded labels (a running
/// experiment's name, at most [`vrs_domain::experiment::MAX_VARIANTS`] variants, five metrics).
fn publish_gauges(experiment: &Experiment, results: &ExperimentResults) {
    let name = experiment.name.clone();
    for v in &results.variants {
        metrics::gauge!("experiment_users", "experiment" => name.clone(), "variant" => v.variant.clone())
            .set(v.users as f64);
        for m in &v.metrics {
            if let Some(value) = m.value {
                metrics::gauge!(
                    "experiment_metric",
                    "experiment" => name.clone(),
                    "variant" => v.variant.clone(),
                    "metric" => m.metric.as_str()
                )
                .set(value);
            }
        }
    }
    if let Some(p) = results.sample_ratio_p_value {
        metrics::gauge!("experiment_sample_ratio_p_value", "experiment" => name).set(p);
    }
}
