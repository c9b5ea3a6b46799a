//! The migrations and the schema's own guarantees, on fresh databases.

mod common;

use common::TestDb;
use sqlx::PgPool;
use vrs_adapter_postgres::{PostgresError, migrate, migration_files, pending_migrations};
use vrs_application::ports::RankingConfigStore;
use vrs_domain::Weights;

/// The SQLSTATE of a failed statement (e.g. `23514` for a check violation).
fn sqlstate<T: std::fmt::Debug>(result: Result<T, sqlx::Error>) -> String {
    let err = result.expect_err("the schema rejects the statement");
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| panic!("not a database error: {err}"))
}

async fn insert_weights(pool: &PgPool, w: [f64; 5], active: bool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ranking_weights \
             (freshness, completion, engagement, affinity, model, activated_at, is_active) \
         VALUES ($1, $2, $3, $4, $5, now(), $6)",
    )
    .bind(w[0])
    .bind(w[1])
    .bind(w[2])
    .bind(w[3])
    .bind(w[4])
    .bind(active)
    .execute(pool)
    .await
    .map(|_| ())
}

#[tokio::test]
async fn migrating_twice_applies_nothing_the_second_time() {
    let Some(db) = TestDb::unmigrated().await else {
        return;
    };
    let pool = db.store.pool();
    let all = migration_files();
    assert_eq!(pending_migrations(pool).await.expect("pending"), all);

    let mut reported = Vec::new();
    let applied = migrate(pool, |file| reported.push(file.to_owned()))
        .await
        .expect("migrate");
    assert_eq!(applied, all.len());
    assert_eq!(reported, all, "each file is reported once, in order");
    assert!(reported.iter().any(|f| f == "001_initial_schema.sql"));
    assert!(pending_migrations(pool).await.expect("pending").is_empty());

    let mut again = Vec::new();
    let applied = migrate(pool, |file| again.push(file.to_owned()))
        .await
        .expect("migrate again");
    assert_eq!(applied, 0);
    assert!(again.is_empty(), "nothing is reported when nothing applies");
}

#[tokio::test]
async fn pending_migrations_does_not_create_the_bookkeeping_table() {
    let Some(db) = TestDb::unmigrated().await else {
        return;
    };
    pending_migrations(db.store.pool()).await.expect("pending");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(db.store.pool())
        .await
        .expect("query");
    assert!(!exists, "a read-only check leaves the database untouched");
}

#[tokio::test]
async fn concurrent_migrations_apply_each_file_once() {
    let Some(db) = TestDb::unmigrated().await else {
        return;
    };
    let other = db.connect(|_| {}).await;
    let (a, b) = tokio::join!(
        migrate(db.store.pool(), |_| {}),
        migrate(other.pool(), |_| {})
    );
    assert_eq!(
        a.expect("first") + b.expect("second"),
        migration_files().len(),
        "the advisory lock lets one runner apply everything and the other find nothing"
    );
}

#[tokio::test]
async fn migrations_run_without_the_statement_timeout() {
    let Some(db) = TestDb::create(false, |c| {
        c.statement_timeout = std::time::Duration::from_millis(1)
    })
    .await
    else {
        return;
    };
    let applied = migrate(db.store.pool(), |_| {}).await.expect("migrate");
    assert_eq!(applied, migration_files().len());
}

#[tokio::test]
async fn a_modified_applied_migration_is_an_error() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let pool = db.store.pool();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea WHERE version = 1")
        .execute(pool)
        .await
        .expect("tamper");
    let err = migrate(pool, |_| {}).await.expect_err("migrate refuses");
    assert!(
        matches!(&err, PostgresError::ModifiedMigration { file } if file == "001_initial_schema.sql"),
        "{err}"
    );
    assert!(matches!(
        pending_migrations(pool).await,
        Err(PostgresError::ModifiedMigration { .. })
    ));
}

