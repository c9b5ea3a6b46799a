//! Offline evaluation: ranks, for every user of a holdout set, the items they did not interact
//! with in a training log, and measures how well each ranker puts the items they engaged with
//! later on top.
//!
//! Items become videos published at their first training event (each by its own creator unless
//! the log names one). The pool's stats, the users' affinity and "now" (the last training event)
//! come from the training log alone. Metrics per ranker, over the users who have holdout items:
//! NDCG@k, Recall@k and HitRate@k (binary relevance), catalog coverage (distinct items shown
//! across users over all items) and creator diversity (distinct creators per list over k).

use chrono::{DateTime, TimeZone, Utc};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;
use vrs_domain::factors;
use vrs_domain::ranking::{self, RankingConfig, UserContext};
use vrs_domain::{
    CandidatePool, CreatorId, EngagementEvent, EventType, UserId, Video, VideoId, VideoStats,
    VideoStatus, Visibility, Weights,
};

/// One training interaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Interaction {
    pub user: String,
    pub item: String,
    pub event_type: EventType,
    pub completion: Option<f64>,
    pub at: DateTime<Utc>,
    /// The item's creator, when the log knows it.
    pub creator: Option<String>,
}

/// What one ranker achieved.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RankerReport {
    pub ranker: String,
    pub ndcg: f64,
    pub recall: f64,
    pub hit_rate: f64,
    pub coverage: f64,
    pub creator_diversity: f64,
}

/// The whole evaluation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    pub k: usize,
    /// Holdout users with at least one holdout item known to the training log and not already
    /// theirs in it.
    pub users: usize,
    pub items: usize,
    pub train_events: usize,
    pub rankers: Vec<RankerReport>,
}

/// Why an evaluation could not run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvaluateError {
    #[error("the training log has no events")]
    EmptyTrain,
    #[error("no holdout user has an item the training log knows")]
    NothingToEvaluate,
    #[error("k must be at least 1")]
    ZeroK,
}

/// One ranker: a user's top-k list.
type Ranker<'a> = Box<dyn FnMut(UserId) -> Vec<VideoId> + 'a>;

/// Dense ids for the log's string names.
#[derive(Default)]
struct Names(HashMap<String, u128>);

impl Names {
    fn id(&mut self, name: &str, space: u128) -> Uuid {
        let next = self.0.len() as u128 + 1;
        let n = *self.0.entry(name.to_owned()).or_insert(next);
        Uuid::from_u128((space << 96) | n)
    }
}

