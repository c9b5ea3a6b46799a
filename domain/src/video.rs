//! The catalog entity ranking works on.

use crate::ids::{CreatorId, VideoId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Lifecycle of a video in the catalog. Only `Published` videos are ever served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoStatus {
    Draft,
    Processing,
    Published,
    Archived,
    Deleted,
}

impl VideoStatus {
    /// The lowercase name used in storage and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Processing => "processing",
            Self::Published => "published",
            Self::Archived => "archived",
            Self::Deleted => "deleted",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => Self::Draft,
            "processing" => Self::Processing,
            "published" => Self::Published,
            "archived" => Self::Archived,
            "deleted" => Self::Deleted,
            _ => return None,
        })
    }
}

/// A short video as the catalog knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Video {
    pub id: VideoId,
    pub creator_id: CreatorId,
    pub title: String,
    pub duration_seconds: u32,
    pub status: VideoStatus,
    /// Object key of the playable media, turned into a URL by the media-URL port.
    pub media_key: String,
    /// Object key of the thumbnail image.
    pub thumbnail_key: String,
    /// When the video went public; `None` while it never was.
    pub published_at: Option<DateTime<Utc>>,
    /// Last change of the record; the catalog snapshot refresh reads changes past a watermark.
    pub updated_at: DateTime<Utc>,
    /// Set when the video was deleted; a deleted video is never served.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Video {
    /// Whether the video may appear in any feed.
    pub fn is_servable(&self) -> bool {
        self.status == VideoStatus::Published
            && self.deleted_at.is_none()
            && self.published_at.is_some()
    }
}
