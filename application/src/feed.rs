//! Get a feed page: serve from the user's cached session when it still has enough unseen videos,
//! else rank a new session from the candidate snapshot.

use crate::ports::{PortError, Ports};
use crate::snapshot::{CandidateSnapshot, SnapshotState};
use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use vrs_domain::ranking::{self, RankingConfig, UserContext};
use vrs_domain::{
    Assignment, CreatorId, FeedSession, Hidden, Limit, Reason, SessionId, SessionItem,
    SignalValues, UserId, Variant, Video, VideoId, VideoStats, Weights,
};

/// Policy knobs of the feed use case.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    pub ranking: RankingConfig,
    /// How long a ranked session is reused for first pages, before jitter.
    pub session_ttl: Duration,
    /// Every cursor stays valid at least this long after it is handed out: a session is kept
    /// that long past its reuse, and extended when a page is served from it later.
    pub cursor_ttl: Duration,
    /// Up to this much is added at random to each session's lifetime, so sessions ranked together
    /// do not all expire together.
    pub session_ttl_jitter: Duration,
    /// A first page does not repeat videos served this recently (while enough others exist).
    pub served_window: Duration,
    /// Videos watched this recently are never ranked.
    pub watched_window: Duration,
    /// Affinity is computed over this window.
    pub affinity_window: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            ranking: RankingConfig::default(),
            session_ttl: Duration::hours(1),
            cursor_ttl: Duration::hours(1),
            session_ttl_jitter: Duration::minutes(5),
            served_window: Duration::hours(24),
            watched_window: Duration::days(30),
            affinity_window: Duration::days(90),
        }
    }
}

/// Where a follow-up page starts: decoded from a client's cursor after it was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedPosition {
    pub session_id: SessionId,
    pub offset: usize,
}

/// A request for one page.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub user_id: UserId,
    pub limit: Limit,
    /// `None` for a first page.
    pub position: Option<FeedPosition>,
    /// Attach signal values, weights and contributions to each item.
    pub explain: bool,
}

/// Whether the page came from a cached session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    /// The feed cache is unavailable; the page was ranked for this request alone.
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

/// Why an item is ranked where it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Explanation {
    pub signals: SignalValues,
    /// Engagement and completion before smoothing (the catalog's raw rates of the video).
    pub raw_engagement: f64,
    pub raw_completion: f64,
    pub weights: Weights,
    pub contributions: SignalValues,
}

/// One video of a page.
#[derive(Clone, Debug)]
pub struct FeedItem {
    pub video: Video,
    pub stats: VideoStats,
    pub completion_rate: f64,
    pub score: f64,
    pub reason: Reason,
    pub playback_url: String,
    pub thumbnail_url: String,
    pub explanation: Option<Explanation>,
    /// The item's index in its session (what an exposure records).
    pub position: usize,
}

/// Where the next page starts, and until when it can be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextPage {
    pub position: FeedPosition,
    pub expires_at: DateTime<Utc>,
}

/// One page of a user's feed.
#[derive(Clone, Debug)]
pub struct FeedPage {
    pub items: Vec<FeedItem>,
    pub next: Option<NextPage>,
    pub cache: CacheStatus,
    /// The session the page was cut from.
    pub session_id: SessionId,
    /// The experiment variants the session is ranked by.
    pub experiments: Vec<Assignment>,
}

/// What keeps videos out of a new session: served recently (ranked last), watched, hidden.
struct Exclusions {
    served: HashSet<VideoId>,
    watched: HashSet<VideoId>,
    hidden: Hidden,
}

/// Why a page could not be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// No candidate snapshot has been loaded yet.
    #[error("the feed is not ready yet")]
    NotReady,
    /// The session a cursor points into no longer exists.
    #[error("this feed session has expired; request the first page again")]
    SessionExpired,
    /// A dependency the request cannot do without failed.
    #[error("a dependency is unavailable")]
    Unavailable(#[source] PortError),
}

/// The get-feed-page use case.
pub struct FeedService {
    ports: Ports,
    snapshot: Arc<CandidateSnapshot>,
    config: FeedConfig,
    exposures: crate::experiments::ExposureLog,
}

impl std::fmt::Debug for FeedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FeedService {
    pub fn new(ports: Ports, snapshot: Arc<CandidateSnapshot>, config: FeedConfig) -> Self {
        for counter in [
            "feed_cache_hits_total",
            "feed_cache_misses_total",
            "feed_cache_bypass_total",
        ] {
            metrics::counter!(counter).increment(0);
        }
        Self {
            exposures: crate::experiments::ExposureLog::new(ports.events.clone()),
            ports,
            snapshot,
            config,
        }
    }

