//! Operator routes under `/api/v1/admin`; every one needs a token with the admin role.

use crate::auth::AdminUser;
use crate::dto::SignalSetDto;
use crate::error::{ApiError, ErrorBody};
use crate::events::json_rejection;
use crate::router::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use vrs_application::ModelError;
use vrs_application::admin::{
    AdminError, Invalidation, MAX_INVALIDATE_USERS, MAX_WARMUP_BATCH, MAX_WARMUP_USERS,
};
use vrs_application::ports::WeightSet;
use vrs_domain::{UserId, Weights};

/// Largest operator request body: 10,000 user ids fit.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Operator requests run until their work is done (a warm-up of 100,000 users takes minutes);
/// past this they get 503. A client that disconnects cancels the rest of the work.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Default `user_count` of a warm-up.
const DEFAULT_WARMUP_USERS: usize = 1_000;
/// Default `batch_size` of a warm-up.
const DEFAULT_WARMUP_BATCH: usize = 10;

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
            }
            AdminError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "admin operation: a store is unavailable");
                ApiError::unavailable("a store this operation needs is unavailable; retry later")
            }
        }
    }
}

/// `POST /api/v1/admin/cache-warmup` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmupRequest {
    /// How many of the most active users (last 7 days) to warm; 1–100000, default 1000.
    #[serde(default = "default_users")]
    pub user_count: usize,
    /// How many users are ranked at the same time; 1–100, default 10.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_users() -> usize {
    DEFAULT_WARMUP_USERS
}

fn default_batch() -> usize {
    DEFAULT_WARMUP_BATCH
}

/// What a warm-up did.
#[derive(Debug, Serialize, ToSchema)]
pub struct WarmupResponse {
    /// Users whose feed session is now cached.
    pub warmed: usize,
    /// Users whose session could not be ranked or stored.
    pub failed: usize,
    pub duration_ms: u64,
}

/// Ranks and caches the feed sessions of the most active users ahead of their requests.
#[utoipa::path(
    post,
    path = "/api/v1/admin/cache-warmup",
    tag = "admin",
    request_body(content = Option<WarmupRequest>, description = "Defaults: 1000 users, 10 at a time"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Warm-up finished", body = WarmupResponse),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 422, description = "A field is out of bounds or unknown", body = ErrorBody),
        (status = 503, description = "The signal store or the feed cache is unavailable", body = ErrorBody),
    )
)]
pub async fn cache_warmup(
    State(state): State<AppState>,
    _admin: AdminUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WarmupResponse>, ApiError> {
    let body = body.map_err(|r| crate::router::unreadable_body(&r, r.status(), MAX_BODY_BYTES))?;
    // An empty body takes every default.
    let request: WarmupRequest = if body.iter().all(u8::is_ascii_whitespace) {
        WarmupRequest {
            user_count: DEFAULT_WARMUP_USERS,
            batch_size: DEFAULT_WARMUP_BATCH,
        }
    } else {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
        let invalid = |message: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
        };
        // serde would also read a struct from an array; the body must be an object.
        if !value.is_object() {
            return Err(invalid("the body must be a JSON object".to_owned()));
        }
        serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?
    };
    let report = state
        .admin
        .warm_up(request.user_count, request.batch_size, |_| {})
        .await?;
    Ok(Json(WarmupResponse {
        warmed: report.warmed,
        failed: report.failed,
        duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
    }))
}

/// `POST /api/v1/admin/cache/invalidate` body: either `user_ids` or `"all": true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvalidateRequest {
    /// Users whose current feed session is dropped (1–10000).
    #[serde(default)]
    pub user_ids: Option<Vec<Uuid>>,
    /// Drop every user's current session.
    #[serde(default)]
    pub all: bool,
}

/// What an invalidation dropped.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidateResponse {
    /// Users named (for `user_ids`) or current sessions dropped (for `all`).
    pub invalidated: u64,
}

