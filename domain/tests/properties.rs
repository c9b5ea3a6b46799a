//! Properties of the ranking policy that must hold for every input, checked on generated pools,
//! users, weights and model scores.

mod common;

use chrono::Duration;
use common::{config, creator, now, user, vid, video};
use proptest::prelude::*;
use proptest::sample::subsequence;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;
use vrs_domain::ranking::{
    self, candidate_ids, filter_candidates, gather_candidates, score_candidates, select_diverse,
};
use vrs_domain::signals::{self, FRESHNESS_HORIZON_HOURS};
use vrs_domain::{
    CandidatePool, CreatorId, EngagementEvent, EventType, RankingConfig, SessionItem, Signal,
    SignalSet, SignalValues, UserContext, UserId, VideoId, VideoStats, Weights, WeightsError,
};

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// One catalog video of a generated scenario.
#[derive(Clone, Debug)]
struct VideoSpec {
    creator: u128,
    age_minutes: i64,
    stats: VideoStats,
}

/// A pool and a user, described by indexes into the generated videos.
#[derive(Clone, Debug)]
struct Scenario {
    videos: Vec<VideoSpec>,
    trending: Vec<usize>,
    follows: Vec<u128>,
    affinity: Option<Vec<(u128, f64)>>,
    watched: Vec<usize>,
    served: Vec<usize>,
    session_size: usize,
}

/// Completion means, including corrupt aggregates (above 1, NaN) that must not leak into scores.
fn completion_mean() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..=1.0f64,
        2 => Just(1.0),
        1 => 1.0..4.0f64,
        1 => Just(f64::NAN),
    ]
}

fn video_stats() -> impl Strategy<Value = VideoStats> {
    (
        (0u64..200, 0u64..300, 0u64..50),
        (0u64..100, 0u64..100, 0u64..50),
        completion_mean(),
    )
        .prop_map(
            |((views, likes, unlikes), (shares, comments, watches), mean)| VideoStats {
                views,
                likes,
                unlikes,
                shares,
                comments,
                watches,
                completion_sum: mean * watches as f64,
                ..VideoStats::default()
            },
        )
}

/// Ages from slightly in the future (clock skew) to past the 30-day fresh window.
fn age_minutes(max_days: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(0i64),
        1 => -120i64..0,
        6 => 0i64..max_days * 24 * 60,
    ]
}

fn affinity_strength() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..50.0f64,
        1 => Just(0.0),
        1 => -5.0..0.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
    ]
}

/// A scenario with `creators` creators and `videos` videos; `max_days` bounds the video ages.
fn scenario_with(
    creators: impl Strategy<Value = u128>,
    videos: impl Strategy<Value = usize>,
    max_days: i64,
    session: impl Strategy<Value = usize>,
) -> impl Strategy<Value = Scenario> {
    (creators, videos, session).prop_flat_map(move |(k, n, session_size)| {
        let idx = 0..n.max(1);
        (
            prop::collection::vec(
                (0..k, age_minutes(max_days), video_stats()).prop_map(
                    |(creator, age_minutes, stats)| VideoSpec {
                        creator,
                        age_minutes,
                        stats,
                    },
                ),
                n,
            ),
            prop::collection::vec(idx.clone(), 0..10),
            prop::collection::vec(0..k, 0..5),
            prop::option::weighted(
                0.8,
                prop::collection::vec((0..k, affinity_strength()), 0..10),
            ),
            prop::collection::vec(idx.clone(), 0..20),
            prop::collection::vec(idx, 0..30),
            Just(session_size),
        )
            .prop_map(
                |(videos, trending, follows, affinity, watched, served, session_size)| Scenario {
                    videos,
                    trending,
                    follows,
                    affinity,
                    watched,
                    served,
                    session_size,
                },
            )
    })
}

/// Anything from one creator to one creator per video.
fn scenario() -> impl Strategy<Value = Scenario> {
    scenario_with(1u128..40, 0usize..120, 45, 1usize..60)
}

