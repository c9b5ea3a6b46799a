//! The diversity selector's guarantee: whenever the candidates can be arranged so that no creator
//! appears twice in a row and none more than `max_per_creator_in_window` times in any window, the
//! selection is such an arrangement; and its cost stays bounded when they cannot.

mod common;

use chrono::Duration;
use common::{config, creator, user, vid, video};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration as StdDuration, Instant};
use vrs_domain::ranking::{
    candidate_ids, filter_candidates, gather_candidates, score_candidates, select_diverse,
};
use vrs_domain::{
    CandidatePool, CreatorId, RankingConfig, SessionItem, UserContext, VideoId, Weights,
};

/// Scores equal to the model scores.
fn model_only() -> Weights {
    Weights::new(0.0, 0.0, 0.0, 0.0, 1.0).expect("valid weights")
}

/// Videos `0..` of the given creators, all fresh, scored `scores[n]` (in [0, 1]) each.
fn select(
    creators: &[u128],
    scores: &[f64],
    served: &[u128],
    cfg: &RankingConfig,
) -> Vec<SessionItem> {
    let videos = creators
        .iter()
        .enumerate()
        .map(|(n, &c)| video(n as u128, c, Duration::hours(1)))
        .collect::<Vec<_>>();
    let pool = CandidatePool::build(videos, &HashMap::new(), &[]);
    let mut u: UserContext = user();
    u.recently_served = served.iter().map(|&n| vid(n)).collect();
    let candidates = filter_candidates(&pool, &u, gather_candidates(&pool, &u, cfg), cfg);
    assert_eq!(
        candidates.len(),
        creators.len(),
        "every video is a candidate"
    );
    let model: Vec<f64> = candidate_ids(&pool, &candidates)
        .iter()
        .map(|id| scores[id.0.as_u128() as usize])
        .collect();
    let (_, scored) = score_candidates(&pool, &u, &candidates, &model_only(), Some(&model));
    select_diverse(&pool, scored, cfg)
}

fn ids(items: &[SessionItem]) -> Vec<u128> {
    items.iter().map(|i| i.video_id.0.as_u128()).collect()
}

fn with_rules(session_size: usize, window: usize, max: usize) -> RankingConfig {
    RankingConfig {
        diversity_window: window,
        max_per_creator_in_window: max,
        ..config(session_size)
    }
}

/// Whether a sequence of creators meets both rules.
fn meets_rules(creators: &[CreatorId], window: usize, max: usize) -> bool {
    let adjacent = creators.windows(2).all(|p| p[0] != p[1]);
    let width = window.min(creators.len()).max(1);
    let windowed = creators.windows(width).all(|w| {
        let mut counts: HashMap<CreatorId, usize> = HashMap::new();
        w.iter().all(|c| {
            let n = counts.entry(*c).or_default();
            *n += 1;
            *n <= max
        })
    });
    adjacent && windowed
}

/// Whether some ordered selection of `target` distinct candidates of these creators meets both
/// rules (brute force over the arrangements, grown position by position).
fn arrangement_exists(creators: &[CreatorId], target: usize, window: usize, max: usize) -> bool {
    fn grow(
        creators: &[CreatorId],
        used: &mut Vec<bool>,
        seq: &mut Vec<CreatorId>,
        target: usize,
        window: usize,
        max: usize,
    ) -> bool {
        if seq.len() == target {
            return true;
        }
        for i in 0..creators.len() {
            if used[i] {
                continue;
            }
            seq.push(creators[i]);
            // Every window ending at the new item is checked when it is added.
            if meets_rules(seq, window, max) {
                used[i] = true;
                if grow(creators, used, seq, target, window, max) {
                    return true;
                }
                used[i] = false;
            }
            seq.pop();
        }
        false
    }
    grow(
        creators,
        &mut vec![false; creators.len()],
        &mut Vec::new(),
        target,
        window,
        max,
    )
}

fn creators_of(items: &[SessionItem]) -> Vec<CreatorId> {
    items.iter().map(|i| i.creator_id).collect()
}

#[test]
fn a_worse_video_goes_first_when_that_lets_the_rules_hold() {
    // B 0.9, A 0.8, A 0.7: taking B first leaves A A; A B A meets both rules.
    let items = select(&[2, 1, 1], &[0.9, 0.8, 0.7], &[], &config(3));
    assert_eq!(ids(&items), vec![1, 0, 2]);
    assert!(meets_rules(&creators_of(&items), 10, 2));
}

