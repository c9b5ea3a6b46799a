//! Kafka producer side of the engagement pipeline: an [`EventSink`] that publishes each accepted
//! event to a topic, keyed by user, as a versioned JSON message.
//!
//! Kafka being down must not lose events nor fail requests: what Kafka does not acknowledge within
//! the delivery timeout goes to a local, fsynced spool file, and a replayer republishes it in order
//! once the broker answers again. Only a full spool makes `publish` fail (`PortError::Rejected`).
//!
//! [`EventSink`]: vrs_application::ports::EventSink

mod config;
mod health;
mod message;
mod replay;
mod sink;
mod spool;

pub use config::{
    DEFAULT_DELIVERY_TIMEOUT, DEFAULT_REPLAY_INTERVAL, DEFAULT_SPOOL_MAX_BYTES, DEFAULT_TOPIC,
    KafkaConfig,
};
pub use health::{EVENT_SPOOL_PROBE, EventSpoolProbe};
pub use message::{EngagementMessage, MessageError, SCHEMA_VERSION};
pub use sink::{KafkaEventSink, KafkaSinkError, PRODUCER_ERRORS_METRIC};
pub use spool::{EventSpool, SPOOL_BYTES_METRIC, SPOOL_FILE, SpoolError, SpoolRecord};