#[tokio::test]
async fn migrations_of_a_newer_release_are_left_alone() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let pool = db.store.pool();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'from a newer release', true, '\\x01'::bytea, 0)",
    )
    .execute(pool)
    .await
    .expect("record a newer migration");
    assert!(pending_migrations(pool).await.expect("pending").is_empty());
    assert_eq!(migrate(pool, |_| {}).await.expect("migrate"), 0);
}

#[tokio::test]
async fn a_new_database_runs_on_the_default_weights_and_chosen_weights_are_kept() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    assert_eq!(
        db.store.active_weights().await.expect("active"),
        Weights::DEFAULT
    );
    let rows: Vec<(i64, bool, f64)> =
        sqlx::query_as("SELECT version, is_active, model FROM ranking_weights ORDER BY version")
            .fetch_all(db.store.pool())
            .await
            .expect("seeded rows");
    assert_eq!(
        rows,
        vec![
            (1, false, 0.05),
            (2, true, Weights::DEFAULT.get(vrs_domain::Signal::Model))
        ],
        "the seed's weights, then the defaults with the model's share"
    );
    // Operators' own weights stay: migration 015 changes only the seed's untouched weights.
    let chosen = Weights::new(0.2, 0.3, 0.2, 0.2, 0.1).expect("valid");
    db.store.activate_weights(chosen).await.expect("activate");
    sqlx::raw_sql(include_str!(
        "../../../migrations/015_default_weights_with_the_model.sql"
    ))
    .execute(db.store.pool())
    .await
    .expect("migration 015 again");
    assert_eq!(db.store.active_weights().await.expect("active"), chosen);
}

#[tokio::test]
async fn the_schema_rejects_invalid_weight_sets() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let pool = db.store.pool();
    let check_violation = "23514";
    for (bad, why) in [
        ([0.2, 0.4, 0.25, 0.15, 0.05], "sum 1.05"),
        ([0.1, 0.4, 0.25, 0.15, 0.05], "sum 0.95"),
        ([-0.1, 0.5, 0.25, 0.15, 0.2], "negative weight"),
        ([f64::NAN, 0.4, 0.25, 0.15, 0.2], "NaN"),
        ([f64::INFINITY, 0.4, 0.25, 0.15, 0.2], "infinite weight"),
    ] {
        assert_eq!(
            sqlstate(insert_weights(pool, bad, false).await),
            check_violation,
            "{why}"
        );
    }
    insert_weights(pool, [0.15, 0.40, 0.25, 0.15, 0.05 + 5e-7], false)
        .await
        .expect("a sum within 1e-6 of 1 is accepted, as by Weights::new");
}

#[tokio::test]
async fn the_schema_allows_one_active_weight_set() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let unique_violation = "23505";
    assert_eq!(
        sqlstate(insert_weights(db.store.pool(), [0.5, 0.5, 0.0, 0.0, 0.0], true).await),
        unique_violation
    );
}

#[tokio::test]
async fn the_schema_allows_one_active_model() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let pool = db.store.pool();
    let insert = |version: &'static str| {
        sqlx::query(
            "INSERT INTO ml_models (version, deployed_at, is_active) VALUES ($1, now(), true)",
        )
        .bind(version)
        .execute(pool)
    };
    insert("m1").await.expect("first active model");
    assert_eq!(sqlstate(insert("m2").await), "23505");
    assert_eq!(
        sqlstate(
            sqlx::query("INSERT INTO ml_models (version, deployed_at) VALUES ('m1', now())")
                .execute(pool)
                .await
        ),
        "23505",
        "model versions are unique"
    );
}

#[tokio::test]
async fn an_activated_weight_set_is_visible_immediately() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let next = Weights::new(0.125, 0.375, 0.25, 0.125, 0.125).expect("valid");
    let version = db.store.activate_weights(next).await.expect("activate");
    assert_eq!(version, 3, "the seeded sets are versions 1 and 2");
    assert_eq!(db.store.active_weights().await.expect("active"), next);
    let active: i64 = sqlx::query_scalar("SELECT count(*) FROM ranking_weights WHERE is_active")
        .fetch_one(db.store.pool())
        .await
        .expect("count");
    assert_eq!(active, 1, "the previous set was deactivated");
}
