//! Experiments as policy: deterministic assignment of users to variants, and the statistics that
//! tell whether a variant differs from control. Pure: no storage, no clock.
//!
//! - **Assignment.** A user's bucket is a hash of the experiment's salt and the user id, into
//!   [`BUCKETS`] buckets; variants own consecutive ranges of buckets by their traffic share. The
//!   same salt and user give the same variant on every replica and after every restart; two
//!   experiments with different salts (different layers) assign independently.
//! - **Differences.** Rates (like rate, completion rate, ...) are compared as two proportions,
//!   means (watch time per exposure) by Welch's normal approximation: a 95 % confidence interval
//!   of "variant − control".
//! - **Sample-ratio mismatch.** A chi-square goodness-of-fit test of the users each variant got
//!   against its share: a tiny p-value means assignment or logging is broken, and no difference
//!   should be trusted.

use crate::ids::UserId;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Buckets of the assignment: shares are whole multiples of 1/[`BUCKETS`] (0.01 %).
pub const BUCKETS: u64 = 10_000;

/// The z-value of a two-sided 95 % interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// A user's bucket for `salt`, in `0..BUCKETS`: FNV-1a over the salt and the id's bytes, finished
/// with splitmix64's mixer so that nearby ids spread.
pub fn bucket(salt: &str, user: UserId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt
        .bytes()
        .chain([0xff])
        .chain(user.0.as_bytes().iter().copied())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h % BUCKETS
}

/// The index of the variant `user` belongs to, given the variants' shares in buckets (summing to
/// at most [`BUCKETS`]); `None` when the user falls outside every variant (the experiment does
/// not cover all traffic).
pub fn assign(salt: &str, user: UserId, shares: &[u64]) -> Option<usize> {
    let b = bucket(salt, user);
    let mut end = 0;
    for (i, share) in shares.iter().enumerate() {
        end += share;
        if b < end {
            return Some(i);
        }
    }
    None
}

/// A difference between a variant and control, with its 95 % confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Difference {
    pub control: f64,
    pub variant: f64,
    /// `variant − control`.
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

