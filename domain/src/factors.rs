//! A personalized model of P(user engages with video): implicit-feedback matrix factorization
//! trained by weighted alternating least squares (iALS: Hu, Koren and Volinsky 2008, with the
//! frequency-scaled regularization of Rendle et al. 2021). Pure numerics, no I/O: interactions in,
//! factors out.
//!
//! Each user `u` and video `i` get a vector of `dim` factors; the model predicts a preference
//! `w_u · h_i` near 1 for videos the user engaged with and near 0 for the rest. Every observed pair
//! weighs `1 + alpha · strength` (how strongly the user engaged), every unobserved one
//! `unobserved_weight`. With the videos' factors fixed, a user's vector has a closed form, so
//! serving needs only the videos' factors: a user is *folded in* from their recent interactions
//! at request time (one `dim × dim` solve), which gives new users a vector and makes every score
//! react to what the user just did.
//!
//! Raw preferences are mapped into [0, 1] by a logistic calibration fitted on the training data
//! (Platt scaling against as many sampled non-interactions as interactions): a calibrated score
//! is the probability that a (user, video) pair is an engagement rather than a random video.

use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Training knobs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorParams {
    /// Factors per user and video.
    pub dim: usize,
    /// Alternations (users, then videos).
    pub iterations: usize,
    /// L2 regularization, scaled per row by its total weight raised to `regularization_exponent`
    /// (frequency scaling).
    pub regularization: f64,
    /// 1 scales a row's regularization with its total weight, 0 not at all.
    pub regularization_exponent: f64,
    /// Confidence growth per unit of engagement strength.
    pub alpha: f64,
    /// Weight of every unobserved (user, video) pair.
    pub unobserved_weight: f64,
    /// Interactions of one user folded in at request time, at most (the strongest count first).
    pub fold_in_limit: usize,
    /// An interaction's strength halves every this many days of age at training time (0: no
    /// decay), so the model follows what people engage with now.
    pub recency_half_life_days: f64,
    /// Whether training picks the regularization, half-life and confidence growth itself on a
    /// held-out part of its data (the values here are where the search starts).
    pub auto_tune: bool,
    pub seed: u64,
}

impl Default for FactorParams {
    fn default() -> Self {
        Self {
            dim: 32,
            iterations: 8,
            regularization: 0.3,
            regularization_exponent: 0.5,
            alpha: 5.0,
            unobserved_weight: 0.2,
            fold_in_limit: 200,
            recency_half_life_days: 0.0,
            auto_tune: true,
            seed: 42,
        }
    }
}

/// The logistic map from a raw preference to a probability: `σ(a · raw + b)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub a: f64,
    pub b: f64,
}

impl Calibration {
    pub fn probability(&self, raw: f64) -> f64 {
        let p = 1.0 / (1.0 + (-(self.a * raw + self.b)).exp());
        if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.5
        }
    }
}

/// What serving needs of a trained model: the videos' factors (dense indexes), their Gram matrix
/// for fold-in, and the calibration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorModel {
    pub params: FactorParams,
    pub items: usize,
    /// `items × dim`, row-major.
    pub item_factors: Vec<f32>,
    /// `Hᵀ H` (`dim × dim`, row-major), precomputed for fold-in.
    pub gramian: Vec<f64>,
    pub calibration: Calibration,
}

/// One observed (user, video) pair: dense indexes and how strongly the user engaged (> 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interaction {
    pub user: usize,
    pub item: usize,
    pub strength: f32,
}

impl FactorModel {
    pub fn dim(&self) -> usize {
        self.params.dim
    }

    fn item(&self, i: usize) -> &[f32] {
        &self.item_factors[i * self.dim()..(i + 1) * self.dim()]
    }

    /// The raw preference of video `i` for a user vector; 0 for an unknown video.
    pub fn raw_score(&self, user: &[f32], i: usize) -> f32 {
        if i >= self.items || user.len() != self.dim() {
            return 0.0;
        }
        dot(user, self.item(i))
    }

