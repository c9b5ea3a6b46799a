//! Every SQL text the adapter sends, in one place, so that `scripts/check-clickhouse-ddl.py` can run
//! the very same texts against a modern engine (`cargo run --example print-queries`).
//!
//! Values are spliced in only as numbers, UUIDs formatted by the `uuid` crate and validated database
//! names: ClickHouse 18.16 has no `{x:Type}` query parameters. Every text runs on 18.16 and on
//! modern servers: no named CTEs, no window functions, no `toStartOfInterval`.
//!
//! Ties are broken by `toString(id)`: ClickHouse orders UUIDs by their second half first, and the
//! other adapters (and the contract) order ids by their bytes, which the canonical string keeps.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Rows of the raw table whose `event_id` is among `{ids}`.
pub const KNOWN_EVENT_IDS: &str = "\
SELECT DISTINCT event_id
FROM {db}.engagement_events
WHERE event_id IN ({ids})";

/// Native-format insert of raw events; the column order is that of `store::EventRow`. The leading
/// comment carries a token unique to the attempt, so the insert can be found in
/// `system.processes` while it runs (see [`RUNNING_INSERTS`]).
pub const INSERT_EVENTS: &str = "\
/* vrs-insert:{token} */ INSERT INTO {db}.engagement_events \
(event_id, user_id, video_id, creator_id, event_type, watch_ms, completion, occurred_at, \
ingested_at) FORMAT native";

/// How many raw-event inserts are still running on the server that either carry `{token}` or have
/// run for at least `{min_elapsed}` seconds (an insert whose client timed out, died or was moved
/// off its partitions). An insert's outcome is settled once it no longer runs. The marker is
/// spelled with `concat` so this query does not match itself.
pub const RUNNING_INSERTS: &str = "\
SELECT count() AS n
FROM system.processes
WHERE position(query, concat('/* vrs-', 'insert:')) = 1
  AND (position(query, '{token}') > 0 OR elapsed >= {min_elapsed})";

/// The query ids of every raw-event insert running on the server now.
pub const RUNNING_INSERT_IDS: &str = "\
SELECT query_id
FROM system.processes
WHERE position(query, concat('/* vrs-', 'insert:')) = 1";

/// How many of the queries `{query_ids}` still run.
pub const QUERIES_STILL_RUNNING: &str = "\
SELECT count() AS n
FROM system.processes
WHERE query_id IN ({query_ids})";

/// Exposures of the experiments `{experiments}` whose `exposure_id` is among `{ids}`.
pub const KNOWN_EXPOSURE_IDS: &str = "\
SELECT DISTINCT exposure_id
FROM {db}.experiment_exposures
WHERE experiment_id IN ({experiments}) AND exposure_id IN ({ids})";

/// Native-format insert of exposures; the column order is that of `store::ExposureRow`. It
/// carries the same marker as [`INSERT_EVENTS`], so the same settling applies to it.
pub const INSERT_EXPOSURES: &str = "\
/* vrs-insert:{token} */ INSERT INTO {db}.experiment_exposures \
(exposure_id, experiment_id, variant, user_id, session_id, video_id, position, served_at, \
ingested_at) FORMAT native";

/// Per variant of experiment `{experiment}`, the totals of `vrs_domain::VariantTotals`: each
/// exposure (once by id) with the flags of the exposed user's events on the exposed video from
/// `{slack}` seconds before its `served_at` (client clocks run slow) to `{window}` seconds after,
/// summed per user, then per variant. Only the events of exposed (user, video) pairs since the
/// first exposure are joined. An exposure without events joins the default row (event_type '',
/// occurred_at 1970), which flags nothing.
pub const EXPERIMENT_TOTALS: &str = "\
SELECT
    variant,
    count() AS users,
    sum(sessions) AS sessions,
    toUInt64(sum(n)) AS exposures,
    sum(n * n) AS exposures_squares,
    sum(likes) AS like_sum, sum(likes * likes) AS like_squares, sum(likes * n) AS like_products,
    sum(shares) AS share_sum, sum(shares * shares) AS share_squares, sum(shares * n) AS share_products,
    sum(completes) AS complete_sum, sum(completes * completes) AS complete_squares, sum(completes * n) AS complete_products,
    sum(skips) AS skip_sum, sum(skips * skips) AS skip_squares, sum(skips * n) AS skip_products,
    sum(watch) AS watch_sum, sum(watch * watch) AS watch_squares, sum(watch * n) AS watch_products
