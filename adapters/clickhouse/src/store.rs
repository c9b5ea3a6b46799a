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
use vrs_application::model::Engagement;
use vrs_application::ports::{HealthProbe, PortError, RejectedEvent, SignalStore, StoredEvents};
use vrs_domain::experiment::MetricSums;
use vrs_domain::{
    CreatorId, EngagementEvent, Exposure, Hidden, UserId, VariantTotals, VideoId, VideoStats,
};

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
    /// Serializes the check-then-insert of `store_events`, so two batches carrying the same event
    /// cannot both find it new; holds the token of the last insert whose outcome is unknown.
    /// Across processes, the consumer's partition assignment keeps one writer per event.
    insert_lock: tokio::sync::Mutex<InsertState>,
    /// Longest wait for earlier inserts to finish before a lookup.
    settle_timeout: std::time::Duration,
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
    ingested_at: klickhouse::DateTime,
}

/// The tables the insert path writes, each with its own insert in doubt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Events = 0,
    Exposures = 1,
}

impl InsertState {
    /// The `ingested_at` of the next insert into `table`: its pending one's, so that a retry
    /// writes an identical block.
    fn ingested_at(&self, table: Table) -> Result<klickhouse::DateTime, PortError> {
        match self.pending[table as usize].as_ref() {
            Some(p) => Ok(p.ingested_at),
            None => klickhouse::DateTime::try_from(Utc::now()).map_err(|_| {
                PortError::InvalidData("the clock is outside ClickHouse's DateTime range".into())
            }),
        }
    }
}

/// What the insert path remembers between calls.
#[derive(Default)]
struct InsertState {
    /// Per [`Table`], the last insert, if its outcome is unknown.
    pending: [Option<PendingInsert>; 2],
    /// When the server last had no other insert running for half a second or more.
    settled_at: Option<std::time::Instant>,
}

/// How long a "no earlier insert is running" answer is reused. After a rebalance the consumer calls
/// [`ClickHouseSignalStore::fence`], which waits for every running insert, whatever its age; this
/// check is the second line, for a writer evicted without a rebalance this process saw (it lost
/// the partition at least a session timeout, 6 s at the least, before this store received it: if
/// its insert still runs now, it ran, older than half a second, at a check within the last second).
const SETTLED_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// An insert whose outcome the store never learnt.
struct PendingInsert {
    /// The token in its query text, to find it in `system.processes`.
    token: String,
    /// Its `ingested_at`, reused by the retry: identical rows make an identical block, which a
    /// replicated table deduplicates should the first one have committed after all.
    ingested_at: klickhouse::DateTime,
}

#[derive(Row)]
struct QueryIdRow {
    query_id: String,
}

#[derive(Row)]
struct CountRow {
    n: u64,
}

#[derive(Row)]
struct EventIdRow {
    event_id: Uuid,
}

#[derive(Row)]
struct ExposureIdRow {
    exposure_id: Uuid,
}

/// One exposure as inserted; the field order is that of `queries::INSERT_EXPOSURES`.
#[derive(Row)]
struct ExposureRow {
    exposure_id: Uuid,
    experiment_id: Uuid,
    variant: String,
    user_id: Uuid,
    session_id: Uuid,
    video_id: Uuid,
    position: u32,
    served_at: klickhouse::DateTime,
    ingested_at: klickhouse::DateTime,
}

/// One row of `queries::EXPERIMENT_TOTALS`.
#[derive(Row)]
struct VariantTotalsRow {
    variant: String,
    users: u64,
    sessions: u64,
    exposures: u64,
    exposures_squares: f64,
    like_sum: f64,
    like_squares: f64,
    like_products: f64,
    share_sum: f64,
    share_squares: f64,
    share_products: f64,
    complete_sum: f64,
    complete_squares: f64,
    complete_products: f64,
    skip_sum: f64,
    skip_squares: f64,
    skip_products: f64,
    watch_sum: f64,
    watch_squares: f64,
    watch_products: f64,
}

