//! Contract of [`ViewHistory`].

use super::{now_micros, user, video_id};
use crate::ports::ViewHistory;
use chrono::{DateTime, Duration, Utc};
use std::future::Future;
use std::sync::Arc;
use vrs_domain::{CreatorId, UserId, VideoId};

/// Runs every view-history case, each against a fresh adapter from `make`.
pub async fn history_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ViewHistory>>,
{
    unknown_user_has_no_history(make().await).await;
    served_videos_are_listed_from_their_time_on(make().await).await;
    watches_are_visible_at_once_and_apart_from_serves(make().await).await;
    the_latest_time_of_a_video_counts(make().await).await;
    users_do_not_share_history(make().await).await;
    hidden_videos_and_creators_are_visible_at_once(make().await).await;
    hidden_since_lists_what_was_hidden_from_then_on(make().await).await;
    seen_among_answers_for_the_items_asked_about(make().await).await;
}

fn ever() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

async fn hidden_since_lists_what_was_hidden_from_then_on(h: Arc<dyn ViewHistory>) {
    let u = user();
    let (old, new) = (video_id(), video_id());
    let (old_creator, new_creator) = (
        CreatorId(uuid::Uuid::new_v4()),
        CreatorId(uuid::Uuid::new_v4()),
    );
    let at = now_micros() - Duration::hours(1);
    h.record_hidden(u, &[old], &[old_creator], at)
        .await
        .expect("record_hidden");
    h.record_hidden(u, &[new], &[new_creator], at + Duration::minutes(30))
        .await
        .expect("record_hidden");
    let recent = h
        .hidden_since(u, at + Duration::minutes(1))
        .await
        .expect("hidden_since");
    assert_eq!(recent.videos, [new].into(), "only the later video");
    assert_eq!(
        recent.creators,
        [new_creator].into(),
        "only the later creator"
    );
    let from_then = h.hidden_since(u, at).await.expect("hidden_since");
    assert_eq!(from_then.videos, [old, new].into(), "`since` is inclusive");
    assert_eq!(from_then.creators, [old_creator, new_creator].into());
    assert!(
        h.hidden_since(u, now_micros() + Duration::minutes(1))
            .await
            .expect("hidden_since")
            .is_empty(),
        "nothing hidden later"
    );
}

async fn seen_among_answers_for_the_items_asked_about(h: Arc<dyn ViewHistory>) {
    let u = user();
    let at = now_micros() - Duration::hours(2);
    let creator = || CreatorId(uuid::Uuid::new_v4());
    let (served_long_ago, served, watched, hidden, by_hidden_creator, fresh, not_asked) = (
        video_id(),
        video_id(),
        video_id(),
        video_id(),
        video_id(),
        video_id(),
        video_id(),
    );
    let hidden_creator = creator();
    h.record_served(u, &[served_long_ago], at - Duration::days(3))
        .await
        .expect("record_served");
    h.record_served(u, &[served, not_asked], at)
        .await
        .expect("record_served");
    h.record_watched(u, &[watched, not_asked], at)
        .await
        .expect("record_watched");
    h.record_hidden(u, &[hidden, not_asked], &[hidden_creator], at)
        .await
        .expect("record_hidden");
    let items = [
        (served_long_ago, creator()),
        (served, creator()),
        (watched, creator()),
        (hidden, creator()),
        (by_hidden_creator, hidden_creator),
        (fresh, creator()),
    ];
    let seen = h
        .seen_among(u, &items, at - Duration::days(1), at - Duration::days(30))
        .await
        .expect("seen_among");
    assert_eq!(
        seen.served,
        [served].into(),
        "served within the window, asked about"
    );
    assert_eq!(seen.watched, [watched].into(), "watched, asked about");
    assert_eq!(seen.hidden.videos, [hidden].into(), "hidden, asked about");
    assert_eq!(
        seen.hidden.creators,
        [hidden_creator].into(),
        "the hidden creator"
    );
    assert!(seen.hidden.hides(&by_hidden_creator, &hidden_creator));
    let later = h
        .seen_among(
            u,
            &items,
            at + Duration::seconds(1),
            at + Duration::seconds(1),
        )
        .await
        .expect("seen_among");
    assert!(
        later.served.is_empty() && later.watched.is_empty(),
        "nothing served or watched after the windows start: {later:?}"
    );
    assert_eq!(later.hidden.videos, [hidden].into(), "hiding has no window");
    assert_eq!(
        h.seen_among(user(), &items, ever(), ever())
            .await
            .expect("seen_among"),
        Default::default(),
        "another user has seen none of them"
    );
    assert_eq!(
        h.seen_among(u, &[], ever(), ever())
            .await
            .expect("seen_among"),
        Default::default(),
        "nothing asked, nothing seen"
    );
}

