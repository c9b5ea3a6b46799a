//! Examples of the ranking policy: which source a video comes from, how signals are normalized, how
//! scores are explained, and how the filters and selector treat edge cases.

mod common;

use chrono::Duration;
use common::{config, creator, now, pool, stats, user, user_with, vid, video};
use std::collections::HashMap;
use uuid::Uuid;
use vrs_domain::ranking::{
    self, candidate_ids, filter_candidates, gather_candidates, score_candidates, select_diverse,
};
use vrs_domain::signals::NEUTRAL_AFFINITY;
use vrs_domain::{
    CandidatePool, FeedSession, RankingConfig, Reason, SessionId, SessionItem, Signal, UserId,
    VideoId, VideoStatus, Weights,
};

fn hours(h: i64) -> Duration {
    Duration::hours(h)
}

fn days(d: i64) -> Duration {
    Duration::days(d)
}

fn reasons(items: &[SessionItem]) -> HashMap<VideoId, Reason> {
    items.iter().map(|i| (i.video_id, i.reason)).collect()
}

fn item(items: &[SessionItem], id: VideoId) -> &SessionItem {
    items
        .iter()
        .find(|i| i.video_id == id)
        .unwrap_or_else(|| panic!("{id} is not in the ranking"))
}

fn position(items: &[SessionItem], id: VideoId) -> usize {
    items
        .iter()
        .position(|i| i.video_id == id)
        .unwrap_or_else(|| panic!("{id} is not in the ranking"))
}

fn rank_all(p: &CandidatePool, u: &vrs_domain::UserContext) -> ranking::Ranking {
    ranking::rank(p, u, &Weights::DEFAULT, &config(1_000))
}

// ----- sources and reasons ---------------------------------------------------------------------

#[test]
fn each_video_keeps_its_strongest_reason() {
    // Every video is fresh and trending; creator 1 is followed (and has affinity), creator 2 has
    // affinity only, creator 3 is trending only, creator 4 is just fresh.
    let p = pool(
        vec![
            video(1, 1, hours(1)),
            video(2, 2, hours(1)),
            video(3, 3, hours(1)),
            video(4, 4, hours(1)),
        ],
        &[],
        &[vid(1), vid(2), vid(3)],
    );
    let u = user_with(&[1], &[(1, 5.0), (2, 5.0)]);
    let r = reasons(&rank_all(&p, &u).items);
    assert_eq!(r[&vid(1)], Reason::Following);
    assert_eq!(r[&vid(2)], Reason::Affinity);
    assert_eq!(r[&vid(3)], Reason::Trending);
    assert_eq!(r[&vid(4)], Reason::Fresh);
}

#[test]
fn following_covers_the_last_72_hours_only() {
    let p = pool(
        vec![
            video(1, 1, hours(1)),
            video(2, 1, hours(71)),
            video(3, 1, hours(73)),
            video(4, 1, days(40)),
        ],
        &[],
        &[],
    );
    let r = rank_all(&p, &user_with(&[1], &[]));
    let reasons = reasons(&r.items);
    assert_eq!(reasons[&vid(1)], Reason::Following);
    assert_eq!(reasons[&vid(2)], Reason::Following);
    // Older videos of a followed creator are only as good as their other sources.
    assert_eq!(reasons[&vid(3)], Reason::Fresh);
    assert!(
        !reasons.contains_key(&vid(4)),
        "a 40-day-old video has no source"
    );
}

#[test]
fn affinity_proposes_the_newest_videos_of_creators_with_positive_strength() {
    // Creator 1 has 25 videos, one per day going back past the fresh window; creator 2 has a
    // negative strength and creator 3 a zero one.
    let mut videos: Vec<_> = (0..25).map(|n| video(n, 1, days(n as i64 * 2))).collect();
    videos.push(video(100, 2, days(40)));
    videos.push(video(101, 3, days(40)));
    let p = pool(videos, &[], &[]);
    let u = user_with(&[], &[(1, 3.0), (2, -1.0), (3, 0.0)]);
    let cfg = RankingConfig::default();
    let candidates = gather_candidates(&p, &u, &cfg);
    let ids = candidate_ids(&p, &candidates);
    let affinity: Vec<VideoId> = ids
        .iter()
        .zip(&candidates)
        .filter(|(_, c)| c.reason == Reason::Affinity)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(affinity.len(), cfg.affinity_videos_per_creator);
    // The newest 20 (ages 0..=38 days), including ones too old to be fresh.
    for n in 0..20 {
        assert!(affinity.contains(&vid(n)), "video {n} missing");
    }
    for n in [20, 21, 24, 100, 101] {
        assert!(!ids.contains(&vid(n)), "video {n} should have no source");
    }
}

