//! The learned model behind the model signal: training from engagement, the artifact every replica
//! loads, scoring with fold-in, and offline metrics.
//!
//! The model is implicit-feedback matrix factorization ([`vrs_domain::factors`]). An interaction is
//! a (user, video) pair with a positive engagement strength: the sum of
//! [`vrs_domain::EventType::affinity_weight`] over the user's events on the video (a like weighs
//! more than a view; a skip, an unlike or "not interested" take away).
//!
//! Two factorizations are trained on the same interactions: users × videos, and users × creators
//! (a user's strengths summed per creator). Short videos churn: most of a day's candidates are
//! newer than the model or have few viewers, while creators last; the creator side scores a video
//! the model never saw by its creator, and carries the signal where per-video data is thin. A
//! logistic calibration combines both raw preferences into a probability.
//!
//! The artifact holds only the videos' and creators' sides: a user's vectors are folded in at
//! request time from their recent interactions, so the score follows what the user just did, and a
//! user the model never saw still gets one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use vrs_domain::factors::{self, FactorModel, FactorParams};
use vrs_domain::{CreatorId, IdMap, UserId, VideoId};

/// The artifact's leading bytes.
pub const ARTIFACT_MAGIC: &[u8; 4] = b"VRSM";
/// The artifact encoding's version; a replica refuses other versions.
pub const ARTIFACT_FORMAT: u32 = 2;
/// The cut-off of the offline metrics stored with every version.
pub const METRICS_K: usize = 10;

/// One user's engagement with one video, summed over the training window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Engagement {
    pub user: UserId,
    pub video: VideoId,
    pub creator: CreatorId,
    /// Sum of the events' affinity weights; only positive sums are interactions.
    pub strength: f32,
    /// The latest event of the pair.
    pub at: DateTime<Utc>,
}

/// One side of the model: a factorization and the ids of its rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Side<Id> {
    pub ids: Vec<Id>,
    pub model: FactorModel,
    /// The vector of a user with no history on this side (the training users' mean: the model's
    /// idea of what most people engage with).
    pub default_user: Vec<f32>,
}

/// How the two sides' raw preferences become a probability: `σ(video·rv + creator·rc + bias)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Blend {
    pub video: f64,
    pub creator: f64,
    pub bias: f64,
}

impl Blend {
    fn logit(&self, rv: f32, rc: f32) -> f64 {
        self.video * f64::from(rv) + self.creator * f64::from(rc) + self.bias
    }

    fn probability(&self, rv: f32, rc: f32) -> f64 {
        let p = 1.0 / (1.0 + (-self.logit(rv, rc)).exp());
        if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.5
        }
    }
}

/// What every replica loads: both sides, each video's creator, and the blend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub trained_at: DateTime<Utc>,
    pub videos: Side<VideoId>,
    /// The creator of each of `videos.ids`, in the same order.
    pub video_creators: Vec<CreatorId>,
    pub creators: Side<CreatorId>,
    pub blend: Blend,
}

/// Why an artifact could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("not a model artifact (bad magic bytes)")]
    NotAnArtifact,
    #[error("artifact format {0} is not supported (this build reads format {ARTIFACT_FORMAT})")]
    Format(u32),
    #[error("damaged artifact: {0}")]
    Damaged(String),
}

impl ModelArtifact {
    /// Magic, format (u32, little-endian), then the postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        let floats = self.videos.model.item_factors.len() + self.creators.model.item_factors.len();
        let mut out = Vec::with_capacity(8 + floats * 4 + 1024);
        out.extend_from_slice(ARTIFACT_MAGIC);
        out.extend_from_slice(&ARTIFACT_FORMAT.to_le_bytes());
        // Encoding plain data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let rest = bytes
            .strip_prefix(ARTIFACT_MAGIC.as_slice())
            .ok_or(ArtifactError::NotAnArtifact)?;
        let (format, body) = rest
            .split_first_chunk::<4>()
            .ok_or(ArtifactError::NotAnArtifact)?;
        let format = u32::from_le_bytes(*format);
        if format != ARTIFACT_FORMAT {
            return Err(ArtifactError::Format(format));
        }
        let artifact: Self =
            postcard::from_bytes(body).map_err(|e| ArtifactError::Damaged(e.to_string()))?;
        fn side_ok<Id>(side: &Side<Id>) -> bool {
            let dim = side.model.dim();
            side.model.items == side.ids.len()
                && dim.checked_mul(side.ids.len()) == Some(side.model.item_factors.len())
                && dim.checked_mul(dim) == Some(side.model.gramian.len())
                && side.default_user.len() == dim
        }
        fn finite<Id>(side: &Side<Id>) -> bool {
            side.model.item_factors.iter().all(|x| x.is_finite())
                && side.model.gramian.iter().all(|x| x.is_finite())
                && side.default_user.iter().all(|x| x.is_finite())
        }
        let blend = &artifact.blend;
        if !(finite(&artifact.videos)
            && finite(&artifact.creators)
            && [blend.video, blend.creator, blend.bias]
                .iter()
                .all(|x| x.is_finite()))
        {
            return Err(ArtifactError::Damaged("a number is not finite".into()));
        }
        let consistent = side_ok(&artifact.videos)
            && side_ok(&artifact.creators)
            && artifact.video_creators.len() == artifact.videos.ids.len();
        if !consistent {
            return Err(ArtifactError::Damaged(
                "sizes do not match its dimensions".into(),
            ));
        }
        Ok(artifact)
    }
}