/// Many creators, each with few videos, all fresh: enough variety for strict diversity.
fn diverse_scenario() -> impl Strategy<Value = Scenario> {
    scenario_with(60u128..100, 120usize..200, 29, 5usize..60)
}

/// Valid weights: non-negative, summing to 1 up to the accepted tolerance.
fn weights() -> impl Strategy<Value = Weights> {
    (
        prop::collection::vec(prop_oneof![1 => Just(0.0), 4 => 0.0..1.0f64], 5),
        prop_oneof![3 => Just(0.0), 1 => -9e-7..9e-7f64],
    )
        .prop_filter("at least one positive weight", |(v, _)| {
            v.iter().sum::<f64>() > 0.0
        })
        .prop_map(|(v, off)| {
            let sum: f64 = v.iter().sum();
            let mut w: Vec<f64> = v.iter().map(|x| x / sum).collect();
            // The largest weight is at least 0.2, so the offset keeps it non-negative.
            let largest = (0..5).max_by(|&a, &b| w[a].total_cmp(&w[b])).unwrap_or(0);
            w[largest] += off;
            Weights::new(w[0], w[1], w[2], w[3], w[4]).expect("normalized weights are valid")
        })
}

fn signal_set() -> impl Strategy<Value = SignalSet> {
    subsequence(Signal::ALL.to_vec(), 0..=5).prop_map(|signals| {
        signals
            .into_iter()
            .fold(SignalSet::empty(), |set, s| set.with(s))
    })
}

fn unit_value() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64]
}

fn signal_values() -> impl Strategy<Value = SignalValues> {
    (
        unit_value(),
        unit_value(),
        unit_value(),
        unit_value(),
        unit_value(),
    )
        .prop_map(
            |(freshness, completion, engagement, affinity, model)| SignalValues {
                freshness,
                completion,
                engagement,
                affinity,
                model,
            },
        )
}

/// Raw model outputs: usually in range, sometimes out of range or non-finite.
fn model_scores() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            6 => 0.0..=1.0f64,
            1 => -2.0..3.0f64,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
        ],
        250,
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn build(s: &Scenario) -> (CandidatePool, UserContext, RankingConfig) {
    build_ordered(s, false)
}

/// Builds the pool from the videos in generated or reversed order, to show input order is irrelevant.
fn build_ordered(s: &Scenario, reversed: bool) -> (CandidatePool, UserContext, RankingConfig) {
    let mut videos: Vec<_> = s
        .videos
        .iter()
        .enumerate()
        .map(|(i, v)| video(i as u128, v.creator, Duration::minutes(v.age_minutes)))
        .collect();
    if reversed {
        videos.reverse();
    }
    let stats: HashMap<VideoId, VideoStats> = s
        .videos
        .iter()
        .enumerate()
        .map(|(i, v)| (vid(i as u128), v.stats))
        .collect();
    let trending: Vec<VideoId> = s.trending.iter().map(|&i| vid(i as u128)).collect();
    let pool = CandidatePool::build(videos, &stats, &trending);

    let mut u = user();
    u.follows = s.follows.iter().map(|&c| creator(c)).collect();
    u.affinity = s
        .affinity
        .as_ref()
        .map(|a| a.iter().map(|&(c, v)| (creator(c), v)).collect());
    u.watched = s.watched.iter().map(|&i| vid(i as u128)).collect();
    u.recently_served = s.served.iter().map(|&i| vid(i as u128)).collect();
    (pool, u, config(s.session_size))
}

/// Where an item stands before diversity: finite scores first, never-served first, then higher score.
#[derive(Clone, Copy, Debug)]
struct Key {
    non_finite: bool,
    served: bool,
    score: f64,
}

impl Key {
    fn strictly_better_than(&self, other: &Key) -> bool {
        (self.non_finite, self.served) < (other.non_finite, other.served)
            || ((self.non_finite, self.served) == (other.non_finite, other.served)
                && self.score > other.score)
    }
}

