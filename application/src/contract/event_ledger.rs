//! Contract of [`EventLedger`].

use crate::ports::EventLedger;
use std::future::Future;
use std::sync::Arc;
use uuid::Uuid;
use vrs_domain::{EventType, Reaction, VideoId};

/// Runs every case against a fresh ledger from `make`.
pub async fn event_ledger_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn EventLedger>>,
{
    only_recorded_ids_are_known(make().await).await;
    records_are_per_user(make().await).await;
    recording_twice_is_a_no_op(make().await).await;
    a_reaction_counts_once_per_user_video_and_type(make().await).await;
    an_unlike_counts_only_when_it_cancels_a_like(make().await).await;
    released_claims_count_again(make().await).await;
    concurrent_claims_count_one_like(make().await).await;
    a_released_unlike_puts_its_like_back(make().await).await;
}

async fn a_released_unlike_puts_its_like_back(ledger: Arc<dyn EventLedger>) {
    let user = super::user();
    let v = super::video_id();
    let like = reaction(v, EventType::Like);
    let unlike = reaction(v, EventType::Unlike);
    assert_eq!(
        ledger.claim_reactions(user, &[like, unlike]).await.ok(),
        Some(vec![true, true])
    );
    // The unlike's batch was not accepted.
    assert!(ledger.release_reactions(user, &[unlike]).await.is_ok());
    assert_eq!(
        ledger
            .claim_reactions(user, &[reaction(v, EventType::Like)])
            .await
            .ok(),
        Some(vec![false]),
        "the like is back: another like does not count"
    );
    assert_eq!(
        ledger.claim_reactions(user, &[unlike]).await.ok(),
        Some(vec![true]),
        "the unlike's retry cancels it"
    );
    // A retry of a counted unlike after a new like cancels nothing more.
    let relike = reaction(v, EventType::Like);
    assert_eq!(
        ledger.claim_reactions(user, &[relike, unlike]).await.ok(),
        Some(vec![true, true]),
        "the retry counts as the same event"
    );
    assert_eq!(
        ledger
            .claim_reactions(user, &[reaction(v, EventType::Like)])
            .await
            .ok(),
        Some(vec![false]),
        "and the new like still holds its claim"
    );
}

fn reaction(video: VideoId, event_type: EventType) -> Reaction {
    Reaction {
        event_id: Uuid::new_v4(),
        video_id: video,
        event_type,
    }
}

async fn a_reaction_counts_once_per_user_video_and_type(ledger: Arc<dyn EventLedger>) {
    let (me, other) = (super::user(), super::user());
    let (v, w) = (super::video_id(), super::video_id());
    let like = reaction(v, EventType::Like);
    let batch = [
        like,
        reaction(v, EventType::Like),
        reaction(v, EventType::Share),
        reaction(w, EventType::Like),
        reaction(v, EventType::Comment),
        reaction(v, EventType::Comment),
    ];
    assert_eq!(
        ledger
            .claim_reactions(me, &batch)
            .await
            .map_err(|e| e.to_string()),
        Ok(vec![true, false, true, true, true, false]),
        "one of each type per video counts, in order"
    );
    assert_eq!(
        ledger
            .claim_reactions(me, &[reaction(v, EventType::Like), like])
            .await
            .ok(),
        Some(vec![false, true]),
        "a later like is a repeat; the claiming event itself (a retry) still counts"
    );
    assert_eq!(
        ledger
            .claim_reactions(other, &[reaction(v, EventType::Like)])
            .await
            .ok(),
        Some(vec![true]),
        "another user's like counts"
    );
    assert_eq!(ledger.claim_reactions(me, &[]).await.ok(), Some(vec![]));
}

async fn an_unlike_counts_only_when_it_cancels_a_like(ledger: Arc<dyn EventLedger>) {
    let user = super::user();
    let v = super::video_id();
    let unlike = reaction(v, EventType::Unlike);
    assert_eq!(
        ledger.claim_reactions(user, &[unlike]).await.ok(),
        Some(vec![false]),
        "nothing to cancel"
    );
    let like = reaction(v, EventType::Like);
    let unlike = reaction(v, EventType::Unlike);
    assert_eq!(
        ledger
            .claim_reactions(user, &[like, unlike, reaction(v, EventType::Unlike)])
            .await
            .ok(),
        Some(vec![true, true, false]),
        "an unlike cancels the like once"
    );
    assert_eq!(
        ledger
            .claim_reactions(user, &[unlike, reaction(v, EventType::Like)])
            .await
            .ok(),
        Some(vec![true, true]),
        "the unlike's retry still counts, and a like after an unlike counts again"
    );
}

async fn released_claims_count_again(ledger: Arc<dyn EventLedger>) {
    let user = super::user();
    let v = super::video_id();
    let like = reaction(v, EventType::Like);
    assert_eq!(
        ledger.claim_reactions(user, &[like]).await.ok(),
        Some(vec![true])
    );
    let stranger = reaction(v, EventType::Like);
    assert!(ledger.release_reactions(user, &[stranger]).await.is_ok());
    assert_eq!(
        ledger
            .claim_reactions(user, &[reaction(v, EventType::Like)])
            .await
            .ok(),
        Some(vec![false]),
        "a release by an event that holds no claim frees nothing"
    );
    assert!(ledger.release_reactions(user, &[like]).await.is_ok());
    assert_eq!(
        ledger
            .claim_reactions(user, &[reaction(v, EventType::Like)])
            .await
            .ok(),
        Some(vec![true]),
        "a released claim is free again"
    );
}

async fn concurrent_claims_count_one_like(ledger: Arc<dyn EventLedger>) {
    let user = super::user();
    let v = super::video_id();
    let claims = (0..20).map(|_| {
        let ledger = ledger.clone();
        async move {
            ledger
                .claim_reactions(user, &[reaction(v, EventType::Like)])
                .await
        }
    });
    let counted = futures::future::join_all(claims)
        .await
        .into_iter()
        .filter(|r| matches!(r.as_deref(), Ok([true])))
        .count();
    assert_eq!(counted, 1, "concurrent likes of one video count once");
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
