//! Prometheus exposition and the HTTP request metrics.

use crate::router::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// Latency buckets (seconds) for every `_seconds` histogram: fine-grained below 100 ms, where a
/// cached feed page lives, and up to 10 s for slow dependencies.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install_recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            process_collector().describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route template"
    );
    describe_counter!(
        "feed_cache_hits_total",
        "First-page requests served from a cached feed session"
    );
    describe_counter!(
        "feed_cache_misses_total",
        "First-page requests that ranked a new feed session"
    );
    describe_counter!("feed_generation_total", "Feed sessions ranking started");
    describe_counter!(
        "feed_generation_success_total",
        "Feed sessions ranked successfully"
    );
    describe_histogram!(
        "feed_generation_duration_seconds",
        Unit::Seconds,
        "Time to rank one feed session"
    );
    describe_histogram!(
        "feed_stage_duration_seconds",
        Unit::Seconds,
        "Time per feed stage (cache_lookup, history_check, history_read, candidates, model, scoring, cache_write)"
    );
    describe_counter!(
        "engagement_events_accepted_total",
        "Engagement events accepted by the API, by type"
    );
    describe_gauge!(
        "candidate_snapshot_videos",
        "Videos in the candidate snapshot"
    );
    describe_gauge!(
        "candidate_snapshot_built_timestamp_seconds",
        Unit::Seconds,
        "When the candidate snapshot was built (Unix time)"
    );
    describe_histogram!(
        "candidate_snapshot_refresh_duration_seconds",
        Unit::Seconds,
        "Time to refresh the candidate snapshot"
    );
    describe_gauge!(
        "candidate_snapshot_age_seconds",
        Unit::Seconds,
        "Age of the candidate snapshot at scrape time"
    );
    describe_gauge!(
        "process_memory_limit_bytes",
        Unit::Bytes,
        "Memory limit of the process's cgroup (absent when unlimited)"
    );
    // Series that exist from the start, so the first increment shows in rate() at once.
    for name in [
        "feed_cache_hits_total",
        "feed_cache_misses_total",
        "feed_generation_total",
        "feed_generation_success_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for event_type in vrs_domain::EventType::ALL {
        metrics::counter!("engagement_events_accepted_total", "type" => event_type.as_str())
            .increment(0);
    }
}

/// Resident memory, CPU time, open and maximum file descriptors, threads, start time.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The memory limit of this process's cgroup (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`); `None` when there is none, so the gauge is not exported.
fn cgroup_memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?
        .trim()
        .parse::<u64>()
        .ok()?;
    // cgroup v1 reports "unlimited" as a page-rounded i64::MAX.
    (limit < (1 << 62)).then_some(limit)
}

/// Gauges read at scrape time rather than kept up to date on the hot path.
fn collect_on_scrape(state: &AppState) {
    collect_process();
    if let Some(age) = state.health.snapshot_age() {
        metrics::gauge!("candidate_snapshot_age_seconds").set(age.as_secs_f64());
    }
}

/// The process gauges, read at scrape time.
fn collect_process() {
    process_collector().collect();
    if let Some(limit) = cgroup_memory_limit() {
        metrics::gauge!("process_memory_limit_bytes").set(limit as f64);
    }
}

/// The Prometheus text exposition of everything recorded.
fn exposition(handle: &PrometheusHandle) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Prometheus text exposition of every metric.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics_handler(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => {
            collect_on_scrape(&state);
            exposition(handle)
        }
        None => crate::error::ApiError::from_status(StatusCode::NOT_FOUND).into_response(),
    }
}

/// The request method as a bounded label: the methods of RFC 9110 and PATCH by name, any other
/// (a client can send any token as a method) as `other`, so no request adds a series of its own.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Counts and times every request by method (bounded), route template (never the raw path) and
/// status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The worker's small HTTP surface: `/metrics` and liveness/readiness, for its probes and its
/// ServiceMonitor. The worker has no candidate snapshot and serves no feeds.
pub fn worker_router(handle: PrometheusHandle) -> axum::Router {
    use axum::routing::get;
    let metrics = move || {
        let handle = handle.clone();
        async move {
            collect_process();
            exposition(&handle)
        }
    };
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/health/live", get(crate::health::live))
        .route("/api/v1/health/ready", get(crate::health::live))
        .fallback(|| async { crate::error::ApiError::from_status(StatusCode::NOT_FOUND) })
}