/// Whether the diversity rules bar `c` from position `k` of `creators`.
fn barred(creators: &[CreatorId], k: usize, c: CreatorId, cfg: &RankingConfig) -> bool {
    let adjacent = k > 0 && creators[k - 1] == c;
    let lookback = &creators[k.saturating_sub(cfg.diversity_window.saturating_sub(1))..k];
    let in_window = lookback.iter().filter(|&&x| x == c).count();
    adjacent || in_window >= cfg.max_per_creator_in_window
}

/// Sorted best first, except where diversity moved items. A ranking that meets both diversity rules
/// may place a video after a worse one of the same tier (the search makes room for the rules further
/// on); otherwise it is the relaxed greedy one: any item ranked below a strictly worse one was barred
/// by the diversity rules at that worse item's position. Tiers are always in order.
fn assert_sorted_except_diversity(
    creators: &[CreatorId],
    keys: &[Key],
    cfg: &RankingConfig,
) -> Result<(), TestCaseError> {
    for pair in keys.windows(2) {
        prop_assert!(
            (pair[0].non_finite, pair[0].served) <= (pair[1].non_finite, pair[1].served),
            "tiers out of order: {:?} before {:?}",
            pair[0],
            pair[1]
        );
    }
    if meets_rules(creators, cfg) {
        return Ok(());
    }
    for k in 0..keys.len() {
        for j in k + 1..keys.len() {
            if keys[j].strictly_better_than(&keys[k]) {
                prop_assert!(
                    barred(creators, k, creators[j], cfg),
                    "item {j} ({:?}) is better than item {k} ({:?}) but was not barred there",
                    keys[j],
                    keys[k]
                );
            }
        }
    }
    Ok(())
}

/// Whether no creator appears twice in a row nor more than `max` times in any window.
fn meets_rules(creators: &[CreatorId], cfg: &RankingConfig) -> bool {
    (0..creators.len()).all(|k| !barred(&creators[..k], k, creators[k], cfg))
}

/// No creator twice in a row, and at most `max` per creator in every window.
fn assert_diverse(creators: &[CreatorId], cfg: &RankingConfig) -> Result<(), TestCaseError> {
    for pair in creators.windows(2) {
        prop_assert_ne!(pair[0], pair[1], "adjacent items share a creator");
    }
    let width = cfg.diversity_window.min(creators.len()).max(1);
    for window in creators.windows(width) {
        let mut counts: HashMap<CreatorId, usize> = HashMap::new();
        for c in window {
            *counts.entry(*c).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        prop_assert!(most <= cfg.max_per_creator_in_window, "window {window:?}");
    }
    Ok(())
}

fn weight_sum(w: &Weights) -> f64 {
    Signal::ALL.iter().map(|&s| w.get(s)).sum()
}

fn in_unit(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

/// Candidates after the sources and filters, as `rank` computes them.
fn filtered(pool: &CandidatePool, u: &UserContext, cfg: &RankingConfig) -> Vec<ranking::Candidate> {
    filter_candidates(pool, u, gather_candidates(pool, u, cfg), cfg)
}

/// Most candidates any one creator has.
fn max_per_creator(pool: &CandidatePool, ids: &[VideoId]) -> usize {
    let mut counts: HashMap<CreatorId, usize> = HashMap::new();
    for id in ids {
        if let Some(e) = pool.get(id) {
            *counts.entry(e.video.creator_id).or_default() += 1;
        }
    }
    counts.values().copied().max().unwrap_or(0)
}

fn creators_of(items: &[SessionItem]) -> Vec<CreatorId> {
    items.iter().map(|i| i.creator_id).collect()
}

// ---------------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------------

fn raw_weight() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..1.0f64,
        1 => -1.0..0.0f64,
        1 => Just(-0.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::MAX),
    ]
}