/// A user as the model sees them: one vector per side.
#[derive(Clone, Debug, PartialEq)]
pub struct UserVectors {
    pub video: Vec<f32>,
    pub creator: Vec<f32>,
}

/// A model ready to score: its artifact and indexes from ids to rows.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    version: String,
    artifact: ModelArtifact,
    videos: IdMap<VideoId, usize>,
    creators: IdMap<CreatorId, usize>,
    /// The creator row of each video row.
    video_creator_rows: Vec<Option<usize>>,
}

impl LoadedModel {
    pub fn new(version: impl Into<String>, artifact: ModelArtifact) -> Self {
        let videos: IdMap<VideoId, usize> = artifact
            .videos
            .ids
            .iter()
            .enumerate()
            .map(|(i, v)| (*v, i))
            .collect();
        let creators: IdMap<CreatorId, usize> = artifact
            .creators
            .ids
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, i))
            .collect();
        let video_creator_rows = artifact
            .video_creators
            .iter()
            .map(|c| creators.get(c).copied())
            .collect();
        Self {
            version: version.into(),
            artifact,
            videos,
            creators,
            video_creator_rows,
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    /// The vectors of a user whose recent interactions are `recent` (video, its creator,
    /// strength): each side folded in from what it knows (strengths summed per creator); a side
    /// that knows none of them gives its no-history vector.
    pub fn user_vectors(&self, recent: &[(VideoId, CreatorId, f32)]) -> UserVectors {
        let videos: Vec<(usize, f32)> = recent
            .iter()
            .filter_map(|(v, _, s)| self.videos.get(v).map(|&i| (i, *s)))
            .collect();
        let mut by_creator: HashMap<usize, f32> = HashMap::new();
        for (_, c, s) in recent {
            if let Some(&i) = self.creators.get(c) {
                *by_creator.entry(i).or_default() += s;
            }
        }
        let mut creators: Vec<(usize, f32)> = by_creator.into_iter().collect();
        creators.sort_unstable_by_key(|&(i, _)| i);
        let fold = |side_known: &[(usize, f32)], model: &FactorModel, default: &[f32]| {
            if side_known.is_empty() {
                default.to_vec()
            } else {
                model.fold_in(side_known)
            }
        };
        UserVectors {
            video: fold(
                &videos,
                &self.artifact.videos.model,
                &self.artifact.videos.default_user,
            ),
            creator: fold(
                &creators,
                &self.artifact.creators.model,
                &self.artifact.creators.default_user,
            ),
        }
    }

    /// Calibrated scores in [0, 1] of `videos` (video, its creator), in their order. A side that
    /// does not know the video (or its creator) contributes a raw preference of 0; a video neither
    /// side knows (a new creator's upload) gets the mean score of the others, so the model neither
    /// favours nor buries what it has no evidence about.
    pub fn score(&self, user: &UserVectors, videos: &[(VideoId, CreatorId)]) -> Vec<f64> {
        let scores: Vec<Option<f64>> = videos
            .iter()
            .map(|(v, c)| {
                let (video, creator) = (self.videos.get(v), self.creators.get(c));
                (video.is_some() || creator.is_some()).then(|| {
                    let rv = video.map_or(0.0, |&i| {
                        self.artifact.videos.model.raw_score(&user.video, i)
                    });
                    let rc = creator.map_or(0.0, |&i| {
                        self.artifact.creators.model.raw_score(&user.creator, i)
                    });
                    self.artifact.blend.probability(rv, rc)
                })
            })
            .collect();
        let known: Vec<f64> = scores.iter().flatten().copied().collect();
        let neutral = if known.is_empty() {
            0.5
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        scores.into_iter().map(|s| s.unwrap_or(neutral)).collect()
    }

    /// The blend's logit (same order as the calibrated scores) of every video the model knows.
    pub fn raw_scores<'a>(
        &'a self,
        user: &'a UserVectors,
    ) -> impl Iterator<Item = (VideoId, f32)> + 'a {
        let (videos, creators) = (&self.artifact.videos.model, &self.artifact.creators.model);
        self.artifact
            .videos
            .ids
            .iter()
            .zip(&self.video_creator_rows)
            .enumerate()
            .map(move |(i, (v, c))| {
                let rv = videos.raw_score(&user.video, i);
                let rc = c.map_or(0.0, |c| creators.raw_score(&user.creator, c));
                (*v, self.artifact.blend.logit(rv, rc) as f32)
            })
    }
}

