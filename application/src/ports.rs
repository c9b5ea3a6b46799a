//! The ports: what the use cases need from the outside world.
//!
//! Every trait documents its contract; each adapter (memory, PostgreSQL, Redis, ...) passes the same
//! contract test suite. Traits are object-safe (`async_trait`) because `bootstrap` picks adapters at
//! run time from configuration.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vrs_domain::{
    CreatorId, EngagementEvent, Experiment, ExperimentState, Exposure, FeedSession, Hidden,
    Reaction, SessionId, SourcePosition, UserId, VariantTotals, Video, VideoId, VideoStats,
    VideoStatus, Weights,
};

#[cfg(any(test, feature = "mocks"))]
use mockall::automock;

/// A failure of an adapter. Use cases degrade on it where the policy allows, or report it as
/// "unavailable"; they never expose its text to clients.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The backing service could not be reached or refused the operation.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The backing service did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Stored data could not be decoded.
    #[error("invalid stored data: {0}")]
    InvalidData(String),
    /// The adapter refused the input (e.g. a size bound was reached).
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Position in the catalog's change stream: everything up to and including this change was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CatalogWatermark {
    pub updated_at: DateTime<Utc>,
    pub video_id: VideoId,
}

impl CatalogWatermark {
    /// The watermark just past a video's current record.
    pub fn of(video: &Video) -> Self {
        Self {
            updated_at: video.updated_at,
            video_id: video.id,
        }
    }
}

/// One change of a video in the system the catalog follows, at its position there.
#[derive(Clone, Debug, PartialEq)]
pub enum VideoChange {
    /// The row as the source holds it after the change; a deleted row has status `Deleted`.
    Upsert {
        video: Video,
        position: SourcePosition,
    },
    /// The video was deleted and only its id is known. Without a position (a Kafka tombstone) it
    /// applies at the position the catalog holds for the video. A video the catalog never had
    /// stays unknown.
    Delete {
        id: VideoId,
        position: Option<SourcePosition>,
        /// Stamped on the record as `updated_at` and, when unset, `deleted_at`.
        updated_at: DateTime<Utc>,
    },
}

impl VideoChange {
    /// The video the change is about.
    pub fn id(&self) -> VideoId {
        match self {
            Self::Upsert { video, .. } => video.id,
            Self::Delete { id, .. } => *id,
        }
    }

    /// Whether the change leaves the video deleted.
    pub fn is_delete(&self) -> bool {
        match self {
            Self::Upsert { video, .. } => video.status == VideoStatus::Deleted,
            Self::Delete { .. } => true,
        }
    }

    /// The change's position in the source, when it has one.
    pub fn position(&self) -> Option<SourcePosition> {
        match self {
            Self::Upsert { position, .. } => Some(*position),
            Self::Delete { position, .. } => *position,
        }
    }

    /// Whether this change replaces what the catalog holds: `stored` is the position and the
    /// deleted flag of the catalog's last applied change of the video (`None` when the video is
    /// unknown or was written without a position, e.g. by `seed-demo`).
    pub fn applies_over(&self, stored: Option<(SourcePosition, bool)>) -> bool {
        match self.position() {
            Some(at) => at.supersedes(self.is_delete(), stored),
            None => true,
        }
    }
}

/// The video catalog.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait VideoCatalog: Send + Sync {
    /// Videos of any status whose record changed strictly after `after` (all when `None`), ordered
    /// by `(updated_at, id)`, at most `limit`. MUST include deleted and unpublished videos, so that the
    /// candidate snapshot can drop them.
    async fn changed_since(
        &self,
        after: Option<CatalogWatermark>,
        limit: usize,
    ) -> Result<Vec<Video>, PortError>;

    /// The videos with these ids, of any status, in no particular order; unknown ids are left out.
    async fn videos_by_ids(&self, ids: &[VideoId]) -> Result<Vec<Video>, PortError>;

    /// Inserts or replaces videos by id, unconditionally (imports and the demo seed). The stored
    /// `updated_at` MUST be the one given, so `changed_since` sees the change. A video's source
    /// position, if it has one, is kept.
    async fn upsert_videos(&self, videos: &[Video]) -> Result<(), PortError>;

    /// Applies changes from the source, in the order given, each only when
    /// [`VideoChange::applies_over`] the catalog's last applied change of that video: a
    /// redelivered or reordered older change never overwrites a newer one or brings a deleted
    /// video back. The stored `updated_at` MUST be the one given. Returns how many changes were
    /// applied; the rest were older than what the catalog holds (or deletes of unknown videos).
    async fn apply_changes(&self, changes: &[VideoChange]) -> Result<usize, PortError>;

    /// The source's table was emptied at `position`: every video not deleted whose last applied
    /// change is older (or has no position) is deleted, stamped `updated_at`. Returns how many.
    /// From then on `apply_changes` skips every change older than the newest truncate, also for
    /// videos the catalog does not hold (a truncate may overtake the changes before it).
    async fn truncate(
        &self,
        position: SourcePosition,
        updated_at: DateTime<Utc>,
    ) -> Result<u64, PortError>;
}

