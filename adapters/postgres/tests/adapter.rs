//! Behavior of the PostgreSQL adapter beyond the port contracts: the schema's referential rules,
//! administration, error mapping, the pool's bounds and gauges.

mod common;

use chrono::{DurationRound, TimeDelta, Utc};
use common::{TestDb, with_database};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vrs_adapter_postgres::{PostgresConfig, PostgresError, PostgresStore};
use vrs_application::ports::{
    FollowGraph, HealthProbe, ModelRegistry, PortError, RankingConfigStore, VideoCatalog,
};
use vrs_domain::{CreatorId, UserId, Video, VideoId, VideoStatus, Weights};

fn video(creator: CreatorId) -> Video {
    let id = VideoId(uuid::Uuid::new_v4());
    let now = Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .expect("truncate");
    Video {
        id,
        creator_id: creator,
        title: "a video".into(),
        duration_seconds: 30,
        status: VideoStatus::Published,
        visibility: vrs_domain::Visibility::Public,
        media_key: format!("videos/{id}/master.m3u8"),
        thumbnail_key: format!("thumbnails/{id}.jpg"),
        published_at: Some(now),
        updated_at: now,
        deleted_at: None,
    }
}

#[test]
fn with_database_keeps_credentials_and_parameters() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
        "postgres://u:p@h/t2?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "t3"),
        "postgres://h:5432/t3"
    );
}

#[tokio::test]
async fn upserts_register_unknown_creators_and_users() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let creator = CreatorId(uuid::Uuid::new_v4());
    let user = UserId(uuid::Uuid::new_v4());
    db.store
        .upsert_videos(&[video(creator), video(creator)])
        .await
        .expect("upsert");
    db.store
        .add_follows(&[(user, creator)])
        .await
        .expect("follow");
    let handle: String = sqlx::query_scalar("SELECT handle FROM creators WHERE id = $1")
        .bind(creator.0)
        .fetch_one(db.store.pool())
        .await
        .expect("creator row");
    assert_eq!(handle, format!("creator-{creator}"));
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE id = $1")
        .bind(user.0)
        .fetch_one(db.store.pool())
        .await
        .expect("count");
    assert_eq!(users, 1);
}

#[tokio::test]
async fn the_last_record_of_an_id_in_a_batch_wins() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let first = video(CreatorId(uuid::Uuid::new_v4()));
    let second = Video {
        title: "renamed".into(),
        status: VideoStatus::Archived,
        ..first.clone()
    };
    db.store
        .upsert_videos(&[first.clone(), second.clone()])
        .await
        .expect("upsert");
    assert_eq!(
        db.store.videos_by_ids(&[first.id]).await.expect("read"),
        vec![second]
    );
}

#[tokio::test]
async fn out_of_range_durations_are_rejected_and_nothing_is_written() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let ok = video(CreatorId(uuid::Uuid::new_v4()));
    let long = Video {
        duration_seconds: u32::MAX,
        ..video(CreatorId(uuid::Uuid::new_v4()))
    };
    let result = db.store.upsert_videos(&[ok.clone(), long]).await;
    assert!(matches!(result, Err(PortError::Rejected(_))), "{result:?}");
    assert!(
        db.store
            .videos_by_ids(&[ok.id])
            .await
            .expect("read")
            .is_empty(),
        "a batch is written in one transaction"
    );
}