/// `strength` of an interaction last seen at `at`, as of `now`: halved every
/// `recency_half_life_days` of age (unchanged when that is 0).
pub fn decayed(strength: f32, at: DateTime<Utc>, now: DateTime<Utc>, params: &FactorParams) -> f32 {
    if params.recency_half_life_days <= 0.0 {
        return strength;
    }
    let age_days = (now - at).num_seconds().max(0) as f64 / 86_400.0;
    (f64::from(strength) * 0.5f64.powf(age_days / params.recency_half_life_days)) as f32
}

/// Trains one side on `(user, row, strength)`: dense indexes in first-met order.
fn train_side<Id: Copy + Eq + std::hash::Hash>(
    pairs: &[(UserId, Id, f32)],
    users: &HashMap<UserId, usize>,
    params: FactorParams,
) -> (Side<Id>, Vec<f32>, HashMap<Id, usize>) {
    let mut index: HashMap<Id, usize> = HashMap::new();
    let mut ids = Vec::new();
    let mut interactions = Vec::with_capacity(pairs.len());
    for &(user, id, strength) in pairs {
        let item = *index.entry(id).or_insert_with(|| {
            ids.push(id);
            ids.len() - 1
        });
        interactions.push(factors::Interaction {
            user: users[&user],
            item,
            strength,
        });
    }
    let (model, user_factors) = factors::train_als(&interactions, users.len(), ids.len(), params);
    let dim = model.dim();
    let mut default_user = vec![0.0f32; dim];
    if !users.is_empty() {
        for row in user_factors.chunks_exact(dim) {
            for (d, x) in default_user.iter_mut().zip(row) {
                *d += x;
            }
        }
        let n = users.len() as f32;
        default_user.iter_mut().for_each(|d| *d /= n);
    }
    (
        Side {
            ids,
            model,
            default_user,
        },
        user_factors,
        index,
    )
}

/// Trains a model on `engagements` (pairs with a positive strength; a pair given twice adds up):
/// both sides, then the blend, by a logistic regression of "engaged" on the two raw preferences
/// over a sample of the interactions (at most 50,000) and as many random videos.
pub fn fit(engagements: &[Engagement], params: FactorParams, now: DateTime<Utc>) -> ModelArtifact {
    let mut ordered: Vec<&Engagement> = engagements
        .iter()
        .filter(|e| e.strength > 0.0 && e.strength.is_finite())
        .collect();
    // Dense indexes in a fixed order: the same data trains the same model.
    ordered.sort_by_key(|e| (e.user, e.video));
    let mut users: HashMap<UserId, usize> = HashMap::new();
    let mut video_pairs = Vec::with_capacity(ordered.len());
    let mut creator_sums: HashMap<(UserId, CreatorId), f32> = HashMap::new();
    let mut creator_of: HashMap<VideoId, CreatorId> = HashMap::new();
    for e in &ordered {
        let next = users.len();
        users.entry(e.user).or_insert(next);
        let strength = decayed(e.strength, e.at, now, &params);
        video_pairs.push((e.user, e.video, strength));
        *creator_sums.entry((e.user, e.creator)).or_default() += strength;
        creator_of.entry(e.video).or_insert(e.creator);
    }
    let mut creator_pairs: Vec<(UserId, CreatorId, f32)> = creator_sums
        .into_iter()
        .map(|((u, c), s)| (u, c, s))
        .collect();
    creator_pairs.sort_unstable_by_key(|&(u, c, _)| (u, c));
    let (videos, video_users, video_index) = train_side(&video_pairs, &users, params);
    // When every video has a creator of its own, the creator side would repeat the video side:
    // it is left empty (and its weight in the blend is then fitted on zeros).
    let distinct_creators: HashSet<CreatorId> = creator_of.values().copied().collect();
    if distinct_creators.len() == creator_of.len() {
        creator_pairs.clear();
    }
    let (creators, creator_users, creator_index) = train_side(&creator_pairs, &users, params);
    let video_creators: Vec<CreatorId> = videos.ids.iter().map(|v| creator_of[v]).collect();

    // The blend: engaged pairs against random videos of the catalog, as the two raw preferences.
    let dim = params.dim.max(1);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(params.seed);
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    let sample = video_pairs.len().min(50_000);
    if !videos.ids.is_empty() {
        for _ in 0..sample {
            let (u, v, _) = video_pairs[rand::Rng::gen_range(&mut rng, 0..video_pairs.len())];
            let row = users[&u];
            let (uv, uc) = (
                &video_users[row * dim..(row + 1) * dim],
                &creator_users[row * dim..(row + 1) * dim],
            );
            let j = rand::Rng::gen_range(&mut rng, 0..videos.ids.len());
            for (video, label) in [(video_index[&v], 1.0), (j, 0.0)] {
                let rc = creator_index
                    .get(&video_creators[video])
                    .map_or(0.0, |&c| creators.model.raw_score(uc, c));
                features.push(vec![
                    f64::from(videos.model.raw_score(uv, video)),
                    f64::from(rc),
                ]);
                labels.push(label);
            }
        }
    }
    let blend = match factors::logistic_fit(&features, &labels).as_slice() {
        [video, creator, bias] if !features.is_empty() => Blend {
            video: *video,
            creator: *creator,
            bias: *bias,
        },
        _ => Blend {
            video: 1.0,
            creator: 1.0,
            bias: 0.0,
        },
    };
    ModelArtifact {
        trained_at: now,
        videos,
        video_creators,
        creators,
        blend,
    }
}