/// Who follows whom.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait FollowGraph: Send + Sync {
    /// The creators `user` follows; empty for an unknown user.
    async fn followed_creators(&self, user: UserId) -> Result<Vec<CreatorId>, PortError>;

    /// Records follows; following twice is a no-op.
    async fn add_follows(&self, follows: &[(UserId, CreatorId)]) -> Result<(), PortError>;
}

/// One stored version of the ranking weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightSet {
    /// Increases with every activation; never reused.
    pub version: i64,
    pub weights: Weights,
    /// When this version became active.
    pub activated_at: DateTime<Utc>,
    /// Whether it is the active version now.
    pub active: bool,
}

/// The ranking configuration: versioned weight sets, exactly one of them active.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait RankingConfigStore: Send + Sync {
    /// The active weight set (validated by construction).
    async fn active_weights(&self) -> Result<Weights, PortError>;

    /// The active version with its metadata.
    async fn active_set(&self) -> Result<WeightSet, PortError>;

    /// Stores `weights` as a new version and makes it the only active one, atomically: readers
    /// see the old set or the new one, never none or two. Returns the new version.
    async fn activate(&self, weights: Weights) -> Result<WeightSet, PortError>;

    /// Up to `limit` versions, newest first (the active one included).
    async fn history(&self, limit: usize) -> Result<Vec<WeightSet>, PortError>;
}

