use crate::lock_error;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use vrs_application::ports::{FollowGraph, PortError};
use vrs_domain::{CreatorId, UserId};

/// Follows in memory.
#[derive(Debug, Default)]
pub struct MemoryFollowGraph {
    follows: RwLock<HashMap<UserId, HashSet<CreatorId>>>,
}

#[async_trait]
impl FollowGraph for MemoryFollowGraph {
    async fn followed_creators(&self, user: UserId) -> Result<Vec<CreatorId>, PortError> {
        let follows = self.follows.read().map_err(lock_error)?;
        let mut list: Vec<CreatorId> = follows
            .get(&user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        list.sort_unstable();
        Ok(list)
    }

    async fn add_follows(&self, pairs: &[(UserId, CreatorId)]) -> Result<(), PortError> {
        let mut follows = self.follows.write().map_err(lock_error)?;
        for (user, creator) in pairs {
            follows.entry(*user).or_default().insert(*creator);
        }
        Ok(())
    }
}