/// Sums events into per-pair engagements: `(user, video, creator, affinity weight, time)` in, one
/// [`Engagement`] per pair out (positive sums only).
pub fn engagements(
    events: impl IntoIterator<Item = (UserId, VideoId, CreatorId, f64, DateTime<Utc>)>,
) -> Vec<Engagement> {
    let mut pairs: HashMap<(UserId, VideoId), (CreatorId, f64, DateTime<Utc>)> = HashMap::new();
    for (user, video, creator, weight, at) in events {
        let entry = pairs.entry((user, video)).or_insert((creator, 0.0, at));
        entry.1 += weight;
        entry.2 = entry.2.max(at);
    }
    let mut out: Vec<Engagement> = pairs
        .into_iter()
        .filter(|(_, (_, s, _))| *s > 0.0)
        .map(|((user, video), (creator, strength, at))| Engagement {
            user,
            video,
            creator,
            strength: strength as f32,
            at,
        })
        .collect();
    out.sort_by_key(|e| (e.user, e.video));
    out
}

/// Offline metrics of a training run, stored with the version in the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OfflineMetrics {
    /// NDCG@[`METRICS_K`] of the model on the temporal holdout ([`temporal_split`], 20 %):
    /// every measured user's unseen videos ranked, their later engagements to find.
    pub ndcg_at_10: f64,
    pub recall_at_10: f64,
    /// NDCG@10 of popularity (videos by number of engaged users) on the same holdout.
    pub popularity_ndcg_at_10: f64,
    /// Holdout users measured.
    pub holdout_users: usize,
    /// What the shipped model was trained on: all of the data, with `params`.
    pub users: usize,
    pub videos: usize,
    pub interactions: usize,
    /// Tuning, measuring and the final training together.
    pub training_seconds: f64,
    /// The knobs used (chosen by [`tune`] when `auto_tune` is on).
    pub params: FactorParams,
}

/// NDCG@k and recall@k of one ranked list against a set of relevant videos.
pub fn ndcg_recall(list: &[VideoId], relevant: &HashSet<VideoId>, k: usize) -> (f64, f64) {
    if relevant.is_empty() || k == 0 {
        return (0.0, 0.0);
    }
    let gains: f64 = list
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, v)| relevant.contains(v))
        .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(k))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let found = list.iter().take(k).filter(|v| relevant.contains(v)).count();
    (gains / ideal, found as f64 / relevant.len() as f64)
}

/// The top `k` of `scored` (higher first, ties by id), leaving out `exclude`.
pub fn top_k(
    scored: impl Iterator<Item = (VideoId, f32)>,
    exclude: Option<&HashSet<VideoId>>,
    k: usize,
) -> Vec<VideoId> {
    let mut all: Vec<(f32, VideoId)> = scored
        .filter(|(v, _)| !exclude.is_some_and(|e| e.contains(v)))
        .map(|(v, s)| (s, v))
        .collect();
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &(f32, VideoId), b: &(f32, VideoId)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    all.select_nth_unstable_by(k - 1, cmp);
    all.truncate(k);
    all.sort_unstable_by(cmp);
    all.into_iter().map(|(_, v)| v).collect()
}

/// Fewest users with both a past and a future for a global temporal split; below it the split
/// is per user.
const MIN_SPLIT_USERS: usize = 10;

