//! ClickHouse-specific promises: idempotent schema creation and inserts, aggregates that are right
//! before any merge, the SQL ranking formulas against the domain's, and recovery after errors.

mod common;

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::{TestDb, server_url};
use klickhouse::Row;
use uuid::Uuid;
use vrs_adapter_clickhouse::{ClickHouseConfig, ClickHouseSignalStore, init_schema};
use vrs_application::ports::{HealthProbe, PortError, SignalStore};
use vrs_domain::{CreatorId, EngagementEvent, EventType, UserId, VideoId, VideoStats, signals};

fn event(
    user: UserId,
    video: VideoId,
    creator: CreatorId,
    event_type: EventType,
    at: DateTime<Utc>,
) -> EngagementEvent {
    EngagementEvent {
        event_id: Uuid::new_v4(),
        user_id: user,
        video_id: video,
        creator_id: creator,
        event_type,
        watch_ms: None,
        completion: None,
        occurred_at: at,
    }
}

/// Half past the previous hour: the window from the top of the hour before it holds it.
fn recent() -> DateTime<Utc> {
    let hour = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("truncate");
    hour - Duration::minutes(30)
}

fn window() -> DateTime<Utc> {
    recent() - Duration::hours(2)
}

async fn stats_of(store: &ClickHouseSignalStore, video: VideoId) -> VideoStats {
    store
        .video_stats(window())
        .await
        .expect("video_stats")
        .into_iter()
        .find(|(id, _)| *id == video)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

#[derive(Row, Debug)]
struct Count {
    n: u64,
}

async fn count(db: &TestDb, sql: &str) -> u64 {
    let sql = sql.replace("{db}", &db.name);
    db.raw()
        .await
        .query_one::<Count>(sql.as_str())
        .await
        .expect("count query")
        .n
}

#[tokio::test]
async fn init_schema_twice_changes_nothing() {
    let Some(db) = TestDb::new("init_schema_twice_changes_nothing").await else {
        return;
    };
    let (u, v, c) = (
        UserId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
        CreatorId(Uuid::new_v4()),
    );
    let events = vec![event(u, v, c, EventType::View, recent())];
    assert_eq!(db.store.insert_batch(&events).await.expect("insert"), 1);
    let tables = "SELECT count() AS n FROM system.tables WHERE database = '{db}'";
    let before = count(&db, tables).await;
    let again = init_schema(&db.url, &db.name).await.expect("second init");
    assert_eq!(
        again, db.report,
        "the same statements run, and succeed, again"
    );
    assert_eq!(count(&db, tables).await, before, "no table is added twice");
    assert_eq!(
        before, 14,
        "raw table, five aggregates, seven views, the exposures"
    );
    assert_eq!(stats_of(&db.store, v).await.views, 1, "data is kept");
    assert_eq!(
        db.report.modern_applied,
        vrs_adapter_clickhouse::supports_modern(&db.report.server_version)
    );
}

#[tokio::test]
async fn replaying_a_batch_leaves_the_aggregates_unchanged() {
    let Some(db) = TestDb::new("replaying_a_batch_leaves_the_aggregates_unchanged").await else {
        return;
    };
    let (u, v, c) = (
        UserId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
        CreatorId(Uuid::new_v4()),
    );
    let batch: Vec<_> = [EventType::View, EventType::Like, EventType::Share]
        .into_iter()
        .map(|t| event(u, v, c, t, recent()))
        .collect();
    let mut with_repeat = batch.clone();
    with_repeat.push(batch[0].clone());
    assert_eq!(
        db.store.insert_batch(&with_repeat).await.expect("insert"),
        3
    );
    let stats = stats_of(&db.store, v).await;
    let affinity = db
        .store
        .creator_affinity(u, window())
        .await
        .expect("affinity");
    let active = db
        .store
        .most_active_users(window(), 10)
        .await
        .expect("active");

    assert_eq!(db.store.insert_batch(&batch).await.expect("replay"), 0);
    let fresh = event(u, v, c, EventType::View, recent());
    let mixed = [batch[1].clone(), fresh];
    assert_eq!(db.store.insert_batch(&mixed).await.expect("mixed"), 1);

    assert_eq!(
        stats_of(&db.store, v).await,
        VideoStats {
            views: stats.views + 1,
            ..stats
        },
        "only the new view counts"
    );
    let affinity_after = db
        .store
        .creator_affinity(u, window())
        .await
        .expect("affinity");
    assert_eq!(affinity_after, vec![(c, affinity[0].1 + 0.5)]);
    assert_eq!(
        db.store
            .most_active_users(window(), 10)
            .await
            .expect("active"),
        active
    );
    let raw = count(&db, "SELECT count() AS n FROM {db}.engagement_events").await;
    assert_eq!(raw, 4, "each event id is stored once");
}

#[tokio::test]
async fn aggregates_are_right_across_insert_blocks_before_any_merge() {
    let Some(db) = TestDb::new("aggregates_are_right_across_insert_blocks").await else {
        return;
    };
    let raw = db.raw().await;
    for table in [
        "video_ranking_signals_1h",
        "user_watch_history_realtime",
        "user_creator_affinity_1h",
        "user_activity_1h",
    ] {
        raw.execute(format!("SYSTEM STOP MERGES {}.{table}", db.name))
            .await
            .expect("stop merges");
    }
    let (u, v, c) = (
        UserId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
        CreatorId(Uuid::new_v4()),
    );
    let at = recent();
    let mut best = event(u, v, c, EventType::Watch, at - Duration::minutes(20));
    best.completion = Some(0.9);
    let mut last = event(u, v, c, EventType::Watch, at);
    last.completion = Some(0.2);
    let blocks = vec![
        vec![event(u, v, c, EventType::View, at)],
        vec![event(u, v, c, EventType::View, at), best],
        vec![last, event(u, v, c, EventType::Like, at)],
        vec![event(u, v, c, EventType::Skip, at)],
    ];
    for block in &blocks {
        db.store.insert_batch(block).await.expect("insert");
    }
    let parts = count(
        &db,
        "SELECT count() AS n FROM system.parts \
         WHERE database = '{db}' AND table = 'video_ranking_signals_1h' AND active",
    )
    .await;
    assert_eq!(parts, 4, "one unmerged part per insert block");

    let stats = stats_of(&db.store, v).await;
    assert_eq!(
        (stats.views, stats.watches, stats.likes, stats.skips),
        (2, 2, 1, 1)
    );
    assert!((stats.completion_sum - 1.1).abs() < 1e-9, "{stats:?}");
    let affinity = db
        .store
        .creator_affinity(u, window())
        .await
        .expect("affinity");
    // 2 views 1.0 + 2 watches 2.0 + like 3.0 - skip 0.5
    assert_eq!(affinity, vec![(c, 5.5)]);
    assert_eq!(
        db.store
            .most_active_users(window(), 5)
            .await
            .expect("active"),
        vec![u]
    );

    #[derive(Row, Debug)]
    struct Watched {
        last: u32,
        best: f64,
        watches: u64,
    }
    let watched: Watched = raw
        .query_one(
            format!(
                "SELECT toUInt32(maxMerge(last_watched_at)) AS last, \
                 maxMerge(best_completion) AS best, countMerge(watches) AS watches \
                 FROM {}.user_watch_history_realtime WHERE user_id = toUUID('{}') GROUP BY video_id",
                db.name, u.0
            )
            .as_str(),
        )
        .await
        .expect("watch history");
    assert_eq!(watched.last, at.timestamp() as u32, "the later watch");
    assert_eq!(
        watched.best, 0.9,
        "the better completion, from another block"
    );
    assert_eq!(watched.watches, 2);
}

#[tokio::test]
async fn trending_and_affinity_follow_the_domain_formulas() {
    let Some(db) = TestDb::new("trending_and_affinity_follow_the_domain_formulas").await else {
        return;
    };
    let (u, c) = (UserId(Uuid::new_v4()), CreatorId(Uuid::new_v4()));
    // Ids whose byte order differs from ClickHouse's UUID order (second half first): ties must be
    // broken by bytes, as the other adapters do.
    let id = |s: &str| VideoId(Uuid::parse_str(s).expect("uuid"));
    let tie_a = id("00000000-0000-0000-0000-000000000002");
    let tie_b = id("00000000-0000-0001-0000-000000000001");
    let (half, net_zero, shares, comments) = (
        VideoId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
    );
    let plan: Vec<(VideoId, &[(EventType, usize)])> = vec![
        // (likes 5) / views 2 clamps to 1, as does 1 like + 1 share over 3 views: a tie.
        (tie_b, &[(EventType::View, 2), (EventType::Like, 5)]),
        (
            tie_a,
            &[
                (EventType::View, 3),
                (EventType::Like, 1),
                (EventType::Share, 1),
            ],
        ),
        (half, &[(EventType::View, 4), (EventType::Like, 2)]),
        // Unlikes beyond likes floor the net likes at 0 instead of going negative.
        (
            net_zero,
            &[
                (EventType::View, 2),
                (EventType::Unlike, 3),
                (EventType::Comment, 1),
            ],
        ),
        (shares, &[(EventType::View, 10), (EventType::Share, 3)]),
        (
            comments,
            &[
                (EventType::View, 4),
                (EventType::Comment, 3),
                (EventType::Like, 1),
            ],
        ),
    ];
    let mut events = Vec::new();
    for (video, counts) in &plan {
        for (t, n) in counts.iter() {
            events.extend((0..*n).map(|_| event(u, *video, c, *t, recent())));
        }
    }
    db.store.insert_batch(&events).await.expect("insert");

    let stats = db.store.video_stats(window()).await.expect("stats");
    let mut expected: Vec<(f64, VideoId)> = stats
        .iter()
        .map(|(id, s)| (signals::engagement(s), *id))
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let expected: Vec<VideoId> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        expected[..2],
        [tie_a, tie_b],
        "the tie is broken by id bytes"
    );
    let trending = db.store.trending(window(), 100).await.expect("trending");
    assert_eq!(trending, expected, "SQL and domain engagement rank alike");
    assert_eq!(
        db.store.trending(window(), 3).await.expect("trending"),
        expected[..3]
    );

    // The same user's affinity with the creator: the sum of the domain weights.
    let weight: f64 = events.iter().map(|e| e.event_type.affinity_weight()).sum();
    let affinity = db
        .store
        .creator_affinity(u, window())
        .await
        .expect("affinity");
    assert_eq!(affinity, vec![(c, weight)]);
    // An hour outside the window does not count, even when it is the only history.
    let old = event(
        u,
        half,
        CreatorId(Uuid::new_v4()),
        EventType::Share,
        window() - Duration::hours(2),
    );
    db.store.insert_batch(&[old]).await.expect("insert");
    assert_eq!(
        db.store
            .creator_affinity(u, window())
            .await
            .expect("affinity")
            .len(),
        1
    );
}

