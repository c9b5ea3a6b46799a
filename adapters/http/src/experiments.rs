//! Experiment routes under `/api/v1/admin/experiments`; every one needs the admin role.

use crate::auth::AdminUser;
use crate::dto::SignalSetDto;
use crate::error::{ApiError, ErrorBody};
use crate::router::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use vrs_application::ExperimentServiceError;
use vrs_domain::experiment::{Difference, ExperimentResults};
use vrs_domain::{Experiment, ExperimentDraft, VariantDraft, Weights};

impl From<ExperimentServiceError> for ApiError {
    fn from(e: ExperimentServiceError) -> Self {
        match e {
            ExperimentServiceError::Invalid(invalid) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_experiment",
                invalid.to_string(),
            )
            .with_details(serde_json::json!({ "field": invalid.field })),
            ExperimentServiceError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_experiment", e.to_string())
            }
            ExperimentServiceError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "experiment_conflict", message)
            }
            ExperimentServiceError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "experiment operation: a store is unavailable");
                ApiError::unavailable("a store this operation needs is unavailable; retry later")
            }
        }
    }
}

/// `POST /api/v1/admin/experiments` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExperimentRequest {
    /// Unique; 1–64 letters, digits, `_`, `-` or `.`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// At most one experiment runs per layer; default `default`.
    #[serde(default)]
    pub layer: Option<String>,
    /// The assignment's salt; defaults to the experiment's id.
    #[serde(default)]
    pub salt: Option<String>,
    /// 2–8 variants, the control first.
    pub variants: Vec<VariantRequest>,
}

/// One variant of a new experiment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantRequest {
    /// Unique within the experiment; 1–64 letters, digits, `_`, `-` or `.`.
    pub name: String,
    /// Share of the users in (0, 1], in steps of 0.0001; the shares add up to at most 1.
    pub share: f64,
    /// Weights this variant ranks with instead of the active ones.
    #[serde(default)]
    pub weights: Option<SignalSetDto>,
    /// A registered model version this variant scores with instead of the active one.
    #[serde(default)]
    pub model_version: Option<String>,
}

/// One variant of an experiment.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantDto {
    pub name: String,
    pub share: f64,
    pub weights: Option<SignalSetDto>,
    pub model_version: Option<String>,
}

/// An experiment.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentDto {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub layer: String,
    pub salt: String,
    /// `draft`, `running` or `stopped`.
    pub state: String,
    /// The first is the control.
    pub variants: Vec<VariantDto>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
}

impl From<Experiment> for ExperimentDto {
    fn from(e: Experiment) -> Self {
        Self {
            id: e.id,
            name: e.name,
            description: e.description,
            layer: e.layer,
            salt: e.salt,
            state: e.state.as_str().to_owned(),
            variants: e
                .variants
                .into_iter()
                .map(|v| VariantDto {
                    share: v.share(),
                    name: v.name,
                    weights: v.weights.map(Into::into),
                    model_version: v.model_version,
                })
                .collect(),
            created_at: e.created_at,
            started_at: e.started_at,
            stopped_at: e.stopped_at,
        }
    }
}

/// `GET /api/v1/admin/experiments` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentsResponse {
    /// The most recently created first.
    pub experiments: Vec<ExperimentDto>,
}

/// A value with its 95 % confidence interval.
#[derive(Debug, Serialize, ToSchema)]
pub struct Estimate {
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

/// Variant minus control, with its 95 % confidence interval.
#[derive(Debug, Serialize, ToSchema)]
pub struct DifferenceDto {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Relative to the control's value; `null` when the control's is 0.
    pub relative: Option<f64>,
    /// The interval excludes 0.
    pub significant: bool,
}

impl From<Difference> for DifferenceDto {
    fn from(d: Difference) -> Self {
        Self {
            value: d.difference,
            ci_low: d.low,
            ci_high: d.high,
            relative: (d.control != 0.0).then(|| d.difference / d.control),
            significant: d.is_significant(),
        }
    }
}

/// One metric of one variant.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricDto {
    /// `like_rate`, `share_rate`, `completion_rate`, `skip_rate` or `watch_ms_per_exposure`.
    pub metric: String,
    #[serde(flatten)]
    pub estimate: Estimate,
    /// Against the control; absent for the control.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<DifferenceDto>,
}

/// One variant's results.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantResultDto {
    pub variant: String,
    pub is_control: bool,
    pub share: f64,
    pub users: u64,
    pub sessions: u64,
    pub exposures: u64,
    pub metrics: Vec<MetricDto>,
}

/// The sample-ratio check: users per variant against the shares.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleRatioDto {
    /// Chi-square p-value; `null` without users.
    pub p_value: Option<f64>,
    /// p < 0.001: assignment or exposure logging is broken; trust no difference.
    pub mismatch: bool,
}

/// `GET /api/v1/admin/experiments/{id}/results` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultsResponse {
    pub experiment: ExperimentDto,
    /// Events up to this long after an exposure count for it (a feed session's lifetime).
    pub attribution_seconds: u64,
    pub sample_ratio: SampleRatioDto,
    pub variants: Vec<VariantResultDto>,
}

