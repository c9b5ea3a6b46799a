//! `VideoCatalog` on the `videos` table.

use crate::error::port_error;
use crate::store::PostgresStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::BTreeMap;
use uuid::Uuid;
use vrs_application::ports::{CatalogWatermark, PortError, VideoCatalog};
use vrs_domain::{CreatorId, Video, VideoId, VideoStatus, Visibility};

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

async fn upsert_chunk(conn: &mut PgConnection, videos: &[&Video]) -> Result<(), PortError> {
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
    sqlx::query(
        "INSERT INTO videos (id, creator_id, title, duration_seconds, status, media_key, \
                             thumbnail_key, published_at, updated_at, deleted_at, visibility) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::text[], \
                              $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[], \
                              $10::timestamptz[], $11::text[]) \
         ON CONFLICT (id) DO UPDATE SET \
             creator_id = EXCLUDED.creator_id, title = EXCLUDED.title, \
             duration_seconds = EXCLUDED.duration_seconds, status = EXCLUDED.status, \
             visibility = EXCLUDED.visibility, \
             media_key = EXCLUDED.media_key, thumbnail_key = EXCLUDED.thumbnail_key, \
             published_at = EXCLUDED.published_at, updated_at = EXCLUDED.updated_at, \
             deleted_at = EXCLUDED.deleted_at",
    )
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
    .execute(conn)
    .await
    .map_err(port_error)?;
    Ok(())
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
                upsert_chunk(&mut tx, chunk).await?;
            }
            tx.commit().await.map_err(port_error)
        })
        .await
    }
}