FROM
(
    SELECT
        variant,
        user_id,
        uniqExact(session_id) AS sessions,
        toFloat64(count()) AS n,
        toFloat64(sum(liked)) AS likes,
        toFloat64(sum(shared)) AS shares,
        toFloat64(sum(completed)) AS completes,
        toFloat64(sum(skipped)) AS skips,
        toFloat64(sum(watched_ms)) AS watch
    FROM
    (
        SELECT
            exposure_id,
            any(variant) AS variant,
            any(user_id) AS user_id,
            any(session_id) AS session_id,
            max(in_window AND event_type = 'like') AS liked,
            max(in_window AND event_type = 'share') AS shared,
            max(in_window AND event_type = 'complete') AS completed,
            max(in_window AND event_type = 'skip') AS skipped,
            max(if(in_window AND event_type IN ('view', 'watch', 'complete', 'skip'), wms, toUInt64(0))) AS watched_ms
        FROM
        (
            SELECT
                exposure_id, variant, user_id, session_id, event_type, wms,
                occurred_at >= served_at - {slack} AND occurred_at <= served_at + {window} AS in_window
            FROM
            (
                SELECT exposure_id, variant, user_id, video_id, session_id, served_at
                FROM {db}.experiment_exposures
                WHERE experiment_id = toUUID('{experiment}')
            ) AS x
            ALL LEFT JOIN
            (
                SELECT user_id, video_id, event_type, ifNull(watch_ms, toUInt64(0)) AS wms, occurred_at
                FROM {db}.engagement_events
                WHERE event_type IN ('like', 'share', 'complete', 'skip', 'view', 'watch')
                  AND occurred_at >=
                  (
                      SELECT min(served_at) - {slack}
                      FROM {db}.experiment_exposures
                      WHERE experiment_id = toUUID('{experiment}')
                  )
                  AND (user_id, video_id) IN
                  (
                      SELECT user_id, video_id
                      FROM {db}.experiment_exposures
                      WHERE experiment_id = toUUID('{experiment}')
                  )
            ) AS e USING (user_id, video_id)
        )
        GROUP BY exposure_id
    )
    GROUP BY variant, user_id
)
GROUP BY variant
ORDER BY variant";

/// Per-video sums over the hourly buckets from `{since}` on.
pub const VIDEO_STATS: &str = "\
SELECT
    video_id,
    sum(impressions) AS total_impressions,
    sum(views) AS total_views,
    sum(watches) AS total_watches,
    sum(completion_sum) AS total_completion,
    sum(likes) AS total_likes,
    sum(unlikes) AS total_unlikes,
    sum(shares) AS total_shares,
    sum(comments) AS total_comments,
    sum(skips) AS total_skips
FROM {db}.video_ranking_signals_1h
WHERE hour >= toDateTime({since}, 'UTC')
GROUP BY video_id";

/// Viewed videos by `vrs_domain::signals::engagement` over the window, best first:
/// `clamp((max(likes - unlikes, 0) + 2*shares + 0.5*comments) / max(views, 1), 0, 1)`.
pub const TRENDING: &str = "\
SELECT video_id
FROM
(
    SELECT
        video_id,
        sum(views) AS total_views,
        sum(likes) AS total_likes,
        sum(unlikes) AS total_unlikes,
        sum(shares) AS total_shares,
        sum(comments) AS total_comments
    FROM {db}.video_ranking_signals_1h
    WHERE hour >= toDateTime({since}, 'UTC')
    GROUP BY video_id
    HAVING total_views > 0
)
ORDER BY
    least(greatest(
        (if(total_likes > total_unlikes, total_likes - total_unlikes, 0)
            + 2 * total_shares + 0.5 * total_comments) / greatest(total_views, 1),
        0.), 1.) DESC,
    toString(video_id) ASC
LIMIT {limit}";

/// The user's positive affinity sums per creator over the window (the floor at zero applies to
/// the window's sum; zero is left out). Weights are multiples of 0.5, so the sums are exact.
pub const CREATOR_AFFINITY: &str = "\
SELECT creator_id, sum(weight) AS strength
FROM {db}.user_creator_affinity_1h
WHERE user_id = toUUID('{user}') AND hour >= toDateTime({since}, 'UTC')
GROUP BY creator_id
HAVING strength > 0
ORDER BY toString(creator_id) ASC";

/// Videos the user last watched at or after `{at}` (exact seconds, not a whole hour).
pub const WATCHED_SINCE: &str = "\
SELECT video_id
FROM {db}.user_watch_history_realtime
WHERE user_id = toUUID('{user}')
GROUP BY video_id
HAVING maxMerge(last_watched_at) >= toDateTime({at}, 'UTC')
LIMIT 100000";

/// Per (user, video) pair of the window: the sum of its events' affinity weights (`{weights}`,
/// from [`affinity_transform`]) and its latest event, positive sums only: the model's training
/// data. A scan of the window's raw events, for the training job only.
pub const ENGAGEMENT_PAIRS: &str = "\
SELECT user_id, video_id, any(creator_id) AS creator_id, toFloat64(sum({weights})) AS strength,
    max(occurred_at) AS last_at
FROM {db}.engagement_events
WHERE occurred_at >= toDateTime({since}, 'UTC')
GROUP BY user_id, video_id
HAVING strength > 0
ORDER BY last_at DESC, user_id, video_id
LIMIT {limit}";

/// `transform(event_type, [...], [...], 0.)` of [`vrs_domain::EventType::affinity_weight`].
pub fn affinity_transform() -> String {
    let names: Vec<String> = vrs_domain::EventType::ALL
        .iter()
        .map(|t| format!("'{}'", t.as_str()))
        .collect();
    let weights: Vec<String> = vrs_domain::EventType::ALL
        .iter()
        .map(|t| format!("{:?}", t.affinity_weight()))
        .collect();
    format!(
        "transform(event_type, [{}], [{}], 0.)",
        names.join(", "),
        weights.join(", ")
    )
}