    /// The calibrated probability of video `i` for a user vector.
    pub fn probability(&self, user: &[f32], i: usize) -> f64 {
        self.calibration
            .probability(f64::from(self.raw_score(user, i)))
    }

    /// The vector of a user who engaged with `items` (dense index, strength), exactly as training
    /// would solve it with the videos fixed. Unknown videos are ignored; past
    /// `params.fold_in_limit` the strongest count. No items: the zero vector (every raw score 0).
    pub fn fold_in(&self, items: &[(usize, f32)]) -> Vec<f32> {
        let mut known: Vec<(usize, f32)> = items
            .iter()
            .copied()
            .filter(|&(i, s)| i < self.items && s > 0.0 && s.is_finite())
            .collect();
        if known.is_empty() {
            return vec![0.0; self.dim()];
        }
        if known.len() > self.params.fold_in_limit {
            known.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            known.truncate(self.params.fold_in_limit);
        }
        let gram = DMatrix::from_row_slice(self.dim(), self.dim(), &self.gramian)
            * self.params.unobserved_weight;
        solve_row(
            &gram,
            self.items,
            &self.params,
            known.iter().map(|&(i, s)| (self.item(i), s)),
        )
    }
}

/// Eight partial sums, so the compiler vectorizes it (a single running sum must be added in
/// order, one lane at a time): scoring a 10k-video pool is mostly this.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut lanes = [0.0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `Σ_rows rowᵀ row` of a row-major `rows × dim` matrix, scaled by `weight`.
fn gramian(factors: &[f32], dim: usize, weight: f64) -> DMatrix<f64> {
    let mut g = DMatrix::<f64>::zeros(dim, dim);
    for row in factors.chunks_exact(dim) {
        for a in 0..dim {
            let ra = f64::from(row[a]);
            for b in a..dim {
                g[(a, b)] += ra * f64::from(row[b]);
            }
        }
    }
    for a in 0..dim {
        for b in 0..a {
            g[(a, b)] = g[(b, a)];
        }
    }
    g * weight
}

/// One row's least-squares solution with the other side fixed:
/// `(w0·G + Σ (c_j − w0) h_j h_jᵀ + λ·(Σ c_j + w0·n)·I) x = Σ c_j h_j`, where `c_j = 1 + alpha·s_j`
/// weighs an observed pair, `w0·G` (the unobserved weight times the Gram matrix of all `n` rows of
/// the other side) stands for every pair (observed ones included, hence `c_j − w0`), and the
/// regularization grows with the row's total weight.
fn solve_row<'a>(
    weighted_gram: &DMatrix<f64>,
    others: usize,
    p: &FactorParams,
    observed: impl Iterator<Item = (&'a [f32], f32)>,
) -> Vec<f32> {
    let dim = p.dim;
    let mut a = weighted_gram.clone();
    let mut b = DVector::<f64>::zeros(dim);
    let mut weight_sum = 0.0;
    let mut hx = vec![0.0f64; dim];
    {
        // Column-major: the lower triangle's column x is contiguous from (x, x).
        let cells = a.as_mut_slice();
        for (h, s) in observed {
            let c = 1.0 + p.alpha * f64::from(s);
            weight_sum += c;
            let extra = c - p.unobserved_weight;
            for (d, v) in hx.iter_mut().zip(h) {
                *d = f64::from(*v);
            }
            for x in 0..dim {
                b[x] += c * hx[x];
                let scaled = extra * hx[x];
                let column = &mut cells[x * dim + x..(x + 1) * dim];
                for (cell, hy) in column.iter_mut().zip(&hx[x..]) {
                    *cell += scaled * hy;
                }
            }
        }
    }
    let ridge = p.regularization
        * (weight_sum + p.unobserved_weight * others as f64).powf(p.regularization_exponent);
    for x in 0..dim {
        for y in x + 1..dim {
            a[(x, y)] = a[(y, x)];
        }
        a[(x, x)] += ridge;
    }
    match a.cholesky() {
        Some(c) => c.solve(&b).iter().map(|&v| v as f32).collect(),
        None => vec![0.0; dim],
    }
}