impl Difference {
    /// Whether the interval excludes zero (the difference is significant at 5 %).
    pub fn is_significant(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// The difference of two proportions (`successes` of `trials`), with the normal approximation's
/// interval; `None` when either side has no trials.
pub fn proportion_difference(control: (u64, u64), variant: (u64, u64)) -> Option<Difference> {
    let rate = |(s, n): (u64, u64)| (n > 0).then(|| s.min(n) as f64 / n as f64);
    let (p1, p2) = (rate(control)?, rate(variant)?);
    let se = (p1 * (1.0 - p1) / control.1 as f64 + p2 * (1.0 - p2) / variant.1 as f64).sqrt();
    let d = p2 - p1;
    Some(Difference {
        control: p1,
        variant: p2,
        difference: d,
        low: d - Z_95 * se,
        high: d + Z_95 * se,
    })
}

/// Running sums of one variant's per-exposure values (e.g. watch time): count, sum, sum of
/// squares.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_squares += x * x;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The unbiased sample variance; `None` below two values.
    pub fn variance(&self) -> Option<f64> {
        (self.n > 1).then(|| {
            let n = self.n as f64;
            ((self.sum_squares - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
        })
    }
}

/// The difference of two means (Welch, normal approximation); `None` below two values a side.
pub fn mean_difference(control: &Moments, variant: &Moments) -> Option<Difference> {
    let (m1, m2) = (control.mean()?, variant.mean()?);
    let se =
        (control.variance()? / control.n as f64 + variant.variance()? / variant.n as f64).sqrt();
    let d = m2 - m1;
    Some(Difference {
        control: m1,
        variant: m2,
        difference: d,
        low: d - Z_95 * se,
        high: d + Z_95 * se,
    })
}

/// The p-value of the chi-square goodness-of-fit test of `observed` users per variant against
/// the `shares` they should have got (any positive scale). `None` for fewer than two variants,
/// no users, or a variant without a share.
pub fn sample_ratio_p_value(observed: &[u64], shares: &[f64]) -> Option<f64> {
    if observed.len() < 2 || observed.len() != shares.len() {
        return None;
    }
    let total: u64 = observed.iter().sum();
    let share_sum: f64 = shares.iter().sum();
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if total == 0 || !positive(share_sum) || !shares.iter().all(|&s| positive(s)) {
        return None;
    }
    let statistic: f64 = observed
        .iter()
        .zip(shares)
        .map(|(&o, &s)| {
            let expected = total as f64 * s / share_sum;
            (o as f64 - expected).powi(2) / expected
        })
        .sum();
    let chi = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    Some(chi.sf(statistic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn user(n: u64) -> UserId {
        UserId(Uuid::from_u128(
            0x1234_5678_0000_0000_0000_0000_0000_0000 + u128::from(n),
        ))
    }

    #[test]
    fn assignment_is_stable_and_follows_the_shares() {
        let shares = [5_000, 3_000, 2_000];
        let mut counts = [0u64; 3];
        for n in 0..100_000 {
            let v = assign("salt-a", user(n), &shares).expect("full coverage");
            assert_eq!(assign("salt-a", user(n), &shares), Some(v), "stable");
            counts[v] += 1;
        }
        for (c, s) in counts.iter().zip(shares) {
            let expected = 100_000.0 * s as f64 / 10_000.0;
            assert!((*c as f64 - expected).abs() < 0.02 * expected, "{counts:?}");
        }
        let p = sample_ratio_p_value(&counts, &[0.5, 0.3, 0.2]).expect("p");
        assert!(p > 0.001, "a fair assignment is not flagged: {p}");
        // Partial coverage: users outside every variant.
        let outside = (0..10_000)
            .filter(|&n| assign("salt-a", user(n), &[1_000]).is_none())
            .count();
        assert!((8_800..9_200).contains(&outside), "{outside}");
    }

    #[test]
    fn layers_with_different_salts_are_independent() {
        let mut joint = [[0u64; 2]; 2];
        for n in 0..40_000 {
            let a = assign("layer-1", user(n), &[5_000, 5_000]).unwrap_or(0);
            let b = assign("layer-2", user(n), &[5_000, 5_000]).unwrap_or(0);
            joint[a][b] += 1;
        }
        for row in joint {
            for cell in row {
                assert!((9_500..10_500).contains(&cell), "{joint:?}");
            }
        }
    }

    #[test]
    fn a_real_difference_is_significant_and_no_difference_is_not() {
        // Completion 0.30 vs 0.33 over 20,000 exposures each.
        let d = proportion_difference((6_000, 20_000), (6_600, 20_000)).expect("d");
        assert!(d.is_significant() && d.low > 0.0, "{d:?}");
        assert!((d.difference - 0.03).abs() < 1e-12);
        let same = proportion_difference((6_000, 20_000), (6_050, 20_000)).expect("d");
        assert!(!same.is_significant(), "{same:?}");
        assert!(proportion_difference((0, 0), (1, 2)).is_none());

        let (mut a, mut b) = (Moments::default(), Moments::default());
        for i in 0..10_000 {
            let noise = f64::from(i % 100) / 10.0;
            a.add(10.0 + noise);
            b.add(10.5 + noise);
        }
        let d = mean_difference(&a, &b).expect("d");
        assert!(
            d.is_significant() && (d.difference - 0.5).abs() < 1e-9,
            "{d:?}"
        );
        assert!(mean_difference(&Moments::default(), &b).is_none());
    }

    #[test]
    fn a_skewed_split_is_flagged() {
        // 50/50 expected, 10,300 vs 9,700 observed.
        let p = sample_ratio_p_value(&[10_300, 9_700], &[1.0, 1.0]).expect("p");
        assert!(p < 0.001, "{p}");
        assert!(sample_ratio_p_value(&[1], &[1.0]).is_none());
        assert!(sample_ratio_p_value(&[1, 2], &[1.0, 0.0]).is_none());
    }
}
