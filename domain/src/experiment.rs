//! Experiments as policy: deterministic assignment of users to variants, and the statistics that
//! tell whether a variant differs from control. Pure: no storage, no clock.
//!
//! - **Assignment.** A user's bucket is a hash of the experiment's salt and the user id, into
//!   [`BUCKETS`] buckets; variants own consecutive ranges of buckets by their traffic share. The
//!   same salt and user give the same variant on every replica and after every restart; two
//!   experiments with different salts (different layers) assign independently.
//! - **Differences.** Every metric is a per-exposure ratio (likes per exposure, watch time per
//!   exposure, ...) of sums over a variant's users. Users are the unit of assignment and one
//!   user's exposures are alike, so the variance of a ratio is estimated over users by the delta
//!   method, and "variant − control" gets a 95 % normal interval.
//! - **Sample-ratio mismatch.** A chi-square goodness-of-fit test of the users each variant got
//!   against its share: a tiny p-value means assignment or logging is broken, and no difference
//!   should be trusted.

use crate::engagement::EventType;
use crate::ids::{SessionId, UserId, VideoId};
use crate::weights::Weights;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};
use uuid::Uuid;

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

/// Below this p-value the sample-ratio check flags an experiment: its assignment or its
/// exposure logging is broken, and no difference it shows should be trusted.
pub const SAMPLE_RATIO_ALPHA: f64 = 0.001;

/// How long before an exposure's `served_at` an event still counts for it: events carry the
/// client's clock, which may run slow (by as much as the service lets a fast one run ahead,
/// [`crate::engagement::MAX_CLOCK_SKEW_SECONDS`]).
pub const ATTRIBUTION_SLACK_SECONDS: i64 = crate::engagement::MAX_CLOCK_SKEW_SECONDS;

/// Whether an event at `occurred_at` counts for an exposure served at `served_at`, within
/// `window_seconds` after it (times compared in whole seconds, as the stores keep them).
pub fn attributed(
    served_at: DateTime<Utc>,
    occurred_at: DateTime<Utc>,
    window_seconds: i64,
) -> bool {
    let (served, at) = (served_at.timestamp(), occurred_at.timestamp());
    at >= served - ATTRIBUTION_SLACK_SECONDS && at <= served + window_seconds
}

/// Most running experiments at once (every one adds labels to the metrics and a query to each
/// results refresh).
pub const MAX_RUNNING: usize = 16;

/// Most variants of one experiment (control included).
pub const MAX_VARIANTS: usize = 8;

/// Longest name of an experiment, a layer, or a variant.
pub const MAX_NAME_CHARS: usize = 64;

/// Where an experiment is in its life: drafts can be started, running ones stopped; a stopped
/// experiment is kept for its results and never runs again (a rerun is a new experiment, with a
/// new salt, so that its users are not the ones the first run left with a memory of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentState {
    Draft,
    Running,
    Stopped,
}

impl ExperimentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Running, Self::Stopped]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// One arm of an experiment: its share of the traffic and what it changes in the ranking. A
/// variant that changes nothing ranks like the default (the control usually does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    /// Share of the users, in buckets of [`BUCKETS`].
    pub buckets: u64,
    /// The weight set this variant ranks with instead of the active one.
    pub weights: Option<Weights>,
    /// The registered model version this variant scores with instead of the active one.
    pub model_version: Option<String>,
}

impl Variant {
    /// The share of the users, in [0, 1].
    pub fn share(&self) -> f64 {
        self.buckets as f64 / BUCKETS as f64
    }
}

/// An experiment: users are split into variants by a hash of the salt and their id. The first
/// variant is the control every other one is compared with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// At most one experiment runs per layer; experiments of different layers (with their own
    /// salts) split users independently of each other.
    pub layer: String,
    pub salt: String,
    pub state: ExperimentState,
    pub variants: Vec<Variant>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
}

/// The variant of one experiment a feed session is ranked by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Assignment {
    pub experiment_id: Uuid,
    pub experiment: String,
    pub variant: String,
}

impl Experiment {
    /// The variant `user` belongs to (index and variant); `None` for a user outside every
    /// variant (an experiment that does not cover all traffic).
    pub fn assign(&self, user: UserId) -> Option<(usize, &Variant)> {
        let shares: Vec<u64> = self.variants.iter().map(|v| v.buckets).collect();
        let i = assign(&self.salt, user, &shares)?;
        Some((i, &self.variants[i]))
    }

    /// The assignment of `user`, as a session records it, with the variant.
    pub fn assignment(&self, user: UserId) -> Option<(Assignment, &Variant)> {
        self.assign(user).map(|(_, v)| {
            let assignment = Assignment {
                experiment_id: self.id,
                experiment: self.name.clone(),
                variant: v.name.clone(),
            };
            (assignment, v)
        })
    }