#[test]
fn a_user_without_history_gets_trending_and_fresh_only() {
    let p = pool(
        vec![
            video(1, 1, hours(2)),
            video(2, 2, days(10)),
            video(3, 3, days(45)),
            video(4, 4, days(60)),
        ],
        &[],
        &[vid(3), vid(1)],
    );
    let r = rank_all(&p, &user());
    let reasons = reasons(&r.items);
    assert_eq!(reasons.len(), 3);
    assert_eq!(reasons[&vid(1)], Reason::Trending);
    assert_eq!(reasons[&vid(2)], Reason::Fresh);
    assert_eq!(reasons[&vid(3)], Reason::Trending, "trending ignores age");
    assert!(
        r.items
            .iter()
            .all(|i| matches!(i.reason, Reason::Trending | Reason::Fresh))
    );
}

// ----- signals in the ranking ------------------------------------------------------------------

#[test]
fn affinity_is_neutral_for_a_user_without_history() {
    let p = pool((0..5).map(|n| video(n, n, hours(3))).collect(), &[], &[]);
    let r = rank_all(&p, &user());
    assert_eq!(r.items.len(), 5);
    assert!(
        r.items
            .iter()
            .all(|i| i.signals.affinity == NEUTRAL_AFFINITY)
    );
    // Neutral affinity still counts: the weight is not dropped.
    assert!((r.weights.get(Signal::Affinity) - 0.10 / 0.60).abs() < 1e-12);
}

#[test]
fn affinity_is_relative_to_the_strongest_creator() {
    let p = pool((0..4).map(|n| video(n, n, hours(3))).collect(), &[], &[]);
    let u = user_with(&[], &[(0, 8.0), (1, 2.0), (2, -4.0)]);
    let r = rank_all(&p, &u);
    assert_eq!(item(&r.items, vid(0)).signals.affinity, 1.0);
    assert_eq!(item(&r.items, vid(1)).signals.affinity, 0.25);
    assert_eq!(item(&r.items, vid(2)).signals.affinity, 0.0);
    assert_eq!(
        item(&r.items, vid(3)).signals.affinity,
        0.0,
        "no interaction at all"
    );
    // Everything else equal, affinity orders the feed.
    let order: Vec<VideoId> = r.items.iter().map(|i| i.video_id).take(2).collect();
    assert_eq!(order, vec![vid(0), vid(1)]);
}

#[test]
fn missing_affinity_data_drops_the_signal_and_renormalizes() {
    let p = pool(vec![video(1, 1, hours(1))], &[], &[]);
    let mut u = user();
    u.affinity = None;
    let r = rank_all(&p, &u);
    assert_eq!(r.weights.get(Signal::Affinity), 0.0);
    assert_eq!(r.weights.get(Signal::Model), 0.0);
    assert!((r.weights.get(Signal::Completion) - 0.40 / 0.80).abs() < 1e-12);
    assert_eq!(r.items[0].signals.affinity, 0.0);
}

#[test]
fn better_signals_rank_higher() {
    let p = pool(
        vec![
            video(1, 1, hours(5)),
            video(2, 2, hours(5)),
            video(3, 3, hours(5)),
            video(4, 4, days(20)),
        ],
        &[
            (vid(1), stats(100, 10, 0, 0, 10, 0.9)),
            (vid(2), stats(100, 10, 0, 0, 10, 0.3)),
            (vid(3), stats(100, 80, 0, 0, 10, 0.3)),
            (vid(4), stats(100, 10, 0, 0, 10, 0.9)),
        ],
        &[],
    );
    let r = rank_all(&p, &user());
    // Completion beats a poor one, engagement beats a poor one, freshness beats age.
    assert!(position(&r.items, vid(1)) < position(&r.items, vid(2)));
    assert!(position(&r.items, vid(3)) < position(&r.items, vid(2)));
    assert!(position(&r.items, vid(1)) < position(&r.items, vid(4)));
    assert!((item(&r.items, vid(1)).signals.completion - 0.9).abs() < 1e-12);
    assert!((item(&r.items, vid(3)).signals.engagement - 0.8).abs() < 1e-12);
}

