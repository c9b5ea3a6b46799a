use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::RwLock;
use uuid::Uuid;
use vrs_application::ports::{EventLedger, PortError};
use vrs_domain::UserId;

/// How long a claimed event id is remembered.
pub const LEDGER_RETENTION: Duration = Duration::days(7);

/// Claimed event ids per user in memory, forgotten after [`LEDGER_RETENTION`].
#[derive(Debug, Default)]
pub struct MemoryEventLedger {
    claims: RwLock<HashMap<UserId, HashMap<Uuid, DateTime<Utc>>>>,
}

#[async_trait]
impl EventLedger for MemoryEventLedger {
    async fn claim(&self, user: UserId, ids: &[Uuid]) -> Result<Vec<bool>, PortError> {
        let now = Utc::now();
        let mut claims = self.claims.write().map_err(lock_error)?;
        let mine = claims.entry(user).or_default();
        mine.retain(|_, at| now - *at < LEDGER_RETENTION);
        Ok(ids
            .iter()
            .map(|id| match mine.entry(*id) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(now);
                    true
                }
            })
            .collect())
    }

    async fn release(&self, user: UserId, ids: &[Uuid]) -> Result<(), PortError> {
        let mut claims = self.claims.write().map_err(lock_error)?;
        if let Some(mine) = claims.get_mut(&user) {
            for id in ids {
                mine.remove(id);
            }
        }
        Ok(())
    }
}