/// Runs every ranker over the holdout users. `seed` drives the random ranker.
pub fn evaluate(
    train: &[Interaction],
    holdout: &[(String, String)],
    k: usize,
    prior_views: f64,
    params: factors::FactorParams,
    weights: Weights,
    seed: u64,
) -> Result<Report, EvaluateError> {
    if k == 0 {
        return Err(EvaluateError::ZeroK);
    }
    let now = train
        .iter()
        .map(|e| e.at)
        .max()
        .ok_or(EvaluateError::EmptyTrain)?;
    let (mut users, mut items, mut creators) =
        (Names::default(), Names::default(), Names::default());
    let mut first_seen: HashMap<VideoId, (DateTime<Utc>, CreatorId)> = HashMap::new();
    let mut stats: HashMap<VideoId, VideoStats> = HashMap::new();
    let mut seen: HashMap<UserId, HashSet<VideoId>> = HashMap::new();
    let mut affinity: HashMap<UserId, HashMap<CreatorId, f64>> = HashMap::new();
    let mut engaged_users: HashMap<VideoId, HashSet<UserId>> = HashMap::new();
    // An item's creator, from any line that names one (the first such line wins); an item no
    // line names a creator for is its own creator, in an id space of its own.
    let mut named: HashMap<&str, &str> = HashMap::new();
    for e in train {
        if let Some(c) = &e.creator {
            named.entry(e.item.as_str()).or_insert(c.as_str());
        }
    }
    for (n, e) in train.iter().enumerate() {
        let user = UserId(users.id(&e.user, 1));
        let video = VideoId(items.id(&e.item, 2));
        let creator = match named.get(e.item.as_str()) {
            Some(c) => CreatorId(creators.id(c, 3)),
            None => CreatorId(items.id(&e.item, 4)),
        };
        let first = first_seen.entry(video).or_insert((e.at, creator));
        first.0 = first.0.min(e.at);
        let creator = first.1;
        let event = EngagementEvent {
            event_id: Uuid::from_u128(n as u128),
            user_id: user,
            video_id: video,
            creator_id: creator,
            event_type: e.event_type,
            watch_ms: None,
            completion: e.completion,
            occurred_at: e.at,
        };
        stats.entry(video).or_default().add(&event);
        seen.entry(user).or_default().insert(video);
        *affinity
            .entry(user)
            .or_default()
            .entry(creator)
            .or_default() += e.event_type.affinity_weight();
        engaged_users.entry(video).or_default().insert(user);
    }
    let videos: Vec<Video> = first_seen
        .iter()
        .map(|(&id, &(at, creator))| Video {
            id,
            creator_id: creator,
            title: String::new(),
            duration_seconds: 0,
            status: VideoStatus::Published,
            visibility: Visibility::Public,
            media_key: String::new(),
            thumbnail_key: String::new(),
            published_at: Some(at),
            updated_at: at,
            deleted_at: None,
        })
        .collect();
    let mut smoothed = CandidatePool::build(videos.clone(), &stats, &[]);
    smoothed.smooth(prior_views);
    let raw = CandidatePool::build(videos, &stats, &[]);

    // Holdout: per known user, the known items not seen in training.
    let mut wanted: HashMap<UserId, HashSet<VideoId>> = HashMap::new();
    for (user, item) in holdout {
        let (Some(&u), Some(&i)) = (users.0.get(user), items.0.get(item)) else {
            continue;
        };
        let (user, video) = (
            UserId(Uuid::from_u128((1 << 96) | u)),
            VideoId(Uuid::from_u128((2 << 96) | i)),
        );
        if !seen.get(&user).is_some_and(|s| s.contains(&video)) {
            wanted.entry(user).or_default().insert(video);
        }
    }
    if wanted.is_empty() {
        return Err(EvaluateError::NothingToEvaluate);
    }
    let mut order: Vec<UserId> = wanted.keys().copied().collect();
    order.sort_unstable();

    let mut popular: Vec<(usize, VideoId)> = engaged_users
        .iter()
        .map(|(v, users)| (users.len(), *v))
        .collect();
    popular.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let popular: Vec<VideoId> = popular.into_iter().map(|(_, v)| v).collect();
    let mut all: Vec<VideoId> = first_seen.keys().copied().collect();
    all.sort_unstable();
    let creator_of = |v: &VideoId| first_seen.get(v).map(|f| f.1);

    // The learned model, trained on the training log's per-pair engagement and used as in
    // production: each user folded in from their training interactions, scores calibrated.
    let pairs = crate::model::engagements(train.iter().map(|e| {
        let user = UserId(Uuid::from_u128((1 << 96) | users.0[&e.user]));
        let video = VideoId(Uuid::from_u128((2 << 96) | items.0[&e.item]));
        let creator = first_seen[&video].1;
        (user, video, creator, e.event_type.affinity_weight(), e.at)
    }));
    // Its knobs are picked on the training log alone (a split of it), never on the holdout.
    let params = if params.auto_tune {
        crate::model::tune(&pairs, params).0
    } else {
        params
    };
    let model = crate::model::LoadedModel::new("evaluate", crate::model::fit(&pairs, params, now));
    let mut history: HashMap<UserId, Vec<(VideoId, CreatorId, f32)>> = HashMap::new();
    for e in &pairs {
        let strength = crate::model::decayed(e.strength, e.at, now, &params);
        history
            .entry(e.user)
            .or_default()
            .push((e.video, e.creator, strength));
    }
    let user_vectors =
        |user: UserId| model.user_vectors(history.get(&user).map_or(&[], Vec::as_slice));
    let model_scores = |user: UserId, videos: &[VideoId]| -> Vec<f64> {
        let with_creators: Vec<(VideoId, CreatorId)> = videos
            .iter()
            .map(|v| {
                (
                    *v,
                    first_seen.get(v).map_or(CreatorId(Uuid::nil()), |f| f.1),
                )
            })
            .collect();
        model.score(&user_vectors(user), &with_creators)
    };

    let config = RankingConfig {
        session_size: k,
        ..RankingConfig::default()
    };
    let pipeline = |pool: &CandidatePool, user: UserId, with_model: bool| -> Vec<VideoId> {
        let context = UserContext {
            user_id: user,
            now,
            follows: HashSet::new(),
            affinity: Some(
                affinity
                    .get(&user)
                    .map(|a| {
                        a.iter()
                            .filter(|(_, w)| **w > 0.0)
                            .map(|(c, w)| (*c, *w))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            watched: seen.get(&user).cloned().unwrap_or_default(),
            recently_served: HashSet::new(),
            hidden: vrs_domain::Hidden::default(),
        };
        let candidates =
            ranking::filter_candidates(pool, &context, ranking::all_candidates(pool), &config);
        let scores =
            with_model.then(|| model_scores(user, &ranking::candidate_ids(pool, &candidates)));
        let (_, scored) =
            ranking::score_candidates(pool, &context, &candidates, &weights, scores.as_deref());
        ranking::select_diverse(pool, scored, &config)
            .into_iter()
            .map(|i| i.video_id)
            .collect()
    };
    let unseen_top = |list: &[VideoId], user: UserId| -> Vec<VideoId> {
        let seen = seen.get(&user);
        list.iter()
            .filter(|v| !seen.is_some_and(|s| s.contains(v)))
            .take(k)
            .copied()
            .collect()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let rankers: Vec<(&str, Ranker<'_>)> = vec![
        ("pipeline", Box::new(|u| pipeline(&smoothed, u, true))),
        (
            "pipeline_without_model",
            Box::new(|u| pipeline(&smoothed, u, false)),
        ),
        (
            "pipeline_unsmoothed",
            Box::new(|u| pipeline(&raw, u, false)),
        ),
        (
            "model",
            Box::new(|u| crate::model::top_k(model.raw_scores(&user_vectors(u)), seen.get(&u), k)),
        ),
        ("popularity", Box::new(|u| unseen_top(&popular, u))),
        (
            "random",
            Box::new(move |u| {
                let mut shuffled = all.clone();
                shuffled.shuffle(&mut rng);
                unseen_top(&shuffled, u)
            }),
        ),
    ];
    let reports = rankers
        .into_iter()
        .map(|(name, mut rank)| {
            let (mut ndcg, mut recall, mut hits, mut diversity) = (0.0, 0.0, 0.0, 0.0);
            let mut shown: HashSet<VideoId> = HashSet::new();
            for user in &order {
                let relevant = &wanted[user];
                let list = rank(*user);
                let gains: f64 = list
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| relevant.contains(v))
                    .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
                    .sum();
                let ideal: f64 = (0..relevant.len().min(k))
                    .map(|i| 1.0 / ((i + 2) as f64).log2())
                    .sum();
                let found = list.iter().filter(|v| relevant.contains(v)).count();
                ndcg += gains / ideal;
                recall += found as f64 / relevant.len() as f64;
                hits += f64::from(u8::from(found > 0));
                let distinct: HashSet<_> = list.iter().filter_map(creator_of).collect();
                diversity += distinct.len() as f64 / list.len().max(1) as f64;
                shown.extend(list);
            }
            let n = order.len() as f64;
            RankerReport {
                ranker: name.to_owned(),
                ndcg: ndcg / n,
                recall: recall / n,
                hit_rate: hits / n,
                coverage: shown.len() as f64 / first_seen.len() as f64,
                creator_diversity: diversity / n,
            }
        })
        .collect();
    Ok(Report {
        k,
        users: order.len(),
        items: first_seen.len(),
        train_events: train.len(),
        rankers: reports,
    })
}

/// A time from unix seconds (clamped into chrono's range).
pub fn unix_seconds(ts: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(ts, 0).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: &str, item: &str, event_type: EventType, ts: i64) -> Interaction {
        Interaction {
            user: user.to_owned(),
            item: item.to_owned(),
            event_type,
            completion: None,
            at: unix_seconds(ts),
            creator: None,
        }
    }

    #[test]
    fn a_perfect_ranker_and_the_metrics_add_up() {
        // Everyone likes "hit"; u1 has not seen it yet.
        let mut train = Vec::new();
        for (n, u) in ["u2", "u3", "u4", "u5"].iter().enumerate() {
            train.push(event(u, "hit", EventType::View, 100 + n as i64));
            train.push(event(u, "hit", EventType::Like, 100 + n as i64));
        }
        train.push(event("u1", "other", EventType::View, 90));
        for i in 0..20 {
            train.push(event("u9", &format!("filler{i}"), EventType::View, 50));
        }
        let holdout = vec![("u1".to_owned(), "hit".to_owned())];
        let report = evaluate(
            &train,
            &holdout,
            5,
            10.0,
            factors::FactorParams::default(),
            Weights::DEFAULT,
            1,
        )
        .expect("report");
        assert_eq!(report.users, 1);
        let by = |name: &str| {
            report
                .rankers
                .iter()
                .find(|r| r.ranker == name)
                .cloned()
                .expect(name)
        };
        let popularity = by("popularity");
        assert_eq!(popularity.ndcg, 1.0, "the most popular item is first");
        assert_eq!((popularity.recall, popularity.hit_rate), (1.0, 1.0));
        assert!(by("pipeline").hit_rate == 1.0, "{report:?}");
        for r in &report.rankers {
            assert!(
                (0.0..=1.0).contains(&r.ndcg) && (0.0..=1.0).contains(&r.coverage),
                "{r:?}"
            );
            assert!(r.creator_diversity <= 1.0, "{r:?}");
        }
    }

    #[test]
    fn nothing_to_evaluate_is_an_error() {
        let train = vec![event("u1", "a", EventType::View, 1)];
        assert_eq!(
            evaluate(
                &train,
                &[("nobody".into(), "a".into())],
                10,
                10.0,
                Default::default(),
                Weights::DEFAULT,
                1
            ),
            Err(EvaluateError::NothingToEvaluate)
        );
        assert_eq!(
            evaluate(&[], &[], 10, 10.0, Default::default(), Weights::DEFAULT, 1),
            Err(EvaluateError::EmptyTrain)
        );
        assert_eq!(
            evaluate(
                &train,
                &[],
                0,
                10.0,
                Default::default(),
                Weights::DEFAULT,
                1
            ),
            Err(EvaluateError::ZeroK)
        );
    }
}