#[tokio::test]
async fn out_of_range_times_are_rejected_before_anything_is_written() {
    let Some(db) = TestDb::new("out_of_range_times_are_rejected").await else {
        return;
    };
    let (u, v, c) = (
        UserId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
        CreatorId(Uuid::new_v4()),
    );
    let ancient = DateTime::from_timestamp(-86_400, 0).expect("time");
    let batch = [
        event(u, v, c, EventType::View, recent()),
        event(u, v, c, EventType::View, ancient),
    ];
    let result = db.store.insert_batch(&batch).await;
    assert!(matches!(result, Err(PortError::Rejected(_))), "{result:?}");
    assert_eq!(
        count(&db, "SELECT count() AS n FROM {db}.engagement_events").await,
        0
    );
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_unhealthy() {
    if server_url("an_unreachable_server_is_unavailable_and_unhealthy").is_none() {
        return;
    }
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let store = ClickHouseSignalStore::new(&ClickHouseConfig::new(
        format!("tcp://127.0.0.1:{port}"),
        "nova",
    ))
    .expect("config");
    let result = store.trending(Utc::now(), 5).await;
    assert!(
        matches!(result, Err(PortError::Unavailable(_))),
        "{result:?}"
    );
    let probe = store.health_probe();
    assert_eq!(probe.name(), "clickhouse");
    assert!(probe.check().await.is_err());
}

#[tokio::test]
async fn health_probe_answers() {
    let Some(db) = TestDb::new("health_probe_answers").await else {
        return;
    };
    db.store.health_probe().check().await.expect("healthy");
}

#[tokio::test]
async fn an_event_the_table_cannot_hold_is_rejected_alone_and_the_rest_stored() {
    let Some(db) = TestDb::new("an_event_the_table_cannot_hold_is_rejected_alone").await else {
        return;
    };
    let (u, v, c) = (
        UserId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
        CreatorId(Uuid::new_v4()),
    );
    let ancient = DateTime::from_timestamp(-86_400, 0).expect("time");
    let (good, bad) = (
        event(u, v, c, EventType::View, recent()),
        event(u, v, c, EventType::View, ancient),
    );
    let stored = db
        .store
        .store_events(&[bad.clone(), good.clone()])
        .await
        .expect("store");
    assert_eq!(stored.new, vec![good.event_id]);
    assert_eq!(stored.rejected.len(), 1);
    assert_eq!(stored.rejected[0].event_id, bad.event_id);
    assert!(stored.rejected[0].reason.contains("occurred_at"));
    assert_eq!(
        count(&db, "SELECT count() AS n FROM {db}.engagement_events").await,
        1
    );
    // A replay stores nothing again and still names the refused event.
    let again = db.store.store_events(&[bad, good]).await.expect("replay");
    assert!(again.new.is_empty());
    assert_eq!(again.rejected.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_still_running_on_the_server_is_waited_for_before_the_lookup() {
    let Some(db) = TestDb::new("an_insert_still_running_is_waited_for").await else {
        return;
    };
    let (u, v, c) = (
        UserId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
        CreatorId(Uuid::new_v4()),
    );
    let e = event(u, v, c, EventType::Like, recent());
    // The same event, inserted by an earlier attempt whose client gave up (a timeout, a dead
    // worker) while the server still runs it: it commits only after about 2 s.
    let slow = format!(
        "/* vrs-insert:{token} */ INSERT INTO {db}.engagement_events \
         (event_id, user_id, video_id, creator_id, event_type, watch_ms, completion, occurred_at) \
         SELECT toUUID('{id}'), toUUID('{u}'), toUUID('{v}'), toUUID('{c}'), 'like', NULL, NULL, \
         toDateTime({at}, 'UTC') FROM system.one WHERE sleep(2) = 0",
        token = Uuid::new_v4(),
        db = db.name,
        id = e.event_id,
        u = u.0,
        v = v.0,
        c = c.0,
        at = e.occurred_at.timestamp(),
    );
    let raw = db.raw().await;
    let earlier = tokio::spawn(async move { raw.execute(slow).await });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;

    let stored = db
        .store
        .store_events(std::slice::from_ref(&e))
        .await
        .expect("store");
    earlier.await.expect("task").expect("the earlier insert");
    assert!(
        stored.new.is_empty(),
        "the retry waited for the running insert and found the event stored"
    );
    let copies = count(
        &db,
        &format!(
            "SELECT count() AS n FROM {{db}}.engagement_events WHERE event_id = toUUID('{}')",
            e.event_id
        ),
    )
    .await;
    assert_eq!(copies, 1, "stored exactly once");
    assert_eq!(
        count(
            &db,
            "SELECT sum(likes) AS n FROM {db}.video_ranking_signals_1h"
        )
        .await,
        1,
        "and counted once by the views"
    );
}
