//! Kafka side of the engagement pipeline. The producer side is an [`EventSink`] that publishes each
//! accepted event to a topic, keyed by user, as a versioned JSON message.
//!
//! Kafka being down must not lose events nor fail requests: what Kafka does not acknowledge within
//! the delivery timeout goes to a local, fsynced, segmented spool ([`EventSpool`]), and a replayer
//! republishes it, partition by partition, once the broker answers again; one failing partition
//! holds back only its own users. Only a full spool (or a failing disk) makes `publish` fail.
//!
//! The consumer side, [`EngagementConsumer`], reads the topic in a consumer group and stores the
//! events through the [`EngagementEventStore`] port, committing offsets only after they are stored.
//!
//! [`CdcConsumer`] applies Debezium change events of the upstream `videos` table (topic
//! `cdc.posts`) to the catalog through the [`VideoCatalog`] port, with the same batching, commits
//! and dead-lettering.
//!
//! [`EventSink`]: vrs_application::ports::EventSink
//! [`VideoCatalog`]: vrs_application::ports::VideoCatalog
//! [`EngagementEventStore`]: vrs_application::ports::EngagementEventStore

mod cdc;
mod cdc_message;
mod config;
mod consumer;
mod dead_letter;
mod group;
mod health;
mod message;
mod propagation;
mod replay;
mod sink;
mod spool;

pub use cdc::{
    CDC_EVENTS_APPLIED_METRIC, CDC_EVENTS_STALE_METRIC, CDC_LAG_METRIC, CDC_LAST_APPLIED_METRIC,
    CDC_TRUNCATED_METRIC, CdcConsumer, CdcConsumerConfig, CdcConsumerError, DEFAULT_CDC_DLQ_TOPIC,
    DEFAULT_CDC_TOPIC,
};
pub use cdc_message::{
    CDC_UNKNOWN_VALUES_METRIC, CdcChange, CdcError, CdcOp, decode as decode_cdc,
};
pub use config::{
    DEFAULT_DELIVERY_TIMEOUT, DEFAULT_REPLAY_INTERVAL, DEFAULT_SPOOL_MAX_BYTES, DEFAULT_TOPIC,
    KafkaConfig,
};
pub use consumer::{
    DEFAULT_DLQ_TOPIC, EVENTS_RECORDED_METRIC, EngagementConsumer, EngagementConsumerConfig,
    EngagementConsumerError, PROCESSING_LAG_METRIC,
};
pub use dead_letter::{
    DEAD_LETTERS_PENDING_METRIC, DLQ_ERROR_TYPE_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER, DLQ_TOPIC_HEADER,
};
pub use group::{
    BATCH_IN_PROGRESS_METRIC, COMMITTED_OFFSET_METRIC, CONSUMER_ERRORS_METRIC, CONSUMER_LAG_METRIC,
    DEFAULT_BATCH_MAX_SIZE, DEFAULT_BATCH_MAX_WAIT, DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_RETRY_BACKOFF, DEFAULT_RETRY_BACKOFF_MAX, DEFAULT_SESSION_TIMEOUT,
    LAST_BATCH_STORED_METRIC, REBALANCES_METRIC,
};
pub use health::{EVENT_SPOOL_PROBE, EventSpoolProbe};
pub use message::{EngagementMessage, MessageError, SCHEMA_VERSION};
pub use sink::{FAILING_PARTITIONS_METRIC, KafkaEventSink, KafkaSinkError, PRODUCER_ERRORS_METRIC};
pub use spool::{
    DEFAULT_SEGMENT_BYTES, EventSpool, RecordId, SPOOL_BYTES_METRIC, SPOOL_FILE,
    SPOOL_RECORDS_METRIC, SPOOL_SKIPPED_BYTES_METRIC, SpoolError, SpoolOptions, SpoolRecord, Taken,
    key_hash,
};
