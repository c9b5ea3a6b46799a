-- Engagement analytics schema of the video ranking service.
--
-- Runs unchanged on ClickHouse 18.16 (Debian 12's package) and on modern servers (23.x and newer);
-- what only modern servers support (TTL retention, skip indexes) is in init-db-modern.sql.
-- ${CLICKHOUSE_DATABASE} is the database name (default `nova`); `video-ranking-service
-- clickhouse-init` substitutes it and applies the statements one by one. By hand:
--   CLICKHOUSE_DATABASE=nova envsubst < init-db.sql | clickhouse-client --multiquery
-- Every statement is idempotent (IF NOT EXISTS).
--
-- Reading rules: the aggregate tables are summed (or -Merge'd) by background merges whose timing
-- is unknown, so a reader always aggregates again with sum()/GROUP BY and never assumes one row per
-- key. The event-type weights below mirror vrs_domain::EventType (a unit test keeps them in step).

CREATE DATABASE IF NOT EXISTS ${CLICKHOUSE_DATABASE};

-- Every accepted event, once: the adapter skips event ids that are already here, so a replayed
-- batch never reaches the materialized views twice. Ordered by event_id because that check runs on
-- every insert and is then a primary-key lookup (one granule per id and monthly partition); the
-- ranking reads go to the aggregates below, never here.
CREATE TABLE IF NOT EXISTS ${CLICKHOUSE_DATABASE}.engagement_events
(
    event_id UUID,
    user_id UUID,
    video_id UUID,
    creator_id UUID,
    -- String rather than Enum8: a new event type then needs no ALTER of the raw table.
    event_type String,
    watch_ms Nullable(UInt64),
    completion Nullable(Float64),
    occurred_at DateTime('UTC'),
    ingested_at DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (event_id);

-- Per video and hour: the counters of vrs_domain::VideoStats.
CREATE TABLE IF NOT EXISTS ${CLICKHOUSE_DATABASE}.video_ranking_signals_1h
(
    hour DateTime('UTC'),
    video_id UUID,
    impressions UInt64,
    views UInt64,
    watches UInt64,
    completion_sum Float64,
    likes UInt64,
    unlikes UInt64,
    shares UInt64,
    comments UInt64,
    skips UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, video_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${CLICKHOUSE_DATABASE}.video_ranking_signals_1h_mv
TO ${CLICKHOUSE_DATABASE}.video_ranking_signals_1h
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    video_id,
    countIf(event_type = 'impression') AS impressions,
    countIf(event_type = 'view') AS views,
    countIf(event_type IN ('watch', 'complete')) AS watches,
    -- A complete event without a completion counts as 1.0, a watch event without one as 0.
    sum(multiIf(event_type = 'complete', ifNull(completion, 1.), event_type = 'watch', ifNull(completion, 0.), 0.)) AS completion_sum,
    countIf(event_type = 'like') AS likes,
    countIf(event_type = 'unlike') AS unlikes,
    countIf(event_type = 'share') AS shares,
    countIf(event_type = 'comment') AS comments,
    countIf(event_type = 'skip') AS skips
FROM ${CLICKHOUSE_DATABASE}.engagement_events
GROUP BY hour, video_id;

-- Quick skips (a skip reported with under 2 s of watch time, vrs_domain::QUICK_SKIP_MS):
-- completion samples of 0, so a video people swipe away at once loses completion. A view of its
-- own: a materialized view cannot be altered in place, and this one adds rows the first one does
-- not, to the same table (every column named: 18.16 fills none by default).
CREATE MATERIALIZED VIEW IF NOT EXISTS ${CLICKHOUSE_DATABASE}.video_quick_skips_1h_mv
TO ${CLICKHOUSE_DATABASE}.video_ranking_signals_1h
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    video_id,
    toUInt64(0) AS impressions,
    toUInt64(0) AS views,
    count() AS watches,
    toFloat64(0) AS completion_sum,
    toUInt64(0) AS likes,
    toUInt64(0) AS unlikes,
    toUInt64(0) AS shares,
    toUInt64(0) AS comments,
    toUInt64(0) AS skips
FROM ${CLICKHOUSE_DATABASE}.engagement_events
WHERE event_type = 'skip' AND watch_ms < 2000
GROUP BY hour, video_id;

-- Per user and video: when it was last watched and the best completion reached. -State/-Merge
-- (not ReplacingMergeTree) because "best completion" and "last watched" may come from different
-- events in different insert blocks.
CREATE TABLE IF NOT EXISTS ${CLICKHOUSE_DATABASE}.user_watch_history_realtime
(
    user_id UUID,
    video_id UUID,
    last_watched_at AggregateFunction(max, DateTime('UTC')),
    best_completion AggregateFunction(max, Float64),
    watches AggregateFunction(count)
)
ENGINE = AggregatingMergeTree()
ORDER BY (user_id, video_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${CLICKHOUSE_DATABASE}.user_watch_history_realtime_mv
TO ${CLICKHOUSE_DATABASE}.user_watch_history_realtime
AS SELECT
    user_id,
    video_id,
    maxState(occurred_at) AS last_watched_at,
    maxState(ifNull(completion, if(event_type = 'complete', 1., 0.))) AS best_completion,
    countState() AS watches
FROM ${CLICKHOUSE_DATABASE}.engagement_events
WHERE event_type IN ('watch', 'complete')
GROUP BY user_id, video_id;

-- Per user: what they hid, for good: videos marked "not interested" (kind 'video') and creators
-- hidden (kind 'creator'). A few rows per user, read per user; a repeated hide collapses in merges
-- (readers use DISTINCT).
CREATE TABLE IF NOT EXISTS ${CLICKHOUSE_DATABASE}.user_hidden
(
    user_id UUID,
    kind String,
    target_id UUID,
    hidden_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (user_id, kind, target_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${CLICKHOUSE_DATABASE}.user_hidden_mv
TO ${CLICKHOUSE_DATABASE}.user_hidden
AS SELECT
    user_id,
    if(event_type = 'hide_creator', 'creator', 'video') AS kind,
    if(event_type = 'hide_creator', creator_id, video_id) AS target_id,
    occurred_at AS hidden_at
FROM ${CLICKHOUSE_DATABASE}.engagement_events
WHERE event_type IN ('not_interested', 'hide_creator');

-- Per user, creator and hour: the sum of vrs_domain::EventType::affinity_weight. The 90-day window
-- and the floor at zero belong to the query (the floor applies to the window's sum, not per hour).
CREATE TABLE IF NOT EXISTS ${CLICKHOUSE_DATABASE}.user_creator_affinity_1h
(
    user_id UUID,
    hour DateTime('UTC'),
    creator_id UUID,
    weight Float64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (user_id, hour, creator_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${CLICKHOUSE_DATABASE}.user_creator_affinity_1h_mv
TO ${CLICKHOUSE_DATABASE}.user_creator_affinity_1h
AS SELECT
    user_id,
    toStartOfHour(occurred_at) AS hour,
    creator_id,
    sum(transform(event_type, ['impression', 'view', 'watch', 'complete', 'like', 'unlike', 'share', 'comment', 'skip'], [0., 0.5, 1., 2., 3., -3., 4., 2., -0.5], 0.)) AS weight
FROM ${CLICKHOUSE_DATABASE}.engagement_events
GROUP BY user_id, hour, creator_id;

-- Negative feedback ("not interested", "hide creator") takes affinity away, into the same table.
-- A view of its own, as above; its weights too mirror vrs_domain::EventType::affinity_weight.
CREATE MATERIALIZED VIEW IF NOT EXISTS ${CLICKHOUSE_DATABASE}.user_creator_negative_feedback_1h_mv
TO ${CLICKHOUSE_DATABASE}.user_creator_affinity_1h
AS SELECT
    user_id,
    toStartOfHour(occurred_at) AS hour,
    creator_id,
    sum(transform(event_type, ['not_interested', 'hide_creator'], [-3., -20.], 0.)) AS weight
FROM ${CLICKHOUSE_DATABASE}.engagement_events
WHERE event_type IN ('not_interested', 'hide_creator')
GROUP BY user_id, hour, creator_id;

-- Per user and hour: the number of events, for "most active users". An aggregate rather than a scan
-- of the raw table: the raw table is ordered by event_id, so a window query over it would read every
-- event of the window's partitions; this table is ordered by hour and holds one row per active
-- user-hour.
CREATE TABLE IF NOT EXISTS ${CLICKHOUSE_DATABASE}.user_activity_1h
(
    hour DateTime('UTC'),
    user_id UUID,
    events UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, user_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${CLICKHOUSE_DATABASE}.user_activity_1h_mv
TO ${CLICKHOUSE_DATABASE}.user_activity_1h
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    user_id,
    count() AS events
FROM ${CLICKHOUSE_DATABASE}.engagement_events
GROUP BY hour, user_id;

-- Every exposure of an experiment variant (one video at one position of a served page), once:
-- the adapter skips exposure ids already here, as for events. Ordered by experiment first, so
-- the results of one experiment (vrs_domain::experiment) and the duplicate check (which knows
-- the experiments of its batch) read only that experiment's granules.
CREATE TABLE IF NOT EXISTS ${CLICKHOUSE_DATABASE}.experiment_exposures
(
    exposure_id UUID,
    experiment_id UUID,
    variant String,
    user_id UUID,
    session_id UUID,
    video_id UUID,
    position UInt32,
    served_at DateTime('UTC'),
    ingested_at DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(served_at)
ORDER BY (experiment_id, exposure_id);
