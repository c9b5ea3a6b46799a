//! The ranking pipeline's pure stages: sources → filters → scorer → selector.
//!
//! No I/O. Bounded per-request state: a few vectors the size of the candidate pool. The application
//! layer runs the stages in order and fetches the user's data and model scores between them.

use crate::feed::{Reason, SessionItem};
use crate::hidden::Hidden;
use crate::ids::{CreatorId, UserId, VideoId};
use crate::pool::CandidatePool;
use crate::signals::{self, Signal, SignalSet, SignalValues};
use crate::weights::Weights;
use chrono::{DateTime, Duration, Utc};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

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
    /// Videos and creators the user hid: never ranked.
    pub hidden: Hidden,
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
            hidden: Hidden::default(),
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
    // The user's sets are looked up in the pool (a few thousand at most) rather than every
    // candidate in the sets (the whole pool): marks per pool entry.
    const DROP: u8 = 1;
    const SERVED: u8 = 2;
    let mut marks = vec![0u8; pool.len()];
    for id in user.watched.iter().chain(&user.hidden.videos) {
        if let Some(i) = pool.index_of(id) {
            marks[i as usize] |= DROP;
        }
    }
    for creator in &user.hidden.creators {
        for &i in pool.by_creator(creator) {
            marks[i as usize] |= DROP;
        }
    }
    for id in &user.recently_served {
        if let Some(i) = pool.index_of(id) {
            marks[i as usize] |= SERVED;
        }
    }
    candidates
        .retain(|c| marks[c.index as usize] & DROP == 0 && pool.entry(c.index).video.is_servable());
    for c in &mut candidates {
        c.previously_served = marks[c.index as usize] & SERVED != 0;
    }
    let unserved = candidates.iter().filter(|c| !c.previously_served).count();
    if unserved >= config.session_size {
        candidates.retain(|c| !c.previously_served);
    }
    candidates
}

/// Every pool entry as a candidate (reason `fresh`): what an offline evaluation ranks, where the
/// whole catalog competes rather than the sources' proposals.
pub fn all_candidates(pool: &CandidatePool) -> Vec<Candidate> {
    (0..pool.len() as u32)
        .map(|index| Candidate {
            index,
            reason: Reason::Fresh,
            previously_served: false,
        })
        .collect()
}

/// The video ids of candidates, e.g. to ask a model for scores.
pub fn candidate_ids(pool: &CandidatePool, candidates: &[Candidate]) -> Vec<VideoId> {
    candidates
        .iter()
        .map(|c| pool.entry(c.index).video.id)
        .collect()
}