    /// Which ranking knobs its variants change: (weights, model).
    pub fn knobs(&self) -> (bool, bool) {
        (
            self.variants.iter().any(|v| v.weights.is_some()),
            self.variants.iter().any(|v| v.model_version.is_some()),
        )
    }
}

/// Why an experiment definition was refused: `field` names the offending JSON field (e.g.
/// `variants[1].share`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ExperimentError {
    pub field: String,
    pub message: String,
}

impl ExperimentError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An experiment as a client defines it, before validation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExperimentDraft {
    pub name: String,
    pub description: String,
    pub layer: Option<String>,
    pub salt: Option<String>,
    pub variants: Vec<VariantDraft>,
}

/// A variant as a client defines it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VariantDraft {
    pub name: String,
    /// Share of the users in (0, 1], in steps of 0.0001.
    pub share: f64,
    pub weights: Option<Weights>,
    pub model_version: Option<String>,
}

/// The layer of an experiment created without one.
pub const DEFAULT_LAYER: &str = "default";

fn check_name(field: String, value: &str, max: usize) -> Result<(), ExperimentError> {
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if value.is_empty() || value.chars().count() > max || !ok_chars {
        return Err(ExperimentError::new(
            field,
            format!("must be 1 to {max} characters of letters, digits, '_', '-' or '.'"),
        ));
    }
    Ok(())
}

impl ExperimentDraft {
    /// Validates the definition into a draft experiment with `id`, created at `at`. The salt
    /// defaults to the id, so two experiments never share an assignment by accident.
    pub fn validate(self, id: Uuid, at: DateTime<Utc>) -> Result<Experiment, ExperimentError> {
        check_name("name".into(), &self.name, MAX_NAME_CHARS)?;
        if Uuid::parse_str(&self.name).is_ok() {
            return Err(ExperimentError::new(
                "name",
                "must not be a UUID (experiments are looked up by id or name)",
            ));
        }
        if self.description.chars().count() > 1_000 {
            return Err(ExperimentError::new(
                "description",
                "must be at most 1000 characters",
            ));
        }
        let layer = self.layer.unwrap_or_else(|| DEFAULT_LAYER.to_owned());
        check_name("layer".into(), &layer, MAX_NAME_CHARS)?;
        let salt = self.salt.unwrap_or_else(|| id.to_string());
        if salt.is_empty() || salt.chars().count() > 128 {
            return Err(ExperimentError::new("salt", "must be 1 to 128 characters"));
        }
        if !(2..=MAX_VARIANTS).contains(&self.variants.len()) {
            return Err(ExperimentError::new(
                "variants",
                format!("must list 2 to {MAX_VARIANTS} variants, the control first"),
            ));
        }
        let mut variants: Vec<Variant> = Vec::with_capacity(self.variants.len());
        for (i, v) in self.variants.into_iter().enumerate() {
            let field = |f: &str| format!("variants[{i}].{f}");
            check_name(field("name"), &v.name, MAX_NAME_CHARS)?;
            if variants.iter().any(|other| other.name == v.name) {
                return Err(ExperimentError::new(
                    field("name"),
                    "is used by another variant",
                ));
            }
            let scaled = v.share * BUCKETS as f64;
            if !(v.share.is_finite() && v.share > 0.0 && v.share <= 1.0)
                || (scaled - scaled.round()).abs() > 1e-6
                || scaled.round() < 1.0
            {
                return Err(ExperimentError::new(
                    field("share"),
                    "must be a number from 0.0001 to 1, in steps of 0.0001",
                ));
            }
            if let Some(m) = &v.model_version
                && (m.is_empty() || m.chars().count() > 128)
            {
                return Err(ExperimentError::new(
                    field("model_version"),
                    "must be 1 to 128 characters",
                ));
            }
            variants.push(Variant {
                name: v.name,
                buckets: scaled.round() as u64,
                weights: v.weights,
                model_version: v.model_version,
            });
        }
        if variants.iter().map(|v| v.buckets).sum::<u64>() > BUCKETS {
            return Err(ExperimentError::new(
                "variants",
                "the shares must add up to at most 1",
            ));
        }
        Ok(Experiment {
            id,
            name: self.name,
            description: self.description,
            layer,
            salt,
            state: ExperimentState::Draft,
            variants,
            created_at: at,
            started_at: None,
            stopped_at: None,
        })
    }
}