async fn hidden_videos_and_creators_are_visible_at_once(h: Arc<dyn ViewHistory>) {
    let (u, other) = (user(), user());
    assert!(
        h.hidden_since(u, ever()).await.expect("hidden").is_empty(),
        "nothing yet"
    );
    let (a, b) = (video_id(), video_id());
    let c = CreatorId(uuid::Uuid::new_v4());
    let at = now_micros();
    h.record_hidden(u, &[a], &[], at)
        .await
        .expect("record_hidden");
    h.record_hidden(u, &[a, b], &[c], at + Duration::seconds(1))
        .await
        .expect("record_hidden");
    // Nothing at all to record is fine.
    h.record_hidden(u, &[], &[], at)
        .await
        .expect("record_hidden");
    let hidden = h.hidden_since(u, ever()).await.expect("hidden");
    assert_eq!(hidden.videos, [a, b].into(), "every hidden video, once");
    assert_eq!(hidden.creators, [c].into(), "the hidden creator");
    assert!(
        h.hidden_since(other, ever())
            .await
            .expect("hidden")
            .is_empty(),
        "another user's are theirs"
    );
    assert!(
        watched(h.as_ref(), u, at - Duration::days(1))
            .await
            .is_empty(),
        "hiding is not watching"
    );
}

fn sorted(mut list: Vec<VideoId>) -> Vec<VideoId> {
    list.sort_unstable();
    list.dedup();
    list
}

async fn served(h: &dyn ViewHistory, u: UserId, since: DateTime<Utc>) -> Vec<VideoId> {
    sorted(h.served_since(u, since).await.expect("served_since"))
}

async fn watched(h: &dyn ViewHistory, u: UserId, since: DateTime<Utc>) -> Vec<VideoId> {
    sorted(h.watched_since(u, since).await.expect("watched_since"))
}

async fn unknown_user_has_no_history(h: Arc<dyn ViewHistory>) {
    let (u, long_ago) = (user(), now_micros() - Duration::days(30));
    assert!(
        served(h.as_ref(), u, long_ago).await.is_empty(),
        "nothing served"
    );
    assert!(
        watched(h.as_ref(), u, long_ago).await.is_empty(),
        "nothing watched"
    );
}

async fn served_videos_are_listed_from_their_time_on(h: Arc<dyn ViewHistory>) {
    let u = user();
    let at = now_micros() - Duration::hours(1);
    let (a, b) = (video_id(), video_id());
    h.record_served(u, &[a, b], at)
        .await
        .expect("record_served");
    assert_eq!(
        served(h.as_ref(), u, at - Duration::hours(1)).await,
        sorted(vec![a, b]),
        "every video served after `since`"
    );
    assert_eq!(
        served(h.as_ref(), u, at).await,
        sorted(vec![a, b]),
        "`since` is inclusive"
    );
    assert!(
        served(h.as_ref(), u, at + Duration::milliseconds(1))
            .await
            .is_empty(),
        "nothing served after the last serve"
    );
}

async fn watches_are_visible_at_once_and_apart_from_serves(h: Arc<dyn ViewHistory>) {
    let u = user();
    let at = now_micros();
    let since = at - Duration::hours(1);
    let (shown, seen) = (video_id(), video_id());
    h.record_served(u, &[shown], at)
        .await
        .expect("record_served");
    h.record_watched(u, &[seen], at)
        .await
        .expect("record_watched");
    assert_eq!(
        watched(h.as_ref(), u, since).await,
        vec![seen],
        "a watch is visible as soon as record_watched returns, and serves are not watches"
    );
    assert_eq!(
        served(h.as_ref(), u, since).await,
        vec![shown],
        "watches are not serves"
    );
}

async fn the_latest_time_of_a_video_counts(h: Arc<dyn ViewHistory>) {
    let u = user();
    let late = now_micros() - Duration::hours(1);
    let early = late - Duration::hours(5);
    let (again, backfilled) = (video_id(), video_id());
    h.record_served(u, &[again], early).await.expect("record");
    h.record_served(u, &[again], late).await.expect("record");
    assert_eq!(
        served(h.as_ref(), u, late).await,
        vec![again],
        "a video served again counts from its last serve"
    );
    h.record_watched(u, &[backfilled], late)
        .await
        .expect("record");
    h.record_watched(u, &[backfilled], early)
        .await
        .expect("record");
    assert_eq!(
        watched(h.as_ref(), u, late).await,
        vec![backfilled],
        "recording an older time does not hide a newer one"
    );
}

async fn users_do_not_share_history(h: Arc<dyn ViewHistory>) {
    let (u1, u2) = (user(), user());
    let at = now_micros();
    let since = at - Duration::hours(1);
    let (a, b) = (video_id(), video_id());
    h.record_served(u1, &[a], at).await.expect("record");
    h.record_watched(u2, &[b], at).await.expect("record");
    assert_eq!(served(h.as_ref(), u1, since).await, vec![a], "u1's serves");
    assert!(
        served(h.as_ref(), u2, since).await.is_empty(),
        "u2 was served nothing"
    );
    assert_eq!(
        watched(h.as_ref(), u2, since).await,
        vec![b],
        "u2's watches"
    );
    assert!(
        watched(h.as_ref(), u1, since).await.is_empty(),
        "u1 watched nothing"
    );
}
