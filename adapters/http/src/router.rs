//! The router: routes, shared state, and the layers every request passes through.

use crate::auth::{AuthFailureLimiter, Authenticator, UserRateLimiter};
use crate::cursor::CursorCodec;
use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::{admin, events, experiments, health, metrics, reels};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vrs_application::ports::Clock;
use vrs_application::{
    AdminService, EngagementService, ExperimentService, FeedService, HealthService, ModelService,
};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub feed: Arc<FeedService>,
    pub engagement: Arc<EngagementService>,
    pub admin: Arc<AdminService>,
    /// The model registry's use cases.
    pub models: Arc<ModelService>,
    /// The experiments' use cases.
    pub experiments: Arc<ExperimentService>,
    pub health: Arc<HealthService>,
    pub auth: Arc<Authenticator>,
    pub cursors: Arc<CursorCodec>,
    pub clock: Arc<dyn Clock>,
    /// `None` serves 404 on `/metrics` (e.g. in tests without a recorder).
    pub metrics: Option<PrometheusHandle>,
    /// `None` disables per-user rate limiting.
    pub rate_limiter: Option<Arc<UserRateLimiter>>,
    /// Events per user (not requests), so a client cannot multiply its weight with full batches;
    /// `None` disables it.
    pub event_limiter: Option<Arc<UserRateLimiter>>,
    /// `None` disables the per-IP limit on failed authentications.
    pub auth_failures: Option<Arc<AuthFailureLimiter>>,
    pub version: &'static str,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Transport settings.
#[derive(Clone, Copy, Debug)]
pub struct HttpConfig {
    /// A request whose handling runs longer is answered with 503.
    pub request_timeout: Duration,
    /// A request whose body has not arrived whole this long after its headers is answered with
    /// 408 (a client problem: it does not count as a server error).
    pub body_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

/// How much body a route group accepts, and how long it may take to arrive.
#[derive(Clone, Copy, Debug)]
struct BodyRules {
    limit: usize,
    timeout: Duration,
}

/// Why a request body stopped: it did not arrive whole in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// Bounds the request body before any handler sees it, without reading it: a declared length
/// over the group's limit gets 413 at once; otherwise the body fails with [`BodyTimedOut`] (a 408)
/// if it has not arrived whole within the group's timeout. The body itself is read only by the
/// handler's extractors, after authentication, so an unauthenticated client never gets a body
/// buffered. A 408 closes the connection.
async fn bound_body(
    axum::extract::State(rules): axum::extract::State<BodyRules>,
    request: Request,
    next: Next,
) -> Response {
    use futures::StreamExt;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > rules.limit as u64) {
        return body_too_large(rules.limit).into_response();
    }
    let deadline = tokio::time::Instant::now() + rules.timeout;
    let request = request.map(|body| {
        let timed =
            futures::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
                let mut stream = stream?;
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(chunk)) => Some((chunk.map_err(axum::BoxError::from), Some(stream))),
                    Ok(None) => None,
                    Err(_) => Some((Err(axum::BoxError::from(BodyTimedOut)), None)),
                }
            });
        axum::body::Body::from_stream(timed)
    });
    let mut response = next.run(request).await;
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The 413 of a body over `limit` bytes.
pub(crate) fn body_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body must not exceed {limit} bytes"),
    )
}

/// The answer to a body that could not be read: 408 when it did not arrive in time, 413 over
/// `limit`, else 400.
pub(crate) fn unreadable_body(
    error: &(dyn std::error::Error + 'static),
    status: StatusCode,
    limit: usize,
) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return body_too_large(limit);
    }
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTimedOut>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            );
        }
        if e.is::<http_body_util::LengthLimitError>() {
            return body_too_large(limit);
        }
        cause = e.source();
    }
    ApiError::bad_request("invalid_body", "the request body could not be read")
}

/// The OpenAPI document of every route, as a JSON value.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
async fn openapi_json(Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>) -> Response {
    Json(doc.as_ref()).into_response()
}

/// The client routes, the operator routes (which get their own body limit and timeout), and the
/// OpenAPI document describing exactly both.
fn route_groups() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(reels::get_reels))
        .routes(routes!(events::post_events))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::live))
        .routes(routes!(metrics::metrics_handler))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let (operators, operators_doc) = OpenApiRouter::new()
        .routes(routes!(admin::cache_warmup))
        .routes(routes!(admin::invalidate_cache))
        .routes(routes!(admin::get_weights, admin::put_weights))
        .routes(routes!(admin::list_models))
        .routes(routes!(admin::activate_model))
        .routes(routes!(admin::rollback_model))
        .routes(routes!(
            experiments::list_experiments,
            experiments::create_experiment
        ))
        .routes(routes!(experiments::start_experiment))
        .routes(routes!(experiments::stop_experiment))
        .routes(routes!(experiments::experiment_results))
        .split_for_parts();
    doc.merge(operators_doc);
    (api, operators, doc)
}

/// The routes and the OpenAPI document describing exactly them.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, operators, doc) = route_groups();
    (api.merge(operators), doc)
}

/// The complete application.
pub fn router(state: AppState, config: HttpConfig) -> Router {
    let (api, operators, doc) = route_groups();
    let api = api
        .layer(DefaultBodyLimit::max(events::MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            BodyRules {
                limit: events::MAX_BODY_BYTES,
                timeout: config.body_read_timeout,
            },
            bound_body,
        ));
    // A warm-up of many users or a full invalidation runs within its request, and a list of
    // 10,000 user ids is larger than an event batch.
    let operators = operators
        .layer(DefaultBodyLimit::max(admin::MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            admin::REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn_with_state(
            BodyRules {
                limit: admin::MAX_BODY_BYTES,
                timeout: config.body_read_timeout,
            },
            bound_body,
        ));
    api.merge(operators)
        .fallback(|| async { ApiError::from_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async {
            ApiError::from_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .layer(Extension(Arc::new(doc)))
        .layer(CatchPanicLayer::custom(panic_response))
        // Outside the timeout and panic layers, so their 503 and 500 answers are counted too.
        .layer(middleware::from_fn(metrics::track_http))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| crate::trace::make_span(request))
                .on_response(crate::trace::on_response),
        )
        .layer(middleware::from_fn(json_errors))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::from_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

/// Replaces any non-JSON error body (from a framework layer) with the JSON error shape, keeping
/// the status and headers such as `Allow`.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let mut replaced = ApiError::from_status(status).into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced
                .headers_mut()
                .entry(name)
                .or_insert_with(|| value.clone());
        }
    }
    replaced
}
