//! The versioned wire format of an engagement event on Kafka, shared by producer and consumer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vrs_domain::{CreatorId, EngagementEvent, EventType, UserId, VideoId};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The bytes are not a JSON engagement message.
    #[error("malformed engagement message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A schema version this build does not know, e.g. written by a newer producer.
    #[error("unsupported schema_version {0}")]
    UnsupportedVersion(u32),
}

/// One engagement event as a Kafka message value (JSON); the message key is the user id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngagementMessage {
    /// Always [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    pub event_id: Uuid,
    pub user_id: UserId,
    pub video_id: VideoId,
    pub creator_id: CreatorId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<f64>,
    /// RFC 3339, UTC.
    pub occurred_at: DateTime<Utc>,
}

impl EngagementMessage {
    /// The message of an event.
    pub fn from_event(e: &EngagementEvent) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: e.event_id,
            user_id: e.user_id,
            video_id: e.video_id,
            creator_id: e.creator_id,
            event_type: e.event_type,
            watch_ms: e.watch_ms,
            completion: e.completion,
            occurred_at: e.occurred_at,
        }
    }

    /// The event this message carries.
    pub fn into_event(self) -> EngagementEvent {
        EngagementEvent {
            event_id: self.event_id,
            user_id: self.user_id,
            video_id: self.video_id,
            creator_id: self.creator_id,
            event_type: self.event_type,
            watch_ms: self.watch_ms,
            completion: self.completion,
            occurred_at: self.occurred_at,
        }
    }

    /// The Kafka key of an event: its user id, so one user's events stay in order on a partition.
    pub fn key(e: &EngagementEvent) -> String {
        e.user_id.to_string()
    }

    /// The JSON value of an event.
    pub fn encode(e: &EngagementEvent) -> Vec<u8> {
        // Serializing this struct cannot fail: every field is a plain value with a string key.
        serde_json::to_vec(&Self::from_event(e)).unwrap_or_default()
    }

    /// Reads a message value, refusing schema versions this build does not know.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let version: Version = serde_json::from_slice(bytes)?;
        if version.schema_version != SCHEMA_VERSION {
            return Err(MessageError::UnsupportedVersion(version.schema_version));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event() -> EngagementEvent {
        EngagementEvent {
            event_id: Uuid::new_v4(),
            user_id: UserId(Uuid::new_v4()),
            video_id: VideoId(Uuid::new_v4()),
            creator_id: CreatorId(Uuid::new_v4()),
            event_type: EventType::Watch,
            watch_ms: Some(1200),
            completion: Some(0.5),
            occurred_at: "2026-01-02T03:04:05.678Z".parse().unwrap(),
        }
    }

    #[test]
    fn round_trips_with_version_and_rfc3339_time() {
        let e = event();
        let bytes = EngagementMessage::encode(&e);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["type"], "watch");
        assert_eq!(json["user_id"], e.user_id.to_string());
        assert_eq!(json["occurred_at"], "2026-01-02T03:04:05.678Z");
        assert_eq!(EngagementMessage::decode(&bytes).unwrap().into_event(), e);
    }

    #[test]
    fn refuses_unknown_versions() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&EngagementMessage::encode(&event())).unwrap();
        json["schema_version"] = 2.into();
        let err = EngagementMessage::decode(json.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, MessageError::UnsupportedVersion(2)));
    }
}
