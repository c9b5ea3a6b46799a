//! HealthService: probes and the candidate snapshot decide status and readiness.

use super::*;

fn probe(name: &'static str, result: Result<(), PortError>) -> Arc<dyn HealthProbe> {
    let mut probe = MockHealthProbe::new();
    probe.expect_name().return_const(name);
    probe.expect_check().returning(move || result.clone());
    Arc::new(probe)
}

fn health(mocks: Mocks, snapshot: Arc<CandidateSnapshot>) -> HealthService {
    HealthService::new(mocks.ports(), snapshot, std::time::Duration::from_secs(300))
        .with_cache_period(std::time::Duration::ZERO)
}

#[tokio::test]
async fn all_checks_passing_is_ok_and_ready() {
    let mut mocks = Mocks::new();
    mocks.probes = vec![probe("redis", Ok(()))];
    let report = health(mocks, loaded_snapshot()).check().await;
    assert_eq!((report.status, report.ready), (HealthStatus::Ok, true));
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["redis", "candidate_snapshot"]);
}

#[tokio::test]
async fn failing_probe_degrades_but_stays_ready() {
    let mut mocks = Mocks::new();
    mocks.probes = vec![probe("redis", Ok(())), probe("clickhouse", Err(down()))];
    let report = health(mocks, loaded_snapshot()).check().await;
    assert_eq!(
        (report.status, report.ready),
        (HealthStatus::Degraded, true)
    );
    let failed: Vec<(&str, Option<&str>)> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| (c.name.as_str(), c.error.as_deref()))
        .collect();
    assert_eq!(failed, [("clickhouse", Some("unavailable: down"))]);
}

#[tokio::test]
async fn health_without_snapshot_is_not_ready() {
    let report = health(Mocks::new(), Arc::new(CandidateSnapshot::new()))
        .check()
        .await;
    assert_eq!(
        (report.status, report.ready),
        (HealthStatus::Degraded, false)
    );
}

#[tokio::test]
async fn stale_snapshot_or_signals_degrade_but_stay_ready() {
    for (built_at, signals_fresh) in [(now() - Duration::minutes(10), true), (now(), false)] {
        let snapshot = Arc::new(CandidateSnapshot::new());
        snapshot.store(SnapshotState {
            pool: CandidatePool::default(),
            weights: Weights::DEFAULT,
            built_at,
            signals_fresh,
            model: None,
            experiments: Vec::new(),
        });
        let report = health(Mocks::new(), snapshot).check().await;
        assert_eq!(
            (report.status, report.ready),
            (HealthStatus::Degraded, true)
        );
    }
}

/// A dependency that never answers.
#[derive(Debug)]
struct HangingProbe;

#[async_trait::async_trait]
impl HealthProbe for HangingProbe {
    fn name(&self) -> &'static str {
        "hanging"
    }
    async fn check(&self) -> Result<(), PortError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn probe_without_an_answer_fails_after_the_timeout() {
    let mut mocks = Mocks::new();
    mocks.probes = vec![Arc::new(HangingProbe)];
    let report = health(mocks, loaded_snapshot()).check().await;
    let check = report.checks.first().expect("the probe's check");
    assert!(!check.ok, "a probe that does not answer is failing");
    assert!(
        check
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("no answer within")),
        "{check:?}"
    );
    assert_eq!(report.status, HealthStatus::Degraded);
}