/// Aggregated engagement signals.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait SignalStore: Send + Sync {
    /// Per-video aggregates of the events that occurred at or after `since`; videos without events
    /// may be left out.
    async fn video_stats(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(VideoId, VideoStats)>, PortError>;

    /// Up to `limit` videos with the highest engagement (as [`vrs_domain::signals::engagement`])
    /// over events at or after `since`, best first; only videos with at least one view count.
    async fn trending(&self, since: DateTime<Utc>, limit: usize)
    -> Result<Vec<VideoId>, PortError>;

    /// The user's raw interaction strength per creator (sum of
    /// [`vrs_domain::EventType::affinity_weight`] over events at or after `since`, floored at 0);
    /// creators with zero strength may be left out. Empty for a user without history.
    async fn creator_affinity(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(CreatorId, f64)>, PortError>;

    /// Videos `user` watched (`watch` or `complete` events) at or after `since`, from the
    /// aggregated watch history; it lags accepted events by the pipeline's delay.
    async fn watched_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError>;

    /// Per (user, video) pair with events at or after `since` (whole hours): the sum of their
    /// [`vrs_domain::EventType::affinity_weight`]s and the latest event's hour, for pairs whose sum
    /// is positive; at most `limit` pairs, the most recent first. What the model is trained on.
    async fn engagement_pairs(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::model::Engagement>, PortError>;

    /// What `user` hid (`not_interested` videos, `hide_creator` creators), ever, as the
    /// signal store recorded it; it lags accepted events by the pipeline's delay.
    async fn hidden(&self, user: UserId) -> Result<Hidden, PortError>;

    /// Up to `limit` users with the most events at or after `since`, most active first.
    async fn most_active_users(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<UserId>, PortError>;

    /// Per variant of `experiment`, the totals of its exposures
    /// ([`vrs_domain::VariantTotals`], summed per user): each exposure (counted once by
    /// `exposure_id`) with the outcome of the exposed user's events on the exposed video that
    /// occurred from its `served_at` to `attribution` later
    /// ([`vrs_domain::experiment::ExposureOutcome::observe`]). Variants without exposures may be
    /// left out.
    async fn experiment_totals(
        &self,
        experiment: Uuid,
        attribution: Duration,
    ) -> Result<Vec<VariantTotals>, PortError>;
}

/// Each user's served and watched videos.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait ViewHistory: Send + Sync {
    /// Videos served to `user` at or after `since`.
    async fn served_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError>;

    /// Records that `videos` were served to `user` at `at`.
    async fn record_served(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;

    /// Videos `user` watched at or after `since`.
    async fn watched_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError>;

    /// Records that `user` watched `videos` at `at` (the server's time of acceptance: a cursor
    /// page reads only watches recorded from shortly before its session was ranked). MUST be
    /// visible to `watched_since` and `seen_among` as soon as it returns: the next page depends
    /// on it.
    async fn record_watched(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;

    /// Videos and creators `user` hid at or after `since` (everything they hid with
    /// `DateTime::UNIX_EPOCH`). A cursor page reads only what was hidden since its session was
    /// ranked: the ranking left out what was hidden before.
    async fn hidden_since(&self, user: UserId, since: DateTime<Utc>) -> Result<Hidden, PortError>;

    /// Of `items` (videos with their creators), those `user` was served at or after
    /// `served_since`, watched at or after `watched_since`, or hid (the video or its creator).
    /// What a cached session's first page needs: its cost follows `items`, not the length of the
    /// user's histories. The default reads the histories whole.
    async fn seen_among(
        &self,
        user: UserId,
        items: &[(VideoId, CreatorId)],
        served_since: DateTime<Utc>,
        watched_since: DateTime<Utc>,
    ) -> Result<SeenAmong, PortError> {
        let (served, watched, hidden) = tokio::try_join!(
            self.served_since(user, served_since),
            self.watched_since(user, watched_since),
            self.hidden_since(user, DateTime::<Utc>::UNIX_EPOCH),
        )?;
        Ok(SeenAmong::of(items, served, watched, &hidden))
    }

    /// Records that `user` hid `videos` and `creators` at `at` (the server's time of acceptance).
    /// MUST be visible to `hidden_since` and `seen_among` as soon as it returns: the next page,
    /// even of a cached session, leaves them out.
    async fn record_hidden(
        &self,
        user: UserId,
        videos: &[VideoId],
        creators: &[CreatorId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
}

/// What [`ViewHistory::seen_among`] found among the items it was asked about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenAmong {
    /// Served at or after the given time.
    pub served: std::collections::HashSet<VideoId>,
    /// Watched at or after the given time.
    pub watched: std::collections::HashSet<VideoId>,
    /// Hidden: these videos, and these items' creators.
    pub hidden: Hidden,
}

impl SeenAmong {
    /// The part of whole histories that concerns `items`.
    pub fn of(
        items: &[(VideoId, CreatorId)],
        served: impl IntoIterator<Item = VideoId>,
        watched: impl IntoIterator<Item = VideoId>,
        hidden: &Hidden,
    ) -> Self {
        let asked: std::collections::HashSet<VideoId> = items.iter().map(|(v, _)| *v).collect();
        Self {
            served: served.into_iter().filter(|v| asked.contains(v)).collect(),
            watched: watched.into_iter().filter(|v| asked.contains(v)).collect(),
            hidden: Hidden {
                videos: items
                    .iter()
                    .filter(|(v, _)| hidden.videos.contains(v))
                    .map(|(v, _)| *v)
                    .collect(),
                creators: items
                    .iter()
                    .filter(|(_, c)| hidden.creators.contains(c))
                    .map(|(_, c)| *c)
                    .collect(),
            },
        }
    }
}

/// Ranked feed sessions.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait FeedCache: Send + Sync {
    /// The session most recently stored for `user`, if it has not expired.
    async fn current_session(&self, user: UserId) -> Result<Option<FeedSession>, PortError>;

    /// One session of `user` by id, if it has not expired. MUST return `None` for another user's
    /// session id.
    async fn session(&self, user: UserId, id: SessionId) -> Result<Option<FeedSession>, PortError>;

    /// Stores a session for `ttl` and makes it the user's current one. Sessions stored earlier stay
    /// readable by id until they expire, so cursors into them keep working.
    async fn store_session(&self, session: &FeedSession, ttl: Duration) -> Result<(), PortError>;

    /// Stores `session` again (e.g. with a later `expires_at`) for `ttl`, without making it the
    /// user's current one. Fails when the session is no longer stored: it is not created again.
    async fn refresh_session(&self, session: &FeedSession, ttl: Duration) -> Result<(), PortError>;

    /// Drops the user's current session, so the next first page is ranked anew.
    async fn invalidate(&self, user: UserId) -> Result<(), PortError>;

    /// Drops every user's current session; returns how many there were. Sessions stay readable by
    /// id, so cursors already handed out keep working until they expire.
    async fn invalidate_all(&self) -> Result<u64, PortError>;
}

/// What an event sink did with a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Events durably accepted for processing.
    pub accepted: usize,
    /// Events whose `event_id` had been accepted before (or repeats within the batch).
    pub duplicates: usize,
}

/// Remembers the event ids of each user's events that the [`EventSink`] durably accepted, so a
/// client's retry of an accepted event is answered as a duplicate without going downstream again.
///
/// The ledger is a fast path, not the source of truth: the pipeline behind the sink is idempotent
/// by `event_id` on its own. An id is recorded only once the sink accepted its event, so an event
/// that was never accepted (sink failure, client gone, process killed) is never reported as a
/// duplicate: its retry goes through.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait EventLedger: Send + Sync {
    /// For each id, in order, whether an event with it was recorded for `user` within the ledger's
    /// retention (at least 7 days). Reads only.
    async fn recorded(&self, user: UserId, ids: &[Uuid]) -> Result<Vec<bool>, PortError>;

    /// Records ids whose events the sink durably accepted. Recording an id again is a no-op.
    async fn record(&self, user: UserId, ids: &[Uuid]) -> Result<(), PortError>;

    /// Claims `user`'s reactions, in order, by the rules of [`Reaction`]; for each, whether it
    /// counts. Atomic per call: two concurrent calls never both count one like.
    async fn claim_reactions(
        &self,
        user: UserId,
        reactions: &[Reaction],
    ) -> Result<Vec<bool>, PortError>;

    /// Gives back the claims that `reactions` (which counted) hold, when their batch was not
    /// accepted after all; a claim another event holds by now is left alone.
    async fn release_reactions(
        &self,
        user: UserId,
        reactions: &[Reaction],
    ) -> Result<(), PortError>;
}

/// Where accepted engagement events go.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Publishes a batch. When it returns `Ok`, every event is durable: it will reach the signal
    /// store even if the process dies. Delivery downstream may repeat, so the pipeline MUST be
    /// idempotent by `event_id`: an event it accepted before is counted as a duplicate and never
    /// applied twice. On `Err` nothing of the batch may count as accepted. (Clients' retries of
    /// accepted events are mostly caught earlier, by the [`EventLedger`].)
    async fn publish(&self, events: &[EngagementEvent]) -> Result<PublishOutcome, PortError>;

    /// Publishes experiment exposures with the same guarantee: on `Ok` every exposure is durable
    /// and will reach the store, where it is counted once by `exposure_id`.
    async fn publish_exposures(&self, exposures: &[Exposure]) -> Result<(), PortError>;
}

/// An event a store can never hold, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedEvent {
    pub event_id: Uuid,
    pub reason: String,
}