/// One video shown in one position of a page of a session ranked by a variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// Derived from (experiment, session, position): serving the same page again (a client's
    /// retry of a cursor) exposes nothing new.
    pub exposure_id: Uuid,
    pub experiment_id: Uuid,
    pub variant: String,
    pub user_id: UserId,
    pub session_id: SessionId,
    pub video_id: VideoId,
    /// The item's index in its session.
    pub position: u32,
    pub served_at: DateTime<Utc>,
}

impl Exposure {
    /// The id of the exposure of position `position` of `session` in `experiment`.
    pub fn id_of(experiment: Uuid, session: SessionId, position: u32) -> Uuid {
        let mut name = [0u8; 20];
        name[..16].copy_from_slice(session.0.as_bytes());
        name[16..].copy_from_slice(&position.to_le_bytes());
        Uuid::new_v5(&experiment, &name)
    }
}

/// The per-exposure metrics of an experiment, in the order of [`VariantTotals::metrics`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Exposures followed by a `like`.
    LikeRate,
    /// Exposures followed by a `share`.
    ShareRate,
    /// Exposures followed by a `complete`.
    CompletionRate,
    /// Exposures followed by a `skip`.
    SkipRate,
    /// Milliseconds watched per exposure (the longest `watch_ms` reported for it; 0 when none).
    WatchMsPerExposure,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Self::LikeRate,
        Self::ShareRate,
        Self::CompletionRate,
        Self::SkipRate,
        Self::WatchMsPerExposure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LikeRate => "like_rate",
            Self::ShareRate => "share_rate",
            Self::CompletionRate => "completion_rate",
            Self::SkipRate => "skip_rate",
            Self::WatchMsPerExposure => "watch_ms_per_exposure",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|m| *m == self).unwrap_or(0)
    }
}

/// What one exposure led to: the user's events on the exposed video within the attribution
/// window after it was served.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExposureOutcome {
    pub liked: bool,
    pub shared: bool,
    pub completed: bool,
    pub skipped: bool,
    pub watch_ms: u64,
}

impl ExposureOutcome {
    /// Adds one event of the exposed user on the exposed video.
    pub fn observe(&mut self, event_type: EventType, watch_ms: Option<u64>) {
        match event_type {
            EventType::Like => self.liked = true,
            EventType::Share => self.shared = true,
            EventType::Complete => self.completed = true,
            EventType::Skip => self.skipped = true,
            _ => {}
        }
        if matches!(
            event_type,
            EventType::View | EventType::Watch | EventType::Complete | EventType::Skip
        ) {
            self.watch_ms = self.watch_ms.max(watch_ms.unwrap_or(0));
        }
    }

    /// The value of each metric for this exposure, in [`Metric::ALL`] order.
    pub fn values(&self) -> [f64; 5] {
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        [
            b(self.liked),
            b(self.shared),
            b(self.completed),
            b(self.skipped),
            self.watch_ms as f64,
        ]
    }
}

/// Sums over a variant's users of one metric's per-user total `s` (`Σs`, `Σs²`) and of its
/// product with the user's exposures `n` (`Σs·n`): what the delta method needs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetricSums {
    pub sum: f64,
    pub sum_squares: f64,
    pub sum_products: f64,
}

/// One variant's totals, summed per user: the unit of randomization is the user, so the
/// variance of a per-exposure rate is estimated over users (delta method), not over exposures,
/// which would overstate the confidence when one user's exposures are alike.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VariantTotals {
    pub variant: String,
    pub users: u64,
    pub sessions: u64,
    pub exposures: u64,
    /// `Σn²` over users.
    pub exposures_squares: f64,
    /// Per metric, in [`Metric::ALL`] order.
    pub metrics: [MetricSums; 5],
}

impl VariantTotals {
    pub fn new(variant: impl Into<String>) -> Self {
        Self {
            variant: variant.into(),
            ..Self::default()
        }
    }

    /// Adds one user with their sessions and the outcomes of their exposures.
    pub fn add_user(&mut self, sessions: u64, outcomes: &[ExposureOutcome]) {
        if outcomes.is_empty() {
            return;
        }
        let n = outcomes.len() as f64;
        self.users += 1;
        self.sessions += sessions;
        self.exposures += outcomes.len() as u64;
        self.exposures_squares += n * n;
        let mut per_metric = [0.0; 5];
        for o in outcomes {
            for (total, v) in per_metric.iter_mut().zip(o.values()) {
                *total += v;
            }
        }
        for (sums, s) in self.metrics.iter_mut().zip(per_metric) {
            sums.sum += s;
            sums.sum_squares += s * s;
            sums.sum_products += s * n;
        }
    }