#[test]
fn with_room_for_variety_the_order_is_the_greedy_one() {
    // B 0.9, A 0.8, A 0.7, C 0.6: B A C A meets the rules, so nothing moves further.
    let items = select(&[2, 1, 1, 3], &[0.9, 0.8, 0.7, 0.6], &[], &config(4));
    assert_eq!(ids(&items), vec![0, 1, 3, 2]);
}

#[test]
fn diversity_never_lifts_a_video_across_a_tier() {
    // A 0.9, A 0.8 never served; B 0.95 served recently: only A A B respects the tiers, so the
    // adjacency rule is relaxed rather than serving B first.
    let items = select(&[1, 1, 2], &[0.9, 0.8, 0.95], &[2], &config(3));
    assert_eq!(ids(&items), vec![0, 1, 2]);
}

#[test]
fn the_search_backtracks_over_several_positions() {
    // Window 10, at most 2: the greedy takes A B A B C and is stuck (A and B are full, C would be
    // adjacent); A B A C B C meets the rules.
    let creators = [1, 2, 1, 2, 1, 2, 3, 3, 3];
    let scores = [0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.5, 0.4, 0.3];
    let items = select(&creators, &scores, &[], &config(6));
    assert_eq!(items.len(), 6);
    assert!(
        meets_rules(&creators_of(&items), 10, 2),
        "{:?}",
        ids(&items)
    );
    assert_eq!(ids(&items), vec![0, 1, 2, 6, 3, 7]);
}

#[test]
fn a_pool_of_two_creators_is_settled_quickly() {
    // No arrangement of 200 meets the rules (two creators fill at most 4 of any 10 positions); the
    // search must see that at once rather than explore the arrangements.
    let n = 2_000;
    let creators: Vec<u128> = (0..n).map(|i| (i % 2) as u128).collect();
    let scores: Vec<f64> = (0..n).map(|i| 1.0 - i as f64 / n as f64).collect();
    let start = Instant::now();
    let items = select(&creators, &scores, &[], &config(200));
    let took = start.elapsed();
    assert_eq!(items.len(), 200);
    let unique: HashSet<VideoId> = items.iter().map(|i| i.video_id).collect();
    assert_eq!(unique.len(), 200);
    // Generous, so a loaded machine does not fail it; an exponential search would take forever.
    assert!(took < StdDuration::from_secs(20), "took {took:?}");
}

#[test]
fn a_pool_of_five_creators_stays_bounded() {
    // Five creators fill a window of 10 only by alternating perfectly: a hard pool for the search,
    // whose budget must keep it short whether or not it finds the arrangement.
    let n = 2_000;
    let creators: Vec<u128> = (0..n).map(|i| ((i * 7 / 3) % 5) as u128).collect();
    let scores: Vec<f64> = (0..n).map(|i| 1.0 - i as f64 / n as f64).collect();
    let start = Instant::now();
    let items = select(&creators, &scores, &[], &config(200));
    let took = start.elapsed();
    assert_eq!(items.len(), 200);
    assert!(took < StdDuration::from_secs(20), "took {took:?}");
}

/// A small pool: creators and distinct scores of up to 7 candidates, and the rules.
fn small_case() -> impl Strategy<Value = (Vec<u128>, Vec<f64>, usize, usize, usize)> {
    (1usize..=7, 1u128..=4).prop_flat_map(|(n, k)| {
        (
            prop::collection::vec(0..k, n),
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
            2usize..=4,
            1usize..=2,
            1usize..=7,
        )
            .prop_map(move |(creators, order, window, max, session)| {
                // Distinct scores in (0, 1): a shuffled ladder.
                let scores = order
                    .iter()
                    .map(|&r| (r + 1) as f64 / (n + 1) as f64)
                    .collect();
                (creators, scores, window, max, session)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Whenever some arrangement meets both rules, the selection does.
    #[test]
    fn the_rules_hold_whenever_some_arrangement_meets_them(
        (creators, scores, window, max, session) in small_case(),
    ) {
        let cfg = with_rules(session, window, max);
        let items = select(&creators, &scores, &[], &cfg);
        let target = session.min(creators.len());
        prop_assert_eq!(items.len(), target);
        let unique: HashSet<VideoId> = items.iter().map(|i| i.video_id).collect();
        prop_assert_eq!(unique.len(), target, "duplicate videos");
        let ids: Vec<CreatorId> = creators.iter().map(|&c| creator(c)).collect();
        if arrangement_exists(&ids, target, window, max) {
            prop_assert!(
                meets_rules(&creators_of(&items), window, max),
                "creators {:?} picked {:?}",
                creators,
                items.iter().map(|i| i.video_id.0.as_u128()).collect::<Vec<_>>()
            );
        }
    }
}
