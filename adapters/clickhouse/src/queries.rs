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
        ("known_event_ids", render(KNOWN_EVENT_IDS, db, &[ids])),
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