impl From<VariantTotalsRow> for VariantTotals {
    fn from(r: VariantTotalsRow) -> Self {
        let sums = |sum, sum_squares, sum_products| MetricSums {
            sum,
            sum_squares,
            sum_products,
        };
        VariantTotals {
            variant: r.variant,
            users: r.users,
            sessions: r.sessions,
            exposures: r.exposures,
            exposures_squares: r.exposures_squares,
            metrics: [
                sums(r.like_sum, r.like_squares, r.like_products),
                sums(r.share_sum, r.share_squares, r.share_products),
                sums(r.complete_sum, r.complete_squares, r.complete_products),
                sums(r.skip_sum, r.skip_squares, r.skip_products),
                sums(r.watch_sum, r.watch_squares, r.watch_products),
            ],
        }
    }
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
struct WatchedRow {
    video_id: Uuid,
}

#[derive(Row)]
struct PairRow {
    user_id: Uuid,
    video_id: Uuid,
    creator_id: Uuid,
    strength: f64,
    last_at: klickhouse::DateTime,
}

#[derive(Row)]
struct HiddenRow {
    kind: String,
    target_id: Uuid,
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
                insert_lock: tokio::sync::Mutex::new(InsertState::default()),
                settle_timeout: config.query_timeout,
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
    pub async fn insert_batch(&self, events: &[EngagementEvent]) -> Result<usize, PortError> {
        if let Some((e, reason)) = events.iter().find_map(|e| {
            event_row(e, klickhouse::DateTime::default())
                .err()
                .map(|reason| (e, reason))
        }) {
            return Err(PortError::Rejected(format!(
                "event {}: {reason}",
                e.event_id
            )));
        }
        Ok(self.store_events(events).await?.new.len())
    }

    /// Stores the events whose `event_id` is not in the raw table yet and names them; events this
    /// table can never hold are returned as rejected, and the rest are stored all the same.
    ///
    /// Exactly once, across retries and processes: before looking up which ids are known, it waits
    /// until no earlier insert is still running on the server (one of its own whose outcome it
    /// never learnt, or anyone's that has run for half a second: an insert whose client timed out
    /// or died may still commit). Only then is "not in the table yet" a fact, not a race.
    pub async fn store_events(
        &self,
        events: &[EngagementEvent],
    ) -> Result<StoredEvents, PortError> {
        let mut state = self.inner.insert_lock.lock().await;
        let ingested_at = state.ingested_at(Table::Events)?;
        let mut seen = HashSet::with_capacity(events.len());
        let mut rejected = Vec::new();
        let mut rows = Vec::with_capacity(events.len());
        let mut candidates = Vec::with_capacity(events.len());
        for e in events.iter().filter(|e| seen.insert(e.event_id)) {
            match event_row(e, ingested_at) {
                Ok(row) => {
                    candidates.push(e.event_id);
                    rows.push(row);
                }
                Err(reason) => rejected.push(RejectedEvent {
                    event_id: e.event_id,
                    reason,
                }),
            }
        }
        if rows.is_empty() {
            return Ok(StoredEvents {
                new: Vec::new(),
                rejected,
            });
        }
        self.settle_before_lookup(&mut state).await?;
        let known = self.known_event_ids(&candidates).await?;
        let (new, rows): (Vec<Uuid>, Vec<EventRow>) = candidates
            .into_iter()
            .zip(rows)
            .filter(|(id, _)| !known.contains(id))
            .unzip();
        if rows.is_empty() {
            state.pending[Table::Events as usize] = None;
            return Ok(StoredEvents {
                new: Vec::new(),
                rejected,
            });
        }
        self.insert_marked(
            &mut state,
            Table::Events,
            queries::INSERT_EVENTS,
            "insert_events",
            ingested_at,
            rows,
        )
        .await?;
        Ok(StoredEvents { new, rejected })
    }