#[test]
fn explanation_contributions_are_weight_times_signal_and_add_up_to_the_score() {
    let p = pool(
        (0..30)
            .map(|n| video(n, n % 7, hours(n as i64 * 20)))
            .collect(),
        &(0..30)
            .map(|n| {
                (
                    vid(n),
                    stats(50 + n as u64, n as u64, 2, 3, 5, n as f64 / 30.0),
                )
            })
            .collect::<Vec<_>>(),
        &[vid(3), vid(4)],
    );
    let u = user_with(&[2], &[(1, 4.0), (2, 1.0)]);
    let w = Weights::new(0.1, 0.3, 0.3, 0.2, 0.1).expect("valid weights");
    let r = ranking::rank(&p, &u, &w, &config(1_000));
    assert_eq!(r.items.len(), 30);
    for i in &r.items {
        let c = r.weights.contributions(&i.signals);
        let mut total = 0.0;
        for s in Signal::ALL {
            assert_eq!(c.get(s), r.weights.get(s) * i.signals.get(s));
            total += c.get(s);
        }
        assert!((total - i.score).abs() < 1e-12, "{total} vs {}", i.score);
        assert!(i.score > 0.0, "every video here has some signal");
    }
}

#[test]
fn model_scores_are_clamped_and_a_wrong_count_is_ignored() {
    let p = pool((0..3).map(|n| video(n, n, hours(1))).collect(), &[], &[]);
    let u = user();
    let cfg = RankingConfig::default();
    let candidates = filter_candidates(&p, &u, gather_candidates(&p, &u, &cfg), &cfg);
    let ids = candidate_ids(&p, &candidates);
    let model: Vec<f64> = ids
        .iter()
        .map(|id| match id.0.as_u128() {
            0 => 7.0,
            1 => -3.0,
            _ => 0.5,
        })
        .collect();
    let (weights, scored) = score_candidates(&p, &u, &candidates, &Weights::DEFAULT, Some(&model));
    assert!((weights.get(Signal::Model) - 0.40).abs() < 1e-12);
    let model_of = |n: u128| {
        let at = ids.iter().position(|id| *id == vid(n)).expect("candidate");
        scored[at].signals.model
    };
    assert_eq!(model_of(0), 1.0);
    assert_eq!(model_of(1), 0.0);
    assert_eq!(model_of(2), 0.5);

    let (weights, scored) = score_candidates(&p, &u, &candidates, &Weights::DEFAULT, Some(&[0.9]));
    assert_eq!(weights.get(Signal::Model), 0.0);
    assert!(scored.iter().all(|s| s.signals.model == 0.0));
}

#[test]
fn a_non_finite_model_score_sinks_to_the_bottom() {
    // Video 0 would be best by far, but its model score is NaN.
    let p = pool(
        (0..6).map(|n| video(n, n, hours(1 + n as i64))).collect(),
        &[(vid(0), stats(10, 10, 5, 5, 10, 1.0))],
        &[],
    );
    let u = user();
    let cfg = config(6);
    let candidates = filter_candidates(&p, &u, gather_candidates(&p, &u, &cfg), &cfg);
    let ids = candidate_ids(&p, &candidates);
    let model: Vec<f64> = ids
        .iter()
        .map(|id| if *id == vid(0) { f64::NAN } else { 0.5 })
        .collect();
    let (_, scored) = score_candidates(&p, &u, &candidates, &Weights::DEFAULT, Some(&model));
    let items = select_diverse(&p, scored, &cfg);
    assert_eq!(items.len(), 6);
    assert_eq!(items.last().map(|i| i.video_id), Some(vid(0)));
    assert!(items.iter().all(|i| i.score.is_finite()));
}

// ----- filters ---------------------------------------------------------------------------------

#[test]
fn watched_videos_are_never_ranked() {
    let p = pool(
        (0..5).map(|n| video(n, n, hours(1))).collect(),
        &[],
        &[vid(1)],
    );
    let mut u = user_with(&[1], &[(1, 1.0)]);
    u.watched.insert(vid(1));
    u.watched.insert(vid(3));
    let r = rank_all(&p, &u);
    assert_eq!(r.items.len(), 3);
    assert!(
        r.items
            .iter()
            .all(|i| i.video_id != vid(1) && i.video_id != vid(3))
    );
}