/// What [`EngagementEventStore::insert_events`] did with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredEvents {
    /// Ids of the events that were new and are now stored, in batch order.
    pub new: Vec<Uuid>,
    /// Events the store can never hold (they would fail again on every retry); the rest of the
    /// batch was stored all the same.
    pub rejected: Vec<RejectedEvent>,
}

/// Where the event pipeline's consumer stores events (the signal store's write side).
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait EngagementEventStore: Send + Sync {
    /// Stores a batch durably. MUST be idempotent by `event_id` (events stored before, or repeated
    /// within the batch, are skipped), since the pipeline delivers at least once, and MUST store
    /// each event at most once even when a retry follows an attempt whose outcome was unknown.
    /// An event the store can never hold is returned in `rejected` without failing the others.
    /// On `Err` the caller retries the whole batch: `Rejected` means the batch as a whole was
    /// refused for its content (the caller may split it to find the culprit), any other error is
    /// transient.
    async fn insert_events(&self, events: &[EngagementEvent]) -> Result<StoredEvents, PortError>;

    /// Stores experiment exposures durably, idempotent by `exposure_id` like `insert_events` is
    /// by `event_id`; returns the ids that were new. A store that keeps no exposures refuses
    /// them (`Rejected`), which sends them to the dead-letter topic rather than losing them.
    async fn insert_exposures(&self, exposures: &[Exposure]) -> Result<Vec<Uuid>, PortError> {
        Err(PortError::Rejected(format!(
            "this store keeps no experiment exposures ({} refused)",
            exposures.len()
        )))
    }

    /// Called when the caller took over a share of the events (a consumer that received
    /// partitions) before it stores any of them: waits until no write that their previous writer
    /// may have started is still running, so that what `insert_events` finds stored is not raced
    /// by it. The default does nothing: for a store whose writes are atomic and at once visible.
    async fn fence(&self) -> Result<(), PortError> {
        Ok(())
    }
}

