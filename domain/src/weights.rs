//! Validated signal weights and their renormalization when signals are unavailable.

use crate::signals::{Signal, SignalSet, SignalValues};
use serde::{Deserialize, Serialize};

/// How far the weights' sum may be from 1.
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

/// Why a weight set was rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("weight `{signal}` must be a finite number, got {value}")]
    NotFinite { signal: &'static str, value: f64 },
    #[error("weight `{signal}` must not be negative, got {value}")]
    Negative { signal: &'static str, value: f64 },
    #[error("weights must sum to 1 (within 1e-6), got {sum}")]
    BadSum { sum: f64 },
}

/// Weights of the five signals: finite, non-negative, summing to 1.
///
/// Constructed only through [`Weights::new`] (or deserialized through it), so holders never re-check.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawWeights")]
pub struct Weights {
    freshness: f64,
    completion: f64,
    engagement: f64,
    affinity: f64,
    model: f64,
}

/// Unvalidated weights as they arrive from configuration or storage.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct RawWeights {
    pub freshness: f64,
    pub completion: f64,
    pub engagement: f64,
    pub affinity: f64,
    pub model: f64,
}

impl TryFrom<RawWeights> for Weights {
    type Error = WeightsError;
    fn try_from(r: RawWeights) -> Result<Self, Self::Error> {
        Weights::new(r.freshness, r.completion, r.engagement, r.affinity, r.model)
    }
}

impl Default for Weights {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Weights {
    /// The default policy: freshness 0.10, completion 0.25, engagement 0.15, affinity 0.10,
    /// model 0.40. The learned model carries the personal part; without an active model its
    /// weight is spread over the others, in about the proportions they had before the model
    /// existed (0.15 / 0.40 / 0.25 / 0.15). Measured offline in docs/ranking.md.
    pub const DEFAULT: Weights = Weights {
        freshness: 0.10,
        completion: 0.25,
        engagement: 0.15,
        affinity: 0.10,
        model: 0.40,
    };

    /// Validates a weight set.
    pub fn new(
        freshness: f64,
        completion: f64,
        engagement: f64,
        affinity: f64,
        model: f64,
    ) -> Result<Self, WeightsError> {
        let named = [
            ("freshness", freshness),
            ("completion", completion),
            ("engagement", engagement),
            ("affinity", affinity),
            ("model", model),
        ];
        for (signal, value) in named {
            if !value.is_finite() {
                return Err(WeightsError::NotFinite { signal, value });
            }
            if value < 0.0 {
                return Err(WeightsError::Negative { signal, value });
            }
        }
        let sum: f64 = named.iter().map(|(_, v)| v).sum();
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            return Err(WeightsError::BadSum { sum });
        }
        Ok(Self {
            freshness,
            completion,
            engagement,
            affinity,
            model,
        })
    }

    /// The weight of one signal.
    pub fn get(&self, signal: Signal) -> f64 {
        match signal {
            Signal::Freshness => self.freshness,
            Signal::Completion => self.completion,
            Signal::Engagement => self.engagement,
            Signal::Affinity => self.affinity,
            Signal::Model => self.model,
        }
    }

    /// The weights to use when only `available` signals can be computed for a request: unavailable
    /// signals get 0 and the rest are scaled to sum to 1, so scores stay in [0, 1]. When every
    /// available signal has weight 0, they share the weight equally.
    #[must_use]
    pub fn renormalized(&self, available: SignalSet) -> Weights {
        let kept = |s: Signal| {
            if available.contains(s) {
                self.get(s)
            } else {
                0.0
            }
        };
        let sum: f64 = Signal::ALL.iter().map(|&s| kept(s)).sum();
        let count = Signal::ALL
            .iter()
            .filter(|&&s| available.contains(s))
            .count();
        let scale = |s: Signal| {
            if sum > 0.0 {
                kept(s) / sum
            } else if available.contains(s) {
                1.0 / count as f64
            } else {
                0.0
            }
        };
        if count == 0 {
            return *self;
        }
        Weights {
            freshness: scale(Signal::Freshness),
            completion: scale(Signal::Completion),
            engagement: scale(Signal::Engagement),
            affinity: scale(Signal::Affinity),
            model: scale(Signal::Model),
        }
    }

