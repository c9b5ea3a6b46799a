//! Transport types: the JSON shapes of the API, separate from the domain types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use vrs_application::{FeedItem, HealthReport, HealthStatus};
use vrs_domain::{Reason, SignalValues, Weights};

/// Query of `GET /api/v1/reels`. Values are parsed by hand for precise error messages.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReelsQuery {
    /// Page size, 1 to 50 (default 40).
    #[param(value_type = Option<u8>, minimum = 1, maximum = 50)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `true` to include each video's signal values, weights and contributions.
    #[param(value_type = Option<bool>)]
    pub explain: Option<String>,
}

/// One page of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReelsResponse {
    pub videos: Vec<ReelVideo>,
    /// With `explain=true`: the experiment variants this feed session is ranked by (every page
    /// of the session is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiments: Option<Vec<AssignmentDto>>,
    /// Opaque cursor of the next page; `null` at the end of the feed.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// Why a video is in the feed.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasonDto {
    Following,
    Affinity,
    Trending,
    Fresh,
}

impl From<Reason> for ReasonDto {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Following => Self::Following,
            Reason::Affinity => Self::Affinity,
            Reason::Trending => Self::Trending,
            Reason::Fresh => Self::Fresh,
        }
    }
}

/// A ranked video.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReelVideo {
    pub id: Uuid,
    pub creator_id: Uuid,
    pub title: String,
    pub duration_seconds: u32,
    pub thumbnail_url: String,
    pub playback_url: String,
    pub published_at: DateTime<Utc>,
    pub view_count: u64,
    /// Likes net of unlikes.
    pub like_count: u64,
    pub share_count: u64,
    pub comment_count: u64,
    /// Mean completion ratio of watches, 0 to 1.
    pub completion_rate: f64,
    pub ranking_score: f64,
    pub reason: ReasonDto,
    /// Present with `explain=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsDto>,
}

/// The variant of one running experiment a feed session is ranked by.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AssignmentDto {
    pub experiment_id: uuid::Uuid,
    pub experiment: String,
    pub variant: String,
}

impl From<&vrs_domain::Assignment> for AssignmentDto {
    fn from(a: &vrs_domain::Assignment) -> Self {
        Self {
            experiment_id: a.experiment_id,
            experiment: a.experiment.clone(),
            variant: a.variant.clone(),
        }
    }
}

/// One number per signal, each in [0, 1]: signal values, weights or contributions.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalSetDto {
    pub freshness: f64,
    pub completion: f64,
    pub engagement: f64,
    pub affinity: f64,
    pub model: f64,
}

impl From<SignalValues> for SignalSetDto {
    fn from(v: SignalValues) -> Self {
        Self {
            freshness: v.freshness,
            completion: v.completion,
            engagement: v.engagement,
            affinity: v.affinity,
            model: v.model,
        }
    }
}

impl From<Weights> for SignalSetDto {
    fn from(w: Weights) -> Self {
        use vrs_domain::Signal;
        Self {
            freshness: w.get(Signal::Freshness),
            completion: w.get(Signal::Completion),
            engagement: w.get(Signal::Engagement),
            affinity: w.get(Signal::Affinity),
            model: w.get(Signal::Model),
        }
    }
}

/// Why a video scored what it scored: `ranking_score` is the sum of `contributions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalsDto {
    pub freshness: f64,
    pub completion: f64,
    pub engagement: f64,
    pub affinity: f64,
    pub model: f64,
    /// Engagement and completion as their raw rates (`engagement` and `completion` above are
    /// smoothed toward the catalog's means by a prior worth `SIGNAL_PRIOR_VIEWS` views).
    pub raw_engagement: f64,
    pub raw_completion: f64,
    /// Weights used for this request, after renormalization for unavailable signals.
    pub weights: SignalSetDto,
    /// weight × value of each signal.
    pub contributions: SignalSetDto,
}

