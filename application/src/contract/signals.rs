//! Contract of [`SignalStore`], fed through the event sink of its [`SignalPipeline`].

use super::{SignalPipeline, creator, event, eventually, now_micros, publish, user, video_id};
use crate::ports::SignalStore;
use chrono::{DateTime, Duration, Utc};
use std::future::Future;
use vrs_domain::{CreatorId, EngagementEvent, EventType, UserId, VideoId, VideoStats};

/// Runs every signal-store case, each against a fresh pipeline from `make`.
pub async fn signals_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = SignalPipeline>,
{
    video_stats_aggregate_the_events_in_the_window(make().await).await;
    trending_counts_viewed_videos_best_first(make().await).await;
    creator_affinity_sums_then_floors(make().await).await;
    most_active_users_come_first(make().await).await;
    watched_history_holds_watches_since_the_exact_time(make().await).await;
    hidden_holds_what_each_user_hid(make().await).await;
    engagement_pairs_sum_each_pairs_weights_in_the_window(make().await).await;
    experiment_totals_join_exposures_with_their_outcomes(make().await).await;
}

async fn experiment_totals_join_exposures_with_their_outcomes(p: SignalPipeline) {
    use vrs_domain::experiment::Metric;
    use vrs_domain::{Exposure, SessionId, VariantTotals};
    let experiment = uuid::Uuid::new_v4();
    let elsewhere = uuid::Uuid::new_v4();
    let served = now_micros() - Duration::hours(4);
    let (a, b, quiet) = (user(), user(), user());
    let (v1, v2, v3, c) = (video_id(), video_id(), video_id(), creator());
    let (s1, s2, s3, s4) = (
        SessionId(uuid::Uuid::new_v4()),
        SessionId(uuid::Uuid::new_v4()),
        SessionId(uuid::Uuid::new_v4()),
        SessionId(uuid::Uuid::new_v4()),
    );
    let exposure = |exp, variant: &str, user, session, video, position| Exposure {
        exposure_id: Exposure::id_of(exp, session, position),
        experiment_id: exp,
        variant: variant.into(),
        user_id: user,
        session_id: session,
        video_id: video,
        position,
        served_at: served,
    };
    let exposures = vec![
        exposure(experiment, "control", a, s1, v1, 0),
        exposure(experiment, "control", a, s1, v2, 1),
        exposure(experiment, "treatment", b, s2, v1, 0),
        exposure(experiment, "treatment", b, s3, v3, 0),
        exposure(experiment, "control", quiet, s4, v1, 0),
        exposure(elsewhere, "control", a, s1, v3, 2),
    ];
    p.sink
        .publish_exposures(&exposures)
        .await
        .expect("publish exposures");
    // A page served again (a retried cursor) logs the same exposures: counted once.
    p.sink
        .publish_exposures(&exposures[..2])
        .await
        .expect("publish again");
    let with_ms = |mut e: EngagementEvent, ms: u64| {
        e.watch_ms = Some(ms);
        e
    };
    let events = vec![
        event(a, v1, c, EventType::Like, served + Duration::minutes(1)),
        with_ms(
            event(a, v1, c, EventType::Complete, served + Duration::minutes(2)),
            15_000,
        ),
        with_ms(
            event(a, v2, c, EventType::Skip, served + Duration::minutes(1)),
            800,
        ),
        // Before the exposure: not its outcome.
        event(a, v2, c, EventType::Like, served - Duration::minutes(10)),
        // Past the attribution window.
        event(b, v1, c, EventType::Share, served + Duration::hours(3)),
        with_ms(
            event(b, v3, c, EventType::Watch, served + Duration::minutes(5)),
            4_000,
        ),
    ];
    publish(p.sink.as_ref(), &events).await;
    let totals = eventually(
        || async {
            p.store
                .experiment_totals(experiment, std::time::Duration::from_secs(2 * 3600))
                .await
                .expect("experiment_totals")
        },
        |t: &Vec<VariantTotals>| {
            t.iter()
                .map(|v| v.metrics[Metric::WatchMsPerExposure as usize].sum)
                .sum::<f64>()
                >= 19_800.0
                && t.iter().map(|v| v.exposures).sum::<u64>() >= 5
        },
    )
    .await;
    let of = |name: &str| {
        totals
            .iter()
            .find(|t| t.variant == name)
            .cloned()
            .unwrap_or_else(|| panic!("no totals of {name}: {totals:?}"))
    };
    let control = of("control");
    assert_eq!(
        (control.users, control.sessions, control.exposures),
        (2, 2, 3),
        "two users, their sessions and exposures, each once: {control:?}"
    );
    assert_eq!(control.exposures_squares, 5.0, "2² + 1²");
    let sums = |t: &VariantTotals, m: Metric| t.metrics[m as usize];
    let like = sums(&control, Metric::LikeRate);
    assert_eq!(
        (like.sum, like.sum_squares, like.sum_products),
        (1.0, 1.0, 2.0),
        "one like, by the user with two exposures; the like before the exposure is not its outcome"
    );
    assert_eq!(sums(&control, Metric::CompletionRate).sum, 1.0);
    assert_eq!(sums(&control, Metric::SkipRate).sum, 1.0);
    assert_eq!(
        sums(&control, Metric::WatchMsPerExposure).sum,
        15_800.0,
        "the longest watch of each exposure"
    );
    let treatment = of("treatment");
    assert_eq!(
        (treatment.users, treatment.sessions, treatment.exposures),
        (1, 2, 2),
        "{treatment:?}"
    );
    assert_eq!(
        sums(&treatment, Metric::ShareRate).sum,
        0.0,
        "a share past the attribution window is not an outcome"
    );
    assert_eq!(sums(&treatment, Metric::WatchMsPerExposure).sum, 4_000.0);
    assert!(
        totals
            .iter()
            .all(|t| t.variant == "control" || t.variant == "treatment"),
        "another experiment's exposures stay out: {totals:?}"
    );
}