#[test]
fn recently_served_videos_are_dropped_when_enough_others_remain() {
    let p = pool((0..10).map(|n| video(n, n, hours(1))).collect(), &[], &[]);
    let mut u = user();
    u.recently_served.extend([vid(0), vid(1), vid(2)]);
    let r = ranking::rank(&p, &u, &Weights::DEFAULT, &config(7));
    assert_eq!(r.items.len(), 7);
    assert!(
        r.items
            .iter()
            .all(|i| !u.recently_served.contains(&i.video_id))
    );
}

#[test]
fn recently_served_videos_come_last_when_too_few_others_remain() {
    // The served videos are the best ones; they still go after every unserved one.
    let p = pool(
        (0..10).map(|n| video(n, n, hours(1 + n as i64))).collect(),
        &[
            (vid(0), stats(10, 10, 0, 0, 10, 1.0)),
            (vid(1), stats(10, 10, 0, 0, 10, 1.0)),
        ],
        &[],
    );
    let mut u = user();
    u.recently_served.extend([vid(0), vid(1)]);
    let r = ranking::rank(&p, &u, &Weights::DEFAULT, &config(9));
    assert_eq!(r.items.len(), 9);
    let served: Vec<usize> = r
        .items
        .iter()
        .enumerate()
        .filter(|(_, i)| u.recently_served.contains(&i.video_id))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        served,
        vec![8],
        "one served video fills the session, at the end"
    );
}

// ----- diversity -------------------------------------------------------------------------------

#[test]
fn a_dominant_creator_is_spread_out() {
    // Creator 1 has the six best videos; eight other creators have one weaker video each.
    let mut videos: Vec<_> = (0..6).map(|n| video(n, 1, hours(1))).collect();
    videos.extend((10..18).map(|n| video(n, n, hours(1))));
    let best: Vec<_> = (0..6)
        .map(|n| (vid(n), stats(10, 10, 0, 0, 10, 1.0)))
        .collect();
    let p = pool(videos, &best, &[]);
    let r = rank_all(&p, &user());
    assert_eq!(r.items.len(), 14);
    let dominant: Vec<usize> = r
        .items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.creator_id == creator(1))
        .map(|(n, _)| n)
        .collect();
    // The best video leads; the first ten items hold two of creator 1, never adjacent.
    assert_eq!(dominant[0], 0);
    assert_eq!(dominant.iter().filter(|&&n| n < 10).count(), 2);
    for pair in r.items.windows(2).take(9) {
        assert_ne!(pair[0].creator_id, pair[1].creator_id);
    }
    // When only creator 1 is left, the rules give way rather than cut the session short.
    assert_eq!(dominant.len(), 6);
}

#[test]
fn a_single_creator_still_fills_the_session() {
    let p = pool(
        (0..12).map(|n| video(n, 1, hours(n as i64))).collect(),
        &[],
        &[],
    );
    let r = ranking::rank(&p, &user(), &Weights::DEFAULT, &config(10));
    assert_eq!(r.items.len(), 10);
    // Nothing to diversify with: the plain order, newest first.
    let ids: Vec<VideoId> = r.items.iter().map(|i| i.video_id).collect();
    assert_eq!(ids, (0..10).map(vid).collect::<Vec<_>>());
}

#[test]
fn adjacency_holds_even_without_a_window() {
    let cfg = RankingConfig {
        diversity_window: 1,
        ..config(6)
    };
    // Creator 1's three videos are the best.
    let mut videos: Vec<_> = (0..3).map(|n| video(n, 1, hours(1))).collect();
    videos.extend((10..13).map(|n| video(n, n, hours(1))));
    let best: Vec<_> = (0..3)
        .map(|n| (vid(n), stats(10, 10, 0, 0, 10, 1.0)))
        .collect();
    let p = pool(videos, &best, &[]);
    let r = ranking::rank(&p, &user(), &Weights::DEFAULT, &cfg);
    assert_eq!(r.items.len(), 6);
    for pair in r.items.windows(2) {
        assert_ne!(pair[0].creator_id, pair[1].creator_id);
    }
}