    /// Stores the exposures whose `exposure_id` is not in the exposures table yet and names them,
    /// with the discipline of [`Self::store_events`] (the same lock, the same settling of inserts
    /// whose outcome is unknown). An exposure outside ClickHouse's `DateTime` range refuses the
    /// batch (`Rejected`): the service never serves pages at such times.
    pub async fn store_exposures(&self, exposures: &[Exposure]) -> Result<Vec<Uuid>, PortError> {
        let mut state = self.inner.insert_lock.lock().await;
        let ingested_at = state.ingested_at(Table::Exposures)?;
        let mut seen = HashSet::with_capacity(exposures.len());
        let mut rows = Vec::with_capacity(exposures.len());
        let mut candidates = Vec::with_capacity(exposures.len());
        let mut experiments: Vec<Uuid> = Vec::new();
        for x in exposures.iter().filter(|x| seen.insert(x.exposure_id)) {
            let served_at = klickhouse::DateTime::try_from(x.served_at).map_err(|_| {
                PortError::Rejected(format!(
                    "exposure {}: served_at {} is outside ClickHouse's DateTime range",
                    x.exposure_id, x.served_at
                ))
            })?;
            if !experiments.contains(&x.experiment_id) {
                experiments.push(x.experiment_id);
            }
            candidates.push(x.exposure_id);
            rows.push(ExposureRow {
                exposure_id: x.exposure_id,
                experiment_id: x.experiment_id,
                variant: x.variant.clone(),
                user_id: x.user_id.0,
                session_id: x.session_id.0,
                video_id: x.video_id.0,
                position: x.position,
                served_at,
                ingested_at,
            });
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.settle_before_lookup(&mut state).await?;
        let mut known = HashSet::new();
        for chunk in candidates.chunks(LOOKUP_CHUNK) {
            let sql = self.sql(
                queries::KNOWN_EXPOSURE_IDS,
                &[
                    ("experiments", uuid_list(&experiments)),
                    ("ids", uuid_list(chunk)),
                ],
            );
            let found: Vec<ExposureIdRow> = self.collect("known_exposure_ids", sql).await?;
            known.extend(found.into_iter().map(|r| r.exposure_id));
        }
        let (new, rows): (Vec<Uuid>, Vec<ExposureRow>) = candidates
            .into_iter()
            .zip(rows)
            .filter(|(id, _)| !known.contains(id))
            .unzip();
        if rows.is_empty() {
            state.pending[Table::Exposures as usize] = None;
            return Ok(Vec::new());
        }
        self.insert_marked(
            &mut state,
            Table::Exposures,
            queries::INSERT_EXPOSURES,
            "insert_exposures",
            ingested_at,
            rows,
        )
        .await?;
        Ok(new)
    }

    /// Before a lookup of known ids: unless the server was found settled within
    /// [`SETTLED_REUSE`] and no insert of ours has an unknown outcome, waits until no insert
    /// that could still commit runs.
    async fn settle_before_lookup(&self, state: &mut InsertState) -> Result<(), PortError> {
        let recently_settled = state
            .settled_at
            .is_some_and(|at| at.elapsed() < SETTLED_REUSE);
        let tokens: Vec<String> = state
            .pending
            .iter()
            .flatten()
            .map(|p| p.token.clone())
            .collect();
        if !tokens.is_empty() || !recently_settled {
            if tokens.is_empty() {
                self.settle_running_inserts(None).await?;
            }
            for token in &tokens {
                self.settle_running_inserts(Some(token)).await?;
            }
            state.settled_at = Some(std::time::Instant::now());
        }
        Ok(())
    }

    /// Inserts `rows` with `template` (an insert carrying the `vrs-insert` marker), remembering it
    /// as pending until the server acknowledged it.
    async fn insert_marked<R: Row + Send + Sync + 'static>(
        &self,
        state: &mut InsertState,
        table: Table,
        template: &str,
        operation: &'static str,
        ingested_at: klickhouse::DateTime,
        rows: Vec<R>,
    ) -> Result<(), PortError> {
        let token = Uuid::new_v4().to_string();
        let sql = self.sql(template, &[("token", token.clone())]);
        // Remembered before the insert starts: should this call be dropped midway (its caller
        // cancelled), the next one still waits for this insert.
        state.pending[table as usize] = Some(PendingInsert {
            token: token.clone(),
            ingested_at,
        });
        // On failure the server may still commit it (a timeout, a lost connection): `pending`
        // stays, so the next attempt waits for this insert to finish before it looks anything up.
        self.inner
            .pool
            .run(operation, |client| async move {
                client.insert_native_block(sql, rows).await
            })
            .await?;
        state.pending[table as usize] = None;
        Ok(())
    }

