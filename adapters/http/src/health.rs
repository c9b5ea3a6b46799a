//! Health endpoints.
//!
//! Anyone gets the overall status; the dependency details (whose error texts name internal hosts)
//! and the version go only to callers with the admin role. The probes behind every answer run at
//! most once per `HealthService` cache period, however many callers ask.

use crate::auth::AuthUser;
use crate::dto::{HealthResponse, LiveResponse};
use crate::router::AppState;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

/// Whether the caller presented a valid token with the admin role. A bad token is not refused
/// here (the status is public), but it counts as a failed authentication of the client.
async fn is_admin(parts: &mut Parts, state: &AppState) -> bool {
    if !parts.headers.contains_key(AUTHORIZATION) {
        return false;
    }
    AuthUser::from_request_parts(parts, state)
        .await
        .is_ok_and(|user| user.claims.is_admin())
}

async fn report(parts: &mut Parts, state: &AppState) -> (bool, HealthResponse) {
    let admin = is_admin(parts, state).await;
    let report = state.health.check().await;
    let body = HealthResponse::from_report(&report, state.version);
    (report.ready, if admin { body } else { body.plain() })
}

/// Overall status, `ok` or `degraded`; with an admin token also every dependency's check and the
/// version. Always 200 while the process can answer.
#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    responses((status = 200, description = "Overall status (and, for admins, every dependency's)", body = HealthResponse)))]
pub async fn health(State(state): State<AppState>, mut parts: Parts) -> Json<HealthResponse> {
    Json(report(&mut parts, &state).await.1)
}

/// Readiness: 200 when feeds can be served.
#[utoipa::path(get, path = "/api/v1/health/ready", tag = "health",
    responses(
        (status = 200, description = "Feeds can be served", body = HealthResponse),
        (status = 503, description = "Feeds cannot be served yet", body = HealthResponse),
    ))]
pub async fn ready(
    State(state): State<AppState>,
    mut parts: Parts,
) -> (StatusCode, Json<HealthResponse>) {
    let (ready, body) = report(&mut parts, &state).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/api/v1/health/live", tag = "health",
    responses((status = 200, description = "The process is alive", body = LiveResponse)))]
pub async fn live() -> Json<LiveResponse> {
    Json(LiveResponse {
        status: "ok".to_owned(),
    })
}
