//! `VideoCatalog` on the `videos` table.

use crate::error::port_error;
use crate::store::PostgresStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;
use vrs_application::ports::{CatalogWatermark, PortError, VideoCatalog, VideoChange};
use vrs_domain::{CreatorId, SourcePosition, Video, VideoId, VideoStatus, Visibility};

/// Rows per upsert statement: keeps bind arrays and statement memory bounded for large imports.
const UPSERT_CHUNK: usize = 1_000;

/// `SELECT` of every column a [`Video`] is read from.
macro_rules! select_videos {
    ($rest:literal) => {
        concat!(
            "SELECT id, creator_id, title, duration_seconds, status, visibility, media_key, \
             thumbnail_key, published_at, updated_at, deleted_at FROM videos ",
            $rest
        )
    };
}

// The row comparison walks the (updated_at, id) index from the watermark on. uuid order in
// PostgreSQL (bytewise) equals `Uuid`'s `Ord`, so ties break as the contract says.
const CHANGED_AFTER: &str =
    select_videos!("WHERE (updated_at, id) > ($1, $2) ORDER BY updated_at, id LIMIT $3");
const CHANGED_FROM_START: &str = select_videos!("ORDER BY updated_at, id LIMIT $1");
const BY_IDS: &str = select_videos!("WHERE id = ANY($1)");

#[derive(sqlx::FromRow)]
struct VideoRow {
    id: Uuid,
    creator_id: Uuid,
    title: String,
    duration_seconds: i32,
    status: String,
    visibility: String,
    media_key: String,
    thumbnail_key: String,
    published_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
}

impl TryFrom<VideoRow> for Video {
    type Error = PortError;

    fn try_from(row: VideoRow) -> Result<Self, PortError> {
        let status = VideoStatus::parse(&row.status).ok_or_else(|| {
            PortError::InvalidData(format!("video {}: unknown status {:?}", row.id, row.status))
        })?;
        let duration_seconds = u32::try_from(row.duration_seconds).map_err(|_| {
            PortError::InvalidData(format!(
                "video {}: negative duration {}",
                row.id, row.duration_seconds
            ))
        })?;
        Ok(Video {
            id: VideoId(row.id),
            creator_id: CreatorId(row.creator_id),
            title: row.title,
            duration_seconds,
            status,
            // An unknown value (a newer schema) counts as private: it never leaks a video.
            visibility: Visibility::parse(&row.visibility).unwrap_or(Visibility::Private),
            media_key: row.media_key,
            thumbnail_key: row.thumbnail_key,
            published_at: row.published_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        })
    }
}

fn to_videos(rows: Vec<VideoRow>) -> Result<Vec<Video>, PortError> {
    rows.into_iter().map(Video::try_from).collect()
}

