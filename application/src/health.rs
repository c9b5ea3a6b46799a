//! Health: every dependency's probe, plus the candidate snapshot that feeds need.

use crate::ports::Ports;
use crate::snapshot::CandidateSnapshot;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Overall status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    Ok,
    /// Feeds are served, but some dependency is failing and the service runs in a degraded mode.
    Degraded,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    pub name: String,
    pub ok: bool,
    pub latency: Duration,
    pub error: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthReport {
    pub status: HealthStatus,
    /// Whether feeds can be served (readiness).
    pub ready: bool,
    pub checks: Vec<CheckReport>,
}

/// The health use case.
pub struct HealthService {
    ports: Ports,
    /// The last report and when it was made: reused for `cache_for`, so health requests cannot
    /// multiply the probes' load on the dependencies. Callers arriving while a check runs wait
    /// for it.
    last: tokio::sync::Mutex<Option<(Instant, HealthReport)>>,
    cache_for: Duration,
    snapshot: Arc<CandidateSnapshot>,
    probe_timeout: Duration,
    /// A snapshot older than this is reported as stale (degraded).
    max_snapshot_age: Duration,
}

impl std::fmt::Debug for HealthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthService").finish_non_exhaustive()
    }
}

impl HealthService {
    pub fn new(ports: Ports, snapshot: Arc<CandidateSnapshot>, max_snapshot_age: Duration) -> Self {
        Self {
            ports,
            last: tokio::sync::Mutex::new(None),
            cache_for: Duration::from_secs(1),
            snapshot,
            probe_timeout: Duration::from_secs(1),
            max_snapshot_age,
        }
    }

    /// How old the candidate snapshot is; `None` before the first one is built.
    pub fn snapshot_age(&self) -> Option<Duration> {
        let built_at = self.snapshot.load()?.built_at;
        Some(
            (self.ports.clock.now() - built_at)
                .to_std()
                .unwrap_or_default(),
        )
    }

    /// How long a report is reused (1 s by default; zero checks on every call).
    pub fn with_cache_period(mut self, period: Duration) -> Self {
        self.cache_for = period;
        self
    }

    /// The current report: the last one when it is recent enough, else a fresh check.
    pub async fn check(&self) -> HealthReport {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref()
            && at.elapsed() < self.cache_for
        {
            return report.clone();
        }
        let report = self.check_now().await;
        *last = Some((Instant::now(), report.clone()));
        report
    }

    /// Runs every probe concurrently, each bounded by a timeout.
    pub async fn check_now(&self) -> HealthReport {
        let probes = self.ports.probes.iter().map(|probe| async move {
            let started = Instant::now();
            let result = tokio::time::timeout(self.probe_timeout, probe.check()).await;
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {:?}", self.probe_timeout)),
            };
            CheckReport {
                name: probe.name().to_owned(),
                ok: error.is_none(),
                latency: started.elapsed(),
                error,
            }
        });
        let mut checks = futures::future::join_all(probes).await;

        let snapshot = self.snapshot.load();
        let ready = snapshot.is_some();
        let now = self.ports.clock.now();
        let snapshot_error = match &snapshot {
            None => Some("no candidate snapshot loaded yet".to_owned()),
            Some(s) => {
                let age = (now - s.built_at).to_std().unwrap_or_default();
                if age > self.max_snapshot_age {
                    Some(format!("candidate snapshot is {}s old", age.as_secs()))
                } else if !s.signals_fresh {
                    Some("signals are stale: the signal store did not answer".to_owned())
                } else {
                    None
                }
            }
        };
        checks.push(CheckReport {
            name: "candidate_snapshot".to_owned(),
            ok: snapshot_error.is_none(),
            latency: Duration::ZERO,
            error: snapshot_error,
        });
        let status = if checks.iter().all(|c| c.ok) {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        };
        HealthReport {
            status,
            ready,
            checks,
        }
    }
}
