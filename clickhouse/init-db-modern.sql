-- What only modern ClickHouse servers (21.x and newer; checked on 26.x through chdb) support, applied
-- after init-db.sql and only where `SELECT version()` says the server has it: ClickHouse 18.16
-- (Debian 12) rejects TTL and skip indexes, and keeps its data until it is deleted by hand.
-- ${CLICKHOUSE_DATABASE} as in init-db.sql. Every statement is idempotent.

-- Re-applying MODIFY TTL would otherwise start a mutation that rewrites every part of the table on
-- each run; parts written before the TTL was set drop expired rows at their next merge instead.
SET materialize_ttl_after_modify = 0;

-- Retention: raw events 90 days (the longest window any query reads: creator affinity), hourly
-- aggregates 120 days (room to recompute a 90-day window after a late backfill).
ALTER TABLE ${CLICKHOUSE_DATABASE}.engagement_events MODIFY TTL occurred_at + INTERVAL 90 DAY;
ALTER TABLE ${CLICKHOUSE_DATABASE}.video_ranking_signals_1h MODIFY TTL hour + INTERVAL 120 DAY;
ALTER TABLE ${CLICKHOUSE_DATABASE}.user_creator_affinity_1h MODIFY TTL hour + INTERVAL 120 DAY;
ALTER TABLE ${CLICKHOUSE_DATABASE}.user_activity_1h MODIFY TTL hour + INTERVAL 120 DAY;
-- Exposures as long as the events their outcomes are read from: an experiment's results cover
-- its last 90 days.
ALTER TABLE ${CLICKHOUSE_DATABASE}.experiment_exposures MODIFY TTL served_at + INTERVAL 90 DAY;

-- The raw table is ordered by event_id (for the insert-time duplicate check); these let the
-- occasional investigation or backfill by user or video skip most granules instead of scanning.
ALTER TABLE ${CLICKHOUSE_DATABASE}.engagement_events ADD INDEX IF NOT EXISTS idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE ${CLICKHOUSE_DATABASE}.engagement_events ADD INDEX IF NOT EXISTS idx_video_id video_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE ${CLICKHOUSE_DATABASE}.engagement_events ADD INDEX IF NOT EXISTS idx_occurred_at occurred_at TYPE minmax GRANULARITY 1;
