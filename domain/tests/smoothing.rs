//! Smoothed engagement and completion: low-view videos no longer score like the best ones.

mod common;

use chrono::Duration;
use common::{pool, stats, vid, video};
use proptest::prelude::*;
use vrs_domain::signals::{self, smoothed_completion, smoothed_engagement};

#[test]
fn a_video_with_two_views_and_a_share_no_longer_outranks_a_popular_one() {
    let lucky = stats(2, 0, 1, 0, 2, 1.0);
    let popular = stats(10_000, 3_000, 500, 200, 9_000, 0.8);
    assert_eq!(
        signals::engagement(&lucky),
        1.0,
        "the raw definition is unchanged"
    );
    let mean = 0.1;
    let (s_lucky, s_popular) = (
        smoothed_engagement(&lucky, 10.0, mean),
        smoothed_engagement(&popular, 10.0, mean),
    );
    assert!(s_lucky < s_popular, "{s_lucky} vs {s_popular}");
    assert!((s_popular - signals::engagement(&popular)).abs() < 0.01);
    // Completion likewise: two full watches are not a perfect record yet.
    assert!(smoothed_completion(&lucky, 10.0, 0.5) < 0.6);
    assert!((smoothed_completion(&popular, 10.0, 0.5) - 0.8).abs() < 0.01);
}

#[test]
fn a_prior_of_zero_is_the_raw_definition_and_no_data_gets_the_mean() {
    let s = stats(3, 1, 1, 0, 2, 0.7);
    assert_eq!(smoothed_engagement(&s, 0.0, 0.3), signals::engagement(&s));
    assert_eq!(smoothed_completion(&s, 0.0, 0.3), signals::completion(&s));
    let none = stats(0, 0, 0, 0, 0, 0.0);
    assert!((smoothed_engagement(&none, 10.0, 0.3) - 0.3).abs() < 1e-12);
    assert!((smoothed_completion(&none, 10.0, 0.6) - 0.6).abs() < 1e-12);
}

#[test]
fn the_pool_shrinks_toward_its_own_means_and_keeps_the_raw_values() {
    let videos = vec![
        video(1, 1, Duration::hours(1)),
        video(2, 2, Duration::hours(2)),
        video(3, 3, Duration::hours(3)),
    ];
    let mut p = pool(
        videos,
        &[
            (vid(1), stats(2, 0, 1, 0, 2, 1.0)),
            (vid(2), stats(1_000, 100, 0, 0, 900, 0.5)),
        ],
        &[],
    );
    p.smooth(10.0);
    let e = |n| p.get(&vid(n)).expect("entry");
    assert_eq!(e(1).raw_engagement, 1.0);
    assert!(e(1).engagement < 0.5, "{}", e(1).engagement);
    assert!(e(1).engagement < e(2).engagement * 3.0);
    // The mean is total weighted engagement over total views: (2 + 100) / 1002.
    let mean = 102.0 / 1002.0;
    assert!(
        (e(3).engagement - mean).abs() < 1e-12,
        "a video without views gets the mean"
    );
    assert_eq!(e(3).raw_engagement, 0.0);
}

proptest! {
    #[test]
    fn smoothed_values_lie_between_the_raw_value_and_the_mean(
        views in 0u64..10_000, likes in 0u64..10_000, shares in 0u64..1_000,
        watches in 0u64..10_000, completion in 0.0f64..=1.0,
        prior in 0.0f64..1_000.0, mean in 0.0f64..=1.0,
    ) {
        let s = stats(views, likes.min(views), shares.min(views), 0, watches, completion);
        let raw = signals::engagement(&s);
        let smoothed = smoothed_engagement(&s, prior, mean);
        prop_assert!((0.0..=1.0).contains(&smoothed));
        if views > 0 {
            let (lo, hi) = if raw < mean { (raw, mean) } else { (mean, raw) };
            prop_assert!(smoothed >= lo - 1e-9 && smoothed <= hi + 1e-9, "{raw} {mean} {smoothed}");
        }
        let c = smoothed_completion(&s, prior, mean);
        prop_assert!((0.0..=1.0).contains(&c));
    }
}
