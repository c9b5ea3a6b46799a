//! The signal store over the aggregate tables, and the idempotent insert path that feeds them.

use crate::ClickHouseError;
use crate::config::{ClickHouseConfig, validate_database};
use crate::pool::Pool;
use crate::queries::{self, render, since_literal, uuid_list};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use klickhouse::Row;
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;
use vrs_application::ports::{HealthProbe, PortError, SignalStore};
use vrs_domain::{CreatorId, EngagementEvent, UserId, VideoId, VideoStats};

/// Ids per duplicate-check query: ~50 bytes each keeps the text far below ClickHouse's default
/// 256 KiB `max_query_size`.
const LOOKUP_CHUNK: usize = 1_000;

/// Engagement signals in ClickHouse: reads the hourly aggregate tables, writes the raw table.
#[derive(Clone)]
pub struct ClickHouseSignalStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    database: String,
    /// Serializes the check-then-insert of `insert_events`, so two batches carrying the same event
    /// cannot both find it new. Across processes, the consumer's partition assignment keeps one
    /// writer per event.
    insert_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ClickHouseSignalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSignalStore")
            .field("database", &self.inner.database)
            .finish_non_exhaustive()
    }
}

/// One raw event as inserted; the field order is that of `queries::INSERT_EVENTS`.
#[derive(Row)]
struct EventRow {
    event_id: Uuid,
    user_id: Uuid,
    video_id: Uuid,
    creator_id: Uuid,
    event_type: String,
    watch_ms: Option<u64>,
    completion: Option<f64>,
    occurred_at: klickhouse::DateTime,
}

#[derive(Row)]
struct EventIdRow {
    event_id: Uuid,
}

#[derive(Row)]
struct StatsRow {
    video_id: Uuid,
    total_impressions: u64,
    total_views: u64,
    total_watches: u64,
    total_completion: f64,
    total_likes: u64,
    total_unlikes: u64,
    total_shares: u64,
    total_comments: u64,
    total_skips: u64,
}

#[derive(Row)]
struct VideoRow {
    video_id: Uuid,
}

#[derive(Row)]
struct AffinityRow {
    creator_id: Uuid,
    strength: f64,
}

#[derive(Row)]
struct ActiveUserRow {
    user_id: Uuid,
    #[allow(dead_code)] // Selected for the ORDER BY; the port returns ids only.
    total_events: u64,
}

#[derive(Row)]
struct PingRow {
    #[allow(dead_code)]
    one: u8,
}

impl ClickHouseSignalStore {
    /// Validates the configuration; connections open on first use (no I/O here).
    pub fn new(config: &ClickHouseConfig) -> Result<Self, ClickHouseError> {
        validate_database(&config.database)?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool: Pool::new(config)?,
                database: config.database.clone(),
                insert_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The `clickhouse` health probe, sharing this store's connections.
    pub fn health_probe(&self) -> ClickHouseHealthProbe {
        ClickHouseHealthProbe {
            store: self.clone(),
        }
    }

    fn sql(&self, template: &str, values: &[(&str, String)]) -> String {
        render(template, &self.inner.database, values)
    }

    /// Inserts the events whose `event_id` is not in the raw table yet (repeats within the batch
    /// count once) and returns how many were inserted. Replaying a batch therefore never counts
    /// twice in the aggregates. An event outside ClickHouse's `DateTime` range (1970..2106) is
    /// rejected with the whole batch, before anything is written.
    pub async fn insert_events(&self, events: &[EngagementEvent]) -> Result<usize, PortError> {
        Ok(self.insert_new_events(events).await?.len())
    }

    /// Like [`Self::insert_events`], returning the ids of the inserted events in batch order.
    pub async fn insert_new_events(
        &self,
        events: &[EngagementEvent],
    ) -> Result<Vec<Uuid>, PortError> {
        let _writer = self.inner.insert_lock.lock().await;
        let mut seen = HashSet::with_capacity(events.len());
        let fresh: Vec<&EngagementEvent> =
            events.iter().filter(|e| seen.insert(e.event_id)).collect();
        let ids: Vec<Uuid> = fresh.iter().map(|e| e.event_id).collect();
        let known = self.known_event_ids(&ids).await?;
        let new: Vec<&EngagementEvent> = fresh
            .into_iter()
            .filter(|e| !known.contains(&e.event_id))
            .collect();
        let rows = new
            .iter()
            .map(|e| event_row(e))
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql(queries::INSERT_EVENTS, &[]);
        self.inner
            .pool
            .run("insert_events", |client| async move {
                client.insert_native_block(sql, rows).await
            })
            .await?;
        Ok(new.into_iter().map(|e| e.event_id).collect())
    }

    async fn known_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, PortError> {
        let mut known = HashSet::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let sql = self.sql(queries::KNOWN_EVENT_IDS, &[("ids", uuid_list(chunk))]);
            let rows: Vec<EventIdRow> = self
                .inner
                .pool
                .run("known_event_ids", |client| async move {
                    client.query_collect(sql).await
                })
                .await?;
            known.extend(rows.into_iter().map(|r| r.event_id));
        }
        Ok(known)
    }

