//! The versioned wire format of the event topic, shared by producer and consumer: engagement
//! events and, marked `"kind": "exposure"`, experiment exposures. Both travel the same topic,
//! spool and consumer, so an exposure has exactly the guarantees of an event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vrs_domain::{CreatorId, EngagementEvent, EventType, Exposure, SessionId, UserId, VideoId};

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
    /// A message kind this build does not know, e.g. written by a newer producer.
    #[error("unsupported message kind {0:?}")]
    UnsupportedKind(String),
}

/// The `kind` of an exposure message; an engagement message has no `kind`.
pub const EXPOSURE_KIND: &str = "exposure";

/// What a message of the event topic carries.
#[derive(Clone, Debug, PartialEq)]
pub enum TopicMessage {
    Event(EngagementEvent),
    Exposure(Exposure),
}

impl TopicMessage {
    /// Reads a message value of either kind, refusing versions and kinds this build does not
    /// know.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct Header {
            schema_version: u32,
            #[serde(default)]
            kind: Option<String>,
        }
        let header: Header = serde_json::from_slice(bytes)?;
        if header.schema_version != SCHEMA_VERSION {
            return Err(MessageError::UnsupportedVersion(header.schema_version));
        }
        match header.kind.as_deref() {
            None => Ok(Self::Event(
                serde_json::from_slice::<EngagementMessage>(bytes)?.into_event(),
            )),
            Some(EXPOSURE_KIND) => Ok(Self::Exposure(
                serde_json::from_slice::<ExposureMessage>(bytes)?.into_exposure(),
            )),
            Some(other) => Err(MessageError::UnsupportedKind(other.to_owned())),
        }
    }
}

/// One experiment exposure as a Kafka message value (JSON); the key is the user id, as for the
/// user's events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExposureMessage {
    pub schema_version: u32,
    /// Always [`EXPOSURE_KIND`].
    pub kind: String,
    pub exposure_id: Uuid,
    pub experiment_id: Uuid,
    pub variant: String,
    pub user_id: UserId,
    pub session_id: SessionId,
    pub video_id: VideoId,
    pub position: u32,
    /// RFC 3339, UTC.
    pub served_at: DateTime<Utc>,
}

impl ExposureMessage {
    pub fn from_exposure(x: &Exposure) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            kind: EXPOSURE_KIND.to_owned(),
            exposure_id: x.exposure_id,
            experiment_id: x.experiment_id,
            variant: x.variant.clone(),
            user_id: x.user_id,
            session_id: x.session_id,
            video_id: x.video_id,
            position: x.position,
            served_at: x.served_at,
        }
    }

    pub fn into_exposure(self) -> Exposure {
        Exposure {
            exposure_id: self.exposure_id,
            experiment_id: self.experiment_id,
            variant: self.variant,
            user_id: self.user_id,
            session_id: self.session_id,
            video_id: self.video_id,
            position: self.position,
            served_at: self.served_at,
        }
    }

    /// The Kafka key: the user id.
    pub fn key(x: &Exposure) -> String {
        x.user_id.to_string()
    }

    /// The JSON value of an exposure.
    pub fn encode(x: &Exposure) -> Vec<u8> {
        // Plain values with string keys: serializing cannot fail.
        serde_json::to_vec(&Self::from_exposure(x)).unwrap_or_default()
    }
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
    fn exposures_and_events_share_the_topic() {
        let x = Exposure {
            exposure_id: Uuid::new_v4(),
            experiment_id: Uuid::new_v4(),
            variant: "treatment".into(),
            user_id: UserId(Uuid::new_v4()),
            session_id: SessionId(Uuid::new_v4()),
            video_id: VideoId(Uuid::new_v4()),
            position: 7,
            served_at: "2026-01-02T03:04:05Z".parse().unwrap(),
        };
        let bytes = ExposureMessage::encode(&x);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["kind"], "exposure");
        assert_eq!(
            TopicMessage::decode(&bytes).unwrap(),
            TopicMessage::Exposure(x)
        );
        let e = event();
        assert_eq!(
            TopicMessage::decode(&EngagementMessage::encode(&e)).unwrap(),
            TopicMessage::Event(e)
        );
        let mut other = json.clone();
        other["kind"] = "impression_v9".into();
        assert!(matches!(
            TopicMessage::decode(other.to_string().as_bytes()),
            Err(MessageError::UnsupportedKind(_))
        ));
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