/// A temporal split into a past to train on and a future to find: the latest `share` of all
/// pairs (by time), as a deployment sees it; when fewer than [`MIN_SPLIT_USERS`] users would have
/// both, each user's latest `share` of pairs instead (users with 5 pairs or more).
pub fn temporal_split(data: &[Engagement], share: f64) -> (Vec<Engagement>, Vec<Engagement>) {
    let share = share.clamp(0.0, 0.5);
    let mut ordered: Vec<&Engagement> = data.iter().collect();
    ordered.sort_by_key(|e| (e.at, e.user, e.video));
    let cut = ((ordered.len() as f64) * (1.0 - share)) as usize;
    let (past, future) = ordered.split_at(cut.min(ordered.len()));
    let before: HashSet<UserId> = past.iter().map(|e| e.user).collect();
    let both: HashSet<UserId> = future
        .iter()
        .map(|e| e.user)
        .filter(|u| before.contains(u))
        .collect();
    if both.len() >= MIN_SPLIT_USERS {
        return (
            past.iter().map(|e| **e).collect(),
            future.iter().map(|e| **e).collect(),
        );
    }
    let mut by_user: HashMap<UserId, Vec<&Engagement>> = HashMap::new();
    for e in ordered {
        by_user.entry(e.user).or_default().push(e);
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for pairs in by_user.values() {
        let held = if pairs.len() >= 5 {
            ((pairs.len() as f64 * share).ceil() as usize).max(1)
        } else {
            0
        };
        let (p, f) = pairs.split_at(pairs.len() - held);
        train.extend(p.iter().map(|e| **e));
        test.extend(f.iter().map(|e| **e));
    }
    (train, test)
}

/// How a model trained on a past found the future's engagements.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Measured {
    pub ndcg: f64,
    pub recall: f64,
    pub popularity_ndcg: f64,
    pub users: usize,
}

/// Trains on `train` (as of its latest pair) and ranks, for every user with pairs in both parts,
/// the videos not in their past: NDCG@10 and Recall@10 of their future videos (known to `train`),
/// and popularity's NDCG@10 on the same users.
pub fn measure(train: &[Engagement], test: &[Engagement], params: FactorParams) -> Measured {
    let Some(now) = train.iter().map(|e| e.at).max() else {
        return Measured::default();
    };
    let twin = LoadedModel::new("holdout", fit(train, params, now));
    let mut seen: HashMap<UserId, Vec<(VideoId, CreatorId, f32)>> = HashMap::new();
    let mut engaged_users: HashMap<VideoId, usize> = HashMap::new();
    for e in train {
        seen.entry(e.user).or_default().push((
            e.video,
            e.creator,
            decayed(e.strength, e.at, now, &params),
        ));
        *engaged_users.entry(e.video).or_default() += 1;
    }
    let mut wanted: HashMap<UserId, HashSet<VideoId>> = HashMap::new();
    for e in test {
        if let Some(s) = seen.get(&e.user)
            && !s.iter().any(|(v, _, _)| *v == e.video)
            && engaged_users.contains_key(&e.video)
        {
            wanted.entry(e.user).or_default().insert(e.video);
        }
    }
    let popular = top_k(
        engaged_users.iter().map(|(v, n)| (*v, *n as f32)),
        None,
        usize::MAX,
    );
    let mut m = Measured::default();
    for (user, relevant) in &wanted {
        let history = &seen[user];
        let exclude: HashSet<VideoId> = history.iter().map(|(v, _, _)| *v).collect();
        let vector = twin.user_vectors(history);
        let list = top_k(twin.raw_scores(&vector), Some(&exclude), METRICS_K);
        let (n, r) = ndcg_recall(&list, relevant, METRICS_K);
        let pop: Vec<VideoId> = popular
            .iter()
            .filter(|v| !exclude.contains(v))
            .take(METRICS_K)
            .copied()
            .collect();
        m.ndcg += n;
        m.recall += r;
        m.popularity_ndcg += ndcg_recall(&pop, relevant, METRICS_K).0;
        m.users += 1;
    }
    if m.users > 0 {
        let n = m.users as f64;
        m.ndcg /= n;
        m.recall /= n;
        m.popularity_ndcg /= n;
    }
    m
}

