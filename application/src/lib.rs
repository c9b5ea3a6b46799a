//! Use cases of the video ranking service and the ports they need.
//!
//! Depends only on `vrs-domain` and on the port traits defined in [`ports`]; adapters implement the
//! ports and `bootstrap` wires them.

pub mod admin;
#[cfg(feature = "contract")]
pub mod contract;
pub mod demo;
pub mod engagement;
pub mod evaluate;
pub mod experiments;
pub mod feed;
pub mod health;
pub mod model;
pub mod ports;
pub mod snapshot;
pub mod warmup;

pub use admin::{AdminError, AdminService, Invalidation, WeightsOverview};
pub use engagement::{EngagementError, EngagementService, NewEvent, RecordOutcome};
pub use experiments::{ExperimentService, ExperimentServiceError, ExposureLog};
pub use feed::{
    CacheStatus, Explanation, FeedConfig, FeedError, FeedItem, FeedPage, FeedPosition, FeedService,
    PageRequest,
};
pub use health::{CheckReport, HealthReport, HealthService, HealthStatus};
pub use model::{ActivationPolicy, ModelError, ModelService, TrainingReport};
pub use ports::{PortError, Ports, SystemClock};
pub use snapshot::{CandidateSnapshot, SnapshotRefresher, SnapshotState};
pub use warmup::{CacheWarmer, WarmupReport};
