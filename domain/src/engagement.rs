//! Engagement events and the per-video aggregates built from them.

use crate::ids::{CreatorId, UserId, VideoId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a user did with a video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Impression,
    View,
    Watch,
    Complete,
    Like,
    Unlike,
    Share,
    Comment,
    Skip,
    /// The user does not want this video: it leaves their feed for good.
    NotInterested,
    /// The user does not want this video's creator: every video of theirs leaves the user's feed.
    HideCreator,
}

impl EventType {
    /// Every event type, in documentation order.
    pub const ALL: [EventType; 11] = [
        Self::Impression,
        Self::View,
        Self::Watch,
        Self::Complete,
        Self::Like,
        Self::Unlike,
        Self::Share,
        Self::Comment,
        Self::Skip,
        Self::NotInterested,
        Self::HideCreator,
    ];

    /// The negative-feedback types: hard filters of the user's feed.
    pub const NEGATIVE_FEEDBACK: [EventType; 2] = [Self::NotInterested, Self::HideCreator];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Impression => "impression",
            Self::View => "view",
            Self::Watch => "watch",
            Self::Complete => "complete",
            Self::Like => "like",
            Self::Unlike => "unlike",
            Self::Share => "share",
            Self::Comment => "comment",
            Self::Skip => "skip",
            Self::NotInterested => "not_interested",
            Self::HideCreator => "hide_creator",
        }
    }

    /// Parses the lowercase wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the event means the user watched the video: it then leaves their feed.
    pub fn is_watch(self) -> bool {
        matches!(self, Self::Watch | Self::Complete)
    }

    /// How much one such event adds to the user's affinity with the video's creator.
    ///
    /// Deliberate actions (share, like, comment) say more than passive ones; a skip or an unlike takes
    /// some back, "not interested" more, and hiding the creator cancels a long history with them.
    /// A user's affinity with a creator is the sum over 90 days, floored at zero.
    pub fn affinity_weight(self) -> f64 {
        match self {
            Self::Impression => 0.0,
            Self::View => 0.5,
            Self::Watch => 1.0,
            Self::Complete => 2.0,
            Self::Like => 3.0,
            Self::Unlike => -3.0,
            Self::Share => 4.0,
            Self::Comment => 2.0,
            Self::Skip => -0.5,
            Self::NotInterested => -3.0,
            Self::HideCreator => -20.0,
        }
    }
}

/// A `skip` reported with less watch time than this is a quick skip: it counts as a
/// watch that completed nothing, against the video's completion.
pub const QUICK_SKIP_MS: u64 = 2_000;

/// How long a share or comment of one user on one video counts once (and an unlike's claim is
/// kept for its retries): a repeat within it is a duplicate, so one account cannot inflate a
/// video's engagement.
pub const REACTION_WINDOW_SECONDS: i64 = 7 * 24 * 3_600;

/// How long a like is remembered: as long as events count in affinity (90 days), so an unlike
/// long after the like still cancels it, and a like cannot be repeated every week.
pub const LIKE_WINDOW_SECONDS: i64 = 90 * 24 * 3_600;

impl EventType {
    /// How long a claim of this reaction type is held.
    pub fn claim_window_seconds(self) -> i64 {
        if self == Self::Like {
            LIKE_WINDOW_SECONDS
        } else {
            REACTION_WINDOW_SECONDS
        }
    }
}

/// One reaction of a batch, to be claimed before it counts.
///
/// Rules (per user, video and type, within the type's claim window: 90 days for likes, 7 days
/// for the others):
/// - `like`, `share`, `comment` count when no event of that type holds the claim, or when this very
///   event (by id: a client's retry) does; counting claims it.
/// - `unlike` counts when it is a retry of an unlike that counted, or when it cancels a like: it
///   frees the like's claim (so a later like counts again, and the pair nets to zero) and holds an
///   `unlike` claim, remembering the like it cancelled. An `unlike` with no like to cancel does not
///   count, so unlikes cannot drive a video's likes down.
/// - Releasing a claim (its batch was not accepted) frees it; releasing an unlike puts back the
///   like it cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reaction {
    pub event_id: Uuid,
    pub video_id: VideoId,
    pub event_type: EventType,
}

impl EventType {
    /// Whether at most one event of this type per user and video counts within the window.
    pub fn is_reaction(self) -> bool {
        matches!(
            self,
            Self::Like | Self::Unlike | Self::Share | Self::Comment
        )
    }
}

