//! Configuration of the Kafka event sink.

use std::path::PathBuf;
use std::time::Duration;

/// Topic the engagement events go to unless configured otherwise.
pub const DEFAULT_TOPIC: &str = "engagement-events";
/// How long Kafka has to acknowledge an event before it is spooled instead.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Spool size past which `publish` rejects batches (64 MiB, ~200k events).
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// How often the replayer looks at the spool and the broker.
pub const DEFAULT_REPLAY_INTERVAL: Duration = Duration::from_millis(500);

/// Where and how the sink publishes, and where it spools what Kafka did not take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated (`host:port,host:port`).
    pub brokers: String,
    /// Topic of the engagement events.
    pub topic: String,
    /// Time Kafka has to acknowledge an event (librdkafka `message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Directory of the spool file; created when missing.
    pub spool_dir: PathBuf,
    /// Spool size bound in bytes; past it batches are rejected.
    pub spool_max_bytes: u64,
    /// Size at which a spool segment is sealed; drained segments are deleted whole.
    pub spool_segment_bytes: u64,
    /// Pause between two replay rounds.
    pub replay_interval: Duration,
}

impl KafkaConfig {
    /// A configuration with the defaults for everything but the brokers and the spool directory.
    pub fn new(brokers: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: DEFAULT_TOPIC.to_owned(),
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            spool_dir: spool_dir.into(),
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            spool_segment_bytes: crate::spool::DEFAULT_SEGMENT_BYTES,
            replay_interval: DEFAULT_REPLAY_INTERVAL,
        }
    }
}
