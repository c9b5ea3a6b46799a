//! A fresh ClickHouse database per test, on the server named by `TEST_CLICKHOUSE_URL`
//! (`tcp://127.0.0.1:PORT`, as `scripts/test.sh` exports it).
//!
//! Without `TEST_CLICKHOUSE_URL` a test is skipped with a notice, except in CI (`CI=true`), where
//! a missing service is a failure.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use klickhouse::{Client, ClientOptions};
use std::sync::Arc;
use vrs_adapter_clickhouse::{
    ClickHouseConfig, ClickHouseEventSink, ClickHouseSignalStore, InitReport, init_schema,
};
use vrs_application::contract::SignalPipeline;

/// The test server's URL, or `None` when the test should be skipped.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var("TEST_CLICKHOUSE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "TEST_CLICKHOUSE_URL is not set: in CI the ClickHouse tests must run \
             (scripts/test.sh starts a server and sets it)"
        ),
        _ => {
            eprintln!("notice: TEST_CLICKHOUSE_URL is not set; skipping {test}");
            None
        }
    }
}

/// A raw native-protocol client, for inspecting tables the adapter does not expose.
pub async fn raw_client(url: &str) -> Client {
    let address = url
        .trim_start_matches("tcp://")
        .trim_start_matches("clickhouse://");
    Client::connect(address, ClientOptions::default())
        .await
        .expect("connect to TEST_CLICKHOUSE_URL")
}

/// A database created (with the schema) for one test and dropped when the value is dropped (also
/// on panic).
pub struct TestDb {
    /// The adapter, on the test database.
    pub store: ClickHouseSignalStore,
    /// What creating the schema did.
    pub report: InitReport,
    /// The server's URL.
    pub url: String,
    /// The database's name.
    pub name: String,
}

impl TestDb {
    /// A fresh database with the schema applied.
    pub async fn new(test: &str) -> Option<Self> {
        let url = server_url(test)?;
        let name = format!("vrs_test_{}", uuid::Uuid::new_v4().simple());
        let report = init_schema(&url, &name).await.expect("init_schema");
        let store =
            ClickHouseSignalStore::new(&ClickHouseConfig::new(&url, &name)).expect("config");
        Some(Self {
            store,
            report,
            url,
            name,
        })
    }

    /// A client on the server, for assertions on the tables themselves.
    pub async fn raw(&self) -> Client {
        raw_client(&self.url).await
    }

    /// The adapter as a signal pipeline: the sink inserts through [`ClickHouseSignalStore::insert_batch`].
    pub fn pipeline(&self) -> SignalPipeline {
        SignalPipeline {
            sink: Arc::new(ClickHouseEventSink::new(Arc::new(self.store.clone()))),
            store: Arc::new(self.store.clone()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await and the test's runtime may be gone (or panicking): drop the database
        // from a thread of its own, best-effort.
        let url = self.url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let address = url.trim_start_matches("tcp://").to_owned();
                let client = Client::connect(address, ClientOptions::default())
                    .await
                    .ok()?;
                client.execute(sql).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("notice: could not drop test database {}", self.name);
        }
    }
}