/// Trains on `interactions` (dense indexes below `users` and `items`; a pair given twice adds
/// up). Returns the model and the users' vectors (`users × dim`). Deterministic for a seed.
pub fn train_als(
    interactions: &[Interaction],
    users: usize,
    items: usize,
    p: FactorParams,
) -> (FactorModel, Vec<f32>) {
    let dim = p.dim.max(1);
    let p = FactorParams { dim, ..p };
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let scale = 0.1 / (dim as f32).sqrt();
    let mut init =
        |n: usize| -> Vec<f32> { (0..n * dim).map(|_| rng.gen_range(-scale..scale)).collect() };
    let mut user_factors = init(users);
    let mut item_factors = init(items);

    // Pairs merged, as adjacency lists both ways.
    let mut merged: std::collections::HashMap<(usize, usize), f32> = Default::default();
    for x in interactions {
        if x.user < users && x.item < items && x.strength > 0.0 && x.strength.is_finite() {
            *merged.entry((x.user, x.item)).or_default() += x.strength;
        }
    }
    let mut by_user: Vec<Vec<(usize, f32)>> = vec![Vec::new(); users];
    let mut by_item: Vec<Vec<(usize, f32)>> = vec![Vec::new(); items];
    let mut pairs: Vec<((usize, usize), f32)> = merged.into_iter().collect();
    pairs.sort_unstable_by_key(|p| p.0);
    for &((u, i), s) in &pairs {
        by_user[u].push((i, s));
        by_item[i].push((u, s));
    }

    let sweep = |fixed: &[f32], rows: &[Vec<(usize, f32)>]| -> Vec<f32> {
        let gram = gramian(fixed, dim, p.unobserved_weight);
        let solved: Vec<Vec<f32>> = {
            use rayon::prelude::*;
            rows.par_iter()
                .map(|row| {
                    if row.is_empty() {
                        vec![0.0; dim]
                    } else {
                        solve_row(
                            &gram,
                            fixed.len() / dim,
                            &p,
                            row.iter()
                                .map(|&(j, s)| (&fixed[j * dim..(j + 1) * dim], s)),
                        )
                    }
                })
                .collect()
        };
        solved.concat()
    };
    for _ in 0..p.iterations {
        user_factors = sweep(&item_factors, &by_user);
        item_factors = sweep(&user_factors, &by_item);
    }
    let gram = gramian(&item_factors, dim, 1.0);
    let model = FactorModel {
        params: p,
        items,
        item_factors,
        gramian: (0..dim)
            .flat_map(|r| (0..dim).map(move |c| (r, c)))
            .map(|(r, c)| gram[(r, c)])
            .collect(),
        calibration: Calibration { a: 1.0, b: 0.0 },
    };
    (model, user_factors)
}

/// Fits `model.calibration` (Platt scaling) on the pairs it was trained on (dense indexes, as
/// given to [`train_als`]) and as many random ones, with the users' vectors training returned.
pub fn calibrate(model: &mut FactorModel, user_factors: &[f32], interactions: &[Interaction]) {
    let mut rng = ChaCha8Rng::seed_from_u64(model.params.seed);
    let pairs: Vec<((usize, usize), f32)> = interactions
        .iter()
        .map(|x| ((x.user, x.item), x.strength))
        .collect();
    model.calibration = fit_calibration(model, user_factors, &pairs, &mut rng);
}