    pub fn config(&self) -> &FeedConfig {
        &self.config
    }

    /// The log of served exposures (to wait for it in tests and at shutdown).
    pub fn exposure_log(&self) -> &crate::experiments::ExposureLog {
        &self.exposures
    }

    /// Serves one page.
    #[tracing::instrument(name = "feed.page", skip_all, fields(user_id = %request.user_id, cursor = request.position.is_some(), cache = tracing::field::Empty))]
    pub async fn page(&self, request: PageRequest) -> Result<FeedPage, FeedError> {
        let state = self.snapshot.load().ok_or(FeedError::NotReady)?;
        let now = self.ports.clock.now();
        let page = match request.position {
            Some(position) => {
                self.continue_session(&state, request, position, now)
                    .await?
            }
            None => self.first_page(&state, request, now).await?,
        };
        tracing::Span::current().record("cache", page.cache.as_str());
        // Counted as the `X-Feed-Cache` header says, for first and cursor pages alike.
        match page.cache {
            CacheStatus::Hit => metrics::counter!("feed_cache_hits_total").increment(1),
            CacheStatus::Miss => metrics::counter!("feed_cache_misses_total").increment(1),
            CacheStatus::Bypass => {
                metrics::counter!("feed_cache_misses_total").increment(1);
                metrics::counter!("feed_cache_bypass_total").increment(1);
            }
        }
        self.exposures.log(request.user_id, &page, now);
        let served: Vec<VideoId> = page.items.iter().map(|i| i.video.id).collect();
        if !served.is_empty()
            && let Err(e) = self
                .ports
                .history
                .record_served(request.user_id, &served, now)
                .await
        {
            tracing::warn!(error = %e, "could not record served videos");
        }
        Ok(page)
    }

    async fn continue_session(
        &self,
        state: &SnapshotState,
        request: PageRequest,
        position: FeedPosition,
        now: DateTime<Utc>,
    ) -> Result<FeedPage, FeedError> {
        let user = request.user_id;
        let stage = Instant::now();
        // The session's ranking left out what the user had watched by then: only what came since
        // is read (the session id tells when it was ranked), so a cursor page costs the same
        // however long the watch history is. What the user hid is read whole (a few entries): a
        // session ranked while Redis was down, from the signal store's lagging record, must still
        // lose a video hidden just before. The reads leave together.
        let guess = position
            .session_id
            .created_at()
            .map_or(DateTime::<Utc>::UNIX_EPOCH, changes_since);
        let (session, watched, hidden) = async {
            tokio::join!(
                self.ports.feed_cache.session(user, position.session_id),
                self.ports
                    .history
                    .watched_since(user, guess.max(now - self.config.watched_window)),
                self.ports
                    .history
                    .hidden_since(user, DateTime::<Utc>::UNIX_EPOCH),
            )
        }
        .instrument(tracing::info_span!("feed.cache_lookup"))
        .await;
        record_stage("cache_lookup", stage);
        let session = match session {
            Ok(found) => found
                .filter(|s| s.expires_at > now)
                .ok_or(FeedError::SessionExpired)?,
            // Ranking a page anew would repeat what earlier pages of this session showed: the
            // client retries the cursor (it stays valid) rather than get repeats.
            Err(e) => return Err(FeedError::Unavailable(e)),
        };
        // A session older than its id says (not an id of this service's) is read for from its
        // own time.
        let since = changes_since(session.created_at);
        let watched = if since < guess {
            self.ports
                .history
                .watched_since(user, since.max(now - self.config.watched_window))
                .await
        } else {
            watched
        };
        let watched = self.watched_or_archive(user, now, watched).await;
        let hidden = self.hidden_or_archive(user, hidden).await?;
        let servable = |item: &SessionItem| {
            !watched.contains(&item.video_id)
                && !hidden.hides(&item.video_id, &item.creator_id)
                && state.pool.get(&item.video_id).is_some()
        };
        Ok(self
            .serve_cached(
                state,
                session,
                position.offset,
                servable,
                servable,
                request,
                now,
            )
            .await)
    }