/// Drops current feed sessions, so the users' next first page is ranked anew. Cursors already
/// handed out keep working until their session expires.
#[utoipa::path(
    post,
    path = "/api/v1/admin/cache/invalidate",
    tag = "admin",
    request_body = InvalidateRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Sessions dropped", body = InvalidateResponse),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 422, description = "Neither or both of `user_ids` and `all`, or too many ids", body = ErrorBody),
        (status = 503, description = "The feed cache is unavailable", body = ErrorBody),
    )
)]
pub async fn invalidate_cache(
    State(state): State<AppState>,
    _admin: AdminUser,
    body: Result<Json<InvalidateRequest>, JsonRejection>,
) -> Result<Json<InvalidateResponse>, ApiError> {
    let Json(request) = body.map_err(|r| json_rejection(r, MAX_BODY_BYTES))?;
    let what = match (request.user_ids, request.all) {
        (Some(ids), false) => Invalidation::Users(ids.into_iter().map(UserId).collect()),
        (None, true) => Invalidation::All,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!(
                    "give either `user_ids` (1 to {MAX_INVALIDATE_USERS} ids) or `\"all\": true`"
                ),
            ));
        }
    };
    let invalidated = state.admin.invalidate(what).await?;
    Ok(Json(InvalidateResponse { invalidated }))
}

/// One version of the ranking weights.
#[derive(Debug, Serialize, ToSchema)]
pub struct WeightSetDto {
    pub version: i64,
    pub weights: SignalSetDto,
    pub activated_at: DateTime<Utc>,
    pub active: bool,
}

impl From<WeightSet> for WeightSetDto {
    fn from(s: WeightSet) -> Self {
        Self {
            version: s.version,
            weights: s.weights.into(),
            activated_at: s.activated_at,
            active: s.active,
        }
    }
}

/// The active ranking weights and the versions before them.
#[derive(Debug, Serialize, ToSchema)]
pub struct WeightsResponse {
    pub active: WeightSetDto,
    /// Newest first (the active version included), at most 20.
    pub history: Vec<WeightSetDto>,
}

/// The active ranking weights and recent versions.
#[utoipa::path(
    get,
    path = "/api/v1/admin/ranking/weights",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Active weights and history", body = WeightsResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 503, description = "The ranking configuration store is unavailable", body = ErrorBody),
    )
)]
pub async fn get_weights(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<WeightsResponse>, ApiError> {
    let overview = state.admin.weights().await?;
    Ok(Json(WeightsResponse {
        active: overview.active.into(),
        history: overview.history.into_iter().map(Into::into).collect(),
    }))
}

/// Activates new ranking weights as a new version. Every replica ranks with them from its next
/// candidate-snapshot refresh (`SNAPSHOT_REFRESH_SECS`, 5 s by default); feed sessions already
/// cached keep their order until they expire or are invalidated. Rolling back is a PUT of the
/// earlier version's weights.
#[utoipa::path(
    put,
    path = "/api/v1/admin/ranking/weights",
    tag = "admin",
    request_body(content = SignalSetDto, description = "The five weights: finite, non-negative, summing to 1 (within 1e-6)"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new active version", body = WeightSetDto),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 422, description = "A weight is missing, negative or not finite, or they do not sum to 1", body = ErrorBody),
        (status = 503, description = "The ranking configuration store is unavailable", body = ErrorBody),
    )
)]
pub async fn put_weights(
    State(state): State<AppState>,
    _admin: AdminUser,
    body: Result<Json<SignalSetDto>, JsonRejection>,
) -> Result<Json<WeightSetDto>, ApiError> {
    let Json(raw) = body.map_err(|r| json_rejection(r, MAX_BODY_BYTES))?;
    let weights = Weights::new(
        raw.freshness,
        raw.completion,
        raw.engagement,
        raw.affinity,
        raw.model,
    )
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_weights",
            e.to_string(),
        )
    })?;
    let set = state.admin.set_weights(weights).await?;
    Ok(Json(set.into()))
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::UnknownVersion(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_model", e.to_string())
            }
            ModelError::Worse { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "model_worse_than_active",
                e.to_string(),
            ),
            ModelError::NotLoadable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "model_not_loadable", e.to_string())
            }
            ModelError::NothingToRollBack => {
                ApiError::new(StatusCode::CONFLICT, "nothing_to_roll_back", e.to_string())
            }
            ModelError::NoData => {
                ApiError::new(StatusCode::CONFLICT, "no_training_data", e.to_string())
            }
            ModelError::Port(cause) => {
                tracing::warn!(error = %cause, "model registry unavailable");
                ApiError::unavailable("the model registry is unavailable; retry later")
            }
        }
    }
}