/// The videos of candidates with their creators, e.g. to ask a model for scores.
pub fn candidate_videos(
    pool: &CandidatePool,
    candidates: &[Candidate],
) -> Vec<(VideoId, CreatorId)> {
    candidates
        .iter()
        .map(|c| {
            let video = &pool.entry(c.index).video;
            (video.id, video.creator_id)
        })
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
    let now_nanos = user.now.timestamp_nanos_opt();
    // Each pool entry's affinity strength, filled from the user's creators (a few) rather than
    // looked up for every candidate (the whole pool).
    let strength: Vec<Option<f64>> = match &user.affinity {
        Some(map) => {
            let mut strength = vec![None; pool.len()];
            for (creator, &value) in map {
                for &i in pool.by_creator(creator) {
                    strength[i as usize] = Some(value);
                }
            }
            strength
        }
        None => Vec::new(),
    };
    let scored = candidates
        .iter()
        .enumerate()
        .map(|(n, &candidate)| {
            let entry = pool.entry(candidate.index);
            let affinity = match &user.affinity {
                Some(_) => signals::affinity(strength[candidate.index as usize], strongest),
                None => 0.0,
            };
            let (model, model_ok) = match model {
                Some(m) if m[n].is_finite() => (signals::clamp_unit(m[n]), true),
                Some(_) => (0.0, false),
                None => (0.0, true),
            };
            let values = SignalValues {
                freshness: match (now_nanos, entry.published_nanos) {
                    // Exactly `signals::freshness`: whole seconds, truncated.
                    (Some(now), Some(published)) => {
                        signals::freshness_after(now.saturating_sub(published) / 1_000_000_000)
                    }
                    _ => signals::freshness(entry.published_at, user.now),
                },
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
///
/// The pool is ordered newest first, ties by id: the last two keys are its index.
fn compare(a: &ScoredCandidate, b: &ScoredCandidate) -> Ordering {
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
        .then_with(|| a.candidate.index.cmp(&b.candidate.index))
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// CreatorDiversitySelector: takes `session_size` candidates (all of them, if fewer), best first,
/// such that no two adjacent items share a creator and no creator has more than
/// `max_per_creator_in_window` items in any window of `diversity_window` consecutive items.
///
/// Diversity never moves a video ahead of one that ranks in a better tier (never served before
/// ahead of recently served; finite scores ahead of non-finite ones): a video is taken only once
/// every candidate of a better tier is.
///
/// Guarantee: whenever some arrangement of that many candidates meets both rules (and the tier
/// order), the selection meets both rules, unless the search runs out of budget (below). It is a
/// best-first depth-first search: each position takes the best candidate of the current tier that
/// meets both rules, and an earlier choice is revisited only when it leads to a position where no
/// candidate fits while slots remain. With varied creators nothing is revisited and the result is
/// the plain greedy order. When a later position needs it, a better video may come after a worse
/// one the rules did not bar there (B 0.9, A 0.8, A 0.7 of creators B, A, A give A 0.8, B 0.9,
/// A 0.7), so a longer session need not start like a shorter one.
///
/// Hopeless branches are cut by a bound on how many positions the creators left can fill (per
/// tier, since a tier is used up before the next one starts), and the search gives up after a
/// fixed budget of steps spent backtracking (250,000: a few milliseconds): the guarantee does not
/// hold then. Pools of a few creators that come close to an arrangement without one existing are
/// what reach the budget. When no arrangement meets the rules, or the search gave up, the
/// selection is the relaxed greedy one: each position takes the best candidate of the current tier
/// that meets both rules, else the best that is not adjacent to one of its creator, else the best.
/// Every video placed after a better one was then barred there.
pub fn select_diverse(
    pool: &CandidatePool,
    scored: Vec<ScoredCandidate>,
    config: &RankingConfig,
) -> Vec<SessionItem> {
    // Only the best few hundred candidates are normally picked, so only they are ordered: a partial
    // selection, then a sort of that prefix (the rest is sorted only if the selection ever needs to
    // look past it). Ordering the whole 10k pool took about half of a ranking's time.
    let prefix = config.session_size.min(scored.len()) * 4 + 64;
    select_ordering_first(pool, scored, config, prefix)
}

/// [`select_diverse`], ordering only the best `prefix` candidates up front.
fn select_ordering_first(
    pool: &CandidatePool,
    mut scored: Vec<ScoredCandidate>,
    config: &RankingConfig,
    prefix: usize,
) -> Vec<SessionItem> {
    let target = config.session_size.min(scored.len());
    let sorted = prefix.min(scored.len());
    if sorted < scored.len() {
        scored.select_nth_unstable_by(sorted, compare);
    }
    scored[..sorted].sort_unstable_by(compare);
    let mut selection = Selection::new(pool, scored, sorted, config, target);
    if !selection.search() {
        // No arrangement meets the rules, or the search ran out of budget: the plain relaxed
        // greedy, from the start, so every video placed after a better one was barred there.
        while selection.untake().is_some() {}
        selection.fill_relaxed();
    }
    selection.into_items()
}

/// Steps (candidates examined, bound checks) the diversity search may spend once it first has to
/// backtrack; past it, the selection settles for the relaxed greedy.
const SEARCH_BUDGET: usize = 250_000;

/// Tiers in sorted order: finite unserved, finite served, non-finite unserved, non-finite served.
fn tier(s: &ScoredCandidate) -> u8 {
    (u8::from(!s.score.is_finite()) << 1) | u8::from(s.candidate.previously_served)
}

/// `ends[i]`: where the tier of sorted position `i` ends (at most `sorted`).
fn tier_ends(scored: &[ScoredCandidate], sorted: usize) -> Vec<usize> {
    let mut ends = vec![sorted; sorted];
    for i in (0..sorted.saturating_sub(1)).rev() {
        ends[i] = if tier(&scored[i]) == tier(&scored[i + 1]) {
            ends[i + 1]
        } else {
            i + 1
        };
    }
    ends
}

/// The most items one creator can have in `slots` consecutive positions under the diversity rules
/// (an upper bound: blocks of `window` positions hold at most `max` each, and no two adjacent).
fn most_per_creator(slots: usize, window: usize, max: usize) -> usize {
    if max == 0 {
        return 0;
    }
    if window <= 1 {
        return slots.div_ceil(2);
    }
    let per_window = max.min(window.div_ceil(2));
    (slots / window) * per_window + per_window.min((slots % window).div_ceil(2))
}

/// The state of one selection: the ordered candidates and the picks so far.
struct Selection<'a> {
    pool: &'a CandidatePool,
    scored: Vec<ScoredCandidate>,
    /// The creator of each candidate of `scored`.
    creators: Vec<CreatorId>,
    /// `scored[..sorted]` is in order and holds the best candidates.
    sorted: usize,
    tier_end: Vec<usize>,
    taken: Vec<bool>,
    /// The first candidate not taken.
    head: usize,
    /// Indexes into `scored` of the picks so far, and their creators.
    picks: Vec<usize>,
    placed: Vec<CreatorId>,
    /// How many earlier items the window rule looks at.
    lookback: usize,
    window: usize,
    max_in_window: usize,
    target: usize,
}

impl<'a> Selection<'a> {
    fn new(
        pool: &'a CandidatePool,
        scored: Vec<ScoredCandidate>,
        sorted: usize,
        config: &RankingConfig,
        target: usize,
    ) -> Self {
        let creators = Self::creators_of(pool, &scored);
        Self {
            pool,
            tier_end: tier_ends(&scored, sorted),
            taken: vec![false; scored.len()],
            scored,
            creators,
            sorted,
            head: 0,
            picks: Vec::with_capacity(target),
            placed: Vec::with_capacity(target),
            lookback: config.diversity_window.saturating_sub(1),
            window: config.diversity_window,
            max_in_window: config.max_per_creator_in_window,
            target,
        }
    }

    fn creators_of(pool: &CandidatePool, scored: &[ScoredCandidate]) -> Vec<CreatorId> {
        scored
            .iter()
            .map(|s| pool.entry(s.candidate.index).video.creator_id)
            .collect()
    }

    /// Orders the candidates past the sorted prefix. They all rank below it, so positions in the
    /// prefix keep their meaning and the result is the same as with a full sort from the start.
    fn sort_rest(&mut self) {
        let pool = self.pool;
        self.scored[self.sorted..].sort_unstable_by(compare);
        self.sorted = self.scored.len();
        self.tier_end = tier_ends(&self.scored, self.sorted);
        self.creators = Self::creators_of(pool, &self.scored);
    }

    /// Where the head's tier ends (within the sorted prefix, ordering the rest if the prefix is
    /// all taken).
    fn head_tier_end(&mut self) -> usize {
        if self.head >= self.sorted {
            self.sort_rest();
        }
        self.tier_end[self.head]
    }

    /// Whether the head's tier reaches the end of the sorted prefix while more candidates exist.
    fn tier_may_continue(&self, end: usize) -> bool {
        end == self.sorted && self.sorted < self.scored.len()
    }

    fn adjacent_ok(&self, i: usize) -> bool {
        self.placed.last() != Some(&self.creators[i])
    }

    /// The creators of the last picks, as far back as the window rule looks.
    fn recent(&self) -> &[CreatorId] {
        &self.placed[self.placed.len().saturating_sub(self.lookback)..]
    }

    fn window_ok(&self, i: usize) -> bool {
        let c = self.creators[i];
        self.recent().iter().filter(|&&x| x == c).count() < self.max_in_window
    }

    /// Whether candidate `i` meets both rules at the next position.
    fn fits(&self, i: usize) -> bool {
        self.adjacent_ok(i) && self.window_ok(i)
    }

    fn take(&mut self, i: usize) {
        self.taken[i] = true;
        self.picks.push(i);
        self.placed.push(self.creators[i]);
        while self.head < self.taken.len() && self.taken[self.head] {
            self.head += 1;
        }
    }

    /// Undoes the last pick and returns it.
    fn untake(&mut self) -> Option<usize> {
        let i = self.picks.pop()?;
        self.placed.pop();
        self.taken[i] = false;
        self.head = self.head.min(i);
        Some(i)
    }

    /// The depth-first search: true when the picks are a complete selection meeting both rules.
    /// Otherwise the picks are a prefix meeting them (empty when no selection meets them).
    fn search(&mut self) -> bool {
        // Per open position: where its scan resumes, and where its tried creators start in
        // `tried`. A creator whose candidate led to a dead end is not tried again at the same
        // position: another candidate of that creator in the same tier leads to the same dead end.
        let mut resume = vec![self.head];
        let mut tried_from = vec![0];
        let mut tried: Vec<CreatorId> = Vec::new();
        // Built at the first dead end: until then the search is the plain greedy and costs nothing
        // more; from then on every step counts against the budget.
        let mut bound: Option<CreatorBound> = None;
        let mut budget = SEARCH_BUDGET;
        loop {
            let depth = self.picks.len();
            if depth == self.target {
                return true;
            }
            let hopeful = match bound.as_mut() {
                Some(b) => {
                    budget = budget.saturating_sub(4);
                    // The head may lie past the ordered prefix: order the rest before reading
                    // its tier.
                    if self.head >= self.sorted {
                        self.sort_rest();
                    }
                    let (window, max) = (self.window, self.max_in_window);
                    b.can_fill(self.target - depth, tier(&self.scored[self.head]), |n| {
                        most_per_creator(n, window, max)
                    })
                }
                None => true,
            };
            let mut pick = None;
            if hopeful {
                let end = self.head_tier_end();
                let tried_here = &tried[tried_from[depth]..];
                let (mut i, mut compared) = (resume[depth], 0);
                while i < end {
                    if !self.taken[i] && self.fits(i) {
                        compared += tried_here.len();
                        if !tried_here.contains(&self.creators[i]) {
                            pick = Some(i);
                            break;
                        }
                    }
                    i += 1;
                }
                if bound.is_some() {
                    budget = budget.saturating_sub(1 + (i - resume[depth]) + compared);
                }
                if pick.is_none() && self.tier_may_continue(end) {
                    self.sort_rest();
                    resume[depth] = i;
                    continue;
                }
            }
            match pick {
                Some(i) => {
                    resume[depth] = i + 1;
                    tried.push(self.creators[i]);
                    self.take(i);
                    if let Some(b) = bound.as_mut() {
                        b.take(self.creators[i], tier(&self.scored[i]));
                    }
                    resume.push(self.head);
                    tried_from.push(tried.len());
                }
                None => {
                    // A dead end: back to the previous position, to try its next candidate.
                    if bound.is_none() {
                        // The positions on the way here were never checked against the bound:
                        // back to the first one that fails it, if any.
                        let mut b = CreatorBound::new(&self.creators, &self.scored);
                        let (window, max) = (self.window, self.max_in_window);
                        let mut hopeless = None;
                        for (depth, &i) in self.picks.iter().enumerate() {
                            let t = tier(&self.scored[i]);
                            if !b.can_fill(self.target - depth, t, |n| {
                                most_per_creator(n, window, max)
                            }) {
                                hopeless = Some(depth);
                                break;
                            }
                            b.take(self.creators[i], t);
                        }
                        if let Some(depth) = hopeless {
                            while self.picks.len() > depth {
                                self.untake();
                                resume.pop();
                                if let Some(from) = tried_from.pop() {
                                    tried.truncate(from);
                                }
                            }
                        }
                        bound = Some(b);
                    }
                    resume.pop();
                    if let Some(from) = tried_from.pop() {
                        tried.truncate(from);
                    }
                    let Some(i) = self.untake() else {
                        return false; // nothing meets the rules
                    };
                    if let Some(b) = bound.as_mut() {
                        b.untake(self.creators[i], tier(&self.scored[i]));
                    }
                }
            }
            if budget == 0 {
                return false;
            }
        }
    }

    /// Fills the remaining positions greedily: the best candidate of the head's tier that meets
    /// both rules, else the best that is not adjacent to one of its creator, else the head.
    fn fill_relaxed(&mut self) {
        while self.picks.len() < self.target {
            let end = self.head_tier_end();
            let find =
                |ok: &dyn Fn(usize) -> bool| (self.head..end).find(|&i| !self.taken[i] && ok(i));
            let diverse = find(&|i| self.fits(i));
            // A tier reaching the end of the ordered prefix may continue past it: order the rest
            // before relaxing any rule, so the result is the same as with a full sort.
            if diverse.is_none() && self.tier_may_continue(end) {
                self.sort_rest();
                continue;
            }
            let pick = diverse
                .or_else(|| find(&|i| self.adjacent_ok(i)))
                .unwrap_or(self.head);
            self.take(pick);
        }
    }

    fn into_items(self) -> Vec<SessionItem> {
        self.picks
            .iter()
            .map(|&i| {
                let s = &self.scored[i];
                SessionItem {
                    video_id: self.pool.entry(s.candidate.index).video.id,
                    creator_id: self.creators[i],
                    score: finite_or_zero(s.score),
                    reason: s.candidate.reason,
                    signals: s.signals,
                }
            })
            .collect()
    }
}

/// Upper bounds on how many positions the candidates left can fill under the diversity rules,
/// kept up to date as picks are made and undone.
struct CreatorBound {
    /// All candidates left, whatever their tier.
    all: Capacity,
    /// The candidates left of each tier. The positions left take all of the head's tier (or as
    /// many as they hold), then all of the next tier, and so on: each such run of one tier must
    /// be fillable by that tier alone.
    tiers: [Capacity; 4],
}

impl CreatorBound {
    /// The bound before any pick.
    fn new(creators: &[CreatorId], scored: &[ScoredCandidate]) -> Self {
        let mut all = Capacity::builder();
        let mut tiers: [_; 4] = std::array::from_fn(|_| Capacity::builder());
        for (&c, s) in creators.iter().zip(scored) {
            all.add(c);
            tiers[usize::from(tier(s))].add(c);
        }
        Self {
            all: all.build(),
            tiers: tiers.map(CapacityBuilder::build),
        }
    }

    fn take(&mut self, c: CreatorId, tier: u8) {
        self.all.take(c);
        self.tiers[usize::from(tier)].take(c);
    }

    fn untake(&mut self, c: CreatorId, tier: u8) {
        self.all.untake(c);
        self.tiers[usize::from(tier)].untake(c);
    }

    /// Whether `slots` positions could still be filled, the first ones from `head_tier`, where
    /// one creator fills at most `most(n)` of `n` consecutive positions.
    fn can_fill(&mut self, slots: usize, head_tier: u8, most: impl Fn(usize) -> usize) -> bool {
        if !self.all.can_fill(slots, most(slots)) {
            return false;
        }
        let mut rest = slots;
        for capacity in &mut self.tiers[usize::from(head_tier)..] {
            let run = rest.min(capacity.total);
            if run > 0 && !capacity.can_fill(run, most(run)) {
                return false;
            }
            rest -= run;
        }
        true
    }
}

/// How many positions some candidates can fill when one creator fills at most `cap` of them: the
/// sum over creators of min(candidates left, `cap`).
struct Capacity {
    left: HashMap<CreatorId, usize>,
    /// Candidates left.
    total: usize,
    /// `at_least[v]`: how many creators have at least `v` candidates left.
    at_least: Vec<usize>,
    cap: usize,
    /// The sum over creators of min(candidates left, `cap`).
    capacity: usize,
}

struct CapacityBuilder {
    left: HashMap<CreatorId, usize>,
}

impl CapacityBuilder {
    fn add(&mut self, c: CreatorId) {
        *self.left.entry(c).or_default() += 1;
    }

    fn build(self) -> Capacity {
        let most = self.left.values().copied().max().unwrap_or(0);
        let mut at_least = vec![0; most + 2];
        for &n in self.left.values() {
            at_least[n] += 1;
        }
        for v in (1..=most).rev() {
            at_least[v] += at_least[v + 1];
        }
        at_least[0] = 0; // unused: `capacity` sums from 1
        Capacity {
            total: self.left.values().sum(),
            left: self.left,
            at_least,
            cap: 0,
            capacity: 0,
        }
    }
}

impl Capacity {
    fn builder() -> CapacityBuilder {
        CapacityBuilder {
            left: HashMap::new(),
        }
    }

    /// Whether `slots` positions could be filled when one creator can fill at most `per_creator`.
    fn can_fill(&mut self, slots: usize, per_creator: usize) -> bool {
        // Beyond the largest count the capacity no longer grows.
        let cap = per_creator.min(self.at_least.len() - 1);
        while self.cap < cap {
            self.cap += 1;
            self.capacity += self.at_least[self.cap];
        }
        while self.cap > cap {
            self.capacity -= self.at_least[self.cap];
            self.cap -= 1;
        }
        self.capacity >= slots
    }

    fn take(&mut self, c: CreatorId) {
        if let Some(n) = self.left.get_mut(&c) {
            self.at_least[*n] -= 1;
            if *n <= self.cap {
                self.capacity -= 1;
            }
            *n -= 1;
            self.total -= 1;
        }
    }

    fn untake(&mut self, c: CreatorId) {
        if let Some(n) = self.left.get_mut(&c) {
            *n += 1;
            self.at_least[*n] += 1;
            if *n <= self.cap {
                self.capacity += 1;
            }
            self.total += 1;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::{Video, VideoStatus, Visibility};
    use chrono::TimeZone;
    use proptest::prelude::*;
    use uuid::Uuid;

    /// One candidate: its creator, its score (`None`: non-finite) and whether it was served.
    type Spec = (u8, Option<u8>, bool);

    /// A pool of one video per spec (video `n` by creator `spec.0`, all published at one time), and
    /// the scored candidates.
    fn scenario(specs: &[Spec]) -> (CandidatePool, Vec<ScoredCandidate>) {
        let at = Utc
            .with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
            .single()
            .expect("valid date");
        let videos = specs.iter().enumerate().map(|(n, &(creator, _, _))| Video {
            id: VideoId(Uuid::from_u128(n as u128 + 1)),
            creator_id: CreatorId(Uuid::from_u128(1_000 + u128::from(creator))),
            title: String::new(),
            duration_seconds: 30,
            status: VideoStatus::Published,
            visibility: Visibility::Public,
            media_key: String::new(),
            thumbnail_key: String::new(),
            published_at: Some(at),
            updated_at: at,
            deleted_at: None,
        });
        let pool = CandidatePool::build(videos, &HashMap::new(), &[]);
        let scored = (0..pool.len())
            .map(|index| {
                let n = pool.entries()[index].video.id.0.as_u128() as usize - 1;
                let (_, score, served) = specs[n];
                ScoredCandidate {
                    candidate: Candidate {
                        index: index as u32,
                        reason: Reason::Fresh,
                        previously_served: served,
                    },
                    signals: SignalValues::default(),
                    // Ties on purpose: the order must still be total and deterministic.
                    score: score.map_or(f64::NAN, |s| f64::from(s) / 16.0),
                }
            })
            .collect();
        (pool, scored)
    }

    fn rules(session_size: usize, window: usize, max: usize) -> RankingConfig {
        RankingConfig {
            session_size,
            diversity_window: window,
            max_per_creator_in_window: max,
            ..RankingConfig::default()
        }
    }

    /// What the plain relaxed greedy picks.
    fn greedy(
        pool: &CandidatePool,
        scored: Vec<ScoredCandidate>,
        config: &RankingConfig,
    ) -> Vec<SessionItem> {
        let target = config.session_size.min(scored.len());
        let mut scored = scored;
        scored.sort_unstable_by(compare);
        let sorted = scored.len();
        let mut selection = Selection::new(pool, scored, sorted, config, target);
        selection.fill_relaxed();
        selection.into_items()
    }

    /// Whether the creators meet both rules as the selector applies them.
    fn meets_rules(creators: &[CreatorId], config: &RankingConfig) -> bool {
        let lookback = config.diversity_window.saturating_sub(1);
        (0..creators.len()).all(|k| {
            let c = creators[k];
            let recent = &creators[k.saturating_sub(lookback)..k];
            (k == 0 || creators[k - 1] != c)
                && recent.iter().filter(|&&x| x == c).count() < config.max_per_creator_in_window
        })
    }

    /// Whether some tier-respecting arrangement of `target` candidates meets both rules: brute
    /// force over the candidates in order, each position taking any one of the head's tier.
    fn arrangement_exists(
        pool: &CandidatePool,
        scored: &[ScoredCandidate],
        config: &RankingConfig,
    ) -> bool {
        fn grow(
            tiers: &[u8],
            creators: &[CreatorId],
            taken: &mut Vec<bool>,
            placed: &mut Vec<CreatorId>,
            target: usize,
            config: &RankingConfig,
        ) -> bool {
            if placed.len() == target {
                return true;
            }
            let Some(head) = taken.iter().position(|t| !t) else {
                return false;
            };
            for i in head..tiers.len() {
                if taken[i] || tiers[i] != tiers[head] {
                    continue;
                }
                placed.push(creators[i]);
                if meets_rules(placed, config) {
                    taken[i] = true;
                    if grow(tiers, creators, taken, placed, target, config) {
                        return true;
                    }
                    taken[i] = false;
                }
                placed.pop();
            }
            false
        }
        let mut sorted = scored.to_vec();
        sorted.sort_unstable_by(compare);
        let tiers: Vec<u8> = sorted.iter().map(tier).collect();
        let creators: Vec<CreatorId> = sorted
            .iter()
            .map(|s| pool.entry(s.candidate.index).video.creator_id)
            .collect();
        let target = config.session_size.min(sorted.len());
        grow(
            &tiers,
            &creators,
            &mut vec![false; sorted.len()],
            &mut Vec::new(),
            target,
            config,
        )
    }

    fn creators(items: &[SessionItem]) -> Vec<CreatorId> {
        items.iter().map(|i| i.creator_id).collect()
    }

    fn ids(items: &[SessionItem]) -> Vec<VideoId> {
        items.iter().map(|i| i.video_id).collect()
    }

    fn spec(creators: u8) -> impl Strategy<Value = Spec> {
        (
            0..creators,
            prop_oneof![6 => (0u8..16).prop_map(Some), 1 => Just(None)],
            prop::bool::weighted(0.2),
        )
    }

    #[test]
    fn most_per_creator_bounds_what_the_rules_allow() {
        assert_eq!(most_per_creator(10, 10, 2), 2);
        assert_eq!(most_per_creator(200, 10, 2), 40);
        assert_eq!(most_per_creator(3, 10, 2), 2);
        assert_eq!(most_per_creator(1, 10, 2), 1);
        assert_eq!(most_per_creator(5, 1, 2), 3);
        assert_eq!(most_per_creator(5, 3, 5), 3);
        assert_eq!(most_per_creator(5, 10, 0), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// With tiers, ties and non-finite scores: whenever a tier-respecting arrangement meets the
        /// rules the selection does; the selection is the greedy one whenever that meets the
        /// rules, and whenever the selection does not.
        #[test]
        fn the_search_only_departs_from_the_greedy_to_meet_the_rules(
            specs in (1u8..=4).prop_flat_map(|k| prop::collection::vec(spec(k), 0..=7)),
            session in 0usize..=8,
            window in 0usize..=4,
            max in 0usize..=2,
        ) {
            let config = rules(session, window, max);
            let (pool, scored) = scenario(&specs);
            let items = select_diverse(&pool, scored.clone(), &config);
            prop_assert_eq!(items.len(), session.min(specs.len()));
            let baseline = greedy(&pool, scored.clone(), &config);
            let valid = meets_rules(&creators(&items), &config);
            if arrangement_exists(&pool, &scored, &config) {
                prop_assert!(valid, "{:?} gave {:?}", specs, creators(&items));
            }
            if meets_rules(&creators(&baseline), &config) || !valid {
                prop_assert_eq!(ids(&items), ids(&baseline));
            }
            // The tier order holds.
            let rank: HashMap<VideoId, u8> = scored
                .iter()
                .map(|s| (pool.entry(s.candidate.index).video.id, tier(s)))
                .collect();
            for pair in items.windows(2) {
                prop_assert!(rank[&pair[0].video_id] <= rank[&pair[1].video_id]);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Ordering only a prefix up front gives what ordering everything does, backtracking or not.
        #[test]
        fn ordering_a_prefix_picks_the_same_as_a_full_order(
            specs in (1u8..=12).prop_flat_map(|k| prop::collection::vec(spec(k), 0..300)),
            session in 1usize..40,
            window in 1usize..=10,
            max in 1usize..=3,
            prefix in 0usize..100,
        ) {
            let config = rules(session, window, max);
            let (pool, scored) = scenario(&specs);
            let partial = select_ordering_first(&pool, scored.clone(), &config, prefix);
            let full = select_ordering_first(&pool, scored, &config, usize::MAX);
            prop_assert_eq!(ids(&partial), ids(&full));
        }
    }
}