/// A learned relevance model.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait ModelScorer: Send + Sync {
    /// The version whose artifact is loaded, if any.
    fn loaded_version(&self) -> Option<String>;

    /// Loads `version` from its artifact (the registry's bytes), replacing the loaded one; on
    /// error the loaded one stays.
    fn load(&self, version: &str, artifact: &[u8]) -> Result<(), PortError>;

    /// Versions loaded besides the active one, for experiment variants that score with another
    /// model.
    fn variant_versions(&self) -> Vec<String> {
        Vec::new()
    }

    /// Loads `version` next to the active one, for experiment variants; on error nothing changes.
    fn load_variant(&self, version: &str, _artifact: &[u8]) -> Result<(), PortError> {
        Err(PortError::Rejected(format!(
            "this scorer cannot hold model {version} next to the active one"
        )))
    }

    /// Drops the variant versions not in `keep`.
    fn retain_variants(&self, _keep: &[String]) {}

    /// One score in [0, 1] per video (video, its creator), in the order given, for `user`, whose
    /// recent interactions (video, its creator, strength) are `recent`; by the variant version
    /// `version` when given (it must be loaded), else by the active one.
    async fn score(
        &self,
        version: Option<String>,
        user: UserId,
        recent: &[(VideoId, CreatorId, f32)],
        videos: &[(VideoId, CreatorId)],
    ) -> Result<Vec<f64>, PortError>;
}

/// One registered model version, as `models list` shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelRecord {
    pub version: String,
    pub is_active: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it was last activated (for a version never active: when it was registered).
    pub deployed_at: DateTime<Utc>,
    /// Offline metrics from its training run.
    pub performance_metrics: serde_json::Value,
    /// Videos scored with it, over all replicas.
    pub inference_count: u64,
    /// Size of its artifact; 0 for a version registered without one.
    pub artifact_bytes: u64,
}

/// A deployed model version, as the model registry knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub version: String,
    pub deployed_at: DateTime<Utc>,
}

/// Which model version is active, and how much it is used.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait ModelRegistry: Send + Sync {
    /// The active model; `None` when no model is active (the model signal is then dropped).
    async fn active_model(&self) -> Result<Option<ModelInfo>, PortError>;

    /// Adds `count` inferences (videos scored) to `version`'s counter. Unknown versions are ignored.
    async fn record_inferences(&self, version: &str, count: u64) -> Result<(), PortError>;

    /// Registers a new, inactive version with its offline metrics and artifact. `false` (and
    /// nothing changed) when the version exists: versions are immutable.
    async fn register(
        &self,
        version: &str,
        metrics: &serde_json::Value,
        artifact: &[u8],
        at: DateTime<Utc>,
    ) -> Result<bool, PortError>;

    /// Every version, the most recently registered first.
    async fn models(&self) -> Result<Vec<ModelRecord>, PortError>;

    /// Makes `version` the only active one (and records the activation). `false` for an unknown
    /// version.
    async fn activate(&self, version: &str, at: DateTime<Utc>) -> Result<bool, PortError>;

    /// Activates the version active before the current one (the latest activation of another
    /// version); its name, or `None` when there is none.
    async fn rollback(&self, at: DateTime<Utc>) -> Result<Option<String>, PortError>;

    /// The artifact of `version`; `None` for an unknown version or one without an artifact.
    async fn artifact(&self, version: &str) -> Result<Option<Vec<u8>>, PortError>;
}