/// Picks the knobs that find a held-out future best: `data` is split in time
/// ([`temporal_split`], 20 %), and a grid of 30 settings is tried: the regularization (strength
/// and frequency scaling), the recency half-life and the confidence growth. Returns the best
/// settings (the other knobs as in `base`) and every trial with its validation NDCG@10. Without a
/// usable split, `base` unchanged.
pub fn tune(data: &[Engagement], base: FactorParams) -> (FactorParams, Vec<(FactorParams, f64)>) {
    let (train, valid) = temporal_split(data, 0.2);
    let mut trials: Vec<(FactorParams, f64)> = Vec::new();
    let mut best = (base, f64::NEG_INFINITY);
    let run = |p: FactorParams, trials: &mut Vec<(FactorParams, f64)>| {
        let m = measure(&train, &valid, p);
        if m.users == 0 {
            return f64::NEG_INFINITY;
        }
        trials.push((p, m.ndcg));
        m.ndcg
    };
    // A joint grid: the knobs interact (the best regularization depends on the confidence
    // growth and the half-life). Fits with at most 4 alternations, which rank settings as full
    // training does.
    let quick = FactorParams {
        iterations: base.iterations.min(4),
        ..base
    };
    for (regularization_exponent, regularization) in
        [(1.0, 0.03), (1.0, 0.3), (0.5, 0.3), (0.5, 1.0), (0.5, 3.0)]
    {
        for recency_half_life_days in [0.0, 14.0, 60.0] {
            for alpha in [5.0, 20.0] {
                let p = FactorParams {
                    regularization_exponent,
                    regularization,
                    recency_half_life_days,
                    alpha,
                    ..quick
                };
                let n = run(p, &mut trials);
                if n > best.1 {
                    best = (
                        FactorParams {
                            iterations: base.iterations,
                            ..p
                        },
                        n,
                    );
                }
            }
        }
    }
    if best.1 == f64::NEG_INFINITY {
        return (base, trials);
    }
    (best.0, trials)
}

/// Picks the knobs ([`tune`], when `base.auto_tune`), measures a twin trained on the past of a
/// temporal split against its future, and trains the model to ship on every pair.
pub fn train_and_measure(
    data: &[Engagement],
    base: FactorParams,
    holdout_share: f64,
    now: DateTime<Utc>,
) -> (ModelArtifact, OfflineMetrics) {
    let started = std::time::Instant::now();
    let (train, test) = temporal_split(data, holdout_share);
    let params = if base.auto_tune {
        tune(&train, base).0
    } else {
        base
    };
    let measured = measure(&train, &test, params);
    let shipped = fit(data, params, now);
    let users: HashSet<UserId> = data.iter().map(|e| e.user).collect();
    let metrics = OfflineMetrics {
        ndcg_at_10: measured.ndcg,
        recall_at_10: measured.recall,
        popularity_ndcg_at_10: measured.popularity_ndcg,
        holdout_users: measured.users,
        users: users.len(),
        videos: shipped.videos.ids.len(),
        interactions: data.len(),
        training_seconds: started.elapsed().as_secs_f64(),
        params,
    };
    (shipped, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap_or_default()
    }

    fn video(n: u128) -> VideoId {
        VideoId(Uuid::from_u128(n + 1))
    }

    /// Videos 0..20 are by creators 0..4, videos 20..40 by creators 4..8.
    fn creator_of(n: u128) -> CreatorId {
        CreatorId(Uuid::from_u128(500 + n % 4 + if n < 20 { 0 } else { 4 }))
    }

    /// Two tastes: even users engage with videos 0..20, odd users with 20..40; times rise.
    fn data() -> Vec<Engagement> {
        let mut out = Vec::new();
        for u in 0..40u128 {
            for n in 0..20u128 {
                if (u + n) % 3 == 0 {
                    continue;
                }
                let v = if u % 2 == 0 { n } else { n + 20 };
                out.push(Engagement {
                    user: UserId(Uuid::from_u128(1000 + u)),
                    video: video(v),
                    creator: creator_of(v),
                    strength: 1.0 + (n % 3) as f32,
                    at: at(((u * 20 + n) * 60) as i64),
                });
            }
        }
        out
    }

    #[test]
    fn an_artifact_round_trips_and_damage_is_named() {
        let artifact = fit(&data(), FactorParams::default(), at(5));
        let bytes = artifact.encode();
        assert_eq!(ModelArtifact::decode(&bytes), Ok(artifact));
        assert_eq!(
            ModelArtifact::decode(b"nope"),
            Err(ArtifactError::NotAnArtifact)
        );
        let mut other = bytes.clone();
        other[4] = 9;
        assert_eq!(ModelArtifact::decode(&other), Err(ArtifactError::Format(9)));
        assert!(matches!(
            ModelArtifact::decode(&bytes[..bytes.len() / 2]),
            Err(ArtifactError::Damaged(_))
        ));
    }

    #[test]
    fn fold_in_follows_what_the_user_just_did_and_new_videos_score_by_their_creator() {
        let model = LoadedModel::new("v1", fit(&data(), FactorParams::default(), at(5)));
        let (even, odd) = ((video(3), creator_of(3)), (video(23), creator_of(23)));
        let fan_of_even = model.user_vectors(&[(video(1), creator_of(1), 2.0)]);
        let fan_of_odd = model.user_vectors(&[(video(21), creator_of(21), 2.0)]);
        let s = model.score(&fan_of_even, &[even, odd]);
        assert!(s[0] > s[1], "{s:?}");
        let s = model.score(&fan_of_odd, &[even, odd]);
        assert!(s[1] > s[0], "{s:?}");
        // Videos newer than the model, by known creators: their creators decide.
        let (new_even, new_odd) = (
            (VideoId(Uuid::from_u128(900)), creator_of(2)),
            (VideoId(Uuid::from_u128(901)), creator_of(22)),
        );
        let s = model.score(&fan_of_even, &[new_even, new_odd]);
        assert!(s[0] > s[1], "{s:?}");
        // A watch of a new video still tells the creator side who the user is.
        let fan_by_creator = model.user_vectors(&[(new_odd.0, new_odd.1, 2.0)]);
        assert_eq!(
            fan_by_creator.video,
            model.artifact().videos.default_user,
            "the video side knows nothing"
        );
        let s = model.score(&fan_by_creator, &[even, odd]);
        assert!(s[1] > s[0], "{s:?}");
        let unknown = (
            VideoId(Uuid::from_u128(999)),
            CreatorId(Uuid::from_u128(999)),
        );
        let new_user = model.user_vectors(&[(unknown.0, unknown.1, 1.0)]);
        assert_eq!(new_user.creator, model.artifact().creators.default_user);
        let s = model.score(&new_user, &[unknown, even]);
        assert!(s.iter().all(|p| (0.0..=1.0).contains(p)));
    }

    #[test]
    fn training_measures_the_model_against_popularity_on_later_pairs() {
        let (artifact, metrics) = train_and_measure(&data(), FactorParams::default(), 0.2, at(5));
        assert_eq!(
            (artifact.videos.ids.len(), artifact.creators.ids.len()),
            (40, 8)
        );
        assert_eq!((metrics.users, metrics.interactions), (40, data().len()));
        assert!(metrics.holdout_users > 0, "{metrics:?}");
        assert!(
            metrics.ndcg_at_10 > metrics.popularity_ndcg_at_10,
            "two clean tastes: the model wins, {metrics:?}"
        );
        assert!((0.0..=1.0).contains(&metrics.recall_at_10));
    }

    #[test]
    fn engagements_sum_weights_per_pair_and_keep_positive_ones() {
        let (u, a, b, c) = (
            UserId(Uuid::from_u128(1)),
            VideoId(Uuid::from_u128(2)),
            VideoId(Uuid::from_u128(3)),
            CreatorId(Uuid::from_u128(4)),
        );
        let out = engagements([
            (u, a, c, 0.5, at(1)),
            (u, a, c, 3.0, at(3)),
            (u, b, c, 0.5, at(1)),
            (u, b, c, -3.0, at(2)),
        ]);
        assert_eq!(
            out,
            vec![Engagement {
                user: u,
                video: a,
                creator: c,
                strength: 3.5,
                at: at(3)
            }]
        );
        let list = [a, b];
        let relevant: HashSet<VideoId> = [b].into();
        let (ndcg, recall) = ndcg_recall(&list, &relevant, 10);
        assert!((ndcg - 1.0 / 3f64.log2()).abs() < 1e-12 && recall == 1.0);
        assert_eq!(
            top_k([(a, 1.0), (b, 2.0)].into_iter(), None, 1),
            vec![b],
            "best first"
        );
    }
}

