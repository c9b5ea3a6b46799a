//! Properties of experiment assignment and of the statistics of a comparison, on generated users
//! and synthetic outcomes whose truth is known.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;
use vrs_domain::experiment::{self, BUCKETS, ExposureOutcome, Metric, analyze, assign, bucket};
use vrs_domain::{
    Experiment, ExperimentDraft, ExperimentState, UserId, VariantDraft, VariantTotals,
};

fn user(rng: &mut ChaCha8Rng) -> UserId {
    UserId(Uuid::from_u128(rng.r#gen()))
}

/// Splits `total` buckets into `parts` positive shares.
fn shares_strategy() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(1u64..=5_000, 2..=8).prop_map(|raw| {
        let sum: u64 = raw.iter().sum();
        let mut shares: Vec<u64> = raw.iter().map(|r| (r * BUCKETS / sum).max(1)).collect();
        while shares.iter().sum::<u64>() > BUCKETS {
            let i = shares
                .iter()
                .enumerate()
                .max_by_key(|(_, s)| **s)
                .map(|(i, _)| i)
                .unwrap_or(0);
            shares[i] -= 1;
        }
        shares
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same salt and user always give the same bucket and variant, in range.
    #[test]
    fn assignment_is_deterministic_and_in_range(
        salt in "[a-z0-9-]{1,40}",
        id in any::<u128>(),
        shares in shares_strategy(),
    ) {
        let u = UserId(Uuid::from_u128(id));
        let b = bucket(&salt, u);
        prop_assert!(b < BUCKETS);
        prop_assert_eq!(bucket(&salt, u), b);
        let v = assign(&salt, u, &shares);
        prop_assert_eq!(assign(&salt, u, &shares), v);
        if shares.iter().sum::<u64>() == BUCKETS {
            prop_assert!(v.is_some(), "full coverage leaves nobody out");
        }
        if let Some(i) = v {
            prop_assert!(i < shares.len());
        }
    }

    /// Over many users, every variant gets its share: a chi-square test does not reject the
    /// split (at a level that a correct hash fails once in a million runs).
    #[test]
    fn assignment_follows_the_shares(salt in "[a-z0-9-]{1,40}", seed in any::<u64>(), shares in shares_strategy()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut counts = vec![0u64; shares.len() + 1];
        for _ in 0..20_000 {
            match assign(&salt, user(&mut rng), &shares) {
                Some(i) => counts[i] += 1,
                None => counts[shares.len()] += 1,
            }
        }
        let mut expected: Vec<f64> = shares.iter().map(|s| *s as f64).collect();
        expected.push((BUCKETS - shares.iter().sum::<u64>()) as f64);
        let (obs, exp): (Vec<u64>, Vec<f64>) = counts
            .iter()
            .zip(&expected)
            .filter(|(_, e)| **e > 0.0)
            .map(|(o, e)| (*o, *e))
            .unzip();
        if let Some(p) = experiment::sample_ratio_p_value(&obs, &exp) {
            prop_assert!(p > 1e-6, "p = {p}, counts {counts:?}, shares {shares:?}");
        }
    }

    /// Users consecutive in id space (sequential ids, common in tests and imports) spread too.
    #[test]
    fn sequential_ids_spread(salt in "[a-z]{1,10}", start in any::<u64>()) {
        let mut counts = [0u64; 2];
        for n in 0..10_000u64 {
            let u = UserId(Uuid::from_u128(u128::from(start) + u128::from(n)));
            counts[assign(&salt, u, &[5_000, 5_000]).unwrap_or(0)] += 1;
        }
        let p = experiment::sample_ratio_p_value(&counts, &[1.0, 1.0]).unwrap_or(1.0);
        prop_assert!(p > 1e-6, "{counts:?}");
    }
}

fn two_arms(salt: &str) -> Experiment {
    ExperimentDraft {
        name: "arms".into(),
        salt: Some(salt.into()),
        variants: vec![
            VariantDraft {
                name: "control".into(),
                share: 0.5,
                ..VariantDraft::default()
            },
            VariantDraft {
                name: "treatment".into(),
                share: 0.5,
                ..VariantDraft::default()
            },
        ],
        ..ExperimentDraft::default()
    }
    .validate(
        Uuid::nil(),
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    )
    .expect("valid")
}

/// Simulates users of the experiment: each gets 5-40 exposures over 1-3 sessions, completing a
/// video with `p_control` or `p_treatment` (plus a per-user taste, so a user's exposures are
/// alike), and returns the per-variant totals.
fn simulate(
    e: &Experiment,
    users: usize,
    p_control: f64,
    p_treatment: f64,
    seed: u64,
) -> Vec<VariantTotals> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut totals: Vec<VariantTotals> = e
        .variants
        .iter()
        .map(|v| VariantTotals::new(v.name.clone()))
        .collect();
    for _ in 0..users {
        let u = user(&mut rng);
        let Some((i, _)) = e.assign(u) else { continue };
        let p = if i == 0 { p_control } else { p_treatment };
        let taste: f64 = rng.gen_range(-0.1..0.1);
        let n = rng.gen_range(5..=40);
        let outcomes: Vec<ExposureOutcome> = (0..n)
            .map(|_| {
                let completed = rng.gen_bool((p + taste).clamp(0.0, 1.0));
                ExposureOutcome {
                    completed,
                    liked: rng.gen_bool(0.05),
                    watch_ms: if completed {
                        15_000
                    } else {
                        rng.gen_range(0..5_000)
                    },
                    ..ExposureOutcome::default()
                }
            })
            .collect();
        totals[i].add_user(rng.gen_range(1..=3), &outcomes);
    }
    totals
}

#[test]
fn a_truly_better_variant_has_an_interval_above_zero() {
    let e = two_arms("better");
    let results = analyze(&e, &simulate(&e, 4_000, 0.30, 0.34, 7));
    let treatment = &results.variants[1];
    let completion = treatment
        .metrics
        .iter()
        .find(|m| m.metric == Metric::CompletionRate)
        .and_then(|m| m.difference)
        .expect("a difference");
    assert!(completion.low > 0.0, "{completion:?}");
    assert!(
        (completion.difference - 0.04).abs() < 0.02,
        "{completion:?}"
    );
    assert!(
        !results.sample_ratio_mismatch,
        "{:?}",
        results.sample_ratio_p_value
    );
}

#[test]
fn no_difference_gives_intervals_around_zero() {
    // Twenty A/A experiments: at 95 % about one interval in twenty misses zero by chance; more
    // than four would mean the intervals are too narrow.
    let mut misses = 0;
    for seed in 0..20 {
        let e = two_arms(&format!("aa-{seed}"));
        let results = analyze(&e, &simulate(&e, 2_000, 0.30, 0.30, seed));
        let d = results.variants[1].metrics[2]
            .difference
            .expect("difference");
        if d.is_significant() {
            misses += 1;
        }
    }
    assert!(misses <= 4, "{misses} of 20 A/A intervals exclude zero");
}

#[test]
fn exposure_level_variance_would_be_too_narrow_and_user_level_is_not() {
    // Strong per-user taste: exposures of one user are alike. The delta-method interval must be
    // wider than the naive one over exposures.
    let e = two_arms("clustered");
    let totals = simulate(&e, 2_000, 0.3, 0.3, 99);
    let t = &totals[0];
    let (r, var) = t.ratio(Metric::CompletionRate).expect("ratio");
    let naive = r * (1.0 - r) / t.exposures as f64;
    assert!(var > naive, "delta {var} vs naive {naive}");
}

#[test]
fn a_broken_split_is_flagged() {
    let e = two_arms("skewed");
    let mut totals = simulate(&e, 4_000, 0.3, 0.3, 3);
    // Drop a tenth of the treatment's users, as a logging bug that loses some sessions would.
    let keep = totals[1].users * 9 / 10;
    let mut skewed = VariantTotals::new("treatment");
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for _ in 0..keep {
        skewed.add_user(
            1,
            &[ExposureOutcome {
                completed: rng.gen_bool(0.3),
                ..Default::default()
            }],
        );
    }
    totals[1] = skewed;
    let results = analyze(&e, &totals);
    assert!(
        results.sample_ratio_mismatch,
        "{:?}",
        results.sample_ratio_p_value
    );
    let fair = analyze(&e, &simulate(&e, 4_000, 0.3, 0.3, 3));
    assert!(
        !fair.sample_ratio_mismatch,
        "{:?}",
        fair.sample_ratio_p_value
    );
}

#[test]
fn definitions_are_validated_with_the_field_named() {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let base = || ExperimentDraft {
        name: "ok".into(),
        variants: vec![
            VariantDraft {
                name: "a".into(),
                share: 0.5,
                ..Default::default()
            },
            VariantDraft {
                name: "b".into(),
                share: 0.5,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let field = |d: ExperimentDraft| d.validate(Uuid::nil(), at).unwrap_err().field;
    assert_eq!(
        field(ExperimentDraft {
            name: "".into(),
            ..base()
        }),
        "name"
    );
    assert_eq!(
        field(ExperimentDraft {
            name: "a b".into(),
            ..base()
        }),
        "name"
    );
    assert_eq!(
        field(ExperimentDraft {
            layer: Some("".into()),
            ..base()
        }),
        "layer"
    );
    let mut one = base();
    one.variants.truncate(1);
    assert_eq!(field(one), "variants");
    let mut dup = base();
    dup.variants[1].name = "a".into();
    assert_eq!(field(dup), "variants[1].name");
    let mut share = base();
    share.variants[1].share = 0.00005;
    assert_eq!(field(share), "variants[1].share");
    let mut nan = base();
    nan.variants[0].share = f64::NAN;
    assert_eq!(field(nan), "variants[0].share");
    let mut over = base();
    over.variants[1].share = 0.6;
    assert_eq!(field(over), "variants");
    let mut tiny = base();
    tiny.variants[1].share = 1e-10;
    assert_eq!(
        field(tiny),
        "variants[1].share",
        "a variant without a bucket"
    );
    assert_eq!(
        field(ExperimentDraft {
            name: Uuid::from_u128(5).to_string(),
            ..base()
        }),
        "name"
    );
    let mut model = base();
    model.variants[1].model_version = Some(String::new());
    assert_eq!(field(model), "variants[1].model_version");

    let ok = base().validate(Uuid::from_u128(7), at).expect("valid");
    assert_eq!(ok.state, ExperimentState::Draft);
    assert_eq!(ok.layer, "default");
    assert_eq!(
        ok.salt,
        Uuid::from_u128(7).to_string(),
        "the salt defaults to the id"
    );
    assert_eq!(ok.variants[0].buckets, 5_000);
}

#[test]
fn exposure_ids_are_stable_per_position_and_distinct_across() {
    use vrs_domain::{Exposure, SessionId};
    let (e, s) = (Uuid::from_u128(1), SessionId(Uuid::from_u128(2)));
    assert_eq!(Exposure::id_of(e, s, 3), Exposure::id_of(e, s, 3));
    assert_ne!(Exposure::id_of(e, s, 3), Exposure::id_of(e, s, 4));
    assert_ne!(
        Exposure::id_of(e, s, 3),
        Exposure::id_of(Uuid::from_u128(9), s, 3)
    );
}
