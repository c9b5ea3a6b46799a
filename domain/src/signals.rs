//! The five ranking signals and how each is computed. Every signal is in [0, 1].

use crate::engagement::VideoStats;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Hours after which a video has no freshness left.
pub const FRESHNESS_HORIZON_HOURS: f64 = 720.0;

/// One ranking signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Freshness,
    Completion,
    Engagement,
    Affinity,
    Model,
}

impl Signal {
    /// All signals, in the order used by arrays of signal values.
    pub const ALL: [Signal; 5] = [
        Self::Freshness,
        Self::Completion,
        Self::Engagement,
        Self::Affinity,
        Self::Model,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of signals, e.g. those available for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignalSet(u8);

impl SignalSet {
    /// Every signal.
    pub const ALL: SignalSet = SignalSet(0b1_1111);

    /// No signal.
    pub const fn empty() -> Self {
        Self(0)
    }

    pub fn contains(self, signal: Signal) -> bool {
        self.0 & signal.bit() != 0
    }

    #[must_use]
    pub fn with(self, signal: Signal) -> Self {
        Self(self.0 | signal.bit())
    }

    #[must_use]
    pub fn without(self, signal: Signal) -> Self {
        Self(self.0 & !signal.bit())
    }
}

/// The value of each signal for one (user, video) pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalValues {
    pub freshness: f64,
    pub completion: f64,
    pub engagement: f64,
    pub affinity: f64,
    pub model: f64,
}

impl SignalValues {
    /// The value of one signal.
    pub fn get(&self, signal: Signal) -> f64 {
        match signal {
            Signal::Freshness => self.freshness,
            Signal::Completion => self.completion,
            Signal::Engagement => self.engagement,
            Signal::Affinity => self.affinity,
            Signal::Model => self.model,
        }
    }
}

/// `(1 - min(age_hours / 720, 1))^2`: 1.0 at publish, 0.25 at 15 days, 0 from 30 days on.
///
/// A publish time in the future (clock skew between services) counts as "just published".
pub fn freshness(published_at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    freshness_after((now - published_at).num_seconds())
}

/// [`freshness`] of a video `age_seconds` (whole seconds, truncated) after its publish time.
pub(crate) fn freshness_after(age_seconds: i64) -> f64 {
    let age_hours = (age_seconds as f64 / 3600.0).max(0.0);
    let remaining = 1.0 - (age_hours / FRESHNESS_HORIZON_HOURS).min(1.0);
    remaining * remaining
}

/// `clamp((likes + 2*shares + 0.5*comments) / max(views, 1), 0, 1)`, with likes net of unlikes.
pub fn engagement(stats: &VideoStats) -> f64 {
    clamp_unit(weighted_engagement(stats) / stats.views.max(1) as f64)
}

/// The numerator of [`engagement`]: likes net of unlikes, plus 2 per share and 0.5 per comment.
pub fn weighted_engagement(stats: &VideoStats) -> f64 {
    stats.net_likes() as f64 + 2.0 * stats.shares as f64 + 0.5 * stats.comments as f64
}

/// [`engagement`] shrunk toward `mean` (the catalog's) by a prior worth `prior_views` views:
/// `clamp((weighted + prior·mean) / (views + prior), 0, 1)`. A video with 2 views and a share no
/// longer scores 1.0; one with many views keeps about its raw value. A prior of 0 is the raw value.
pub fn smoothed_engagement(stats: &VideoStats, prior_views: f64, mean: f64) -> f64 {
    if prior_views <= 0.0 || !prior_views.is_finite() {
        return engagement(stats);
    }
    clamp_unit(
        (weighted_engagement(stats) + prior_views * clamp_unit(mean))
            / (stats.views as f64 + prior_views),
    )
}

/// [`completion`] shrunk toward `mean` by a prior worth `prior_watches` watches; a video without
/// watches gets the mean. A prior of 0 is the raw value.
pub fn smoothed_completion(stats: &VideoStats, prior_watches: f64, mean: f64) -> f64 {
    if prior_watches <= 0.0 || !prior_watches.is_finite() {
        return completion(stats);
    }
    clamp_unit(
        (stats.completion_sum + prior_watches * clamp_unit(mean))
            / (stats.watches as f64 + prior_watches),
    )
}

/// Mean completion ratio over watch events; 0 when the video has none.
pub fn completion(stats: &VideoStats) -> f64 {
    if stats.watches == 0 {
        return 0.0;
    }
    clamp_unit(stats.completion_sum / stats.watches as f64)
}

/// Affinity value for a user with no interaction history at all.
pub const NEUTRAL_AFFINITY: f64 = 0.5;

/// The user's interaction strength with a creator, normalized by their strongest creator.
///
/// `strongest` is the user's largest strength; `None` (or zero) means the user has no history, and
/// every creator then gets the neutral 0.5.
pub fn affinity(strength: Option<f64>, strongest: Option<f64>) -> f64 {
    match strongest {
        Some(max) if max > 0.0 && max.is_finite() => clamp_unit(strength.unwrap_or(0.0) / max),
        _ => NEUTRAL_AFFINITY,
    }
}

/// Clamps into [0, 1]; NaN becomes 0 so a corrupt aggregate cannot poison a score.
pub fn clamp_unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The ranking computes ages from Unix nanoseconds; it must agree with `freshness`
        /// to the bit, sub-second parts and future publish times included.
        #[test]
        fn freshness_from_nanoseconds_is_freshness(
            published in 1_500_000_000_000_000_000i64..1_900_000_000_000_000_000,
            age in -3_600_000_000_000i64..3_000_000_000_000_000,
        ) {
            let now_nanos = published + age;
            let (p, n) = (
                DateTime::from_timestamp_nanos(published),
                DateTime::from_timestamp_nanos(now_nanos),
            );
            prop_assert_eq!(
                freshness_after((now_nanos - published) / 1_000_000_000).to_bits(),
                freshness(p, n).to_bits()
            );
        }
    }
}