#[tokio::test]
async fn corrupt_stored_data_is_invalid_data() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let pool = db.store.pool();
    // Only a manual edit that bypasses the schema's checks can produce these rows.
    sqlx::raw_sql(
        "ALTER TABLE ranking_weights DROP CONSTRAINT ranking_weights_sum_to_one; \
         UPDATE ranking_weights SET model = 0.5 WHERE is_active",
    )
    .execute(pool)
    .await
    .expect("corrupt");
    let result = db.store.active_weights().await;
    assert!(
        matches!(result, Err(PortError::InvalidData(_))),
        "{result:?}"
    );

    sqlx::query("UPDATE ranking_weights SET is_active = false")
        .execute(pool)
        .await
        .expect("deactivate all");
    let result = db.store.active_weights().await;
    assert!(
        matches!(result, Err(PortError::InvalidData(_))),
        "no active set: {result:?}"
    );

    let v = video(CreatorId(uuid::Uuid::new_v4()));
    db.store
        .upsert_videos(std::slice::from_ref(&v))
        .await
        .expect("upsert");
    sqlx::raw_sql(
        "ALTER TABLE videos DROP CONSTRAINT videos_status_check; \
         UPDATE videos SET status = 'banned'",
    )
    .execute(pool)
    .await
    .expect("corrupt");
    let result = db.store.videos_by_ids(&[v.id]).await;
    assert!(
        matches!(result, Err(PortError::InvalidData(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn concurrent_activations_leave_exactly_one_active_set() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let sets = [
        Weights::new(0.5, 0.5, 0.0, 0.0, 0.0).expect("valid"),
        Weights::new(0.25, 0.25, 0.25, 0.25, 0.0).expect("valid"),
        Weights::new(0.2, 0.2, 0.2, 0.2, 0.2).expect("valid"),
        Weights::DEFAULT,
    ];
    let results = futures_join(sets.iter().map(|&w| {
        let store = db.store.clone();
        async move { store.activate_weights(w).await }
    }))
    .await;
    let mut versions: Vec<i64> = results.into_iter().map(|r| r.expect("activate")).collect();
    versions.sort_unstable();
    // After the two the migrations seed.
    assert_eq!(versions, vec![3, 4, 5, 6]);
    let active: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM ranking_weights WHERE is_active")
            .fetch_all(db.store.pool())
            .await
            .expect("active");
    assert_eq!(active, vec![6], "the last activation wins");
}

/// Runs the futures concurrently on the test's runtime and collects their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for h in handles {
        outputs.push(h.await.expect("task"));
    }
    outputs
}

#[tokio::test]
async fn deployments_swap_the_active_model_and_count_inferences() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let at = Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .expect("truncate");
    let metrics = serde_json::json!({"auc": 0.81});
    db.store
        .deploy_model("m1", &metrics, at)
        .await
        .expect("deploy m1");
    db.store.record_inferences("m1", 40).await.expect("record");
    db.store.record_inferences("m1", 2).await.expect("record");
    db.store
        .deploy_model("m2", &metrics, at)
        .await
        .expect("deploy m2");
    assert_eq!(
        db.store
            .active_model()
            .await
            .expect("active")
            .map(|m| m.version),
        Some("m2".to_owned())
    );
    db.store
        .deploy_model("m1", &metrics, at)
        .await
        .expect("redeploy m1");
    assert_eq!(
        db.store
            .active_model()
            .await
            .expect("active")
            .map(|m| m.version),
        Some("m1".to_owned())
    );
    assert_eq!(
        db.store.inference_count("m1").await.expect("count"),
        Some(42)
    );
    assert_eq!(
        db.store.inference_count("m2").await.expect("count"),
        Some(0)
    );
    assert_eq!(db.store.inference_count("m3").await.expect("count"), None);
    let stored: String =
        sqlx::query_scalar("SELECT performance_metrics::text FROM ml_models WHERE version = 'm1'")
            .fetch_one(db.store.pool())
            .await
            .expect("metrics");
    assert_eq!(stored, r#"{"auc": 0.81}"#);
    db.store.deactivate_model().await.expect("deactivate");
    assert_eq!(db.store.active_model().await.expect("active"), None);
}

#[tokio::test]
async fn the_health_probe_answers() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    assert_eq!(db.store.name(), "postgres");
    db.store.check().await.expect("healthy");
    db.store.close().await;
    assert!(matches!(
        db.store.check().await,
        Err(PortError::Unavailable(_))
    ));
}

#[tokio::test]
async fn the_statement_timeout_applies_to_queries() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let store = db
        .connect(|c| c.statement_timeout = Duration::from_millis(200))
        .await;
    let shown: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .expect("show");
    assert_eq!(shown, "200ms");
    // Another session holds the table, so the read waits until the server cancels it.
    let mut blocker = db.store.pool().begin().await.expect("begin");
    sqlx::query("LOCK TABLE ranking_weights IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let result = store.active_weights().await;
    assert!(matches!(result, Err(PortError::Timeout(_))), "{result:?}");
}

#[tokio::test]
async fn an_exhausted_pool_times_out() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let store = db
        .connect(|c| {
            c.max_connections = 1;
            c.acquire_timeout = Duration::from_millis(200);
        })
        .await;
    let _held = store.pool().acquire().await.expect("acquire");
    let result = store.followed_creators(UserId(uuid::Uuid::new_v4())).await;
    assert!(matches!(result, Err(PortError::Timeout(_))), "{result:?}");
}

#[tokio::test]
async fn connecting_fails_on_an_unreachable_server_or_a_bad_config() {
    let mut config = PostgresConfig::new("postgres://nova:secret@127.0.0.1:1/nova");
    config.acquire_timeout = Duration::from_secs(2);
    assert!(matches!(
        PostgresStore::connect(&config).await,
        Err(PostgresError::Database(_))
    ));
    let err = PostgresStore::connect(&PostgresConfig::new("mysql://nova:secret@db/nova"))
        .await
        .expect_err("not a PostgreSQL URL");
    assert!(matches!(err, PostgresError::Config(_)), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    config.max_connections = 0;
    assert!(matches!(
        PostgresStore::connect(&config).await,
        Err(PostgresError::Config(_))
    ));
}

#[tokio::test]
async fn pool_gauges_report_open_and_idle_connections() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let recorder = GaugeRecorder::default();
    let _held = db.store.pool().acquire().await.expect("acquire");
    metrics::with_local_recorder(&recorder, || db.store.record_pool_metrics());
    let size = recorder.get("database_pool_size").expect("size gauge");
    let available = recorder
        .get("database_pool_available")
        .expect("available gauge");
    assert!(size >= 1.0, "{size}");
    assert!(available < size, "the held connection is not available");
}

/// A metrics recorder that keeps the last value of each gauge.
#[derive(Default)]
struct GaugeRecorder(Arc<Mutex<std::collections::HashMap<String, f64>>>);

impl GaugeRecorder {
    fn get(&self, name: &str) -> Option<f64> {
        self.0.lock().expect("lock").get(name).copied()
    }
}

struct GaugeHandle(String, Arc<Mutex<std::collections::HashMap<String, f64>>>);

impl metrics::GaugeFn for GaugeHandle {
    fn increment(&self, value: f64) {
        *self
            .1
            .lock()
            .expect("lock")
            .entry(self.0.clone())
            .or_default() += value;
    }
    fn decrement(&self, value: f64) {
        self.increment(-value);
    }
    fn set(&self, value: f64) {
        self.1.lock().expect("lock").insert(self.0.clone(), value);
    }
}

impl metrics::Recorder for GaugeRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(Arc::new(GaugeHandle(key.name().to_owned(), self.0.clone())))
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}