/// A validated engagement event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngagementEvent {
    /// Client-chosen id; a repeated id is applied once.
    pub event_id: Uuid,
    pub user_id: UserId,
    pub video_id: VideoId,
    /// The video's creator, resolved from the catalog when the event is accepted.
    pub creator_id: CreatorId,
    pub event_type: EventType,
    pub watch_ms: Option<u64>,
    /// Fraction of the video watched, in [0, 1]. `complete` events count as 1.0 when absent.
    pub completion: Option<f64>,
    pub occurred_at: DateTime<Utc>,
}

/// Why an event was rejected; `field` names the offending JSON field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EventError {
    pub field: &'static str,
    pub message: String,
}

impl EventError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// How far in the future a client clock may be before `occurred_at` is rejected.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// How old an event may be when it is accepted: 7 days, the event ledger's retention. Older
/// events no longer say much about what to rank now, and a store with a bounded time type
/// (ClickHouse's `DateTime` starts in 1970) could otherwise be handed a value it can never take.
pub const MAX_EVENT_AGE_SECONDS: i64 = 7 * 24 * 3_600;

impl EngagementEvent {
    /// Checks the rules every accepted event satisfies.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), EventError> {
        if let Some(c) = self.completion
            && !(c.is_finite() && (0.0..=1.0).contains(&c))
        {
            return Err(EventError::new(
                "completion",
                "must be a number from 0 to 1",
            ));
        }
        if (self.occurred_at - now).num_seconds() > MAX_CLOCK_SKEW_SECONDS {
            return Err(EventError::new(
                "occurred_at",
                "must not be more than 5 minutes in the future",
            ));
        }
        if (now - self.occurred_at).num_seconds() > MAX_EVENT_AGE_SECONDS {
            return Err(EventError::new(
                "occurred_at",
                "must not be more than 7 days in the past",
            ));
        }
        Ok(())
    }

    /// The completion ratio this event contributes when it is a watch event or a quick skip.
    pub fn effective_completion(&self) -> Option<f64> {
        match self.event_type {
            EventType::Complete => Some(self.completion.unwrap_or(1.0)),
            EventType::Watch => Some(self.completion.unwrap_or(0.0)),
            _ if self.is_quick_skip() => Some(0.0),
            _ => None,
        }
    }

    /// A `skip` after less than [`QUICK_SKIP_MS`] of watching: a completion sample of 0. (A
    /// short `view` is not one: clients send views at playback start.)
    pub fn is_quick_skip(&self) -> bool {
        self.event_type == EventType::Skip && self.watch_ms.is_some_and(|ms| ms < QUICK_SKIP_MS)
    }
}

/// Aggregated engagement of one video over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoStats {
    pub impressions: u64,
    pub views: u64,
    /// Completion samples: watch events (`watch` and `complete`) and quick skips
    /// (see [`QUICK_SKIP_MS`]), which complete nothing.
    pub watches: u64,
    /// Sum of the completion ratios of the completion samples.
    pub completion_sum: f64,
    pub likes: u64,
    pub unlikes: u64,
    pub shares: u64,
    pub comments: u64,
    pub skips: u64,
}

impl VideoStats {
    /// Adds one event to the aggregate.
    pub fn add(&mut self, event: &EngagementEvent) {
        if event.is_quick_skip() {
            self.watches += 1;
        }
        match event.event_type {
            EventType::Impression => self.impressions += 1,
            EventType::View => self.views += 1,
            EventType::Watch | EventType::Complete => {
                self.watches += 1;
                self.completion_sum += event.effective_completion().unwrap_or(0.0);
            }
            EventType::Like => self.likes += 1,
            EventType::Unlike => self.unlikes += 1,
            EventType::Share => self.shares += 1,
            EventType::Comment => self.comments += 1,
            EventType::Skip => self.skips += 1,
            EventType::NotInterested | EventType::HideCreator => {}
        }
    }

    /// Sums two aggregates (e.g. two hourly buckets).
    pub fn merge(&mut self, other: &VideoStats) {
        self.impressions += other.impressions;
        self.views += other.views;
        self.watches += other.watches;
        self.completion_sum += other.completion_sum;
        self.likes += other.likes;
        self.unlikes += other.unlikes;
        self.shares += other.shares;
        self.comments += other.comments;
        self.skips += other.skips;
    }

    /// Likes net of unlikes, never negative.
    pub fn net_likes(&self) -> u64 {
        self.likes.saturating_sub(self.unlikes)
    }
}
