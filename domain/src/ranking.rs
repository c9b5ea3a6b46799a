//! The ranking pipeline's pure stages: sources → filters → scorer → selector.
//!
//! No I/O. Bounded per-request state: a few vectors the size of the candidate pool. The application
//! layer runs the stages in order and fetches the user's data and model scores between them.

use crate::feed::{Reason, SessionItem};
use crate::ids::{CreatorId, UserId, VideoId};
use crate::pool::CandidatePool;
use crate::signals::{self, Signal, SignalSet, SignalValues};
use crate::weights::Weights;
use chrono::{DateTime, Duration, Utc};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};

/// Tunables of the pipeline. The defaults are the product policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RankingConfig {
    /// How many videos one ranked session holds.
    pub session_size: usize,
    /// Followed creators contribute videos published this recently.
    pub following_window: Duration,
    /// Fresh videos are those published this recently.
    pub fresh_window: Duration,
    /// At most this many (newest) videos per creator the user has affinity with.
    pub affinity_videos_per_creator: usize,
    /// Diversity: at most `max_per_creator_in_window` items of one creator in any window of this many
    /// consecutive items, and never two adjacent.
    pub diversity_window: usize,
    pub max_per_creator_in_window: usize,
}

impl Default for RankingConfig {
    fn default() -> Self {
        Self {
            session_size: 200,
            following_window: Duration::hours(72),
            fresh_window: Duration::days(30),
            affinity_videos_per_creator: 20,
            diversity_window: 10,
            max_per_creator_in_window: 2,
        }
    }
}

/// What ranking knows about the user for one request.
#[derive(Clone, Debug)]
pub struct UserContext {
    pub user_id: UserId,
    pub now: DateTime<Utc>,
    pub follows: HashSet<CreatorId>,
    /// Raw interaction strength per creator over 90 days; `None` when it could not be fetched (the
    /// affinity signal is then dropped and the other weights renormalized).
    pub affinity: Option<HashMap<CreatorId, f64>>,
    /// Videos the user watched in the last 30 days: never ranked.
    pub watched: HashSet<VideoId>,
    /// Videos served to the user in the last 24 hours: ranked only when too few others exist.
    pub recently_served: HashSet<VideoId>,
}

impl UserContext {
    /// A user we know nothing about.
    pub fn anonymous(user_id: UserId, now: DateTime<Utc>) -> Self {
        Self {
            user_id,
            now,
            follows: HashSet::new(),
            affinity: Some(HashMap::new()),
            watched: HashSet::new(),
            recently_served: HashSet::new(),
        }
    }
}

/// A pool entry proposed by a source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub(crate) index: u32,
    pub reason: Reason,
    /// Served to the user in the last 24 hours; ranked after every other candidate.
    pub previously_served: bool,
}

/// A scored candidate.
#[derive(Clone, Copy, Debug)]
pub struct ScoredCandidate {
    pub candidate: Candidate,
    pub signals: SignalValues,
    pub score: f64,
}

/// The outcome of ranking: the weights used and the ranked videos.
#[derive(Clone, Debug)]
pub struct Ranking {
    /// Weights after renormalization for the signals that were available.
    pub weights: Weights,
    pub items: Vec<SessionItem>,
}

/// Sources: followed creators (72 h), creators with affinity, trending, fresh (30 days); merged and
/// deduplicated, each candidate keeping the strongest reason. A user with no follows and no history
/// gets trending + fresh.
pub fn gather_candidates(
    pool: &CandidatePool,
    user: &UserContext,
    config: &RankingConfig,
) -> Vec<Candidate> {
    const NONE: u8 = u8::MAX;
    let mut reasons = vec![NONE; pool.len()];
    let mut mark = |index: u32, reason: Reason| {
        let slot = &mut reasons[index as usize];
        *slot = (*slot).min(reason as u8);
    };

    // FollowedCreatorsSource
    let following_since = user.now - config.following_window;
    for creator in &user.follows {
        for &i in pool.by_creator(creator) {
            if pool.entry(i).published_at < following_since {
                break; // newest first
            }
            mark(i, Reason::Following);
        }
    }
    // AffinityCreatorsSource
    if let Some(affinity) = &user.affinity {
        for (creator, &strength) in affinity {
            if strength > 0.0 {
                for &i in pool
                    .by_creator(creator)
                    .iter()
                    .take(config.affinity_videos_per_creator)
                {
                    mark(i, Reason::Affinity);
                }
            }
        }
    }
    // TrendingSource
    for &i in pool.trending() {
        mark(i, Reason::Trending);
    }
    // FreshSource: entries are newest first.
    let fresh_since = user.now - config.fresh_window;
    for (i, e) in pool.entries().iter().enumerate() {
        if e.published_at < fresh_since {
            break;
        }
        mark(i as u32, Reason::Fresh);
    }

    const ORDER: [Reason; 4] = [
        Reason::Following,
        Reason::Affinity,
        Reason::Trending,
        Reason::Fresh,
    ];
    reasons
        .iter()
        .enumerate()
        .filter(|(_, r)| **r != NONE)
        .map(|(i, &r)| Candidate {
            index: i as u32,
            reason: ORDER[usize::from(r)],
            previously_served: false,
        })
        .collect()
}