async fn engagement_pairs_sum_each_pairs_weights_in_the_window(p: SignalPipeline) {
    let t = times();
    let (u, other, c) = (user(), user(), creator());
    let (liked, skipped, stale, theirs) = (video_id(), video_id(), video_id(), video_id());
    let events = vec![
        event(u, liked, c, EventType::View, t.old),
        event(u, liked, c, EventType::Like, t.recent),
        event(u, liked, c, EventType::Complete, t.recent),
        // 0.5 - 0.5 - 0.5: not an interaction.
        event(u, skipped, c, EventType::View, t.recent),
        event(u, skipped, c, EventType::Skip, t.recent),
        event(u, skipped, c, EventType::Skip, t.recent),
        event(u, stale, c, EventType::Share, t.old),
        event(other, theirs, c, EventType::Watch, t.recent),
    ];
    publish(p.sink.as_ref(), &events).await;
    let mine = |pairs: &[crate::model::Engagement]| -> Vec<crate::model::Engagement> {
        pairs
            .iter()
            .filter(|e| e.user == u || e.user == other)
            .copied()
            .collect()
    };
    let pairs = eventually(
        || async {
            let all = p
                .store
                .engagement_pairs(t.window, 100_000)
                .await
                .expect("engagement_pairs");
            mine(&all)
        },
        |pairs| pairs.len() >= 2,
    )
    .await;
    let strength = |v: VideoId| pairs.iter().find(|e| e.video == v).map(|e| e.strength);
    assert!(
        pairs.iter().all(|e| e.creator == c),
        "each pair names its creator"
    );
    assert_eq!(
        strength(liked),
        Some(5.0),
        "like 3 + complete 2 in the window"
    );
    assert_eq!(
        strength(theirs),
        Some(1.0),
        "another user's pair is its own"
    );
    assert_eq!(
        strength(skipped),
        None,
        "a non-positive sum is no interaction"
    );
    assert_eq!(
        strength(stale),
        None,
        "events before the window do not count"
    );
    let latest = pairs.iter().find(|e| e.video == liked).map(|e| e.at);
    assert!(
        latest.is_some_and(|at| at <= t.recent && t.recent - at < Duration::hours(1)),
        "the latest event's hour: {latest:?} for {}",
        t.recent
    );
    let wider = p
        .store
        .engagement_pairs(t.old - Duration::hours(2), 100_000)
        .await
        .expect("engagement_pairs");
    let wider = mine(&wider);
    assert_eq!(
        wider.iter().find(|e| e.video == liked).map(|e| e.strength),
        Some(5.5)
    );
    assert_eq!(
        wider.iter().find(|e| e.video == stale).map(|e| e.strength),
        Some(4.0)
    );
    assert!(
        p.store
            .engagement_pairs(t.window, 0)
            .await
            .expect("engagement_pairs")
            .is_empty(),
        "at most `limit` pairs"
    );
}

