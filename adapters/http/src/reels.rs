//! `GET /api/v1/reels`

use crate::auth::AuthUser;
use crate::dto::{ReelVideo, ReelsQuery, ReelsResponse};
use crate::error::{ApiError, ErrorBody};
use crate::router::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use vrs_application::PageRequest;
use vrs_domain::Limit;

/// Header telling whether the page came from a cached feed session.
pub const FEED_CACHE_HEADER: &str = "x-feed-cache";

impl ReelsQuery {
    /// Validates the query into the domain request.
    fn try_into_domain(self, auth: &AuthUser, state: &AppState) -> Result<PageRequest, ApiError> {
        let limit = match self.limit.as_deref() {
            None => Limit::default(),
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .and_then(|n| Limit::new(n).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_limit", "limit must be an integer from 1 to 50")
                })?,
        };
        let explain = match self.explain.as_deref() {
            None | Some("false" | "0") => false,
            Some("true" | "1" | "") => true,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_explain",
                    "explain must be true or false",
                ));
            }
        };
        let position = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(
                state
                    .cursors
                    .decode(raw, auth.user_id, state.clock.now())
                    .map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))?,
            ),
        };
        Ok(PageRequest {
            user_id: auth.user_id,
            limit,
            position,
            explain,
        })
    }
}

/// A personalized, ranked page of reels.
#[utoipa::path(
    get,
    path = "/api/v1/reels",
    tag = "feed",
    params(ReelsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the feed", body = ReelsResponse,
            headers(("X-Feed-Cache" = String, description = "hit, miss or bypass"))),
        (status = 400, description = "Invalid limit, explain or cursor", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 429, description = "Too many requests", body = ErrorBody),
        (status = 503, description = "Not ready or a dependency is down", body = ErrorBody),
    )
)]
pub async fn get_reels(
    State(state): State<AppState>,
    auth: AuthUser,
    query: Result<Query<ReelsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let request = query.try_into_domain(&auth, &state)?;
    let page = state.feed.page(request).await?;
    let body = ReelsResponse {
        videos: page.items.iter().map(ReelVideo::from).collect(),
        experiments: request
            .explain
            .then(|| page.experiments.iter().map(Into::into).collect()),
        has_more: page.next.is_some(),
        next_cursor: page
            .next
            .map(|n| state.cursors.encode(auth.user_id, n.position, n.expires_at)),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        FEED_CACHE_HEADER,
        HeaderValue::from_static(page.cache.as_str()),
    );
    Ok(response)
}