/// Filters: drops videos that are not servable (WatchedVideosFilter, and the pool only holds
/// published, undeleted videos) and those the user watched; demotes those served in the last 24 h,
/// or drops them while at least a session's worth of other candidates remains.
pub fn filter_candidates(
    pool: &CandidatePool,
    user: &UserContext,
    mut candidates: Vec<Candidate>,
    config: &RankingConfig,
) -> Vec<Candidate> {
    candidates.retain(|c| {
        let entry = pool.entry(c.index);
        entry.video.is_servable() && !user.watched.contains(&entry.video.id)
    });
    for c in &mut candidates {
        c.previously_served = user.recently_served.contains(&pool.entry(c.index).video.id);
    }
    let unserved = candidates.iter().filter(|c| !c.previously_served).count();
    if unserved >= config.session_size {
        candidates.retain(|c| !c.previously_served);
    }
    candidates
}

/// The video ids of candidates, e.g. to ask a model for scores.
pub fn candidate_ids(pool: &CandidatePool, candidates: &[Candidate]) -> Vec<VideoId> {
    candidates
        .iter()
        .map(|c| pool.entry(c.index).video.id)
        .collect()
}

/// WeightedSignalScorer: computes the five signals and the weighted score of each candidate.
///
/// `model` holds one score per candidate (same order) when a model answered; without it (or without
/// affinity data) the remaining weights are renormalized. Model scores are clamped into [0, 1]; a
/// non-finite one makes the candidate's score NaN, and the selector sinks it. Its model signal then
/// reads 0, so sessions hold only finite numbers (JSON has no NaN: a cached session would not load).
pub fn score_candidates(
    pool: &CandidatePool,
    user: &UserContext,
    candidates: &[Candidate],
    weights: &Weights,
    model: Option<&[f64]>,
) -> (Weights, Vec<ScoredCandidate>) {
    let model = model.filter(|m| m.len() == candidates.len());
    let mut available = SignalSet::ALL;
    if model.is_none() {
        available = available.without(Signal::Model);
    }
    if user.affinity.is_none() {
        available = available.without(Signal::Affinity);
    }
    let effective = weights.renormalized(available);
    let strongest = user.affinity.as_ref().and_then(|a| {
        a.values()
            .copied()
            .filter(|v| v.is_finite())
            .reduce(f64::max)
    });
    let scored = candidates
        .iter()
        .enumerate()
        .map(|(n, &candidate)| {
            let entry = pool.entry(candidate.index);
            let affinity = match &user.affinity {
                Some(map) => {
                    signals::affinity(map.get(&entry.video.creator_id).copied(), strongest)
                }
                None => 0.0,
            };
            let (model, model_ok) = match model {
                Some(m) if m[n].is_finite() => (signals::clamp_unit(m[n]), true),
                Some(_) => (0.0, false),
                None => (0.0, true),
            };
            let values = SignalValues {
                freshness: signals::freshness(entry.published_at, user.now),
                completion: entry.completion,
                engagement: entry.engagement,
                affinity,
                model,
            };
            ScoredCandidate {
                candidate,
                signals: values,
                score: if model_ok {
                    effective.score(&values)
                } else {
                    f64::NAN
                },
            }
        })
        .collect();
    (effective, scored)
}

