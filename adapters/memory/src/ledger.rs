use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::RwLock;
use uuid::Uuid;
use vrs_application::ports::{EventLedger, PortError};
use vrs_domain::UserId;

/// How long a recorded event id is remembered.
pub const LEDGER_RETENTION: Duration = Duration::days(7);

/// Recorded event ids per user in memory, forgotten after [`LEDGER_RETENTION`].
#[derive(Debug, Default)]
pub struct MemoryEventLedger {
    records: RwLock<HashMap<UserId, HashMap<Uuid, DateTime<Utc>>>>,
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
}
