use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use uuid::Uuid;
use vrs_application::ports::{EventLedger, PortError};
use vrs_domain::{EventType, REACTION_WINDOW_SECONDS, Reaction, UserId, VideoId};

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

/// Reaction claims: the event holding each, and until when.
#[derive(Debug, Default)]
struct Claims {
    held: HashMap<ClaimKey, (Uuid, DateTime<Utc>)>,
}

impl Claims {
    /// Past this many claims, expired ones are swept on the next claim.
    const SWEEP_AT: usize = 100_000;

    fn holder(&self, key: &ClaimKey, now: DateTime<Utc>) -> Option<Uuid> {
        self.held
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(id, _)| *id)
    }

    fn claim(&mut self, user: UserId, r: &Reaction, now: DateTime<Utc>) -> bool {
        let until = now + Duration::seconds(REACTION_WINDOW_SECONDS);
        let own = (user, r.video_id, r.event_type);
        if r.event_type == EventType::Unlike {
            let like = (user, r.video_id, EventType::Like);
            if self.holder(&like, now).is_some() {
                self.held.remove(&like);
                self.held.insert(own, (r.event_id, until));
                return true;
            }
            return self.holder(&own, now) == Some(r.event_id);
        }
        match self.holder(&own, now) {
            Some(id) if id != r.event_id => false,
            _ => {
                self.held.insert(own, (r.event_id, until));
                true
            }
        }
    }

    fn sweep(&mut self, now: DateTime<Utc>) {
        if self.held.len() > Self::SWEEP_AT {
            self.held.retain(|_, (_, until)| *until > now);
        }
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
            let key = (user, r.video_id, r.event_type);
            if claims.holder(&key, now) == Some(r.event_id) {
                claims.held.remove(&key);
            }
        }
        Ok(())
    }
}
