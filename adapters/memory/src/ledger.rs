use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use uuid::Uuid;
use vrs_application::ports::{EventLedger, PortError};
use vrs_domain::{EventType, Reaction, UserId, VideoId};

/// How long a recorded event id is remembered.
pub const LEDGER_RETENTION: Duration = Duration::days(7);

/// Recorded event ids per user in memory, forgotten after [`LEDGER_RETENTION`], and reaction
/// claims, forgotten after the reaction window.
#[derive(Debug, Default)]
pub struct MemoryEventLedger {
    records: RwLock<HashMap<UserId, HashMap<Uuid, DateTime<Utc>>>>,
    reactions: Mutex<Claims>,
}

type ClaimKey = (UserId, VideoId, EventType);

/// A claim: the event holding it, for an unlike the like it cancelled, and until when.
#[derive(Clone, Copy, Debug)]
struct Claim {
    holder: Uuid,
    cancelled: Option<Uuid>,
    until: DateTime<Utc>,
}

/// Reaction claims, by the rules of [`Reaction`].
#[derive(Debug, Default)]
struct Claims {
    held: HashMap<ClaimKey, Claim>,
    /// Size after the last sweep: the next one runs once the map has doubled.
    swept_at: usize,
}

impl Claims {
    /// Past this many claims, the oldest are dropped (their reactions may count once more).
    const MAX: usize = 1_000_000;

    fn live(&self, key: &ClaimKey, now: DateTime<Utc>) -> Option<Claim> {
        self.held.get(key).copied().filter(|c| c.until > now)
    }

    fn hold(&mut self, key: ClaimKey, holder: Uuid, cancelled: Option<Uuid>, now: DateTime<Utc>) {
        let until = now + Duration::seconds(key.2.claim_window_seconds());
        self.held.insert(
            key,
            Claim {
                holder,
                cancelled,
                until,
            },
        );
    }

    fn claim(&mut self, user: UserId, r: &Reaction, now: DateTime<Utc>) -> bool {
        let own = (user, r.video_id, r.event_type);
        if self.live(&own, now).is_some_and(|c| c.holder == r.event_id) {
            return true; // a retry of the claiming event
        }
        if r.event_type == EventType::Unlike {
            let like = (user, r.video_id, EventType::Like);
            return match self.live(&like, now) {
                Some(liked) => {
                    self.held.remove(&like);
                    self.hold(own, r.event_id, Some(liked.holder), now);
                    true
                }
                None => false,
            };
        }
        if self.live(&own, now).is_some() {
            return false;
        }
        self.hold(own, r.event_id, None, now);
        true
    }

    fn release(&mut self, user: UserId, r: &Reaction, now: DateTime<Utc>) {
        let own = (user, r.video_id, r.event_type);
        let Some(claim) = self.live(&own, now).filter(|c| c.holder == r.event_id) else {
            return;
        };
        self.held.remove(&own);
        let like = (user, r.video_id, EventType::Like);
        if let Some(liked) = claim.cancelled
            && self.live(&like, now).is_none()
        {
            self.hold(like, liked, None, now);
        }
    }

    /// Drops expired claims once the map has doubled since the last sweep, and the oldest ones
    /// past [`Self::MAX`].
    fn sweep(&mut self, now: DateTime<Utc>) {
        if self.held.len() <= (2 * self.swept_at).max(1_024) {
            return;
        }
        self.held.retain(|_, c| c.until > now);
        if self.held.len() > Self::MAX {
            let mut untils: Vec<DateTime<Utc>> = self.held.values().map(|c| c.until).collect();
            let cut = untils.len() - Self::MAX;
            let (_, nth, _) = untils.select_nth_unstable(cut);
            let nth = *nth;
            self.held.retain(|_, c| c.until > nth);
        }
        self.swept_at = self.held.len();
    }
}

#[async_trait]
impl EventLedger for MemoryEventLedger {
    async fn recorded(&self, user: UserId, ids: &[Uuid]) -> Result<Vec<bool>, PortError> {
        let now = Utc::now();
        let records = self.records.read().map_err(lock_error)?;
        let mine = records.get(&user);
        Ok(ids
            .iter()
            .map(|id| {
                mine.and_then(|m| m.get(id))
                    .is_some_and(|at| now - *at < LEDGER_RETENTION)
            })
            .collect())
    }

    async fn record(&self, user: UserId, ids: &[Uuid]) -> Result<(), PortError> {
        let now = Utc::now();
        let mut records = self.records.write().map_err(lock_error)?;
        let mine = records.entry(user).or_default();
        mine.retain(|_, at| now - *at < LEDGER_RETENTION);
        for id in ids {
            mine.entry(*id).or_insert(now);
        }
        Ok(())
    }

    async fn claim_reactions(
        &self,
        user: UserId,
        reactions: &[Reaction],
    ) -> Result<Vec<bool>, PortError> {
        let now = Utc::now();
        let mut claims = self.reactions.lock().map_err(lock_error)?;
        claims.sweep(now);
        Ok(reactions
            .iter()
            .map(|r| claims.claim(user, r, now))
            .collect())
    }

    async fn release_reactions(
        &self,
        user: UserId,
        reactions: &[Reaction],
    ) -> Result<(), PortError> {
        let now = Utc::now();
        let mut claims = self.reactions.lock().map_err(lock_error)?;
        for r in reactions {
            claims.release(user, r, now);
        }
        Ok(())
    }
}
