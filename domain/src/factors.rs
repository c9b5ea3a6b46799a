//! A personalized model of P(user engages with video): implicit-feedback matrix factorization
//! trained with Bayesian Personalized Ranking (BPR, Rendle et al. 2009) by stochastic gradient
//! descent. Pure numerics, no I/O: training data in, factors out.
//!
//! Each user and item gets a vector of `dim` factors and each item a bias; the model ranks item
//! `i` for user `u` by `bias[i] + user[u] · item[i]`. BPR learns that order directly: for a
//! sampled engaged item and a sampled other item, it raises the first above the second. A user
//! unknown at training time can be folded in from their recent items (the mean of those items'
//! factors), so a score reacts to what the user just did.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Training knobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FactorParams {
    pub dim: usize,
    pub epochs: usize,
    pub learning_rate: f32,
    pub regularization: f32,
    pub seed: u64,
}

impl Default for FactorParams {
    fn default() -> Self {
        Self {
            dim: 64,
            epochs: 50,
            learning_rate: 0.05,
            regularization: 0.005,
            seed: 42,
        }
    }
}

/// A trained model: dense user and item indexes into row-major factor matrices.
#[derive(Clone, Debug, PartialEq)]
pub struct Factors {
    pub dim: usize,
    pub users: usize,
    pub items: usize,
    /// `users × dim`.
    pub user_factors: Vec<f32>,
    /// `items × dim`.
    pub item_factors: Vec<f32>,
    pub item_bias: Vec<f32>,
}

impl Factors {
    fn user(&self, u: usize) -> &[f32] {
        &self.user_factors[u * self.dim..(u + 1) * self.dim]
    }

    fn item(&self, i: usize) -> &[f32] {
        &self.item_factors[i * self.dim..(i + 1) * self.dim]
    }

    /// The raw score of item `i` for a user vector.
    pub fn score_with(&self, user: &[f32], i: usize) -> f32 {
        self.item_bias[i] + dot(user, self.item(i))
    }

    /// The raw score of item `i` for known user `u`.
    pub fn score(&self, u: usize, i: usize) -> f32 {
        self.score_with(self.user(u), i)
    }

    /// A user vector folded in from items the user engaged with: their factors' mean.
    pub fn fold_in(&self, items: &[usize]) -> Vec<f32> {
        let mut v = vec![0.0; self.dim];
        let known: Vec<usize> = items.iter().copied().filter(|&i| i < self.items).collect();
        for &i in &known {
            for (x, f) in v.iter_mut().zip(self.item(i)) {
                *x += f;
            }
        }
        if !known.is_empty() {
            let n = known.len() as f32;
            v.iter_mut().for_each(|x| *x /= n);
        }
        v
    }

    /// The vector of known user `u`.
    pub fn user_vector(&self, u: usize) -> Vec<f32> {
        self.user(u).to_vec()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Trains on `(user, item)` engagements (dense indexes below `users` and `items`; repeats weigh
/// more). Deterministic for a seed.
pub fn train_bpr(
    engaged: &[(usize, usize)],
    users: usize,
    items: usize,
    p: FactorParams,
) -> Factors {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let scale = 0.1 / (p.dim as f32).sqrt();
    let mut init = |n: usize| -> Vec<f32> {
        (0..n * p.dim)
            .map(|_| rng.gen_range(-scale..scale))
            .collect()
    };
    let mut f = Factors {
        dim: p.dim,
        users,
        items,
        user_factors: init(users),
        item_factors: init(items),
        item_bias: vec![0.0; items],
    };
    let engaged: Vec<(usize, usize)> = engaged
        .iter()
        .copied()
        .filter(|&(u, i)| u < users && i < items)
        .collect();
    if engaged.is_empty() || items < 2 {
        return f;
    }
    let mut seen: Vec<std::collections::HashSet<usize>> = vec![Default::default(); users];
    for &(u, i) in &engaged {
        seen[u].insert(i);
    }
    let (lr, reg, dim) = (p.learning_rate, p.regularization, p.dim);
    let mut grad_u = vec![0.0f32; dim];
    for _ in 0..p.epochs {
        for _ in 0..engaged.len() {
            let (u, i) = engaged[rng.gen_range(0..engaged.len())];
            // A negative: an item this user did not engage with (a few tries, then any).
            let mut j = rng.gen_range(0..items);
            for _ in 0..8 {
                if !seen[u].contains(&j) {
                    break;
                }
                j = rng.gen_range(0..items);
            }
            if j == i || seen[u].contains(&j) {
                continue;
            }
            let x = f.score(u, i) - f.score(u, j);
            // d/dx ln σ(x) = σ(−x).
            let g = 1.0 / (1.0 + x.exp());
            let (uo, io, jo) = (u * dim, i * dim, j * dim);
            for (d, grad) in grad_u.iter_mut().enumerate() {
                let (wu, hi, hj) = (
                    f.user_factors[uo + d],
                    f.item_factors[io + d],
                    f.item_factors[jo + d],
                );
                *grad = g * (hi - hj) - reg * wu;
                f.item_factors[io + d] += lr * (g * wu - reg * hi);
                f.item_factors[jo + d] += lr * (-g * wu - reg * hj);
            }
            for (w, grad) in f.user_factors[uo..uo + dim].iter_mut().zip(&grad_u) {
                *w += lr * grad;
            }
            f.item_bias[i] += lr * (g - reg * f.item_bias[i]);
            f.item_bias[j] += lr * (-g - reg * f.item_bias[j]);
        }
    }
    f
}

/// Maps raw scores into [0, 1] by their rank among `scores` (a rank-based calibration: the best
/// of the list gets 1, the worst 0), so a model signal mixes with the others on their scale.
pub fn calibrate(scores: &[f32]) -> Vec<f64> {
    if scores.len() < 2 {
        return vec![0.5; scores.len()];
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut out = vec![0.0; scores.len()];
    let last = (scores.len() - 1) as f64;
    for (rank, &i) in order.iter().enumerate() {
        out[i] = rank as f64 / last;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_learns_two_tastes_apart() {
        // Users 0..10 engage with items 0..5, users 10..20 with items 5..10.
        let mut engaged = Vec::new();
        for u in 0..20 {
            for i in 0..5 {
                if (u + i) % 4 != 0 {
                    engaged.push((u, if u < 10 { i } else { i + 5 }));
                }
            }
        }
        let f = train_bpr(&engaged, 20, 10, FactorParams::default());
        for u in 0..20 {
            let (mine, theirs) = if u < 10 { (0..5, 5..10) } else { (5..10, 0..5) };
            let best_mine = mine.map(|i| f.score(u, i)).fold(f32::MIN, f32::max);
            let best_theirs = theirs.map(|i| f.score(u, i)).fold(f32::MIN, f32::max);
            assert!(best_mine > best_theirs, "user {u}");
        }
        // Folded in from two items of the first group, a new user prefers that group.
        let v = f.fold_in(&[0, 1]);
        assert!(f.score_with(&v, 2) > f.score_with(&v, 7));
        assert_eq!(
            train_bpr(&engaged, 20, 10, FactorParams::default()),
            f,
            "deterministic"
        );
    }

    #[test]
    fn calibrated_scores_keep_the_order_within_0_and_1() {
        let c = calibrate(&[0.3, -2.0, 5.0, 0.1]);
        assert_eq!(c, vec![2.0 / 3.0, 0.0, 1.0, 1.0 / 3.0]);
        assert_eq!(calibrate(&[1.0]), vec![0.5]);
    }
}
