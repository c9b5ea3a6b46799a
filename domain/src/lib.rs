//! Feed entities and ranking policy of the video ranking service.
//!
//! Pure: no async, no I/O, no framework crates. Everything here is a deterministic function of its
//! inputs, so the same policy serves the HTTP path, the cache warm-up and the benchmarks.

pub mod engagement;
pub mod experiment;
pub mod factors;
pub mod feed;
pub mod hidden;
pub mod ids;
pub mod pool;
pub mod ranking;
pub mod signals;
pub mod video;
pub mod weights;

pub use engagement::{
    EngagementEvent, EventError, EventType, LIKE_WINDOW_SECONDS, QUICK_SKIP_MS,
    REACTION_WINDOW_SECONDS, Reaction, VideoStats,
};
pub use experiment::{
    Assignment, Experiment, ExperimentDraft, ExperimentError, ExperimentState, Exposure, Metric,
    Variant, VariantDraft, VariantTotals,
};
pub use feed::{FeedSession, Limit, LimitError, PageSlice, Reason, SessionItem};
pub use hidden::Hidden;
pub use ids::{CreatorId, IdMap, SessionId, UserId, VideoId};
pub use pool::{CandidatePool, PoolEntry};
pub use ranking::{Candidate, Ranking, RankingConfig, ScoredCandidate, UserContext};
pub use signals::{Signal, SignalSet, SignalValues};
pub use video::{SourcePosition, Video, VideoStatus, Visibility};
pub use weights::{Weights, WeightsError};