    /// Weighted contribution of each signal, in [`Signal::ALL`] order.
    pub fn contributions(&self, values: &SignalValues) -> SignalValues {
        SignalValues {
            freshness: self.freshness * values.freshness,
            completion: self.completion * values.completion,
            engagement: self.engagement * values.engagement,
            affinity: self.affinity * values.affinity,
            model: self.model * values.model,
        }
    }

    /// The score: the weighted sum of the signals, clamped into [0, 1]. NaN stays NaN so the selector
    /// can sink it.
    ///
    /// The clamp matters: accepted weights may sum to 1 + 1e-6, and renormalized ones to 1 plus a few
    /// ulps (about 3% of random weight sets), so all-1 signals would otherwise score above 1.
    pub fn score(&self, values: &SignalValues) -> f64 {
        let sum = self.freshness * values.freshness
            + self.completion * values.completion
            + self.engagement * values.engagement
            + self.affinity * values.affinity
            + self.model * values.model;
        // `f64::clamp` returns NaN for NaN.
        sum.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_weights_are_valid() {
        let d = Weights::DEFAULT;
        assert!(Weights::new(d.freshness, d.completion, d.engagement, d.affinity, d.model).is_ok());
    }

    #[test]
    fn rejects_bad_weights_with_a_named_error() {
        assert!(matches!(
            Weights::new(f64::NAN, 0.4, 0.25, 0.15, 0.2),
            Err(WeightsError::NotFinite {
                signal: "freshness",
                ..
            })
        ));
        assert!(matches!(
            Weights::new(-0.1, 0.5, 0.25, 0.15, 0.2),
            Err(WeightsError::Negative {
                signal: "freshness",
                ..
            })
        ));
        assert!(matches!(
            Weights::new(0.2, 0.4, 0.25, 0.15, 0.05),
            Err(WeightsError::BadSum { .. })
        ));
        assert!(matches!(
            Weights::new(0.15, 0.40, 0.25, 0.15, f64::INFINITY),
            Err(WeightsError::NotFinite {
                signal: "model",
                ..
            })
        ));
    }

    #[test]
    fn accepts_a_sum_within_tolerance() {
        assert!(Weights::new(0.15, 0.40, 0.25, 0.15, 0.05 + 5e-7).is_ok());
        assert!(Weights::new(0.15, 0.40, 0.25, 0.15, 0.05 + 5e-6).is_err());
    }

    #[test]
    fn renormalization_drops_unavailable_signals() {
        let w = Weights::DEFAULT.renormalized(SignalSet::ALL.without(Signal::Model));
        assert_eq!(w.get(Signal::Model), 0.0);
        assert!((w.get(Signal::Completion) - 0.25 / 0.60).abs() < 1e-12);
        let sum: f64 = Signal::ALL.iter().map(|&s| w.get(s)).sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn renormalization_shares_equally_when_available_weights_are_zero() {
        let only_model = Weights::new(0.0, 0.0, 0.0, 0.0, 1.0).unwrap_or_default();
        let w = only_model.renormalized(
            SignalSet::empty()
                .with(Signal::Freshness)
                .with(Signal::Completion),
        );
        assert_eq!(w.get(Signal::Freshness), 0.5);
        assert_eq!(w.get(Signal::Completion), 0.5);
        assert_eq!(w.get(Signal::Model), 0.0);
    }

    #[test]
    fn deserializing_validates() {
        let bad = r#"{"freshness":0.5,"completion":0.5,"engagement":0.5,"affinity":0,"model":0}"#;
        let err = serde_json::from_str::<Weights>(bad);
        assert!(err.is_err());
    }
}