/// Platt scaling: a logistic regression of "observed" on the raw score, over every observed pair
/// and as many random pairs, by Newton's method.
fn fit_calibration(
    model: &FactorModel,
    user_factors: &[f32],
    pairs: &[((usize, usize), f32)],
    rng: &mut ChaCha8Rng,
) -> Calibration {
    let dim = model.dim();
    if pairs.is_empty() || model.items == 0 {
        return Calibration { a: 1.0, b: 0.0 };
    }
    let sample = pairs.len().min(50_000);
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(2 * sample);
    for _ in 0..sample {
        let &((u, i), _) = &pairs[rng.gen_range(0..pairs.len())];
        let user = &user_factors[u * dim..(u + 1) * dim];
        points.push((f64::from(model.raw_score(user, i)), 1.0));
        let j = rng.gen_range(0..model.items);
        points.push((f64::from(model.raw_score(user, j)), 0.0));
    }
    let features: Vec<Vec<f64>> = points.iter().map(|&(x, _)| vec![x]).collect();
    let labels: Vec<f64> = points.iter().map(|&(_, y)| y).collect();
    match logistic_fit(&features, &labels).as_slice() {
        [a, b] => Calibration { a: *a, b: *b },
        _ => Calibration { a: 1.0, b: 0.0 },
    }
}

