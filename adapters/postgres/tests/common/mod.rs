//! A fresh PostgreSQL database per test, on the server named by `TEST_DATABASE_URL`.
//!
//! Without `TEST_DATABASE_URL` a test is skipped with a notice, except in CI (`CI=true`), where a
//! missing service is a failure.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use sqlx::{Connection, Executor, PgConnection};
use vrs_adapter_postgres::{PostgresConfig, PostgresStore};

/// The admin URL of the test server, or `None` when the test should be skipped.
pub fn admin_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "TEST_DATABASE_URL is not set: in CI the PostgreSQL tests must run \
             (scripts/test.sh starts a server and sets it)"
        ),
        _ => {
            eprintln!("notice: TEST_DATABASE_URL is not set; skipping this PostgreSQL test");
            None
        }
    }
}

/// `url` with its database replaced by `name`, keeping credentials and query parameters.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..authority_end])
}

/// A database created for one test and dropped when the value is dropped (also on panic).
pub struct TestDb {
    /// The adapter, connected to the test database.
    pub store: PostgresStore,
    /// The test database's URL.
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDb {
    /// A fresh, migrated database with a small pool.
    pub async fn new() -> Option<Self> {
        Self::create(true, |_| {}).await
    }

    /// A fresh database without any migration applied.
    pub async fn unmigrated() -> Option<Self> {
        Self::create(false, |_| {}).await
    }

    /// A fresh database, migrated or not, with `tune` applied to the adapter's configuration.
    pub async fn create(migrate: bool, tune: impl FnOnce(&mut PostgresConfig)) -> Option<Self> {
        let admin_url = admin_url()?;
        let name = format!("vrs_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        let mut config = PostgresConfig::new(url.clone());
        config.max_connections = 4;
        tune(&mut config);
        let db = Self {
            store: PostgresStore::connect(&config)
                .await
                .expect("connect to the test database"),
            url,
            admin_url,
            name,
        };
        if migrate {
            vrs_adapter_postgres::migrate(db.store.pool(), |_| {})
                .await
                .expect("migrate the test database");
        }
        Some(db)
    }

    /// Another adapter on the same database, configured by `tune`.
    pub async fn connect(&self, tune: impl FnOnce(&mut PostgresConfig)) -> PostgresStore {
        let mut config = PostgresConfig::new(self.url.clone());
        config.max_connections = 4;
        tune(&mut config);
        PostgresStore::connect(&config).await.expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be gone (or panicking): drop the database
        // from a thread of its own, best-effort. FORCE ends the pool's remaining connections.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                admin.execute(sql.as_str()).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("notice: could not drop test database {}", self.name);
        }
    }
}
