//! Contract of [`EventLedger`].

use crate::ports::EventLedger;
use std::future::Future;
use std::sync::Arc;
use uuid::Uuid;

/// Runs every case against a fresh ledger from `make`.
pub async fn event_ledger_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn EventLedger>>,
{
    only_recorded_ids_are_known(make().await).await;
    records_are_per_user(make().await).await;
    recording_twice_is_a_no_op(make().await).await;
}

async fn only_recorded_ids_are_known(ledger: Arc<dyn EventLedger>) {
    let user = super::user();
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        ledger.recorded(user, &[a, b]).await.ok(),
        Some(vec![false, false]),
        "nothing is known before it is recorded"
    );
    assert_eq!(
        ledger.recorded(user, &[a, b]).await.ok(),
        Some(vec![false, false]),
        "reading records nothing"
    );
    assert!(ledger.record(user, &[a, c]).await.is_ok());
    assert_eq!(
        ledger.recorded(user, &[a, b, c, a]).await.ok(),
        Some(vec![true, false, true, true]),
        "recorded ids are known, in the order asked"
    );
    assert_eq!(ledger.recorded(user, &[]).await.ok(), Some(vec![]));
    assert!(ledger.record(user, &[]).await.is_ok());
}

async fn records_are_per_user(ledger: Arc<dyn EventLedger>) {
    let id = Uuid::new_v4();
    let (me, other) = (super::user(), super::user());
    assert!(ledger.record(me, &[id]).await.is_ok());
    assert_eq!(ledger.recorded(me, &[id]).await.ok(), Some(vec![true]));
    assert_eq!(
        ledger.recorded(other, &[id]).await.ok(),
        Some(vec![false]),
        "another user's record does not count"
    );
}

async fn recording_twice_is_a_no_op(ledger: Arc<dyn EventLedger>) {
    let user = super::user();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(ledger.record(user, &[a]).await.is_ok());
    assert!(ledger.record(user, &[a, b, b]).await.is_ok());
    assert_eq!(
        ledger.recorded(user, &[a, b]).await.ok(),
        Some(vec![true, true])
    );
}
