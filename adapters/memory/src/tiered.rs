//! In-process tiers in front of a shared store (Redis): what one replica keeps so that feeds keep
//! their guarantees while the shared store is down.
//!
//! - [`TieredFeedCache`]: every session this replica stores or reads is also kept in a bounded
//!   in-process cache. While the shared cache fails, sessions are stored and read there, so a
//!   cursor continues (without repeats) on any replica that ranked or served its session.
//! - [`TieredViewHistory`]: served and watched videos are also kept per user in a bounded
//!   in-process history. While the shared history fails, watched videos come from the signal
//!   store's 30-day history (which lags by the event pipeline's delay) merged with this replica's
//!   own recent ones, and served videos from this replica's. What users hid comes from the signal
//!   store's record merged with this replica's.
//!
//! Writes succeed once the local tier has them (a failure of the shared store is counted in
//! `feed_store_fallbacks_total` and logged), except a watch or a hide: it fails with the shared
//! history, so the event that reports it is refused and retried rather than forgotten by other
//! replicas.

use crate::MemoryFeedCache;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use moka::sync::Cache;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vrs_application::ports::{FeedCache, PortError, SeenAmong, SignalStore, ViewHistory};
use vrs_domain::{CreatorId, FeedSession, Hidden, SessionId, UserId, VideoId};

/// Counter of operations answered by the local tier because the shared store failed.
pub const FALLBACKS_METRIC: &str = "feed_store_fallbacks_total";

fn fell_back(store: &'static str, operation: &'static str, error: &PortError) {
    metrics::counter!(FALLBACKS_METRIC, "store" => store, "operation" => operation).increment(1);
    tracing::warn!(%error, store, operation, "shared store failed; using this replica's tier");
}

/// A feed cache with a bounded in-process tier behind the shared one.
pub struct TieredFeedCache {
    shared: Arc<dyn FeedCache>,
    local: MemoryFeedCache,
}

impl std::fmt::Debug for TieredFeedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredFeedCache")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TieredFeedCache {
    /// `local_sessions` bounds the in-process tier (the least recently used go first).
    pub fn new(shared: Arc<dyn FeedCache>, local_sessions: u64) -> Self {
        for operation in ["read", "write"] {
            metrics::counter!(FALLBACKS_METRIC, "store" => "feed_cache", "operation" => operation)
                .increment(0);
        }
        Self {
            shared,
            local: MemoryFeedCache::new(local_sessions),
        }
    }

    /// Keeps a session read from the shared cache, so it can be continued here without it.
    fn keep(&self, session: &FeedSession) {
        let left = (session.expires_at - Utc::now())
            .to_std()
            .unwrap_or_default();
        if left > Duration::ZERO {
            self.local.keep(session, left);
        }
    }
}

#[async_trait]
impl FeedCache for TieredFeedCache {
    async fn current_session(&self, user: UserId) -> Result<Option<FeedSession>, PortError> {
        match self.shared.current_session(user).await {
            // The shared cache decides while it answers: an invalidation on any replica ends the
            // session everywhere, and a session ranked here during an outage stops being current
            // once the shared cache is back (its cursors still continue, by id).
            Ok(found) => Ok(found),
            Err(e) => {
                fell_back("feed_cache", "read", &e);
                self.local.current_session(user).await
            }
        }
    }

    async fn session(&self, user: UserId, id: SessionId) -> Result<Option<FeedSession>, PortError> {
        match self.shared.session(user, id).await {
            Ok(Some(session)) => {
                if !self.local.holds(user, id) {
                    self.keep(&session);
                }
                Ok(Some(session))
            }
            Ok(None) => self.local.session(user, id).await,
            Err(e) => {
                fell_back("feed_cache", "read", &e);
                self.local.session(user, id).await
            }
        }
    }

    async fn store_session(&self, session: &FeedSession, ttl: Duration) -> Result<(), PortError> {
        self.local.store_session(session, ttl).await?;
        if let Err(e) = self.shared.store_session(session, ttl).await {
            fell_back("feed_cache", "write", &e);
        }
        Ok(())
    }