async fn hidden_holds_what_each_user_hid(p: SignalPipeline) {
    let t = times();
    let (u, other) = (user(), user());
    let (c, hidden_creator, other_creator) = (creator(), creator(), creator());
    let (dismissed, of_hidden, liked) = (video_id(), video_id(), video_id());
    let events = vec![
        event(u, dismissed, c, EventType::NotInterested, t.recent),
        // Twice: still one entry.
        event(u, dismissed, c, EventType::NotInterested, t.recent),
        event(u, of_hidden, hidden_creator, EventType::HideCreator, t.old),
        event(u, liked, other_creator, EventType::Like, t.recent),
        event(
            other,
            liked,
            other_creator,
            EventType::HideCreator,
            t.recent,
        ),
    ];
    publish(p.sink.as_ref(), &events).await;
    let hidden = eventually(
        || async { p.store.hidden(u).await.expect("hidden") },
        |h| !h.videos.is_empty() && !h.creators.is_empty(),
    )
    .await;
    assert_eq!(
        hidden.videos,
        [dismissed].into(),
        "the video marked not interested, once"
    );
    assert_eq!(
        hidden.creators,
        [hidden_creator].into(),
        "the hidden creator (however old), not another user's"
    );
    let theirs = eventually(
        || async { p.store.hidden(other).await.expect("hidden") },
        |h| !h.creators.is_empty(),
    )
    .await;
    assert_eq!(theirs.creators, [other_creator].into());
    assert!(
        theirs.videos.is_empty(),
        "hiding a creator hides no video id"
    );
    assert!(
        p.store.hidden(user()).await.expect("hidden").is_empty(),
        "an unknown user hid nothing"
    );
}

async fn watched_history_holds_watches_since_the_exact_time(p: SignalPipeline) {
    let now = now_micros();
    let (u, other, c) = (user(), user(), creator());
    let (watched, completed, earlier, liked) = (video_id(), video_id(), video_id(), video_id());
    let (rewatched, others) = (video_id(), video_id());
    let events = vec![
        event(u, watched, c, EventType::Watch, now - Duration::minutes(5)),
        event(
            u,
            completed,
            c,
            EventType::Complete,
            now - Duration::minutes(20),
        ),
        // Watched 40 minutes ago: the window below starts 30 minutes ago, within the same hour
        // or not, so an hourly rounding would show up.
        event(u, earlier, c, EventType::Watch, now - Duration::minutes(40)),
        event(
            u,
            rewatched,
            c,
            EventType::Watch,
            now - Duration::minutes(50),
        ),
        event(
            u,
            rewatched,
            c,
            EventType::Watch,
            now - Duration::minutes(2),
        ),
        event(u, liked, c, EventType::Like, now - Duration::minutes(1)),
        event(
            other,
            others,
            c,
            EventType::Watch,
            now - Duration::minutes(1),
        ),
    ];
    publish(p.sink.as_ref(), &events).await;
    let mut expected = vec![watched, completed, rewatched];
    expected.sort_unstable();
    let since = now - Duration::minutes(30);
    let found = eventually(
        || async {
            let mut v = p
                .store
                .watched_since(u, since)
                .await
                .expect("watched_since");
            v.sort_unstable();
            v
        },
        |v| *v == expected,
    )
    .await;
    assert_eq!(
        found, expected,
        "watches and completes of this user since the exact time, by their latest watch"
    );
    assert_eq!(
        p.store.watched_since(user(), since).await.ok(),
        Some(vec![]),
        "a user without watches"
    );
}

/// Event times, hours away from the window start so hourly buckets do not blur the boundary.
struct Times {
    /// Inside the window.
    recent: DateTime<Utc>,
    /// Start of the window.
    window: DateTime<Utc>,
    /// Before the window.
    old: DateTime<Utc>,
}

fn times() -> Times {
    let now = now_micros();
    Times {
        recent: now - Duration::minutes(10),
        window: now - Duration::hours(3),
        old: now - Duration::hours(8),
    }
}