/// What a state change of an experiment did.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// The experiment as it is now.
    Done(Experiment),
    NotFound,
    /// The experiment is not in a state this change applies to.
    WrongState(ExperimentState),
    /// Another experiment runs in the layer (its name).
    LayerBusy(String),
}

/// Experiments and their variants.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait ExperimentStore: Send + Sync {
    /// Stores a new draft experiment. `false` (and nothing stored) when its name is taken.
    async fn create(&self, experiment: &Experiment) -> Result<bool, PortError>;

    /// Every experiment, the most recently created first.
    async fn experiments(&self) -> Result<Vec<Experiment>, PortError>;

    /// The experiment with this id.
    async fn experiment(&self, id: Uuid) -> Result<Option<Experiment>, PortError>;

    /// The running experiments.
    async fn running(&self) -> Result<Vec<Experiment>, PortError>;

    /// Starts a draft at `at`. Atomic: of two drafts of one layer started at once, one runs and
    /// the other gets `LayerBusy`.
    async fn start(&self, id: Uuid, at: DateTime<Utc>) -> Result<Transition, PortError>;

    /// Stops a running experiment at `at`.
    async fn stop(&self, id: Uuid, at: DateTime<Utc>) -> Result<Transition, PortError>;
}

/// Turns media object keys into URLs clients can fetch.
#[cfg_attr(any(test, feature = "mocks"), automock)]
pub trait MediaUrls: Send + Sync {
    fn playback_url(&self, video: &Video) -> String;
    fn thumbnail_url(&self, video: &Video) -> String;
}

/// The time, injectable for tests.
#[cfg_attr(any(test, feature = "mocks"), automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A dependency whose health is reported by `GET /health`.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Name shown in the health report, e.g. `redis`.
    fn name(&self) -> &'static str;
    /// `Ok` when the dependency answers.
    async fn check(&self) -> Result<(), PortError>;
}

/// Every port, as the use cases receive them.
#[derive(Clone)]
pub struct Ports {
    pub catalog: Arc<dyn VideoCatalog>,
    pub follows: Arc<dyn FollowGraph>,
    pub ranking_config: Arc<dyn RankingConfigStore>,
    pub signals: Arc<dyn SignalStore>,
    pub history: Arc<dyn ViewHistory>,
    pub feed_cache: Arc<dyn FeedCache>,
    pub events: Arc<dyn EventSink>,
    pub event_ledger: Arc<dyn EventLedger>,
    /// `None` when no model is deployed: the model signal is then dropped and weights renormalized.
    pub model: Option<Arc<dyn ModelScorer>>,
    /// Which model version is active; the model signal is used only while one is.
    pub model_registry: Arc<dyn ModelRegistry>,
    /// The experiments; running ones split new sessions into variants.
    pub experiments: Arc<dyn ExperimentStore>,
    pub media: Arc<dyn MediaUrls>,
    pub clock: Arc<dyn Clock>,
    pub probes: Vec<Arc<dyn HealthProbe>>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports")
            .field("model", &self.model.is_some())
            .field(
                "probes",
                &self.probes.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A fresh random id for events.
pub fn new_uuid() -> Uuid {
    Uuid::new_v4()
}

/// A fresh id for a session ranked at `at`: a UUIDv7, so the id tells when its session was
/// ranked ([`SessionId::created_at`]) before the session is read.
pub fn new_session_id(at: DateTime<Utc>) -> SessionId {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        millis / 1_000,
        u32::try_from(millis % 1_000).unwrap_or(0) * 1_000_000,
    );
    SessionId(Uuid::new_v7(ts))
}