/// What one user hid: `kind` is `video` or `creator`.
pub const HIDDEN: &str = "\
SELECT DISTINCT kind, target_id
FROM {db}.user_hidden
WHERE user_id = toUUID('{user}')
LIMIT 100000";

/// Users by their number of events over the window, most active first.
pub const MOST_ACTIVE_USERS: &str = "\
SELECT user_id, sum(events) AS total_events
FROM {db}.user_activity_1h
WHERE hour >= toDateTime({since}, 'UTC')
GROUP BY user_id
HAVING total_events > 0
ORDER BY total_events DESC, toString(user_id) ASC
LIMIT {limit}";

/// What the health probe asks.
pub const PING: &str = "SELECT 1 AS one";

/// Fills a template's `{db}` and the other placeholders given.
pub(crate) fn render(template: &str, db: &str, values: &[(&str, String)]) -> String {
    values
        .iter()
        .fold(template.replace("{db}", db), |sql, (k, v)| {
            sql.replace(&format!("{{{k}}}"), v)
        })
}

/// The window start as a unix-seconds literal, floored to its hour: buckets are hourly, so a
/// window starting mid-hour includes that whole hour (as the in-memory store does). Clamped to
/// ClickHouse's `DateTime` range.
pub(crate) fn since_literal(since: DateTime<Utc>) -> String {
    let seconds = since.timestamp();
    let hour = seconds - seconds.rem_euclid(3600);
    hour.clamp(0, i64::from(u32::MAX)).to_string()
}

/// A UUID list for `IN (...)`.
pub(crate) fn uuid_list(ids: &[Uuid]) -> String {
    ids.iter()
        .map(|id| format!("toUUID('{id}')"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The query texts as the adapter sends them, for a database `db`, with sample values:
/// `(name, sql)`. The insert is left out: it carries native-format data, not SQL values.
pub fn sample_queries(db: &str) -> Vec<(&'static str, String)> {
    let since = since_literal(Utc::now() - chrono::Duration::hours(3));
    let limit = ("limit", "10".to_owned());
    let user = ("user", Uuid::nil().to_string());
    let ids = ("ids", uuid_list(&[Uuid::nil(), Uuid::max()]));
    let since = ("since", since);
    vec![
        (
            "known_event_ids",
            render(KNOWN_EVENT_IDS, db, std::slice::from_ref(&ids)),
        ),
        (
            "known_exposure_ids",
            render(
                KNOWN_EXPOSURE_IDS,
                db,
                &[ids, ("experiments", uuid_list(&[Uuid::nil()]))],
            ),
        ),
        (
            "experiment_totals",
            render(
                EXPERIMENT_TOTALS,
                db,
                &[
                    ("experiment", Uuid::nil().to_string()),
                    ("window", "7200".to_owned()),
                    ("slack", "300".to_owned()),
                ],
            ),
        ),
        (
            "running_inserts",
            render(
                RUNNING_INSERTS,
                db,
                &[
                    ("token", Uuid::nil().to_string()),
                    ("min_elapsed", "0.5".to_owned()),
                ],
            ),
        ),
        ("running_insert_ids", RUNNING_INSERT_IDS.to_owned()),
        (
            "queries_still_running",
            render(
                QUERIES_STILL_RUNNING,
                db,
                &[("query_ids", "'none'".to_owned())],
            ),
        ),
        (
            "video_stats",
            render(VIDEO_STATS, db, std::slice::from_ref(&since)),
        ),
        (
            "trending",
            render(TRENDING, db, &[since.clone(), limit.clone()]),
        ),
        (
            "affinity",
            render(CREATOR_AFFINITY, db, &[since.clone(), user]),
        ),
        (
            "watched_since",
            render(
                WATCHED_SINCE,
                db,
                &[
                    ("user", Uuid::nil().to_string()),
                    ("at", "1700000000".to_owned()),
                ],
            ),
        ),
        (
            "hidden",
            render(HIDDEN, db, &[("user", Uuid::nil().to_string())]),
        ),
        (
            "engagement_pairs",
            render(
                ENGAGEMENT_PAIRS,
                db,
                &[
                    since.clone(),
                    limit.clone(),
                    ("weights", affinity_transform()),
                ],
            ),
        ),
        (
            "most_active_users",
            render(MOST_ACTIVE_USERS, db, &[since, limit]),
        ),
        ("health", PING.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_window_starts_at_the_top_of_its_hour() {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 10, 59, 59).single();
        let top = Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 0).single();
        let (Some(at), Some(top)) = (at, top) else {
            panic!("valid dates")
        };
        assert_eq!(since_literal(at), top.timestamp().to_string());
        let before_epoch = Utc.timestamp_opt(-10_000, 0).single().expect("valid");
        assert_eq!(since_literal(before_epoch), "0");
    }

    #[test]
    fn rendered_queries_have_no_placeholder_left() {
        for (name, sql) in sample_queries("nova") {
            assert!(!sql.contains('{'), "{name}: {sql}");
        }
    }
}