impl From<&FeedItem> for ReelVideo {
    fn from(item: &FeedItem) -> Self {
        let v = &item.video;
        Self {
            id: v.id.0,
            creator_id: v.creator_id.0,
            title: v.title.clone(),
            duration_seconds: v.duration_seconds,
            thumbnail_url: item.thumbnail_url.clone(),
            playback_url: item.playback_url.clone(),
            published_at: v.published_at.unwrap_or(v.updated_at),
            view_count: item.stats.views,
            like_count: item.stats.net_likes(),
            share_count: item.stats.shares,
            comment_count: item.stats.comments,
            completion_rate: item.completion_rate,
            ranking_score: item.score,
            reason: item.reason.into(),
            signals: item.explanation.map(|x| SignalsDto {
                freshness: x.signals.freshness,
                completion: x.signals.completion,
                engagement: x.signals.engagement,
                affinity: x.signals.affinity,
                model: x.signals.model,
                raw_engagement: x.raw_engagement,
                raw_completion: x.raw_completion,
                weights: x.weights.into(),
                contributions: x.contributions.into(),
            }),
        }
    }
}

/// Event types.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventTypeDto {
    Impression,
    View,
    Watch,
    Complete,
    Like,
    Unlike,
    Share,
    Comment,
    /// Swiped away; with `watch_ms` under 2000 it also counts against the video's completion.
    Skip,
    /// The user does not want this video: it never appears in their feed again.
    NotInterested,
    /// The user does not want this video's creator: none of their videos appears in the user's
    /// feed again.
    HideCreator,
}

/// One engagement event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventDto {
    /// Client-chosen idempotency key: a repeated id is applied once.
    pub event_id: Uuid,
    pub video_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventTypeDto,
    /// Milliseconds watched.
    #[schema(minimum = 0)]
    pub watch_ms: Option<u64>,
    /// Fraction watched, 0 to 1. When absent on a `watch` event with `watch_ms`, it is
    /// `watch_ms` over the video's duration (at most 1).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub completion: Option<f64>,
    /// When it happened (RFC 3339); defaults to the time of receipt.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Body of `POST /api/v1/events`: 1 to 100 events, at most 64 KiB.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsRequest {
    #[schema(min_items = 1, max_items = 100)]
    pub events: Vec<EventDto>,
}

/// Result of an accepted batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAccepted {
    /// Events newly accepted.
    pub accepted: usize,
    /// Events not newly accepted: those whose `event_id` was seen before (counted once), and
    /// reactions that did not count.
    pub duplicates: usize,
    /// Ids of the likes, shares and comments that did not count because the user already had
    /// one of that type on the video within 7 days, and of unlikes with no like to cancel.
    pub repeated_reactions: Vec<uuid::Uuid>,
}

/// One dependency check.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckDto {
    /// `ok` or `error`.
    pub status: String,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Health report.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`, or `degraded` when a dependency fails but feeds are still served.
    pub status: String,
    /// The service version (only for admins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Each dependency's check (only for admins: error texts name internal hosts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<BTreeMap<String, CheckDto>>,
}

impl HealthResponse {
    pub fn from_report(report: &HealthReport, version: &str) -> Self {
        Self {
            status: match report.status {
                HealthStatus::Ok => "ok",
                HealthStatus::Degraded => "degraded",
            }
            .to_owned(),
            version: Some(version.to_owned()),
            checks: Some(
                report
                    .checks
                    .iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            CheckDto {
                                status: if c.ok { "ok" } else { "error" }.to_owned(),
                                latency_ms: (c.latency.as_secs_f64() * 1000.0 * 1000.0).round()
                                    / 1000.0,
                                error: c.error.clone(),
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// The status alone, as shown to anyone.
    pub fn plain(self) -> Self {
        Self {
            status: self.status,
            version: None,
            checks: None,
        }
    }
}

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveResponse {
    /// Always `ok`.
    pub status: String,
}