/// Whether a newly trained version goes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationPolicy {
    /// Activated unless its offline NDCG is below the active version's.
    Auto,
    /// Registered only.
    Never,
    /// Activated whatever its metrics.
    Force,
}

/// Why a model operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no model version {0:?}")]
    UnknownVersion(String),
    #[error(
        "version {candidate} has offline NDCG@10 {candidate_ndcg} below the active {active}'s {active_ndcg}; activate it with force to override"
    )]
    Worse {
        candidate: String,
        candidate_ndcg: String,
        active: String,
        active_ndcg: String,
    },
    #[error("there is no earlier version to roll back to")]
    NothingToRollBack,
    #[error("version {version} cannot be loaded: {reason}")]
    NotLoadable { version: String, reason: String },
    #[error("no interactions to train on (the signal store had none in the window)")]
    NoData,
    #[error(transparent)]
    Port(#[from] crate::ports::PortError),
}

/// What `activate` did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Activation {
    pub version: String,
    /// Whether the offline-NDCG guard was overridden.
    pub forced: bool,
}

/// What a training run did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrainingReport {
    pub version: String,
    pub metrics: OfflineMetrics,
    pub artifact_bytes: usize,
    /// Whether the new version is now the active one.
    pub activated: bool,
    /// Why it was not activated, when it was not.
    pub not_activated_because: Option<String>,
}

fn ndcg_of(record: &crate::ports::ModelRecord) -> Option<f64> {
    record
        .performance_metrics
        .get("ndcg_at_10")
        .and_then(serde_json::Value::as_f64)
}

/// The registry's use cases: train and register, list, activate with the quality guard, roll back.
#[derive(Clone)]
pub struct ModelService {
    registry: std::sync::Arc<dyn crate::ports::ModelRegistry>,
    clock: std::sync::Arc<dyn crate::ports::Clock>,
}

