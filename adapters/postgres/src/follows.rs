//! `FollowGraph` on the `follows` table.

use crate::catalog::ensure_creators;
use crate::error::port_error;
use crate::store::PostgresStore;
use async_trait::async_trait;
use sqlx::PgConnection;
use std::collections::BTreeSet;
use uuid::Uuid;
use vrs_application::ports::{FollowGraph, PortError};
use vrs_domain::{CreatorId, UserId};

/// Inserts a minimal row (handle derived from the id) for each user not known yet: follows arrive
/// from the app before any profile sync. `ids` must be sorted, as for creators.
async fn ensure_users(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), PortError> {
    sqlx::query(
        "INSERT INTO users (id, handle) \
         SELECT id, 'user-' || id::text FROM unnest($1::uuid[]) AS t(id) \
         ON CONFLICT DO NOTHING",
    )
    .bind(ids)
    .execute(conn)
    .await
    .map_err(port_error)?;
    Ok(())
}

fn sorted_unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    ids.collect::<BTreeSet<_>>().into_iter().collect()
}

#[async_trait]
impl FollowGraph for PostgresStore {
    async fn followed_creators(&self, user: UserId) -> Result<Vec<CreatorId>, PortError> {
        // Served by the primary key's leading column.
        let ids: Vec<Uuid> = self
            .traced("SELECT", "follows", async {
                sqlx::query_scalar("SELECT creator_id FROM follows WHERE follower_id = $1")
                    .bind(user.0)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(port_error)
            })
            .await?;
        Ok(ids.into_iter().map(CreatorId).collect())
    }

    async fn add_follows(&self, follows: &[(UserId, CreatorId)]) -> Result<(), PortError> {
        if follows.is_empty() {
            return Ok(());
        }
        let pairs: BTreeSet<(Uuid, Uuid)> = follows.iter().map(|(u, c)| (u.0, c.0)).collect();
        let (followers, creators): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
        self.traced("INSERT", "follows", async {
            let mut tx = self.pool.begin().await.map_err(port_error)?;
            ensure_users(&mut tx, &sorted_unique(followers.iter().copied())).await?;
            ensure_creators(&mut tx, &sorted_unique(creators.iter().copied())).await?;
            sqlx::query(
                "INSERT INTO follows (follower_id, creator_id) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[]) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(followers)
            .bind(creators)
            .execute(&mut *tx)
            .await
            .map_err(port_error)?;
            tx.commit().await.map_err(port_error)
        })
        .await
    }
}
