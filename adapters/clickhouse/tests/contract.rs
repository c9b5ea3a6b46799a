//! The ClickHouse signal store against the contract suites: the signal store's, and the event
//! sink's with a sink that inserts through the adapter (the deduplication by `event_id` is the
//! adapter's).

mod common;

use common::TestDb;
use vrs_application::contract::{events::events_contract, signals::signals_contract};

#[tokio::test]
async fn signal_store_contract() {
    let Some(db) = TestDb::new("signal_store_contract").await else {
        return;
    };
    // The cases use fresh random ids, so they share the test's database.
    signals_contract(|| async { db.pipeline() }).await;
}

#[tokio::test]
async fn event_sink_contract_through_insert_events() {
    let Some(db) = TestDb::new("event_sink_contract_through_insert_events").await else {
        return;
    };
    events_contract(|| async { db.pipeline() }).await;
}