/// One registered model version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDto {
    pub version: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    /// When it was last activated (for a version never active: when it was registered).
    pub deployed_at: DateTime<Utc>,
    /// Offline metrics of its training run (`ndcg_at_10`, `recall_at_10`,
    /// `popularity_ndcg_at_10`, sizes, parameters).
    #[schema(value_type = Object)]
    pub performance_metrics: serde_json::Value,
    /// Videos scored with it, over all replicas.
    pub inference_count: u64,
    pub artifact_bytes: u64,
}

/// `GET /api/v1/admin/models` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsResponse {
    /// Newest first.
    pub models: Vec<ModelDto>,
}

/// Every registered model version, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/admin/models",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Registered versions", body = ModelsResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 503, description = "The model registry is unavailable", body = ErrorBody),
    )
)]
pub async fn list_models(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<ModelsResponse>, ApiError> {
    let models = state.models.list().await?;
    Ok(Json(ModelsResponse {
        models: models
            .into_iter()
            .map(|m| ModelDto {
                version: m.version,
                is_active: m.is_active,
                created_at: m.created_at,
                deployed_at: m.deployed_at,
                performance_metrics: m.performance_metrics,
                inference_count: m.inference_count,
                artifact_bytes: m.artifact_bytes,
            })
            .collect(),
    }))
}

/// `POST /api/v1/admin/models/{version}/activate` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateModelRequest {
    /// Activate even when its offline NDCG@10 is below the active version's.
    #[serde(default)]
    pub force: bool,
}

/// What an activation or rollback did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivationResponse {
    /// The version now active. Replicas score with it from their next candidate-snapshot refresh.
    pub active: String,
    /// Whether the offline-NDCG guard was overridden.
    pub forced: bool,
}

/// Activates a registered model version. Refused with 409 when its offline NDCG@10 is below the
/// active version's, unless `force` is true.
#[utoipa::path(
    post,
    path = "/api/v1/admin/models/{version}/activate",
    tag = "admin",
    params(("version" = String, Path, description = "A registered version")),
    request_body(content = ActivateModelRequest, description = "Optional: {\"force\": true}"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Activated", body = ActivationResponse),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 422, description = "`force` is not a boolean, or another field is given", body = ErrorBody),
        (status = 409, description = "Its offline NDCG is below the active version's (use force), or its artifact cannot be loaded", body = ErrorBody),
        (status = 503, description = "The model registry is unavailable", body = ErrorBody),
    )
)]
pub async fn activate_model(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(version): Path<String>,
    body: Bytes,
) -> Result<Json<ActivationResponse>, ApiError> {
    let request: ActivateModelRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ActivateModelRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("the body must be {{\"force\": true|false}}: {e}"),
            ),
            _ => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")),
        })?
    };
    let activation = state.models.activate(&version, request.force).await?;
    Ok(Json(ActivationResponse {
        active: activation.version,
        forced: activation.forced,
    }))
}

/// Activates the version that was active before the current one.
#[utoipa::path(
    post,
    path = "/api/v1/admin/models/rollback",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rolled back", body = ActivationResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 409, description = "No earlier version to roll back to", body = ErrorBody),
        (status = 503, description = "The model registry is unavailable", body = ErrorBody),
    )
)]
pub async fn rollback_model(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<ActivationResponse>, ApiError> {
    let version = state.models.rollback().await?;
    Ok(Json(ActivationResponse {
        active: version,
        forced: false,
    }))
}

// Keeps the documented bounds and the use case's in step.
const _: () =
    assert!(MAX_WARMUP_USERS >= DEFAULT_WARMUP_USERS && MAX_WARMUP_BATCH >= DEFAULT_WARMUP_BATCH);
