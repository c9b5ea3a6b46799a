//! `POST /api/v1/events`

use crate::auth::AuthUser;
use crate::dto::{EventsAccepted, EventsRequest};
use crate::error::{ApiError, ErrorBody};
use crate::router::AppState;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;
use vrs_application::engagement::MAX_BATCH;
use vrs_application::{EngagementError, NewEvent};
use vrs_domain::{EventError, EventType, VideoId};

/// Largest accepted body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Records a batch of engagement events, all or nothing.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "events",
    request_body = EventsRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Every event is durably accepted", body = EventsAccepted),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "An event is invalid (details name its index and field); nothing was accepted", body = ErrorBody),
        (status = 429, description = "Too many requests", body = ErrorBody),
        (status = 503, description = "Events cannot be recorded now; nothing was accepted", body = ErrorBody),
    )
)]
pub async fn post_events(
    State(state): State<AppState>,
    auth: AuthUser,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<EventsAccepted>), ApiError> {
    let Json(body) = body.map_err(|r| json_rejection(r, MAX_BODY_BYTES))?;
    let events = parse_batch(&body)?;
    if let Some(limiter) = &state.event_limiter
        && !limiter.check_n(&auth.user_id, events.len())
    {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many events for this user; slow down (nothing of this batch was accepted)",
        );
        e.retry_after = Some(1);
        return Err(e);
    }
    let outcome = state.engagement.record(auth.user_id, events).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(EventsAccepted {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            repeated_reactions: outcome.repeated_reactions,
        }),
    ))
}

pub(crate) fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    let status = rejection.status();
    match &rejection {
        JsonRejection::BytesRejection(_) => {
            crate::router::unreadable_body(&rejection, status, limit)
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => crate::router::body_too_large(limit),
        _ if status == StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "unsupported_media_type",
            "the body must be application/json",
        ),
        _ if status == StatusCode::UNPROCESSABLE_ENTITY => {
            ApiError::new(status, "invalid_body", rejection.body_text())
        }
        _ => ApiError::new(status, "invalid_json", rejection.body_text()),
    }
}

/// Shapes the body into events, naming the index and field of the first invalid one.
fn parse_batch(body: &Value) -> Result<Vec<NewEvent>, ApiError> {
    let list = body
        .as_object()
        .and_then(|o| o.get("events"))
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::from(EngagementError::BatchSize))?;
    if list.is_empty() || list.len() > MAX_BATCH {
        return Err(EngagementError::BatchSize.into());
    }
    list.iter()
        .enumerate()
        .map(|(index, raw)| {
            parse_event(raw).map_err(|error| EngagementError::Invalid { index, error }.into())
        })
        .collect()
}

fn parse_event(raw: &Value) -> Result<NewEvent, EventError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| EventError::new("event", "must be an object"))?;
    Ok(NewEvent {
        event_id: uuid_field(obj, "event_id")?,
        video_id: VideoId(uuid_field(obj, "video_id")?),
        event_type: match obj.get("type") {
            Some(Value::String(s)) => EventType::parse(s).ok_or_else(|| {
                EventError::new(
                    "type",
                    "must be one of impression, view, watch, complete, like, unlike, share, comment, skip, not_interested, hide_creator",
                )
            })?,
            _ => return Err(EventError::new("type", "is required and must be a string")),
        },
        watch_ms: match obj.get("watch_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| EventError::new("watch_ms", "must be a non-negative integer"))?,
            ),
        },
        completion: match obj.get("completion") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|c| (0.0..=1.0).contains(c))
                    .ok_or_else(|| EventError::new("completion", "must be a number from 0 to 1"))?,
            ),
        },
        occurred_at: match obj.get("occurred_at") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| EventError::new("occurred_at", "must be an RFC 3339 timestamp"))?,
            ),
            Some(_) => return Err(EventError::new("occurred_at", "must be an RFC 3339 timestamp")),
        },
    })
}

fn uuid_field(obj: &Map<String, Value>, field: &'static str) -> Result<Uuid, EventError> {
    obj.get(field)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| EventError::new(field, "is required and must be a UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"event_id": Uuid::new_v4(), "video_id": Uuid::new_v4(), "type": "watch",
               "watch_ms": 1200, "completion": 0.5, "occurred_at": "2026-11-30T08:00:00Z"})
    }

    fn field_of(body: Value) -> Option<Value> {
        parse_batch(&body)
            .err()
            .and_then(|e| e.details)
            .map(|d| d["field"].clone())
    }

    #[test]
    fn parses_a_valid_event() {
        let parsed = parse_batch(&json!({"events": [event()]})).map(|v| v.len());
        assert_eq!(parsed.ok(), Some(1));
    }

    #[test]
    fn names_the_bad_field() {
        for (field, value) in [
            ("event_id", json!("nope")),
            ("video_id", json!(12)),
            ("type", json!("poke")),
            ("watch_ms", json!(-1)),
            ("completion", json!(1.5)),
            ("occurred_at", json!("yesterday")),
        ] {
            let mut e = event();
            e[field] = value;
            assert_eq!(
                field_of(json!({"events": [event(), e]})),
                Some(json!(field)),
                "{field}"
            );
        }
    }

    #[test]
    fn refuses_empty_and_oversized_batches() {
        assert_eq!(field_of(json!({"events": []})), Some(json!("events")));
        let many: Vec<Value> = (0..101).map(|_| event()).collect();
        assert_eq!(field_of(json!({"events": many})), Some(json!("events")));
        assert_eq!(field_of(json!([event()])), Some(json!("events")));
    }
}
