use async_trait::async_trait;
use moka::Expiry;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vrs_application::ports::{FeedCache, PortError};
use vrs_domain::{FeedSession, SessionId, UserId};

#[derive(Clone, Debug)]
struct Entry<T> {
    value: T,
    ttl: Duration,
}

/// Each entry lives for the TTL it was stored with.
struct PerEntryTtl;

impl<K, T> Expiry<K, Entry<T>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &K,
        entry: &Entry<T>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }

    // moka's default keeps the replaced entry's expiry: a user's current-session pointer would then
    // expire with the session stored first, not with the one it now points to.
    fn expire_after_update(
        &self,
        _key: &K,
        entry: &Entry<T>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Feed sessions in a bounded in-process cache (moka), each with its own TTL.
pub struct MemoryFeedCache {
    sessions: Cache<(UserId, SessionId), Entry<Arc<FeedSession>>>,
    current: Cache<UserId, Entry<SessionId>>,
}

impl std::fmt::Debug for MemoryFeedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryFeedCache")
            .field("sessions", &self.sessions.entry_count())
            .finish()
    }
}

impl MemoryFeedCache {
    /// A cache holding at most `max_sessions` sessions; the least recently used go first.
    pub fn new(max_sessions: u64) -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(max_sessions)
                .expire_after(PerEntryTtl)
                .build(),
            current: Cache::builder()
                .max_capacity(max_sessions)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

impl MemoryFeedCache {
    /// Whether the session is held.
    pub fn holds(&self, user: UserId, id: SessionId) -> bool {
        self.sessions.contains_key(&(user, id))
    }

    /// Holds a session for `ttl` without making it the user's current one.
    pub fn keep(&self, session: &FeedSession, ttl: Duration) {
        self.sessions.insert(
            (session.user_id, session.id),
            Entry {
                value: Arc::new(session.clone()),
                ttl,
            },
        );
    }
}

#[async_trait]
impl FeedCache for MemoryFeedCache {
    async fn current_session(&self, user: UserId) -> Result<Option<FeedSession>, PortError> {
        let Some(current) = self.current.get(&user) else {
            return Ok(None);
        };
        self.session(user, current.value).await
    }

    async fn session(&self, user: UserId, id: SessionId) -> Result<Option<FeedSession>, PortError> {
        Ok(self
            .sessions
            .get(&(user, id))
            .map(|e| FeedSession::clone(&e.value)))
    }

    async fn store_session(&self, session: &FeedSession, ttl: Duration) -> Result<(), PortError> {
        self.sessions.insert(
            (session.user_id, session.id),
            Entry {
                value: Arc::new(session.clone()),
                ttl,
            },
        );
        self.current.insert(
            session.user_id,
            Entry {
                value: session.id,
                ttl,
            },
        );
        Ok(())
    }

    async fn refresh_session(&self, session: &FeedSession, ttl: Duration) -> Result<(), PortError> {
        let key = (session.user_id, session.id);
        if !self.sessions.contains_key(&key) {
            return Err(PortError::InvalidData(
                "the session to extend is gone".into(),
            ));
        }
        self.sessions.insert(
            key,
            Entry {
                value: Arc::new(session.clone()),
                ttl,
            },
        );
        Ok(())
    }

    async fn invalidate(&self, user: UserId) -> Result<(), PortError> {
        self.current.invalidate(&user);
        Ok(())
    }

    async fn invalidate_all(&self) -> Result<u64, PortError> {
        let count = self.current.iter().count() as u64;
        self.current.invalidate_all();
        Ok(count)
    }
}