    /// Waits until no raw-event insert that could overlap the next one runs on the server: the one
    /// carrying `token` (this store's last insert with an unknown outcome) and any that has run for
    /// half a second. Fails with `Timeout` when they are still running after the query timeout.
    async fn settle_running_inserts(&self, token: Option<&str>) -> Result<(), PortError> {
        let token = token.map_or_else(|| Uuid::nil().to_string(), str::to_owned);
        let deadline = std::time::Instant::now() + self.inner.settle_timeout;
        loop {
            let sql = self.sql(
                queries::RUNNING_INSERTS,
                &[("token", token.clone()), ("min_elapsed", "0.5".to_owned())],
            );
            let rows: Vec<CountRow> = self.collect("running_inserts", sql).await?;
            if rows.first().is_none_or(|r| r.n == 0) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(PortError::Timeout(
                    "ClickHouse: an earlier insert of engagement events is still running".into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits until every raw-event insert running now has finished, whoever sent it: after the
    /// caller took over partitions, their previous owner's last insert may still be running.
    pub async fn fence(&self) -> Result<(), PortError> {
        let mut state = self.inner.insert_lock.lock().await;
        let running: Vec<QueryIdRow> = self
            .collect("running_insert_ids", queries::RUNNING_INSERT_IDS.to_owned())
            .await?;
        if !running.is_empty() {
            let ids = running
                .iter()
                .map(|r| format!("'{}'", r.query_id.replace(['\\', '\''], "")))
                .collect::<Vec<_>>()
                .join(", ");
            let deadline = std::time::Instant::now() + self.inner.settle_timeout;
            loop {
                let sql = self.sql(
                    queries::QUERIES_STILL_RUNNING,
                    &[("query_ids", ids.clone())],
                );
                let rows: Vec<CountRow> = self.collect("queries_still_running", sql).await?;
                if rows.first().is_none_or(|r| r.n == 0) {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(PortError::Timeout(
                        "ClickHouse: a previous owner's insert is still running".into(),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        state.settled_at = Some(std::time::Instant::now());
        Ok(())
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

fn event_row(e: &EngagementEvent, ingested_at: klickhouse::DateTime) -> Result<EventRow, String> {
    let occurred_at = klickhouse::DateTime::try_from(e.occurred_at).map_err(|_| {
        format!(
            "occurred_at {} is outside ClickHouse's DateTime range",
            e.occurred_at
        )
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
        ingested_at,
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

    async fn watched_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        let sql = self.sql(
            queries::WATCHED_SINCE,
            &[
                ("at", since.timestamp().max(0).to_string()),
                ("user", user.0.to_string()),
            ],
        );
        let rows: Vec<WatchedRow> = self.collect("watched_since", sql).await?;
        Ok(rows.into_iter().map(|r| VideoId(r.video_id)).collect())
    }

    async fn engagement_pairs(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Engagement>, PortError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = self.sql(
            queries::ENGAGEMENT_PAIRS,
            &[
                ("since", since_literal(since)),
                limit_literal(limit),
                ("weights", queries::affinity_transform()),
            ],
        );
        let rows: Vec<PairRow> = self.collect("engagement_pairs", sql).await?;
        Ok(rows
            .into_iter()
            .map(|r| Engagement {
                user: UserId(r.user_id),
                video: VideoId(r.video_id),
                creator: CreatorId(r.creator_id),
                strength: r.strength as f32,
                at: DateTime::from_timestamp(i64::from(r.last_at.1), 0).unwrap_or_default(),
            })
            .collect())
    }

    async fn hidden(&self, user: UserId) -> Result<Hidden, PortError> {
        let sql = self.sql(queries::HIDDEN, &[("user", user.0.to_string())]);
        let rows: Vec<HiddenRow> = self.collect("hidden", sql).await?;
        let mut hidden = Hidden::default();
        for row in rows {
            match row.kind.as_str() {
                "video" => hidden.videos.insert(VideoId(row.target_id)),
                "creator" => hidden.creators.insert(CreatorId(row.target_id)),
                other => {
                    return Err(PortError::InvalidData(format!(
                        "user_hidden: unknown kind {other:?}"
                    )));
                }
            };
        }
        Ok(hidden)
    }

    async fn experiment_totals(
        &self,
        experiment: Uuid,
        attribution: std::time::Duration,
    ) -> Result<Vec<VariantTotals>, PortError> {
        let sql = self.sql(
            queries::EXPERIMENT_TOTALS,
            &[
                ("experiment", experiment.to_string()),
                ("window", attribution.as_secs().to_string()),
                (
                    "slack",
                    vrs_domain::experiment::ATTRIBUTION_SLACK_SECONDS.to_string(),
                ),
            ],
        );
        let rows: Vec<VariantTotalsRow> = self.collect("experiment_totals", sql).await?;
        Ok(rows.into_iter().map(VariantTotals::from).collect())
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