const NAMES: [&str; 5] = ["freshness", "completion", "engagement", "affinity", "model"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `Weights::new` accepts exactly the finite, non-negative sets summing to 1 within 1e-6, and
    /// names the first offending weight otherwise.
    #[test]
    fn weights_new_accepts_exactly_valid_sets(
        raw in prop::collection::vec(raw_weight(), 5),
        normalize in any::<bool>(),
        off in -3e-6..3e-6f64,
    ) {
        let mut w = raw.clone();
        let sum: f64 = w.iter().sum();
        if normalize && sum.is_finite() && sum > 0.0 {
            w.iter_mut().for_each(|x| *x /= sum);
            w[1] += off;
        }
        let sum: f64 = w.iter().sum();
        // Exactly at the tolerance the verdict depends on summation order; keep clear of it.
        let at_tolerance = ((sum - 1.0).abs() - 1e-6).abs() <= 1e-12;
        prop_assume!(!at_tolerance);
        let result = Weights::new(w[0], w[1], w[2], w[3], w[4]);
        let first_bad = w.iter().position(|x| !x.is_finite() || *x < 0.0);
        match (first_bad, result) {
            (Some(i), Err(WeightsError::NotFinite { signal, .. })) => {
                prop_assert!(!w[i].is_finite());
                prop_assert_eq!(signal, NAMES[i]);
            }
            (Some(i), Err(WeightsError::Negative { signal, .. })) => {
                prop_assert!(w[i] < 0.0);
                prop_assert_eq!(signal, NAMES[i]);
            }
            (None, Err(WeightsError::BadSum { .. })) => {
                prop_assert!((sum - 1.0).abs() > 1e-6, "rejected a sum of {sum}");
            }
            (None, Ok(weights)) => {
                prop_assert!((sum - 1.0).abs() <= 1e-6, "accepted a sum of {sum}");
                for (i, s) in Signal::ALL.into_iter().enumerate() {
                    prop_assert_eq!(weights.get(s).to_bits(), w[i].to_bits());
                }
            }
            (bad, result) => prop_assert!(false, "{w:?}: first bad {bad:?}, got {result:?}"),
        }
    }

    /// Renormalized weights sum to 1, are zero for unavailable signals, and keep the ratios of the
    /// available ones.
    #[test]
    fn renormalized_weights_sum_to_one(w in weights(), available in signal_set()) {
        prop_assume!(available != SignalSet::empty());
        let r = w.renormalized(available);
        prop_assert!((weight_sum(&r) - 1.0).abs() < 1e-12, "sum {}", weight_sum(&r));
        for s in Signal::ALL {
            prop_assert!(in_unit(r.get(s)));
            if !available.contains(s) {
                prop_assert_eq!(r.get(s), 0.0);
            }
        }
        let kept: f64 = Signal::ALL.iter().filter(|&&s| available.contains(s)).map(|&s| w.get(s)).sum();
        if kept > 0.0 {
            for s in Signal::ALL.into_iter().filter(|&s| available.contains(s)) {
                prop_assert!((r.get(s) - w.get(s) / kept).abs() < 1e-12);
            }
        }
        // Renormalized weights are themselves a valid weight set.
        let v: Vec<f64> = Signal::ALL.iter().map(|&s| r.get(s)).collect();
        prop_assert!(Weights::new(v[0], v[1], v[2], v[3], v[4]).is_ok());
    }

    /// A weighted score of unit signals is in [0, 1], for the weights as given and renormalized.
    #[test]
    fn weighted_score_is_in_unit_interval(
        w in weights(),
        available in signal_set(),
        values in signal_values(),
    ) {
        prop_assert!(in_unit(w.score(&values)), "score {}", w.score(&values));
        let r = w.renormalized(available);
        prop_assert!(in_unit(r.score(&values)), "renormalized score {}", r.score(&values));
        let ones = SignalValues { freshness: 1.0, completion: 1.0, engagement: 1.0, affinity: 1.0, model: 1.0 };
        prop_assert!(in_unit(r.score(&ones)), "all-ones score {}", r.score(&ones));
    }

    /// Contributions are the per-signal products and add up to the score.
    #[test]
    fn contributions_add_up_to_the_score(w in weights(), values in signal_values()) {
        let c = w.contributions(&values);
        for s in Signal::ALL {
            prop_assert_eq!(c.get(s), w.get(s) * values.get(s));
        }
        let total: f64 = Signal::ALL.iter().map(|&s| c.get(s)).sum();
        prop_assert!((total - w.score(&values)).abs() < 1e-6);
    }
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

#[test]
fn freshness_follows_the_published_curve() {
    let at = |hours: i64| signals::freshness(now() - Duration::hours(hours), now());
    assert_eq!(at(0), 1.0);
    assert_eq!(at(360), 0.25);
    assert_eq!(at(720), 0.0);
    assert_eq!(at(721), 0.0);
    assert_eq!(at(100_000), 0.0);
    // A publish time ahead of our clock counts as just published.
    assert_eq!(at(-3), 1.0);
    assert!((at(180) - 0.5625).abs() < 1e-12);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Freshness is in [0, 1], never increases with age, and is 0 past the horizon.
    #[test]
    fn freshness_is_a_decreasing_unit_value(a in -10_000_000i64..10_000_000, b in -10_000_000i64..10_000_000) {
        let (young, old) = (a.min(b), a.max(b));
        let f = |secs: i64| signals::freshness(now() - Duration::seconds(secs), now());
        prop_assert!(in_unit(f(young)) && in_unit(f(old)));
        prop_assert!(f(young) >= f(old));
        if old as f64 >= FRESHNESS_HORIZON_HOURS * 3600.0 {
            prop_assert_eq!(f(old), 0.0);
        }
    }

    /// Engagement is the clamped weighted interaction rate, with likes net of unlikes.
    #[test]
    fn engagement_is_the_clamped_interaction_rate(
        views in 0u64..1_000_000, likes in 0u64..1_000_000, unlikes in 0u64..1_000_000,
        shares in 0u64..1_000_000, comments in 0u64..1_000_000,
    ) {
        let s = VideoStats { views, likes, unlikes, shares, comments, ..VideoStats::default() };
        let e = signals::engagement(&s);
        prop_assert!(in_unit(e));
        let rate = (likes.saturating_sub(unlikes) as f64 + 2.0 * shares as f64 + 0.5 * comments as f64)
            / views.max(1) as f64;
        prop_assert!((e - rate.min(1.0)).abs() < 1e-12, "{e} vs {rate}");
        // One more like never lowers engagement.
        let more = VideoStats { likes: likes + 1, ..s };
        prop_assert!(signals::engagement(&more) >= e);
    }

    /// Completion is the mean completion of the watch events, built from the events themselves.
    #[test]
    fn completion_is_the_mean_over_watch_events(
        events in prop::collection::vec(
            (
                prop_oneof![
                    Just(EventType::Watch),
                    Just(EventType::Complete),
                    Just(EventType::Like),
                    Just(EventType::View),
                ],
                prop::option::of(0.0..=1.0f64),
            ),
            0..40,
        ),
    ) {
        let mut stats = VideoStats::default();
        let mut ratios = Vec::new();
        for (n, (event_type, completion)) in events.iter().enumerate() {
            stats.add(&EngagementEvent {
                event_id: Uuid::from_u128(n as u128),
                user_id: UserId(Uuid::from_u128(1)),
                video_id: vid(1),
                creator_id: creator(1),
                event_type: *event_type,
                watch_ms: None,
                completion: *completion,
                occurred_at: now(),
            });
            match event_type {
                EventType::Watch => ratios.push(completion.unwrap_or(0.0)),
                EventType::Complete => ratios.push(completion.unwrap_or(1.0)),
                _ => {}
            }
        }
        let c = signals::completion(&stats);
        prop_assert!(in_unit(c));
        let expected = if ratios.is_empty() { 0.0 } else { ratios.iter().sum::<f64>() / ratios.len() as f64 };
        prop_assert!((c - expected).abs() < 1e-12, "{c} vs {expected}");
    }

    /// Corrupt aggregates (completion above 1 or NaN) still give unit signals.
    #[test]
    fn signals_of_corrupt_aggregates_stay_in_unit_interval(stats in video_stats()) {
        prop_assert!(in_unit(signals::completion(&stats)));
        prop_assert!(in_unit(signals::engagement(&stats)));
    }

    /// Affinity is in [0, 1]; the strongest creator gets 1, and no history gives the neutral 0.5.
    #[test]
    fn affinity_is_normalized_by_the_strongest_creator(strength in affinity_strength(), strongest in affinity_strength()) {
        let a = signals::affinity(Some(strength), Some(strongest));
        prop_assert!(in_unit(a));
        if strongest.is_finite() && strongest > 0.0 {
            prop_assert_eq!(signals::affinity(Some(strongest), Some(strongest)), 1.0);
            prop_assert_eq!(signals::affinity(None, Some(strongest)), 0.0);
        } else {
            prop_assert_eq!(a, signals::NEUTRAL_AFFINITY);
        }
        prop_assert_eq!(signals::affinity(Some(strength), None), signals::NEUTRAL_AFFINITY);
    }
}

// ---------------------------------------------------------------------------------------------
// Ranking
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every score and signal the scorer produces is in [0, 1], except that a non-finite model score
    /// makes the score non-finite; the renormalized weights drop what was unavailable.
    #[test]
    fn scores_and_signals_are_unit_values(
        s in scenario(),
        w in weights(),
        model in prop::option::of(model_scores()),
    ) {
        let (pool, u, cfg) = build(&s);
        let candidates = filtered(&pool, &u, &cfg);
        let model = model.map(|m| m[..candidates.len().min(m.len())].to_vec());
        let (effective, scored) = score_candidates(&pool, &u, &candidates, &w, model.as_deref());
        prop_assert!((weight_sum(&effective) - 1.0).abs() < 1e-12);
        let model_used = model.as_ref().is_some_and(|m| m.len() == candidates.len());
        if !model_used {
            prop_assert_eq!(effective.get(Signal::Model), 0.0);
        }
        if u.affinity.is_none() {
            prop_assert_eq!(effective.get(Signal::Affinity), 0.0);
        }
        for (n, sc) in scored.iter().enumerate() {
            let model_ok = model.as_ref().is_none_or(|m| !model_used || m[n].is_finite());
            if model_ok {
                prop_assert!(in_unit(sc.score), "score {}", sc.score);
            } else {
                prop_assert!(!sc.score.is_finite());
                prop_assert_eq!(sc.signals.model, 0.0, "an unusable model score reads 0");
            }
            for sig in Signal::ALL {
                prop_assert!(in_unit(sc.signals.get(sig)), "{sig:?} = {}", sc.signals.get(sig));
            }
        }
        let r = ranking::rank(&pool, &u, &w, &cfg);
        prop_assert!((weight_sum(&r.weights) - 1.0).abs() < 1e-12);
        prop_assert_eq!(r.weights.get(Signal::Model), 0.0);
        for item in &r.items {
            prop_assert!(in_unit(item.score), "ranked score {}", item.score);
        }
    }

    /// The ranking holds unique, unwatched, servable videos, as many as the session allows, sorted by
    /// score except where diversity moved items.
    #[test]
    fn ranking_output_is_a_valid_session(s in scenario(), w in weights()) {
        let (pool, u, cfg) = build(&s);
        let r = ranking::rank(&pool, &u, &w, &cfg);
        let candidates = filtered(&pool, &u, &cfg);
        prop_assert_eq!(r.items.len(), cfg.session_size.min(candidates.len()));
        let ids: HashSet<VideoId> = r.items.iter().map(|i| i.video_id).collect();
        prop_assert_eq!(ids.len(), r.items.len(), "duplicate videos");
        for item in &r.items {
            prop_assert!(!u.watched.contains(&item.video_id), "watched video ranked");
            let entry = pool.get(&item.video_id);
            prop_assert!(entry.is_some_and(|e| e.video.is_servable() && e.video.creator_id == item.creator_id));
        }
        let keys: Vec<Key> = r.items.iter().map(|i| Key {
            non_finite: false,
            served: u.recently_served.contains(&i.video_id),
            score: i.score,
        }).collect();
        assert_sorted_except_diversity(&creators_of(&r.items), &keys, &cfg)?;
    }

    /// With one video per creator diversity has nothing to move: the ranking is the best candidates
    /// in order.
    #[test]
    fn distinct_creators_give_a_sorted_ranking(mut s in scenario(), w in weights()) {
        for (i, v) in s.videos.iter_mut().enumerate() {
            v.creator = i as u128;
        }
        let (pool, u, cfg) = build(&s);
        let r = ranking::rank(&pool, &u, &w, &cfg);
        let key = |i: &SessionItem| (u.recently_served.contains(&i.video_id), -i.score);
        for pair in r.items.windows(2) {
            prop_assert!(key(&pair[0]) <= key(&pair[1]), "{:?} before {:?}", pair[0], pair[1]);
        }
        // Nothing left out ranks above the last item taken.
        let taken: HashSet<VideoId> = r.items.iter().map(|i| i.video_id).collect();
        let candidates = filtered(&pool, &u, &cfg);
        let (_, scored) = score_candidates(&pool, &u, &candidates, &w, None);
        if let Some(last) = r.items.last() {
            for (id, sc) in candidate_ids(&pool, &candidates).iter().zip(&scored) {
                if !taken.contains(id) {
                    let k = (u.recently_served.contains(id), -sc.score);
                    prop_assert!(k >= key(last), "left out {id} with {k:?}");
                }
            }
        }
    }

    /// With many creators no two adjacent items share a creator and no creator has more than 2 items
    /// in any 10 consecutive ones.
    #[test]
    fn diversity_holds_when_creators_allow(s in diverse_scenario(), w in weights()) {
        let (pool, u, cfg) = build(&s);
        let candidates = filtered(&pool, &u, &cfg);
        let ids = candidate_ids(&pool, &candidates);
        // Whatever was placed last, the creators the rules bar hold at most 9 * m candidates, so a
        // valid pick exists at every position while this many remain.
        let m = max_per_creator(&pool, &ids);
        prop_assume!(ids.len() >= cfg.session_size + (cfg.diversity_window - 1) * m);
        let r = ranking::rank(&pool, &u, &w, &cfg);
        prop_assert_eq!(r.items.len(), cfg.session_size);
        assert_diverse(&creators_of(&r.items), &cfg)?;
    }

    /// The same input gives the same ranking, whatever the order of the catalog and hash maps.
    #[test]
    fn ranking_is_deterministic(s in scenario(), w in weights()) {
        let (pool, u, cfg) = build(&s);
        let first = ranking::rank(&pool, &u, &w, &cfg);
        let again = ranking::rank(&pool, &u, &w, &cfg);
        prop_assert_eq!(&first.items, &again.items);
        let (pool2, u2, _) = build_ordered(&s, true);
        let other = ranking::rank(&pool2, &u2, &w, &cfg);
        prop_assert_eq!(&first.items, &other.items);
        prop_assert_eq!(first.weights, other.weights);
    }

    /// Ties are broken deterministically: identical videos of distinct creators rank the same way
    /// whatever the catalog order.
    #[test]
    fn ties_are_broken_deterministically(n in 2usize..40, seed in any::<u64>()) {
        let specs: Vec<VideoSpec> = (0..n).map(|i| VideoSpec {
            creator: i as u128,
            age_minutes: 60,
            stats: VideoStats::default(),
        }).collect();
        let s = Scenario { videos: specs, trending: vec![], follows: vec![], affinity: Some(vec![]),
            watched: vec![], served: vec![], session_size: n };
        let (pool, u, cfg) = build(&s);
        let expected = ranking::rank(&pool, &u, &Weights::DEFAULT, &cfg);
        // A seeded rotation of the catalog order.
        let mut videos: Vec<_> = (0..n).map(|i| video(i as u128, i as u128, Duration::minutes(60))).collect();
        videos.rotate_left((seed % n as u64) as usize);
        let rotated = CandidatePool::build(videos, &HashMap::new(), &[]);
        let got = ranking::rank(&rotated, &u, &Weights::DEFAULT, &cfg);
        prop_assert_eq!(expected.items, got.items);
    }

    /// Non-finite model scores sink below every finite one (diversity aside), and with many creators
    /// strictly to the bottom.
    #[test]
    fn non_finite_model_scores_sink(
        s in diverse_scenario(),
        w in weights(),
        model in model_scores(),
    ) {
        let (pool, u, mut cfg) = build(&s);
        let candidates = filtered(&pool, &u, &cfg);
        let ids = candidate_ids(&pool, &candidates);
        cfg.session_size = ids.len();
        let model = &model[..ids.len().min(model.len())];
        prop_assume!(model.len() == ids.len());
        let bad: HashSet<VideoId> = ids.iter().zip(model).filter(|(_, m)| !m.is_finite()).map(|(id, _)| *id).collect();
        let (_, scored) = score_candidates(&pool, &u, &candidates, &w, Some(model));
        let items = select_diverse(&pool, scored, &cfg);
        prop_assert_eq!(items.len(), ids.len());
        let keys: Vec<Key> = items.iter().map(|i| Key {
            non_finite: bad.contains(&i.video_id),
            served: u.recently_served.contains(&i.video_id),
            score: i.score,
        }).collect();
        assert_sorted_except_diversity(&creators_of(&items), &keys, &cfg)?;
        for item in &items {
            prop_assert!(item.score.is_finite(), "sessions carry finite scores");
        }
        // With enough finite candidates of varied creators left over at every position, a session
        // shorter than that holds no sunk candidate at all.
        let finite = ids.len() - bad.len();
        let slack = (cfg.diversity_window - 1) * max_per_creator(&pool, &ids);
        if finite > slack {
            cfg.session_size = finite - slack;
            let (_, scored) = score_candidates(&pool, &u, &candidates, &w, Some(model));
            let items = select_diverse(&pool, scored, &cfg);
            prop_assert!(items.iter().all(|i| !bad.contains(&i.video_id)));
        }
    }

    /// Recently served videos are dropped while a session's worth of others exists, and otherwise
    /// ranked after the others (diversity aside).
    #[test]
    fn recently_served_videos_are_dropped_or_demoted(s in scenario(), w in weights()) {
        let (pool, u, cfg) = build(&s);
        let all = gather_candidates(&pool, &u, &cfg);
        let ids = candidate_ids(&pool, &all);
        let unwatched: Vec<VideoId> = ids.into_iter().filter(|id| !u.watched.contains(id)).collect();
        let fresh_count = unwatched.iter().filter(|id| !u.recently_served.contains(id)).count();
        let r = ranking::rank(&pool, &u, &w, &cfg);
        let served_in_output = r.items.iter().filter(|i| u.recently_served.contains(&i.video_id)).count();
        if fresh_count >= cfg.session_size {
            prop_assert_eq!(served_in_output, 0);
        } else {
            prop_assert_eq!(r.items.len(), cfg.session_size.min(unwatched.len()));
        }
        let keys: Vec<Key> = r.items.iter().map(|i| Key {
            non_finite: false,
            served: u.recently_served.contains(&i.video_id),
            score: i.score,
        }).collect();
        assert_sorted_except_diversity(&creators_of(&r.items), &keys, &cfg)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The selector orders only the best part of the pool (and the rest when it must look past
    /// it): the result does not depend on the order the candidates come in. (That it is what a
    /// full ordering gives is checked by the unit tests of `ranking`.)
    #[test]
    fn partial_ordering_does_not_depend_on_the_input_order(
        s in scenario_with(1u128..30, 100usize..300, 45, 1usize..20),
        w in weights(),
        rotation in any::<usize>(),
    ) {
        let (pool, u, cfg) = build(&s);
        let candidates = filtered(&pool, &u, &cfg);
        let (_, scored) = ranking::score_candidates(&pool, &u, &candidates, &w, None);
        let mut rotated = scored.clone();
        if !rotated.is_empty() {
            let by = rotation % rotated.len();
            rotated.rotate_left(by);
        }
        rotated.reverse();
        let a: Vec<VideoId> = ranking::select_diverse(&pool, scored, &cfg).iter().map(|i| i.video_id).collect();
        let b: Vec<VideoId> = ranking::select_diverse(&pool, rotated, &cfg).iter().map(|i| i.video_id).collect();
        prop_assert_eq!(a, b);
    }
}