/// Orders candidates: finite scores before non-finite ones, never-served before recently served,
/// then score (high first), newer first, and video id, so ties break deterministically.
fn compare(pool: &CandidatePool, a: &ScoredCandidate, b: &ScoredCandidate) -> Ordering {
    let (ea, eb) = (pool.entry(a.candidate.index), pool.entry(b.candidate.index));
    (!a.score.is_finite())
        .cmp(&!b.score.is_finite())
        .then(
            a.candidate
                .previously_served
                .cmp(&b.candidate.previously_served),
        )
        .then_with(|| {
            let (sa, sb) = (finite_or_zero(a.score), finite_or_zero(b.score));
            sb.total_cmp(&sa)
        })
        .then_with(|| eb.published_at.cmp(&ea.published_at))
        .then_with(|| ea.video.id.cmp(&eb.video.id))
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// CreatorDiversitySelector: takes the best `session_size` candidates such that no two adjacent items
/// share a creator and no creator has more than `max_per_creator_in_window` items in any window of
/// `diversity_window` consecutive items, whenever the candidates allow it. When they do not, the
/// window rule is relaxed first, then adjacency. Diversity never moves a video ahead of one that
/// ranks in a better tier (never served before ahead of recently served; finite scores ahead of
/// non-finite ones).
pub fn select_diverse(
    pool: &CandidatePool,
    mut scored: Vec<ScoredCandidate>,
    config: &RankingConfig,
) -> Vec<SessionItem> {
    let target = config.session_size.min(scored.len());
    // Only the best few hundred candidates can be picked, so only they are ordered: a partial
    // selection, then a sort of that prefix (the rest is sorted only if diversity ever needs to
    // look past it). Ordering the whole 10k pool took about half of a ranking's time.
    let mut sorted = (target * 4 + 64).min(scored.len());
    if sorted < scored.len() {
        scored.select_nth_unstable_by(sorted, |a, b| compare(pool, a, b));
    }
    scored[..sorted].sort_unstable_by(|a, b| compare(pool, a, b));
    let creators_of = |scored: &[ScoredCandidate]| -> Vec<CreatorId> {
        scored
            .iter()
            .map(|s| pool.entry(s.candidate.index).video.creator_id)
            .collect()
    };
    let mut creators = creators_of(&scored);
    // Tiers in sorted order: finite unserved, finite served, non-finite unserved, non-finite served.
    // Diversity may reorder videos within a tier but never lift one across a tier boundary, so a
    // recently served or a broken-score video never jumps ahead to make room for variety.
    let tier = |s: &ScoredCandidate| {
        (u8::from(!s.score.is_finite()) << 1) | u8::from(s.candidate.previously_served)
    };
    // `tier_end[i]`: where the tier of sorted position `i` ends (at most `sorted`).
    let tier_ends = |scored: &[ScoredCandidate], sorted: usize| {
        let mut ends = vec![sorted; sorted];
        for i in (0..sorted.saturating_sub(1)).rev() {
            ends[i] = if tier(&scored[i]) == tier(&scored[i + 1]) {
                ends[i + 1]
            } else {
                i + 1
            };
        }
        ends
    };
    let mut tier_end = tier_ends(&scored, sorted);
    let mut taken = vec![false; scored.len()];
    let mut head = 0;
    let lookback = config.diversity_window.saturating_sub(1);
    let mut recent: VecDeque<CreatorId> = VecDeque::with_capacity(lookback + 1);
    // Kept apart from `recent`, which is empty for a window of 1: adjacency holds regardless.
    let mut last: Option<CreatorId> = None;
    let mut out = Vec::with_capacity(target);

    while out.len() < target {
        while taken[head] {
            head += 1;
        }
        let adjacent_ok = |i: usize| Some(creators[i]) != last;
        let window_ok = |i: usize| {
            recent.iter().filter(|&&c| c == creators[i]).count() < config.max_per_creator_in_window
        };
        let diverse = |i: usize| adjacent_ok(i) && window_ok(i);
        let end = tier_end[head];
        let find = |ok: &dyn Fn(usize) -> bool| (head..end).find(|&i| !taken[i] && ok(i));
        // A tier reaching the end of the ordered prefix may continue past it: order the rest
        // before relaxing any rule, so the result is the same as with a full sort.
        if end == sorted && sorted < scored.len() && find(&diverse).is_none() {
            scored[sorted..].sort_unstable_by(|a, b| compare(pool, a, b));
            sorted = scored.len();
            tier_end = tier_ends(&scored, sorted);
            creators = creators_of(&scored);
            continue;
        }
        let pick = find(&diverse)
            .or_else(|| find(&adjacent_ok))
            .unwrap_or(head);
        taken[pick] = true;
        last = Some(creators[pick]);
        if lookback > 0 {
            if recent.len() == lookback {
                recent.pop_front();
            }
            recent.push_back(creators[pick]);
        }
        let s = &scored[pick];
        out.push(SessionItem {
            video_id: pool.entry(s.candidate.index).video.id,
            creator_id: creators[pick],
            score: if s.score.is_finite() { s.score } else { 0.0 },
            reason: s.candidate.reason,
            signals: s.signals,
        });
    }
    out
}

/// The whole pipeline without a model: what one feed-cache miss computes for one user.
pub fn rank(
    pool: &CandidatePool,
    user: &UserContext,
    weights: &Weights,
    config: &RankingConfig,
) -> Ranking {
    let candidates = filter_candidates(pool, user, gather_candidates(pool, user, config), config);
    let (weights, scored) = score_candidates(pool, user, &candidates, weights, None);
    Ranking {
        weights,
        items: select_diverse(pool, scored, config),
    }
}