// ----- pool ------------------------------------------------------------------------------------

#[test]
fn the_pool_holds_servable_videos_once() {
    let mut draft = video(2, 1, hours(1));
    draft.status = VideoStatus::Draft;
    let mut deleted = video(3, 1, hours(1));
    deleted.deleted_at = Some(now());
    let mut never_published = video(4, 1, hours(1));
    never_published.published_at = None;
    let p = pool(
        vec![video(1, 1, hours(1)), draft, deleted, never_published],
        &[],
        &[],
    );
    assert_eq!(p.len(), 1);
    assert!(p.get(&vid(1)).is_some());
    assert!(p.get(&vid(2)).is_none() && p.get(&vid(3)).is_none() && p.get(&vid(4)).is_none());
}

#[test]
fn the_latest_record_of_a_video_wins() {
    // The same video twice: republished with a new publish time, and deleted after being published.
    let old = video(1, 1, days(3));
    let mut republished = video(1, 1, hours(1));
    republished.updated_at = now();
    let published = video(2, 2, hours(5));
    let mut deleted = video(2, 2, hours(5));
    deleted.deleted_at = Some(now());
    deleted.updated_at = now();

    for videos in [
        vec![
            old.clone(),
            republished.clone(),
            published.clone(),
            deleted.clone(),
        ],
        vec![deleted, published, republished, old],
    ] {
        let p = pool(videos, &[], &[]);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p.get(&vid(1)).map(|e| e.published_at),
            Some(now() - hours(1))
        );
        assert!(
            p.get(&vid(2)).is_none(),
            "a deleted video must not be served"
        );
        let r = rank_all(&p, &user());
        assert_eq!(r.items.len(), 1);
    }
}

// ----- sessions --------------------------------------------------------------------------------

#[test]
fn a_session_with_a_sunk_item_survives_a_json_round_trip() {
    let p = pool((0..3).map(|n| video(n, n, hours(1))).collect(), &[], &[]);
    let u = user();
    let cfg = config(3);
    let candidates = filter_candidates(&p, &u, gather_candidates(&p, &u, &cfg), &cfg);
    let model = vec![f64::NAN; candidates.len()];
    let (weights, scored) = score_candidates(&p, &u, &candidates, &Weights::DEFAULT, Some(&model));
    let session = FeedSession {
        experiments: Vec::new(),
        id: SessionId(Uuid::from_u128(1)),
        user_id: UserId(Uuid::from_u128(2)),
        created_at: now(),
        expires_at: now() + hours(1),
        weights,
        items: select_diverse(&p, scored, &cfg),
    };
    let json = serde_json::to_string(&session).expect("serializes");
    let back: FeedSession = serde_json::from_str(&json).expect("deserializes");
    // serde_json's default float parsing may be off by an ulp, so compare with a tolerance.
    assert_eq!(back.items.len(), 3);
    for (a, b) in back.items.iter().zip(&session.items) {
        assert_eq!(a.video_id, b.video_id);
        assert_eq!(a.score, 0.0, "a sunk item reports no score");
        for s in Signal::ALL {
            assert!((a.signals.get(s) - b.signals.get(s)).abs() < 1e-12);
        }
    }
}

/// Diversity never lifts a recently served video above an unserved one: with only one creator's
/// videos unserved, the first page still repeats nothing (rule 3 outranks variety).
#[test]
fn diversity_never_lifts_served_videos_above_unserved_ones() {
    // Videos 1-4 by creator 1 (unserved), 5-8 by creator 2 (served), all equally fresh.
    let videos: Vec<_> = (1..=8u128)
        .map(|n| video(n, if n <= 4 { 1 } else { 2 }, Duration::hours(1)))
        .collect();
    let pool = pool(videos, &[], &[]);
    let mut u = user();
    u.recently_served = (5..=8).map(vid).collect();
    let ranking = ranking::rank(&pool, &u, &Weights::DEFAULT, &config(200));
    let first_four: Vec<_> = ranking.items[..4].iter().map(|i| i.video_id).collect();
    for n in 1..=4 {
        assert!(
            first_four.contains(&vid(n)),
            "unserved video {n} ranked after a served one"
        );
    }
    assert_eq!(
        ranking.items.len(),
        8,
        "served videos still fill the session after"
    );
}