    async fn collect<T: Row + Send + 'static>(
        &self,
        query: &'static str,
        sql: String,
    ) -> Result<Vec<T>, PortError> {
        self.inner
            .pool
            .run(
                query,
                |client| async move { client.query_collect(sql).await },
            )
            .await
    }
}

fn event_row(e: &EngagementEvent) -> Result<EventRow, PortError> {
    let occurred_at = klickhouse::DateTime::try_from(e.occurred_at).map_err(|_| {
        PortError::Rejected(format!(
            "event {}: occurred_at {} is outside ClickHouse's DateTime range",
            e.event_id, e.occurred_at
        ))
    })?;
    Ok(EventRow {
        event_id: e.event_id,
        user_id: e.user_id.0,
        video_id: e.video_id.0,
        creator_id: e.creator_id.0,
        event_type: e.event_type.as_str().to_owned(),
        watch_ms: e.watch_ms,
        completion: e.completion,
        occurred_at,
    })
}

fn limit_literal(limit: usize) -> (&'static str, String) {
    ("limit", limit.to_string())
}

#[async_trait]
impl SignalStore for ClickHouseSignalStore {
    async fn video_stats(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(VideoId, VideoStats)>, PortError> {
        let sql = self.sql(queries::VIDEO_STATS, &[("since", since_literal(since))]);
        let rows: Vec<StatsRow> = self.collect("video_stats", sql).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let stats = VideoStats {
                    impressions: r.total_impressions,
                    views: r.total_views,
                    watches: r.total_watches,
                    completion_sum: r.total_completion,
                    likes: r.total_likes,
                    unlikes: r.total_unlikes,
                    shares: r.total_shares,
                    comments: r.total_comments,
                    skips: r.total_skips,
                };
                (VideoId(r.video_id), stats)
            })
            .collect())
    }

    async fn trending(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<VideoId>, PortError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = self.sql(
            queries::TRENDING,
            &[("since", since_literal(since)), limit_literal(limit)],
        );
        let rows: Vec<VideoRow> = self.collect("trending", sql).await?;
        Ok(rows.into_iter().map(|r| VideoId(r.video_id)).collect())
    }

    async fn creator_affinity(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(CreatorId, f64)>, PortError> {
        let sql = self.sql(
            queries::CREATOR_AFFINITY,
            &[
                ("since", since_literal(since)),
                ("user", user.0.to_string()),
            ],
        );
        let rows: Vec<AffinityRow> = self.collect("affinity", sql).await?;
        Ok(rows
            .into_iter()
            .map(|r| (CreatorId(r.creator_id), r.strength))
            .collect())
    }

    async fn most_active_users(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<UserId>, PortError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = self.sql(
            queries::MOST_ACTIVE_USERS,
            &[("since", since_literal(since)), limit_literal(limit)],
        );
        let rows: Vec<ActiveUserRow> = self.collect("most_active_users", sql).await?;
        Ok(rows.into_iter().map(|r| UserId(r.user_id)).collect())
    }
}

/// Reports whether ClickHouse answers a trivial query.
#[derive(Clone, Debug)]
pub struct ClickHouseHealthProbe {
    store: ClickHouseSignalStore,
}

#[async_trait]
impl HealthProbe for ClickHouseHealthProbe {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    async fn check(&self) -> Result<(), PortError> {
        let rows: Vec<PingRow> = self
            .store
            .collect("health", queries::PING.to_owned())
            .await?;
        match rows.len() {
            1 => Ok(()),
            n => Err(PortError::InvalidData(format!(
                "ClickHouse health query returned {n} rows"
            ))),
        }
    }
}