/// Inserts a minimal row (handle derived from the id) for each creator not known yet, so videos and
/// follows can reference creators that the profile service has not synced. `ids` must be sorted:
/// concurrent writers then take index locks in the same order and cannot deadlock.
pub(crate) async fn ensure_creators(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<(), PortError> {
    sqlx::query(
        "INSERT INTO creators (id, handle) \
         SELECT id, 'creator-' || id::text FROM unnest($1::uuid[]) AS t(id) \
         ON CONFLICT DO NOTHING",
    )
    .bind(ids)
    .execute(conn)
    .await
    .map_err(port_error)?;
    Ok(())
}

/// The `INSERT` of [`upsert_chunk`]; `$12`/`$13` are the source positions. A change older than
/// the newest truncate is left out (without a position, the comparison is NULL and it stays).
const UPSERT: &str = "INSERT INTO videos (id, creator_id, title, duration_seconds, status, media_key, \
                         thumbnail_key, published_at, updated_at, deleted_at, visibility, \
                         source_committed_at_us, source_log_position) \
     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::text[], \
                          $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[], \
                          $10::timestamptz[], $11::text[], $12::int8[], $13::int8[]) \
         AS c(id, creator_id, title, duration_seconds, status, media_key, thumbnail_key, \
              published_at, updated_at, deleted_at, visibility, committed_at_us, log_position) \
     WHERE NOT EXISTS (SELECT 1 FROM catalog_truncations t \
         WHERE (c.committed_at_us, c.log_position) \
               < (t.source_committed_at_us, t.source_log_position)) \
     ON CONFLICT (id) DO UPDATE SET \
         creator_id = EXCLUDED.creator_id, title = EXCLUDED.title, \
         duration_seconds = EXCLUDED.duration_seconds, status = EXCLUDED.status, \
         visibility = EXCLUDED.visibility, \
         media_key = EXCLUDED.media_key, thumbnail_key = EXCLUDED.thumbnail_key, \
         published_at = EXCLUDED.published_at, updated_at = EXCLUDED.updated_at, \
         deleted_at = EXCLUDED.deleted_at, \
         source_committed_at_us = coalesce(EXCLUDED.source_committed_at_us, \
                                           videos.source_committed_at_us), \
         source_log_position = coalesce(EXCLUDED.source_log_position, videos.source_log_position)";

/// The condition under which a change from the source replaces a row (see
/// `SourcePosition::supersedes`): the row has no position, or the change is not older, where a
/// delete ranks after an update at the same position.
const NOT_OLDER: &str = " WHERE EXCLUDED.source_committed_at_us IS NULL \
     OR videos.source_committed_at_us IS NULL \
     OR (EXCLUDED.source_committed_at_us, EXCLUDED.source_log_position, \
         (EXCLUDED.status = 'deleted')::int) \
        >= (videos.source_committed_at_us, videos.source_log_position, \
            (videos.status = 'deleted')::int)";

/// Deletes by id: `$1` ids, `$2`/`$3` positions (NULL for a tombstone: at the row's own
/// position), `$4` the `updated_at` stamps.
const DELETE_BY_ID: &str = "UPDATE videos AS v SET status = 'deleted', \
         deleted_at = coalesce(v.deleted_at, d.updated_at), updated_at = d.updated_at, \
         source_committed_at_us = coalesce(d.committed_at_us, v.source_committed_at_us), \
         source_log_position = coalesce(d.log_position, v.source_log_position) \
     FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::timestamptz[]) \
         AS d(id, committed_at_us, log_position, updated_at) \
     WHERE v.id = d.id AND (d.committed_at_us IS NULL OR v.source_committed_at_us IS NULL \
         OR (d.committed_at_us, d.log_position, 1) \
            >= (v.source_committed_at_us, v.source_log_position, (v.status = 'deleted')::int))";

/// Unconditional upsert (positions kept) when `positions` is `None`, else the conditional upsert
/// of changes at those positions. Returns the rows written.
async fn upsert_chunk(
    conn: &mut PgConnection,
    videos: &[&Video],
    positions: Option<&[SourcePosition]>,
) -> Result<u64, PortError> {
    let mut durations = Vec::with_capacity(videos.len());
    for v in videos {
        durations.push(i32::try_from(v.duration_seconds).map_err(|_| {
            PortError::Rejected(format!(
                "video {}: duration {} s is out of range",
                v.id, v.duration_seconds
            ))
        })?);
    }
    let column = |f: fn(&Video) -> String| videos.iter().map(|v| f(v)).collect::<Vec<_>>();
    let times =
        |f: fn(&Video) -> Option<DateTime<Utc>>| videos.iter().map(|v| f(v)).collect::<Vec<_>>();
    let sql = if positions.is_some() {
        format!("{UPSERT}{NOT_OLDER}")
    } else {
        UPSERT.to_owned()
    };
    let at = |f: fn(&SourcePosition) -> i64| {
        (0..videos.len())
            .map(|i| positions.map(|p| f(&p[i])))
            .collect::<Vec<Option<i64>>>()
    };
    let written = sqlx::query(&sql)
        .bind(videos.iter().map(|v| v.id.0).collect::<Vec<_>>())
        .bind(videos.iter().map(|v| v.creator_id.0).collect::<Vec<_>>())
        .bind(column(|v| v.title.clone()))
        .bind(durations)
        .bind(column(|v| v.status.as_str().to_owned()))
        .bind(column(|v| v.media_key.clone()))
        .bind(column(|v| v.thumbnail_key.clone()))
        .bind(times(|v| v.published_at))
        .bind(videos.iter().map(|v| v.updated_at).collect::<Vec<_>>())
        .bind(times(|v| v.deleted_at))
        .bind(column(|v| v.visibility.as_str().to_owned()))
        .bind(at(|p| p.committed_at_us))
        .bind(at(|p| p.log_position))
        .execute(conn)
        .await
        .map_err(port_error)?;
    Ok(written.rows_affected())
}

/// Writes one change per video (at most), conditionally; returns the rows written.
async fn apply_round(conn: &mut PgConnection, round: &[&VideoChange]) -> Result<u64, PortError> {
    let mut upserts: Vec<(&Video, SourcePosition)> = Vec::new();
    let mut deletes = Vec::new();
    for change in round {
        match change {
            VideoChange::Upsert { video, position } => upserts.push((video, *position)),
            VideoChange::Delete {
                id,
                position,
                updated_at,
            } => deletes.push((id.0, *position, *updated_at)),
        }
    }
    let mut written = 0;
    if !upserts.is_empty() {
        upserts.sort_by_key(|(v, _)| v.id.0);
        let mut creators: Vec<Uuid> = upserts.iter().map(|(v, _)| v.creator_id.0).collect();
        creators.sort_unstable();
        creators.dedup();
        for chunk in creators.chunks(UPSERT_CHUNK) {
            ensure_creators(conn, chunk).await?;
        }
        for chunk in upserts.chunks(UPSERT_CHUNK) {
            let videos: Vec<&Video> = chunk.iter().map(|(v, _)| *v).collect();
            let positions: Vec<SourcePosition> = chunk.iter().map(|(_, p)| *p).collect();
            written += upsert_chunk(conn, &videos, Some(&positions)).await?;
        }
    }
    if !deletes.is_empty() {
        deletes.sort_by_key(|(id, _, _)| *id);
        for chunk in deletes.chunks(UPSERT_CHUNK) {
            written += sqlx::query(DELETE_BY_ID)
                .bind(chunk.iter().map(|d| d.0).collect::<Vec<_>>())
                .bind(
                    chunk
                        .iter()
                        .map(|d| d.1.map(|p| p.committed_at_us))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    chunk
                        .iter()
                        .map(|d| d.1.map(|p| p.log_position))
                        .collect::<Vec<_>>(),
                )
                .bind(chunk.iter().map(|d| d.2).collect::<Vec<_>>())
                .execute(&mut *conn)
                .await
                .map_err(port_error)?
                .rows_affected();
        }
    }
    Ok(written)
}

#[async_trait]
impl VideoCatalog for PostgresStore {
    async fn changed_since(
        &self,
        after: Option<CatalogWatermark>,
        limit: usize,
    ) -> Result<Vec<Video>, PortError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = match after {
            Some(w) => sqlx::query_as::<_, VideoRow>(CHANGED_AFTER)
                .bind(w.updated_at)
                .bind(w.video_id.0)
                .bind(limit),
            None => sqlx::query_as::<_, VideoRow>(CHANGED_FROM_START).bind(limit),
        };
        let rows = self
            .traced("SELECT", "videos", async {
                query.fetch_all(&self.pool).await.map_err(port_error)
            })
            .await?;
        to_videos(rows)
    }

    async fn videos_by_ids(&self, ids: &[VideoId]) -> Result<Vec<Video>, PortError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let rows = self
            .traced("SELECT", "videos", async {
                sqlx::query_as::<_, VideoRow>(BY_IDS)
                    .bind(ids)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(port_error)
            })
            .await?;
        to_videos(rows)
    }

    async fn upsert_videos(&self, videos: &[Video]) -> Result<(), PortError> {
        if videos.is_empty() {
            return Ok(());
        }
        // One row per id (the last record wins, as with successive upserts): a statement may not
        // update the same row twice. Sorted by id so concurrent batches lock rows in one order.
        let latest: BTreeMap<Uuid, &Video> = videos.iter().map(|v| (v.id.0, v)).collect();
        let batch: Vec<&Video> = latest.into_values().collect();
        let mut creators: Vec<Uuid> = batch.iter().map(|v| v.creator_id.0).collect();
        creators.sort_unstable();
        creators.dedup();

        self.traced("INSERT", "videos", async {
            let mut tx = self.pool.begin().await.map_err(port_error)?;
            for chunk in creators.chunks(UPSERT_CHUNK) {
                ensure_creators(&mut tx, chunk).await?;
            }
            for chunk in batch.chunks(UPSERT_CHUNK) {
                upsert_chunk(&mut tx, chunk, None).await?;
            }
            tx.commit().await.map_err(port_error)
        })
        .await
    }

    async fn apply_changes(&self, changes: &[VideoChange]) -> Result<usize, PortError> {
        if changes.is_empty() {
            return Ok(0);
        }
        // A statement may write a row once, so the changes go in rounds: the first change of each
        // video, then the second, ... in order. A batch rarely holds two changes of one video.
        let mut per_video: HashMap<VideoId, Vec<&VideoChange>> = HashMap::new();
        for change in changes {
            per_video.entry(change.id()).or_default().push(change);
        }
        let rounds = per_video.values().map(Vec::len).max().unwrap_or(0);
        self.traced("UPDATE", "videos", async {
            let mut tx = self.pool.begin().await.map_err(port_error)?;
            let mut applied = 0;
            for round in 0..rounds {
                let these: Vec<&VideoChange> = per_video
                    .values()
                    .filter_map(|changes| changes.get(round).copied())
                    .collect();
                applied += apply_round(&mut tx, &these).await?;
            }
            tx.commit().await.map_err(port_error)?;
            Ok(usize::try_from(applied).unwrap_or(usize::MAX))
        })
        .await
    }

    async fn truncate(
        &self,
        position: SourcePosition,
        updated_at: DateTime<Utc>,
    ) -> Result<u64, PortError> {
        self.traced("UPDATE", "videos", async {
            let mut tx = self.pool.begin().await.map_err(port_error)?;
            sqlx::query(
                "INSERT INTO catalog_truncations (source_committed_at_us, source_log_position) \
                 VALUES ($1, $2) ON CONFLICT (singleton) DO UPDATE SET \
                     source_committed_at_us = EXCLUDED.source_committed_at_us, \
                     source_log_position = EXCLUDED.source_log_position \
                 WHERE (EXCLUDED.source_committed_at_us, EXCLUDED.source_log_position) \
                     > (catalog_truncations.source_committed_at_us, \
                        catalog_truncations.source_log_position)",
            )
            .bind(position.committed_at_us)
            .bind(position.log_position)
            .execute(&mut *tx)
            .await
            .map_err(port_error)?;
            let deleted = sqlx::query(
                "UPDATE videos SET status = 'deleted', deleted_at = coalesce(deleted_at, $3), \
                     updated_at = $3, source_committed_at_us = $1, source_log_position = $2 \
                 WHERE status <> 'deleted' AND (source_committed_at_us IS NULL \
                     OR (source_committed_at_us, source_log_position) < ($1, $2))",
            )
            .bind(position.committed_at_us)
            .bind(position.log_position)
            .bind(updated_at)
            .execute(&mut *tx)
            .await
            .map(|done| done.rows_affected())
            .map_err(port_error)?;
            tx.commit().await.map_err(port_error)?;
            Ok(deleted)
        })
        .await
    }
}
