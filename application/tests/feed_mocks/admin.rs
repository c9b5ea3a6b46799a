//! AdminService: bounds are checked before any store is asked; store failures are reported.

use super::*;
use vrs_application::admin::{AdminError, AdminService, Invalidation, MAX_WARMUP_USERS};

fn admin(ports: Ports) -> AdminService {
    let feed = Arc::new(FeedService::new(
        ports.clone(),
        loaded_snapshot(),
        FeedConfig::default(),
    ));
    let warmer = Arc::new(CacheWarmer::new(ports.clone(), feed));
    AdminService::new(ports, warmer)
}

#[tokio::test]
async fn warm_up_bounds_are_checked_before_any_store_is_asked() {
    // The signal store mock expects nothing: asking it would panic.
    let admin = admin(Mocks::new().ports());
    for (users, batch) in [(0, 10), (MAX_WARMUP_USERS + 1, 10), (10, 0), (10, 101)] {
        let err = admin.warm_up(users, batch, |_| {}).await.err();
        assert!(
            matches!(err, Some(AdminError::Invalid(_))),
            "{users}/{batch}: {err:?}"
        );
    }
}

#[tokio::test]
async fn warm_up_ranks_the_most_active_users_and_counts_failures() {
    let mut mocks = Mocks::new();
    let active: Vec<UserId> = (1..=4).map(|n| UserId(Uuid::from_u128(n))).collect();
    let listed = active.clone();
    mocks
        .signals
        .expect_most_active_users()
        .withf(|_, limit| *limit == 4)
        .returning(move |_, _| Ok(listed.clone()));
    let failing = active[3];
    mocks
        .feed_cache
        .expect_store_session()
        .returning(move |s, _| {
            if s.user_id == failing {
                Err(down())
            } else {
                Ok(())
            }
        });
    let done = counter();
    let progress = done.clone();
    let report = admin(mocks.ports())
        .warm_up(4, 2, move |n| {
            progress.fetch_add(n, Ordering::SeqCst);
        })
        .await
        .expect("warm-up");
    assert_eq!((report.warmed, report.failed), (3, 1));
    assert_eq!(done.load(Ordering::SeqCst), 4, "progress reported per user");
}

#[tokio::test]
async fn invalidating_a_list_drops_each_named_user_only() {
    let mut mocks = Mocks::new();
    mocks
        .feed_cache
        .expect_invalidate()
        .times(3)
        .returning(|_| Ok(()));
    mocks.feed_cache.expect_invalidate_all().never();
    let admin = admin(mocks.ports());
    let users: Vec<UserId> = (1..=3).map(|n| UserId(Uuid::from_u128(n))).collect();
    assert_eq!(
        admin.invalidate(Invalidation::Users(users)).await.ok(),
        Some(3)
    );
    assert!(matches!(
        admin.invalidate(Invalidation::Users(vec![])).await,
        Err(AdminError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_failing_store_is_reported_as_unavailable() {
    let mut ports = Mocks::new().ports();
    let mut config = MockRankingConfigStore::new();
    config.expect_activate().returning(|_| Err(down()));
    config.expect_active_set().returning(|| Err(down()));
    config.expect_history().returning(|_| Ok(vec![]));
    ports.ranking_config = Arc::new(config);
    let admin = admin(ports);
    assert!(matches!(
        admin.set_weights(Weights::DEFAULT).await,
        Err(AdminError::Unavailable(_))
    ));
    assert!(matches!(
        admin.weights().await,
        Err(AdminError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_warm_up_where_every_user_fails_is_unavailable() {
    let mut mocks = Mocks::new();
    let active: Vec<UserId> = (1..=3).map(|n| UserId(Uuid::from_u128(n))).collect();
    mocks
        .signals
        .expect_most_active_users()
        .returning(move |_, _| Ok(active.clone()));
    mocks
        .feed_cache
        .expect_store_session()
        .returning(|_, _| Err(down()));
    let err = admin(mocks.ports()).warm_up(3, 2, |_| {}).await.err();
    assert!(matches!(err, Some(AdminError::Unavailable(_))), "{err:?}");
}