    /// The metric's per-exposure value and the variance of that estimate (delta method over
    /// users); `None` below two users.
    pub fn ratio(&self, metric: Metric) -> Option<(f64, f64)> {
        let k = self.users as f64;
        if self.users < 2 || self.exposures == 0 {
            return None;
        }
        let sums = self.metrics[metric.index()];
        let (s, n) = (sums.sum, self.exposures as f64);
        let r = s / n;
        let var_s = (sums.sum_squares - s * s / k) / (k - 1.0);
        let var_n = (self.exposures_squares - n * n / k) / (k - 1.0);
        let cov = (sums.sum_products - s * n / k) / (k - 1.0);
        let mean_n = n / k;
        let variance = ((var_s - 2.0 * r * cov + r * r * var_n) / (k * mean_n * mean_n)).max(0.0);
        Some((r, variance))
    }
}

/// The difference of a per-exposure metric between a variant and control, with its 95 %
/// interval; `None` below two users a side.
pub fn ratio_difference(
    control: &VariantTotals,
    variant: &VariantTotals,
    metric: Metric,
) -> Option<Difference> {
    let (c, var_c) = control.ratio(metric)?;
    let (v, var_v) = variant.ratio(metric)?;
    let se = (var_c + var_v).sqrt();
    let d = v - c;
    Some(Difference {
        control: c,
        variant: v,
        difference: d,
        low: d - Z_95 * se,
        high: d + Z_95 * se,
    })
}

/// One metric of one variant: its value with a 95 % interval, and the difference to control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricResult {
    pub metric: Metric,
    pub value: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// `None` for the control, and below two users a side.
    pub difference: Option<Difference>,
}

/// One variant's results.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantResult {
    pub variant: String,
    pub is_control: bool,
    pub share: f64,
    pub users: u64,
    pub sessions: u64,
    pub exposures: u64,
    pub metrics: Vec<MetricResult>,
}

/// What an experiment shows so far.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentResults {
    pub variants: Vec<VariantResult>,
    /// The chi-square p-value of the users per variant against the shares; `None` without users.
    pub sample_ratio_p_value: Option<f64>,
    /// The p-value is below [`SAMPLE_RATIO_ALPHA`]: assignment or logging is broken.
    pub sample_ratio_mismatch: bool,
}

/// Computes the results of `experiment` from its per-variant totals (variants without totals
/// count as empty; totals of unknown variants are ignored).
pub fn analyze(experiment: &Experiment, totals: &[VariantTotals]) -> ExperimentResults {
    let of = |name: &str| {
        totals
            .iter()
            .find(|t| t.variant == name)
            .cloned()
            .unwrap_or_else(|| VariantTotals::new(name))
    };
    let all: Vec<VariantTotals> = experiment.variants.iter().map(|v| of(&v.name)).collect();
    let control = all.first().cloned().unwrap_or_default();
    let variants = experiment
        .variants
        .iter()
        .zip(&all)
        .enumerate()
        .map(|(i, (v, t))| VariantResult {
            variant: v.name.clone(),
            is_control: i == 0,
            share: v.share(),
            users: t.users,
            sessions: t.sessions,
            exposures: t.exposures,
            metrics: Metric::ALL
                .into_iter()
                .map(|m| {
                    let ratio = t.ratio(m);
                    let half = ratio.map(|(_, var)| Z_95 * var.sqrt());
                    MetricResult {
                        metric: m,
                        value: ratio.map(|(r, _)| r).or_else(|| {
                            (t.exposures > 0).then(|| t.metrics[m.index()].sum / t.exposures as f64)
                        }),
                        low: ratio.zip(half).map(|((r, _), h)| r - h),
                        high: ratio.zip(half).map(|((r, _), h)| r + h),
                        difference: if i == 0 {
                            None
                        } else {
                            ratio_difference(&control, t, m)
                        },
                    }
                })
                .collect(),
        })
        .collect();
    let users: Vec<u64> = all.iter().map(|t| t.users).collect();
    let shares: Vec<f64> = experiment.variants.iter().map(|v| v.share()).collect();
    let p = sample_ratio_p_value(&users, &shares);
    ExperimentResults {
        variants,
        sample_ratio_p_value: p,
        sample_ratio_mismatch: p.is_some_and(|p| p < SAMPLE_RATIO_ALPHA),
    }
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
    fn a_skewed_split_is_flagged() {
        // 50/50 expected, 10,300 vs 9,700 observed.
        let p = sample_ratio_p_value(&[10_300, 9_700], &[1.0, 1.0]).expect("p");
        assert!(p < 0.001, "{p}");
        assert!(sample_ratio_p_value(&[1], &[1.0]).is_none());
        assert!(sample_ratio_p_value(&[1, 2], &[1.0, 0.0]).is_none());
    }
}
