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
    first_claims_win(make().await).await;
    claims_are_per_user(make().await).await;
    released_claims_can_be_claimed_again(make().await).await;
}

async fn first_claims_win(ledger: Arc<dyn EventLedger>) {
    let user = super::user();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        ledger.claim(user, &[a, b, a]).await.ok(),
        Some(vec![true, true, false]),
        "new ids are claimed once, a repeat within the batch is a duplicate"
    );
    let c = Uuid::new_v4();
    assert_eq!(
        ledger.claim(user, &[b, c]).await.ok(),
        Some(vec![false, true]),
        "an id claimed before is a duplicate"
    );
    assert_eq!(ledger.claim(user, &[]).await.ok(), Some(vec![]));
}

async fn claims_are_per_user(ledger: Arc<dyn EventLedger>) {
    let id = Uuid::new_v4();
    assert_eq!(
        ledger.claim(super::user(), &[id]).await.ok(),
        Some(vec![true])
    );
    assert_eq!(
        ledger.claim(super::user(), &[id]).await.ok(),
        Some(vec![true]),
        "another user's claim does not count"
    );
}

async fn released_claims_can_be_claimed_again(ledger: Arc<dyn EventLedger>) {
    let user = super::user();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        ledger.claim(user, &[a, b]).await.ok(),
        Some(vec![true, true])
    );
    assert!(ledger.release(user, &[a]).await.is_ok());
    assert_eq!(
        ledger.claim(user, &[a, b]).await.ok(),
        Some(vec![true, false]),
        "a released id is new again; the other stays claimed"
    );
    assert!(
        ledger.release(super::user(), &[b]).await.is_ok(),
        "releasing for a user without claims is fine"
    );
}