async fn stats_of(store: &dyn SignalStore, since: DateTime<Utc>, video: VideoId) -> VideoStats {
    store
        .video_stats(since)
        .await
        .expect("video_stats")
        .into_iter()
        .find(|(id, _)| *id == video)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

async fn video_stats_aggregate_the_events_in_the_window(p: SignalPipeline) {
    let t = times();
    let (u, c, v, quiet) = (user(), creator(), video_id(), video_id());
    let at = |event_type, when| event(u, v, c, event_type, when);
    let mut half_watch = at(EventType::Watch, t.recent);
    half_watch.completion = Some(0.5);
    let mut events = vec![
        at(EventType::Impression, t.recent),
        at(EventType::View, t.recent),
        at(EventType::View, t.recent),
        half_watch,
        // A complete event without a completion counts as 1.0.
        at(EventType::Complete, t.recent),
        at(EventType::Like, t.recent),
        at(EventType::Unlike, t.recent),
        at(EventType::Share, t.recent),
        at(EventType::Comment, t.recent),
        at(EventType::Skip, t.recent),
        at(EventType::View, t.old),
        // Negative feedback leaves the video's counters alone.
        at(EventType::NotInterested, t.recent),
    ];
    // A skip after 1.5 s is a quick skip: a completion sample of 0 (a watch), and a skip.
    let mut quick = at(EventType::Skip, t.recent);
    quick.watch_ms = Some(1_500);
    // A skip after 2 s or more is not; nor is a short view (clients send views at playback start).
    let mut late_skip = at(EventType::Skip, t.recent);
    late_skip.watch_ms = Some(2_000);
    let mut short_view = at(EventType::View, t.recent);
    short_view.watch_ms = Some(500);
    events.extend([quick, late_skip, short_view]);
    events.push(event(u, quiet, c, EventType::View, t.old));
    publish(p.sink.as_ref(), &events).await;

    let expected = VideoStats {
        impressions: 1,
        views: 3,
        watches: 3,
        completion_sum: 1.5,
        likes: 1,
        unlikes: 1,
        shares: 1,
        comments: 1,
        skips: 3,
    };
    // Completion is a float sum: compared with a tolerance, the counts exactly.
    let exact = |s: &VideoStats| VideoStats {
        completion_sum: expected.completion_sum,
        ..*s
    };
    let stats = eventually(
        || stats_of(p.store.as_ref(), t.window, v),
        |s| exact(s) == expected,
    )
    .await;
    assert_eq!(
        exact(&stats),
        expected,
        "each event type is counted once, only inside the window"
    );
    assert!(
        (stats.completion_sum - expected.completion_sum).abs() < 1e-9,
        "completion sums the watch events' ratios: {stats:?}"
    );
    let wider = stats_of(p.store.as_ref(), t.old - Duration::hours(2), v).await;
    assert_eq!(wider.views, 4, "a wider window counts the older view too");
    assert_eq!(
        stats_of(p.store.as_ref(), t.window, quiet).await,
        VideoStats::default(),
        "a video without events in the window has no (or empty) stats"
    );
}

/// `views` views and `likes` likes on `video`, each by the same user.
fn engagement(
    video: VideoId,
    views: usize,
    likes: usize,
    at: DateTime<Utc>,
) -> Vec<EngagementEvent> {
    let (u, c) = (user(), creator());
    let mut events: Vec<_> = (0..views)
        .map(|_| event(u, video, c, EventType::View, at))
        .collect();
    events.extend((0..likes).map(|_| event(u, video, c, EventType::Like, at)));
    events
}

async fn trending_counts_viewed_videos_best_first(p: SignalPipeline) {
    let t = times();
    let (best, good, unviewed, stale) = (video_id(), video_id(), video_id(), video_id());
    let mut events = engagement(best, 2, 2, t.recent);
    events.extend(engagement(good, 4, 1, t.recent));
    // Likes and a share but no view: engagement would clamp to 1, yet it is not trending.
    events.extend(engagement(unviewed, 0, 3, t.recent));
    events.push(event(
        user(),
        unviewed,
        creator(),
        EventType::Share,
        t.recent,
    ));
    events.extend(engagement(stale, 3, 3, t.old));
    publish(p.sink.as_ref(), &events).await;

    let mine = [best, good, unviewed, stale];
    let list = eventually(
        || async {
            let list = p.store.trending(t.window, 10_000).await.expect("trending");
            list.into_iter()
                .filter(|v| mine.contains(v))
                .collect::<Vec<_>>()
        },
        |l| l.len() >= 2,
    )
    .await;
    assert_eq!(
        list,
        vec![best, good],
        "only videos viewed in the window, highest engagement first"
    );
    let top = p.store.trending(t.window, 1).await.expect("trending");
    assert_eq!(top.len(), 1, "at most `limit` videos");
}

async fn creator_affinity_sums_then_floors(p: SignalPipeline) {
    let t = times();
    let (u, other) = (user(), user());
    let [
        liked,
        undone,
        skipped,
        recovered,
        stale,
        seen,
        hidden,
        dismissed,
    ] = std::array::from_fn(|_| creator());
    let by = |who: UserId, c: CreatorId, event_type, at| event(who, video_id(), c, event_type, at);
    let events = vec![
        by(u, liked, EventType::View, t.recent),
        by(u, liked, EventType::Like, t.recent),
        by(u, undone, EventType::Like, t.recent),
        by(u, undone, EventType::Unlike, t.recent),
        by(u, skipped, EventType::Skip, t.recent),
        by(u, skipped, EventType::Skip, t.recent),
        // The sum is floored, not each step: -3 + 3 + 3 = 3.
        by(u, recovered, EventType::Unlike, t.recent),
        by(u, recovered, EventType::Like, t.recent),
        by(u, recovered, EventType::Like, t.recent),
        by(u, stale, EventType::Share, t.old),
        by(u, seen, EventType::Impression, t.recent),
        by(other, liked, EventType::Share, t.recent),
        // Hiding a creator outweighs a share and a like; "not interested" takes 3 away.
        by(u, hidden, EventType::Share, t.recent),
        by(u, hidden, EventType::Like, t.recent),
        by(u, hidden, EventType::HideCreator, t.recent),
        by(u, dismissed, EventType::Share, t.recent),
        by(u, dismissed, EventType::NotInterested, t.recent),
    ];
    publish(p.sink.as_ref(), &events).await;

    let rows = eventually(
        || async {
            p.store
                .creator_affinity(u, t.window)
                .await
                .expect("creator_affinity")
        },
        |rows| rows.len() >= 3,
    )
    .await;
    let strength = |c: CreatorId| rows.iter().find(|(id, _)| *id == c).map(|(_, s)| *s);
    assert!(
        rows.iter().all(|(_, s)| s.is_finite() && *s >= 0.0),
        "strengths are never negative: {rows:?}"
    );
    assert_eq!(
        strength(liked),
        Some(3.5),
        "view 0.5 + like 3, not other users' events"
    );
    assert_eq!(
        strength(recovered),
        Some(3.0),
        "the sum is floored, not each event"
    );
    assert_eq!(
        strength(dismissed),
        Some(1.0),
        "share 4 + not interested -3"
    );
    for (c, why) in [
        (undone, "a like and an unlike cancel out"),
        (skipped, "negative sums are floored at zero"),
        (stale, "events before the window do not count"),
        (seen, "impressions carry no affinity"),
        (hidden, "hiding a creator cancels a history with them"),
    ] {
        assert_eq!(strength(c).unwrap_or(0.0), 0.0, "{why}");
    }
    let unknown = p
        .store
        .creator_affinity(user(), t.window)
        .await
        .expect("creator_affinity");
    assert!(unknown.is_empty(), "a user without history has no affinity");
}

async fn most_active_users_come_first(p: SignalPipeline) {
    let t = times();
    let (busy, middle, quiet, former) = (user(), user(), user(), user());
    let many = |u: UserId, n: usize, at| -> Vec<EngagementEvent> {
        (0..n)
            .map(|_| event(u, video_id(), creator(), EventType::Impression, at))
            .collect()
    };
    let mut events = many(middle, 3, t.recent);
    events.extend(many(busy, 5, t.recent));
    events.extend(many(quiet, 1, t.recent));
    events.extend(many(former, 10, t.old));
    publish(p.sink.as_ref(), &events).await;

    let mine = [busy, middle, quiet, former];
    let list = eventually(
        || async {
            let list = p
                .store
                .most_active_users(t.window, 10_000)
                .await
                .expect("most_active_users");
            list.into_iter()
                .filter(|u| mine.contains(u))
                .collect::<Vec<_>>()
        },
        |l| l.len() >= 3,
    )
    .await;
    assert_eq!(
        list,
        vec![busy, middle, quiet],
        "users ordered by their number of events in the window; older activity does not count"
    );
    let top = p
        .store
        .most_active_users(t.window, 2)
        .await
        .expect("most_active_users");
    assert_eq!(top.len(), 2, "at most `limit` users");
}
