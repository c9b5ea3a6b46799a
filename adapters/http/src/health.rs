//! Health endpoints.

use crate::dto::{HealthResponse, LiveResponse};
use crate::router::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

/// Every dependency's status; always 200 while the process can answer.
#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    responses((status = 200, description = "Status of every dependency", body = HealthResponse)))]
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    let report = state.health.check().await;
    Json(HealthResponse::from_report(&report, state.version))
}

/// Readiness: 200 when feeds can be served.
#[utoipa::path(get, path = "/api/v1/health/ready", tag = "health",
    responses(
        (status = 200, description = "Feeds can be served", body = HealthResponse),
        (status = 503, description = "Feeds cannot be served yet", body = HealthResponse),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    let report = state.health.check().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(HealthResponse::from_report(&report, state.version)),
    )
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/api/v1/health/live", tag = "health",
    responses((status = 200, description = "The process is alive", body = LiveResponse)))]
pub async fn live() -> Json<LiveResponse> {
    Json(LiveResponse {
        status: "ok".to_owned(),
    })
}