impl std::fmt::Debug for ModelService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelService").finish_non_exhaustive()
    }
}

impl ModelService {
    pub fn new(
        registry: std::sync::Arc<dyn crate::ports::ModelRegistry>,
        clock: std::sync::Arc<dyn crate::ports::Clock>,
    ) -> Self {
        Self { registry, clock }
    }

    /// Every registered version, newest first.
    pub async fn list(&self) -> Result<Vec<crate::ports::ModelRecord>, ModelError> {
        Ok(self.registry.models().await?)
    }

    /// Activates `version`. Unless `force`, refused when its offline NDCG@10 is below the active
    /// version's (or it has none while the active one has).
    pub async fn activate(&self, version: &str, force: bool) -> Result<Activation, ModelError> {
        let models = self.registry.models().await?;
        let candidate = models
            .iter()
            .find(|m| m.version == version)
            .ok_or_else(|| ModelError::UnknownVersion(version.to_owned()))?;
        // A version no replica could load is refused, whatever `force` says: it would leave
        // every replica retrying it.
        let artifact = self.registry.artifact(version).await?;
        if let Err(reason) = artifact
            .as_deref()
            .ok_or_else(|| "it has no artifact".to_owned())
            .and_then(|bytes| ModelArtifact::decode(bytes).map_err(|e| e.to_string()))
        {
            return Err(ModelError::NotLoadable {
                version: version.to_owned(),
                reason,
            });
        }
        let active = models.iter().find(|m| m.is_active);
        let mut overridden = false;
        if let Some(active) = active.filter(|a| a.version != version) {
            let worse = match (ndcg_of(candidate), ndcg_of(active)) {
                // Equal within rounding is not worse: sums over users in another order differ
                // in the last bits.
                (Some(c), Some(a)) => c < a - 1e-9,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if worse && !force {
                let show = |x: Option<f64>| x.map_or("none".to_owned(), |x| format!("{x:.4}"));
                return Err(ModelError::Worse {
                    candidate: version.to_owned(),
                    candidate_ndcg: show(ndcg_of(candidate)),
                    active: active.version.clone(),
                    active_ndcg: show(ndcg_of(active)),
                });
            }
            overridden = worse;
        }
        if !self.registry.activate(version, self.clock.now()).await? {
            return Err(ModelError::UnknownVersion(version.to_owned()));
        }
        tracing::info!(version, forced = overridden, "model activated");
        Ok(Activation {
            version: version.to_owned(),
            forced: overridden,
        })
    }

    /// Activates the version active before the current one.
    pub async fn rollback(&self) -> Result<String, ModelError> {
        let version = self
            .registry
            .rollback(self.clock.now())
            .await?
            .ok_or(ModelError::NothingToRollBack)?;
        tracing::info!(version, "model rolled back");
        Ok(version)
    }

    /// Trains a version on `data`, registers it with its offline metrics, and activates it as
    /// `policy` says. Training runs on a blocking thread.
    pub async fn train(
        &self,
        data: Vec<Engagement>,
        params: FactorParams,
        policy: ActivationPolicy,
    ) -> Result<TrainingReport, ModelError> {
        if data.is_empty() {
            return Err(ModelError::NoData);
        }
        let now = self.clock.now();
        let (artifact, metrics) =
            tokio::task::spawn_blocking(move || train_and_measure(&data, params, 0.2, now))
                .await
                .map_err(|e| {
                    ModelError::Port(crate::ports::PortError::Unavailable(format!(
                        "training: {e}"
                    )))
                })?;
        let bytes = artifact.encode();
        let metrics_json = serde_json::to_value(&metrics).unwrap_or_default();
        let base = format!("als-{}", now.format("%Y%m%dT%H%M%SZ"));
        let mut version = base.clone();
        let mut n = 1;
        while !self
            .registry
            .register(&version, &metrics_json, &bytes, now)
            .await?
        {
            n += 1;
            version = format!("{base}-{n}");
        }
        tracing::info!(
            version,
            ndcg_at_10 = metrics.ndcg_at_10,
            popularity_ndcg_at_10 = metrics.popularity_ndcg_at_10,
            interactions = metrics.interactions,
            "model trained and registered"
        );
        let (activated, not_activated_because) = match policy {
            ActivationPolicy::Never => (false, Some("activation was not asked for".to_owned())),
            ActivationPolicy::Auto | ActivationPolicy::Force => {
                match self
                    .activate(&version, policy == ActivationPolicy::Force)
                    .await
                {
                    Ok(_) => (true, None),
                    Err(e @ ModelError::Worse { .. }) => (false, Some(e.to_string())),
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(TrainingReport {
            version,
            metrics,
            artifact_bytes: bytes.len(),
            activated,
            not_activated_because,
        })
    }
}