    /// A page of a cached session from `offset`: the first items `take` allows (then those
    /// `fill` allows, for diversity), the session kept for the page's cursor.
    #[allow(clippy::too_many_arguments)]
    async fn serve_cached(
        &self,
        state: &SnapshotState,
        mut session: FeedSession,
        offset: usize,
        take: impl Fn(&SessionItem) -> bool,
        fill: impl Fn(&SessionItem) -> bool,
        request: PageRequest,
        now: DateTime<Utc>,
    ) -> FeedPage {
        let slice = session.slice_diverse(
            offset,
            request.limit,
            take,
            fill,
            self.config.ranking.diversity_window,
            self.config.ranking.max_per_creator_in_window,
        );
        if slice.next.is_some() {
            self.keep_for_cursors(&mut session, now).await;
        }
        self.render(state, &session, &slice, request.explain, CacheStatus::Hit)
    }

    /// The watched history, or when it cannot be read, the signal store's (which lags the
    /// events by the pipeline's delay): a page never falls back to showing watched videos while
    /// either source answers.
    async fn watched_or_archive(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        watched: Result<Vec<VideoId>, PortError>,
    ) -> HashSet<VideoId> {
        match watched {
            Ok(v) => v.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "watched history unavailable; reading the signal store's");
                let archived = self
                    .ports
                    .signals
                    .watched_since(user, now - self.config.watched_window)
                    .await;
                degrade_to_empty(archived, "archived watched history")
            }
        }
    }

    /// What the user hid, or when the history cannot tell, the signal store's record (which lags
    /// the events by the pipeline's delay). When neither answers, no page is served: showing a
    /// video the user asked never to see again is worse than a retry.
    async fn hidden_or_archive(
        &self,
        user: UserId,
        hidden: Result<Hidden, PortError>,
    ) -> Result<Hidden, FeedError> {
        match hidden {
            Ok(h) => Ok(h),
            Err(e) => {
                tracing::warn!(error = %e, "hidden videos unavailable; reading the signal store's");
                self.ports.signals.hidden(user).await.map_err(|e| {
                    tracing::warn!(error = %e, "the signal store's hidden videos are unavailable too");
                    FeedError::Unavailable(e)
                })
            }
        }
    }

    /// Extends `session` so that a cursor handed out now stays valid for `cursor_ttl`: when less
    /// is left, by two of them, so a session scrolled through for long is rewritten at most once
    /// per `cursor_ttl`.
    async fn keep_for_cursors(&self, session: &mut FeedSession, now: DateTime<Utc>) {
        if session.expires_at >= now + self.config.cursor_ttl {
            return;
        }
        let previous = session.expires_at;
        session.expires_at = now + self.config.cursor_ttl * 2;
        let ttl = (self.config.cursor_ttl * 2).to_std().unwrap_or_default();
        if let Err(e) = self.ports.feed_cache.refresh_session(session, ttl).await {
            // The cursor then promises only what the store still holds.
            tracing::warn!(error = %e, "could not extend the feed session");
            session.expires_at = previous;
        }
    }

    async fn first_page(
        &self,
        state: &SnapshotState,
        request: PageRequest,
        now: DateTime<Utc>,
    ) -> Result<FeedPage, FeedError> {
        let user = request.user_id;
        let stage = Instant::now();
        let cached = self
            .ports
            .feed_cache
            .current_session(user)
            .instrument(tracing::info_span!("feed.cache_lookup"))
            .await;
        record_stage("cache_lookup", stage);
        // A session is reused for first pages until its reuse ends (`cursor_ttl` before it
        // expires), only while the user is in the variants it was ranked by (an experiment
        // started or stopped since gets a new session), and only while it still has a page of
        // unseen videos.
        let (reusable, cache_up) = match cached {
            Ok(Some(session))
                if session.expires_at - self.config.cursor_ttl > now
                    && session.experiments
                        == assignments(state, user)
                            .into_iter()
                            .map(|(a, _)| a)
                            .collect::<Vec<_>>() =>
            {
                (Some(session), true)
            }
            Ok(_) => (None, true),
            Err(e) => {
                tracing::warn!(error = %e, "feed cache unavailable; ranking without it");
                (None, false)
            }
        };
        if let Some(session) = reusable {
            // Whether it still has a page of unseen videos is asked of its items alone.
            let items: Vec<(VideoId, CreatorId)> = session
                .items
                .iter()
                .map(|i| (i.video_id, i.creator_id))
                .collect();
            let stage = Instant::now();
            let seen = self
                .ports
                .history
                .seen_among(
                    user,
                    &items,
                    now - self.config.served_window,
                    now - self.config.watched_window,
                )
                .instrument(tracing::info_span!("feed.history_check"))
                .await;
            record_stage("history_check", stage);
            let seen = match seen {
                Ok(seen) => Exclusions {
                    served: seen.served,
                    watched: seen.watched,
                    hidden: seen.hidden,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "history check failed; reading the histories");
                    let seen = self.exclusions(user, now).await?;
                    return match self.reuse(state, session, &seen, request, now).await {
                        Some(page) => Ok(page),
                        None => self.ranked_page(state, request, now, seen, cache_up).await,
                    };
                }
            };
            if let Some(page) = self.reuse(state, session, &seen, request, now).await {
                return Ok(page);
            }
        }
        let seen = self.exclusions(user, now).await?;
        self.ranked_page(state, request, now, seen, cache_up).await
    }

    /// The first page of a cached `session`, when it still has a page of videos that `seen` does
    /// not exclude.
    async fn reuse(
        &self,
        state: &SnapshotState,
        session: FeedSession,
        seen: &Exclusions,
        request: PageRequest,
        now: DateTime<Utc>,
    ) -> Option<FeedPage> {
        let servable = |item: &SessionItem| {
            !seen.watched.contains(&item.video_id)
                && !seen.hidden.hides(&item.video_id, &item.creator_id)
                && state.pool.get(&item.video_id).is_some()
        };
        let unseen = |item: &SessionItem| servable(item) && !seen.served.contains(&item.video_id);
        if session.count(unseen) < request.limit.get() {
            return None;
        }
        Some(
            self.serve_cached(state, session, 0, unseen, servable, request, now)
                .await,
        )
    }

    /// What keeps videos out of a new session, read whole: served, watched (or the signal
    /// store's record of it) and hidden (likewise).
    async fn exclusions(&self, user: UserId, now: DateTime<Utc>) -> Result<Exclusions, FeedError> {
        let stage = Instant::now();
        let (served, watched, hidden) = async {
            tokio::join!(
                self.ports
                    .history
                    .served_since(user, now - self.config.served_window),
                self.ports
                    .history
                    .watched_since(user, now - self.config.watched_window),
                self.ports
                    .history
                    .hidden_since(user, DateTime::<Utc>::UNIX_EPOCH),
            )
        }
        .instrument(tracing::info_span!("feed.history_read"))
        .await;
        record_stage("history_read", stage);
        Ok(Exclusions {
            served: degrade_to_empty(served, "served history"),
            watched: self.watched_or_archive(user, now, watched).await,
            hidden: self.hidden_or_archive(user, hidden).await?,
        })
    }

    /// Ranks a new session and serves its first page; stores it when the cache is up.
    async fn ranked_page(
        &self,
        state: &SnapshotState,
        request: PageRequest,
        now: DateTime<Utc>,
        seen: Exclusions,
        cache_up: bool,
    ) -> Result<FeedPage, FeedError> {
        let (watched, hidden) = (seen.watched.clone(), seen.hidden.clone());
        let session = self.generate(state, request.user_id, now, seen).await?;
        let mut status = CacheStatus::Bypass;
        if cache_up {
            match self.store(&session).await {
                Ok(()) => status = CacheStatus::Miss,
                Err(e) => tracing::warn!(error = %e, "could not cache the feed session"),
            }
        }
        // A new session already ranks recently served videos last, so the page takes items in order.
        let servable = |item: &SessionItem| {
            !watched.contains(&item.video_id) && !hidden.hides(&item.video_id, &item.creator_id)
        };
        let slice = session.slice_diverse(
            0,
            request.limit,
            servable,
            servable,
            self.config.ranking.diversity_window,
            self.config.ranking.max_per_creator_in_window,
        );
        let mut page = self.render(state, &session, &slice, request.explain, status);
        if status == CacheStatus::Bypass {
            // Nothing to continue from: a bypassed session is not stored.
            page.next = None;
        }
        Ok(page)
    }

    /// Ranks a new session for `user` and stores it in the feed cache (cache warm-up).
    pub async fn warm(&self, user: UserId) -> Result<(), FeedError> {
        let state = self.snapshot.load().ok_or(FeedError::NotReady)?;
        let now = self.ports.clock.now();
        let (served, watched, hidden) = tokio::join!(
            self.ports
                .history
                .served_since(user, now - self.config.served_window),
            self.ports
                .history
                .watched_since(user, now - self.config.watched_window),
            self.ports
                .history
                .hidden_since(user, DateTime::<Utc>::UNIX_EPOCH),
        );
        let served = served
            .map_err(FeedError::Unavailable)?
            .into_iter()
            .collect();
        let watched = watched
            .map_err(FeedError::Unavailable)?
            .into_iter()
            .collect();
        let hidden = hidden.map_err(FeedError::Unavailable)?;
        let seen = Exclusions {
            served,
            watched,
            hidden,
        };
        let session = self.generate(&state, user, now, seen).await?;
        self.store(&session).await.map_err(FeedError::Unavailable)
    }

    async fn store(&self, session: &FeedSession) -> Result<(), PortError> {
        let ttl = (session.expires_at - session.created_at)
            .to_std()
            .unwrap_or_default();
        let stage = Instant::now();
        let stored = self
            .ports
            .feed_cache
            .store_session(session, ttl)
            .instrument(tracing::info_span!("feed.cache_write"))
            .await;
        record_stage("cache_write", stage);
        stored
    }

    /// Runs the ranking pipeline for one user. Failures of per-user data degrade the ranking
    /// (fewer sources, renormalized weights); they never fail the request.
    #[tracing::instrument(name = "feed.generate", skip_all)]
    async fn generate(
        &self,
        state: &SnapshotState,
        user: UserId,
        now: DateTime<Utc>,
        seen: Exclusions,
    ) -> Result<FeedSession, FeedError> {
        let Exclusions {
            served,
            watched,
            mut hidden,
        } = seen;
        let started = Instant::now();
        metrics::counter!("feed_generation_total").increment(1);
        // The watched history (recent, bounded) is merged with the signal store's 30-day one,
        // so a video watched long ago, or before the history store lost its data, stays out;
        // what the user hid likewise.
        let (follows, affinity, archived, archived_hidden) = async {
            tokio::join!(
                self.ports.follows.followed_creators(user),
                self.ports
                    .signals
                    .creator_affinity(user, now - self.config.affinity_window),
                self.ports
                    .signals
                    .watched_since(user, now - self.config.watched_window),
                self.ports.signals.hidden(user),
            )
        }
        .instrument(tracing::info_span!("feed.user_context"))
        .await;
        let mut watched = watched;
        watched.extend(degrade_to_empty(archived, "archived watched history"));
        match archived_hidden {
            Ok(h) => hidden.extend(h),
            Err(e) => {
                tracing::warn!(error = %e, "the signal store's hidden videos are unavailable")
            }
        }
        let context = UserContext {
            user_id: user,
            now,
            follows: degrade_to_empty(follows, "follows"),
            affinity: match affinity {
                Ok(rows) => Some(rows.into_iter().collect::<HashMap<_, _>>()),
                Err(e) => {
                    tracing::warn!(error = %e, "affinity unavailable; renormalizing weights");
                    None
                }
            },
            watched,
            recently_served: served,
            hidden,
        };
        let cfg = &self.config.ranking;
        let stage = Instant::now();
        let candidates = tracing::info_span!("feed.candidates", candidates = tracing::field::Empty)
            .in_scope(|| {
                let candidates = ranking::filter_candidates(
                    &state.pool,
                    &context,
                    ranking::gather_candidates(&state.pool, &context, cfg),
                    cfg,
                );
                tracing::Span::current().record("candidates", candidates.len());
                candidates
            });
        record_stage("candidates", stage);

        // The running experiments' variants of this user, earliest started first; a later one's
        // knob wins (starting an experiment that changes a knob another layer changes is
        // refused, so they do not overlap).
        let mut assigned = assignments(state, user);
        let mut base_weights = state.weights;
        let mut model_version: Option<&str> = None;
        for (_, variant) in &assigned {
            if let Some(w) = variant.weights {
                base_weights = w;
            }
            if let Some(m) = &variant.model_version {
                model_version = Some(m.as_str());
            }
        }
        let scorer_ready = state.model.is_some() || model_version.is_some();
        let model_scores = match &self.ports.model {
            Some(model) if scorer_ready => {
                let stage = Instant::now();
                // What the model folds the user in from: the videos they watched (those still
                // in the catalog, whose creator is known).
                let recent: Vec<(VideoId, CreatorId, f32)> = context
                    .watched
                    .iter()
                    .filter_map(|v| state.pool.get(v).map(|e| (*v, e.video.creator_id, 1.0)))
                    .collect();
                let ids = ranking::candidate_videos(&state.pool, &candidates);
                let scores = model
                    .score(model_version.map(str::to_owned), user, &recent, &ids)
                    .instrument(tracing::info_span!("feed.model", candidates = ids.len()))
                    .await;
                record_stage("model", stage);
                match scores {
                    Ok(s) if s.len() == ids.len() => {
                        if model_version.is_none() {
                            self.snapshot.count_inferences(ids.len() as u64);
                        }
                        Some(s)
                    }
                    Ok(_) => {
                        tracing::warn!("model returned a wrong number of scores; ignoring it");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "model unavailable; renormalizing weights");
                        None
                    }
                }
            }
            _ => None,
        };
        // A variant that could not score with its model is not what it claims: the session is
        // ranked, and recorded, without that experiment.
        if model_version.is_some() && model_scores.is_none() {
            assigned.retain(|(_, v)| v.model_version.is_none());
            base_weights = state.weights;
            for (_, variant) in &assigned {
                if let Some(w) = variant.weights {
                    base_weights = w;
                }
            }
        }

        let stage = Instant::now();
        let (weights, items) = tracing::info_span!("feed.scoring").in_scope(|| {
            let (weights, scored) = ranking::score_candidates(
                &state.pool,
                &context,
                &candidates,
                &base_weights,
                model_scores.as_deref(),
            );
            (weights, ranking::select_diverse(&state.pool, scored, cfg))
        });
        record_stage("scoring", stage);

        let jitter_secs = self.config.session_ttl_jitter.num_seconds().max(0);
        let jitter = Duration::seconds(rand::thread_rng().gen_range(0..=jitter_secs));
        let session = FeedSession {
            id: crate::ports::new_session_id(now),
            user_id: user,
            created_at: now,
            expires_at: now + self.config.session_ttl + jitter + self.config.cursor_ttl,
            weights,
            items,
            experiments: assigned.into_iter().map(|(a, _)| a).collect(),
        };
        for a in &session.experiments {
            metrics::counter!(
                "experiment_sessions_total",
                "experiment" => a.experiment.clone(),
                "variant" => a.variant.clone()
            )
            .increment(1);
        }
        metrics::counter!("feed_generation_success_total").increment(1);
        metrics::histogram!("feed_generation_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(session)
    }

    fn render(
        &self,
        state: &SnapshotState,
        session: &FeedSession,
        slice: &vrs_domain::PageSlice,
        explain: bool,
        cache: CacheStatus,
    ) -> FeedPage {
        let items = slice
            .indexes
            .iter()
            .filter_map(|&i| {
                let item = &session.items[i];
                let entry = state.pool.get(&item.video_id)?;
                Some(FeedItem {
                    playback_url: self.ports.media.playback_url(&entry.video),
                    thumbnail_url: self.ports.media.thumbnail_url(&entry.video),
                    video: entry.video.clone(),
                    stats: entry.stats,
                    completion_rate: entry.raw_completion,
                    score: item.score,
                    reason: item.reason,
                    explanation: explain.then(|| Explanation {
                        signals: item.signals,
                        raw_engagement: entry.raw_engagement,
                        raw_completion: entry.raw_completion,
                        weights: session.weights,
                        contributions: session.weights.contributions(&item.signals),
                    }),
                    position: i,
                })
            })
            .collect();
        FeedPage {
            items,
            next: slice.next.map(|offset| NextPage {
                position: FeedPosition {
                    session_id: session.id,
                    offset,
                },
                expires_at: session.expires_at,
            }),
            cache,
            session_id: session.id,
            experiments: session.experiments.clone(),
        }
    }
}

/// The variants of the running experiments that `user` is in, earliest started first.
fn assignments(state: &SnapshotState, user: UserId) -> Vec<(Assignment, &Variant)> {
    state
        .experiments
        .iter()
        .filter_map(|e| e.assignment(user))
        .collect()
}

/// From when a cursor page reads what was watched, for a session ranked at `created`: 15 minutes
/// earlier. That covers the clocks of the replicas that ranked it and that record the events, and
/// the event pipeline's delay: a session ranked while Redis was down took watches from the signal
/// store, which has every watch older than that delay (`EngagementConsumerLagging` fires at 30 s).
fn changes_since(created: DateTime<Utc>) -> DateTime<Utc> {
    created - Duration::minutes(15)
}

fn record_stage(stage: &'static str, started: Instant) {
    metrics::histogram!("feed_stage_duration_seconds", "stage" => stage)
        .record(started.elapsed().as_secs_f64());
}

fn degrade_to_empty<T: std::hash::Hash + Eq>(
    result: Result<Vec<T>, PortError>,
    what: &'static str,
) -> HashSet<T> {
    match result {
        Ok(v) => v.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "{what} unavailable; ranking without it");
            HashSet::new()
        }
    }
}