/// A logistic regression of `labels` (0 or 1) on `features` (rows of equal length): the weights
/// of the features, then the bias. Newton's method on the mean log-loss with a small L2 penalty on
/// the weights (so separable data still gives finite ones), each step halved until the loss goes
/// down. Weights 1 and bias 0 when there is nothing to fit or the fit fails.
pub fn logistic_fit(features: &[Vec<f64>], labels: &[f64]) -> Vec<f64> {
    let k = features.first().map_or(0, Vec::len);
    let mut fallback = vec![1.0; k];
    fallback.push(0.0);
    if features.is_empty()
        || features.len() != labels.len()
        || features.iter().any(|f| f.len() != k)
    {
        return fallback;
    }
    let n = features.len() as f64;
    let ridge = 1e-3;
    let z = |w: &[f64], x: &[f64]| x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + w[k];
    let loss = |w: &[f64]| -> f64 {
        let data: f64 = features
            .iter()
            .zip(labels)
            .map(|(x, &y)| {
                let z = z(w, x);
                // log(1 + e^z) − y·z, computed stably.
                z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z
            })
            .sum();
        data / n + 0.5 * ridge * w[..k].iter().map(|v| v * v).sum::<f64>()
    };
    let mut w = fallback.clone();
    let mut current = loss(&w);
    for _ in 0..100 {
        let mut grad = DVector::<f64>::zeros(k + 1);
        let mut hess = DMatrix::<f64>::zeros(k + 1, k + 1);
        for (x, &y) in features.iter().zip(labels) {
            let p = 1.0 / (1.0 + (-z(&w, x)).exp());
            let weight = p * (1.0 - p);
            let at = |i: usize| if i < k { x[i] } else { 1.0 };
            for i in 0..=k {
                let xi = at(i);
                grad[i] += (p - y) * xi;
                for j in i..=k {
                    hess[(i, j)] += weight * xi * at(j);
                }
            }
        }
        for i in 0..=k {
            for j in 0..i {
                hess[(i, j)] = hess[(j, i)];
            }
        }
        grad /= n;
        hess /= n;
        for i in 0..k {
            grad[i] += ridge * w[i];
            hess[(i, i)] += ridge;
        }
        hess[(k, k)] += 1e-9;
        let Some(step) = hess.cholesky().map(|c| c.solve(&grad)) else {
            break;
        };
        let mut scale = 1.0;
        let mut improved = false;
        for _ in 0..30 {
            let next: Vec<f64> = w
                .iter()
                .zip(step.iter())
                .map(|(a, d)| a - scale * d)
                .collect();
            let l = loss(&next);
            if l.is_finite() && l <= current {
                improved = l < current - 1e-12;
                w = next;
                current = l;
                break;
            }
            scale /= 2.0;
        }
        if !improved {
            break;
        }
    }
    if w.iter().all(|v| v.is_finite()) {
        w
    } else {
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_tastes() -> Vec<Interaction> {
        // Users 0..10 engage with items 0..5, users 10..20 with items 5..10.
        let mut out = Vec::new();
        for u in 0..20 {
            for i in 0..5 {
                if (u + i) % 4 != 0 {
                    out.push(Interaction {
                        user: u,
                        item: if u < 10 { i } else { i + 5 },
                        strength: 1.0,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn it_learns_two_tastes_apart_and_folds_in_new_users() {
        let data = two_tastes();
        let params = FactorParams {
            dim: 8,
            ..FactorParams::default()
        };
        let (mut model, users) = train_als(&data, 20, 10, params);
        calibrate(&mut model, &users, &data);
        for u in 0..20 {
            let vector = &users[u * 8..(u + 1) * 8];
            let (mine, theirs) = if u < 10 { (0..5, 5..10) } else { (5..10, 0..5) };
            let worst_mine = mine
                .map(|i| model.raw_score(vector, i))
                .fold(f32::MAX, f32::min);
            let best_theirs = theirs
                .map(|i| model.raw_score(vector, i))
                .fold(f32::MIN, f32::max);
            assert!(worst_mine > best_theirs, "user {u}");
        }
        // Folded in from two videos of the first group, a new user prefers that group...
        let v = model.fold_in(&[(0, 1.0), (1, 1.0)]);
        assert!(model.raw_score(&v, 2) > model.raw_score(&v, 7));
        assert!(model.probability(&v, 2) > model.probability(&v, 7));
        // ...and a known user's fold-in is the vector training gave them (items fixed).
        let of_user_0: Vec<(usize, f32)> = data
            .iter()
            .filter(|x| x.user == 0)
            .map(|x| (x.item, x.strength))
            .collect();
        let folded = model.fold_in(&of_user_0);
        let trained = &users[0..8];
        // Training's last user step used the items before their final update: close, not equal.
        for i in 0..10 {
            let (a, b) = (model.raw_score(&folded, i), model.raw_score(trained, i));
            assert!((a - b).abs() < 0.15, "item {i}: {a} vs {b}");
        }
        assert_eq!(model.fold_in(&[]), vec![0.0; 8], "nothing known: zero");
        assert_eq!(model.fold_in(&[(99, 1.0)]), vec![0.0; 8], "unknown videos");
        let mut again = train_als(&data, 20, 10, params);
        calibrate(&mut again.0, &again.1, &data);
        assert_eq!(again.0, model, "deterministic");
    }

    #[test]
    fn calibrated_scores_are_probabilities_that_keep_the_order() {
        let data = two_tastes();
        let (mut model, users) = train_als(&data, 20, 10, FactorParams::default());
        calibrate(&mut model, &users, &data);
        let dim = model.dim();
        let user = &users[0..dim];
        let mut raw: Vec<(f32, f64)> = (0..10)
            .map(|i| (model.raw_score(user, i), model.probability(user, i)))
            .collect();
        assert!(raw.iter().all(|(_, p)| (0.0..=1.0).contains(p)));
        raw.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            raw.windows(2).all(|w| w[0].1 <= w[1].1),
            "monotone: {raw:?}"
        );
        assert!(model.calibration.a > 0.0, "{:?}", model.calibration);
        // The user's own videos are likely engagements, the others not.
        assert!(model.probability(user, 1) > 0.5 && model.probability(user, 7) < 0.5);
    }

    #[test]
    fn nothing_to_learn_gives_a_neutral_model() {
        let (model, users) = train_als(&[], 3, 4, FactorParams::default());
        assert_eq!(users.len(), 3 * model.dim());
        assert_eq!(model.calibration, Calibration { a: 1.0, b: 0.0 });
        let v = model.fold_in(&[(0, 1.0)]);
        assert!(v.iter().all(|x| x.is_finite()));
        let bad = Calibration {
            a: f64::NAN,
            b: 0.0,
        };
        assert_eq!(bad.probability(1.0), 0.5);
    }
}