impl ResultsResponse {
    pub fn new(experiment: Experiment, results: ExperimentResults, attribution: u64) -> Self {
        Self {
            experiment: experiment.into(),
            attribution_seconds: attribution,
            sample_ratio: SampleRatioDto {
                p_value: results.sample_ratio_p_value,
                mismatch: results.sample_ratio_mismatch,
            },
            variants: results
                .variants
                .into_iter()
                .map(|v| VariantResultDto {
                    variant: v.variant,
                    is_control: v.is_control,
                    share: v.share,
                    users: v.users,
                    sessions: v.sessions,
                    exposures: v.exposures,
                    metrics: v
                        .metrics
                        .into_iter()
                        .map(|m| MetricDto {
                            metric: m.metric.as_str().to_owned(),
                            estimate: Estimate {
                                value: m.value,
                                ci_low: m.low,
                                ci_high: m.high,
                            },
                            difference: m.difference.map(Into::into),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_experiment",
        message.into(),
    )
    .with_details(serde_json::json!({ "field": field }))
}

/// Reads a creation body: JSON syntax errors are 400, anything else wrong is 422 naming the
/// field.
pub fn parse_create(body: &[u8]) -> Result<ExperimentDraft, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(invalid("", "the body must be a JSON object"));
    }
    let request: CreateExperimentRequest = serde_json::from_value(value)
        .map_err(|e| invalid("", format!("the body does not describe an experiment: {e}")))?;
    let mut variants = Vec::with_capacity(request.variants.len());
    for (i, v) in request.variants.into_iter().enumerate() {
        let weights = v
            .weights
            .map(|w| Weights::new(w.freshness, w.completion, w.engagement, w.affinity, w.model))
            .transpose()
            .map_err(|e| {
                invalid(
                    &format!("variants[{i}].weights"),
                    format!("variants[{i}].weights: {e}"),
                )
            })?;
        variants.push(VariantDraft {
            name: v.name,
            share: v.share,
            weights,
            model_version: v.model_version,
        });
    }
    Ok(ExperimentDraft {
        name: request.name,
        description: request.description,
        layer: request.layer,
        salt: request.salt,
        variants,
    })
}

/// Creates a draft experiment. It changes nothing until started.
#[utoipa::path(
    post,
    path = "/api/v1/admin/experiments",
    tag = "experiments",
    request_body(content = CreateExperimentRequest),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created as a draft", body = ExperimentDto),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "A field is invalid; `details.field` names it", body = ErrorBody),
        (status = 503, description = "The experiment store is unavailable", body = ErrorBody),
    )
)]
pub async fn create_experiment(
    State(state): State<AppState>,
    _admin: AdminUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| {
        crate::router::unreadable_body(&r, r.status(), crate::admin::MAX_BODY_BYTES)
    })?;
    let draft = parse_create(&body)?;
    let experiment = state.experiments.create(draft).await?;
    Ok((StatusCode::CREATED, Json(ExperimentDto::from(experiment))).into_response())
}

/// Every experiment, the most recently created first.
#[utoipa::path(
    get,
    path = "/api/v1/admin/experiments",
    tag = "experiments",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The experiments", body = ExperimentsResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 503, description = "The experiment store is unavailable", body = ErrorBody),
    )
)]
pub async fn list_experiments(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<ExperimentsResponse>, ApiError> {
    let experiments = state.experiments.list().await?;
    Ok(Json(ExperimentsResponse {
        experiments: experiments.into_iter().map(Into::into).collect(),
    }))
}

/// Starts a draft: every replica splits new feed sessions into its variants from its next
/// candidate-snapshot refresh.
#[utoipa::path(
    post,
    path = "/api/v1/admin/experiments/{id}/start",
    tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id or name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Running", body = ExperimentDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 404, description = "No such experiment", body = ErrorBody),
        (status = 409, description = "Not a draft, its layer is taken, or a running experiment of another layer varies the same knob", body = ErrorBody),
        (status = 422, description = "A variant's model version is not registered", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn start_experiment(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> Result<Json<ExperimentDto>, ApiError> {
    Ok(Json(state.experiments.start(&id).await?.into()))
}

/// Stops a running experiment: new sessions are ranked by the defaults again.
#[utoipa::path(
    post,
    path = "/api/v1/admin/experiments/{id}/stop",
    tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id or name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stopped", body = ExperimentDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 404, description = "No such experiment", body = ErrorBody),
        (status = 409, description = "Not running", body = ErrorBody),
        (status = 503, description = "The experiment store is unavailable", body = ErrorBody),
    )
)]
pub async fn stop_experiment(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> Result<Json<ExperimentDto>, ApiError> {
    Ok(Json(state.experiments.stop(&id).await?.into()))
}

/// Per variant: users, sessions, exposures, like, share, completion and skip rates and watch
/// time per exposure, each with a 95 % interval and its difference to the control; and the
/// sample-ratio check.
#[utoipa::path(
    get,
    path = "/api/v1/admin/experiments/{id}/results",
    tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id or name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The results so far", body = ResultsResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin role", body = ErrorBody),
        (status = 404, description = "No such experiment", body = ErrorBody),
        (status = 503, description = "The experiment or signal store is unavailable", body = ErrorBody),
    )
)]
pub async fn experiment_results(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> Result<Json<ResultsResponse>, ApiError> {
    let (experiment, results) = state.experiments.results(&id).await?;
    Ok(Json(ResultsResponse::new(
        experiment,
        results,
        state.experiments.attribution().as_secs(),
    )))
}