    async fn refresh_session(&self, session: &FeedSession, ttl: Duration) -> Result<(), PortError> {
        // The local copy may be gone (evicted) while the shared one is not.
        let _ = self.local.refresh_session(session, ttl).await;
        match self.shared.refresh_session(session, ttl).await {
            Ok(()) => Ok(()),
            Err(e) if self.local.holds(session.user_id, session.id) => {
                fell_back("feed_cache", "write", &e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn invalidate(&self, user: UserId) -> Result<(), PortError> {
        self.local.invalidate(user).await?;
        self.shared.invalidate(user).await
    }

    async fn invalidate_all(&self) -> Result<u64, PortError> {
        self.local.invalidate_all().await?;
        self.shared.invalidate_all().await
    }
}

/// Per user, the most recent videos (with when), at most [`LocalHistory::PER_USER`].
type Recent = Arc<Mutex<Vec<(VideoId, DateTime<Utc>)>>>;

/// A bounded per-user history: a fixed number of users (least recently used go first), each
/// with its most recent videos.
struct LocalHistory {
    users: Cache<UserId, Recent>,
}

impl LocalHistory {
    const PER_USER: usize = 256;

    fn new(max_users: u64) -> Self {
        Self {
            users: Cache::builder().max_capacity(max_users).build(),
        }
    }

    fn record(&self, user: UserId, videos: &[VideoId], at: DateTime<Utc>) {
        let recent = self.users.get_with(user, Recent::default);
        let Ok(mut recent) = recent.lock() else {
            return;
        };
        recent.retain(|(v, _)| !videos.contains(v));
        recent.extend(videos.iter().map(|v| (*v, at)));
        let excess = recent.len().saturating_sub(Self::PER_USER);
        recent.drain(..excess);
    }

    fn since(&self, user: UserId, since: DateTime<Utc>) -> Vec<VideoId> {
        let Some(recent) = self.users.get(&user) else {
            return Vec::new();
        };
        let Ok(recent) = recent.lock() else {
            return Vec::new();
        };
        recent
            .iter()
            .filter(|(_, at)| *at >= since)
            .map(|(v, _)| *v)
            .collect()
    }
}

impl TieredViewHistory {
    /// Watched videos without the shared history: this replica's recent ones and the signal
    /// store's record.
    async fn watched_here(&self, user: UserId, since: DateTime<Utc>) -> Vec<VideoId> {
        let mut videos: HashSet<VideoId> = self.watched.since(user, since).into_iter().collect();
        match self.archive.watched_since(user, since).await {
            Ok(archived) => videos.extend(archived),
            Err(e) => {
                tracing::warn!(error = %e, "the signal store's watch history is unavailable too");
            }
        }
        videos.into_iter().collect()
    }

    /// Everything hidden, without the shared history: this replica's record and the signal
    /// store's (a superset of what was hidden since any time).
    async fn hidden_here(&self, user: UserId) -> Result<Hidden, PortError> {
        let mut hidden = self
            .hidden
            .get(&user)
            .and_then(|h| h.lock().ok().map(|h| h.clone()))
            .unwrap_or_default();
        // Without the signal store's record, hides made through other replicas are unknown
        // here: no answer rather than an incomplete one.
        let archived = self.archive.hidden(user).await?;
        hidden.extend(archived);
        Ok(hidden)
    }
}

/// A view history with a bounded in-process tier behind the shared one, and the signal store's
/// watch history as the fallback for watched videos.
pub struct TieredViewHistory {
    shared: Arc<dyn ViewHistory>,
    archive: Arc<dyn SignalStore>,
    served: LocalHistory,
    watched: LocalHistory,
    hidden: Cache<UserId, Arc<Mutex<Hidden>>>,
}

impl std::fmt::Debug for TieredViewHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredViewHistory")
            .field("users", &self.watched.users.entry_count())
            .finish_non_exhaustive()
    }
}

impl TieredViewHistory {
    /// `local_users` bounds each in-process history (the least recently active go first).
    pub fn new(
        shared: Arc<dyn ViewHistory>,
        archive: Arc<dyn SignalStore>,
        local_users: u64,
    ) -> Self {
        for operation in ["read", "write"] {
            metrics::counter!(FALLBACKS_METRIC, "store" => "view_history", "operation" => operation)
                .increment(0);
        }
        Self {
            shared,
            archive,
            served: LocalHistory::new(local_users),
            watched: LocalHistory::new(local_users),
            hidden: Cache::new(local_users),
        }
    }
}

#[async_trait]
impl ViewHistory for TieredViewHistory {
    async fn served_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        match self.shared.served_since(user, since).await {
            Ok(videos) => Ok(videos),
            Err(e) => {
                fell_back("view_history", "read", &e);
                Ok(self.served.since(user, since))
            }
        }
    }

    async fn record_served(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.served.record(user, videos, at);
        if let Err(e) = self.shared.record_served(user, videos, at).await {
            fell_back("view_history", "write", &e);
        }
        Ok(())
    }

    async fn watched_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        match self.shared.watched_since(user, since).await {
            Ok(videos) => Ok(videos),
            Err(e) => {
                fell_back("view_history", "read", &e);
                Ok(self.watched_here(user, since).await)
            }
        }
    }

    async fn record_watched(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        // Kept here too, for this replica's pages while the shared history is down. But a watch
        // is only remembered once the shared history has it: another replica could otherwise
        // serve the video again before the signal store's history catches up, so the caller
        // refuses the event (and the client retries it) instead.
        self.watched.record(user, videos, at);
        self.shared.record_watched(user, videos, at).await
    }

    async fn hidden_since(&self, user: UserId, since: DateTime<Utc>) -> Result<Hidden, PortError> {
        match self.shared.hidden_since(user, since).await {
            Ok(hidden) => Ok(hidden),
            Err(e) => {
                fell_back("view_history", "read", &e);
                self.hidden_here(user).await
            }
        }
    }

    async fn seen_among(
        &self,
        user: UserId,
        items: &[(VideoId, CreatorId)],
        served_since: DateTime<Utc>,
        watched_since: DateTime<Utc>,
    ) -> Result<SeenAmong, PortError> {
        match self
            .shared
            .seen_among(user, items, served_since, watched_since)
            .await
        {
            Ok(seen) => Ok(seen),
            Err(e) => {
                // Answered here at once rather than by the whole histories' reads, which would
                // wait for the shared store a second time.
                fell_back("view_history", "read", &e);
                let hidden = self.hidden_here(user).await?;
                let watched = self.watched_here(user, watched_since).await;
                Ok(SeenAmong::of(
                    items,
                    self.served.since(user, served_since),
                    watched,
                    &hidden,
                ))
            }
        }
    }

    async fn record_hidden(
        &self,
        user: UserId,
        videos: &[VideoId],
        creators: &[CreatorId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        // As a watch: kept here, but accepted only once the shared history has it.
        if let Ok(mut local) = self.hidden.get_with(user, Default::default).lock() {
            local.videos.extend(videos.iter().copied());
            local.creators.extend(creators.iter().copied());
        }
        self.shared.record_hidden(user, videos, creators, at).await
    }
}
