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

/// Who may see a video. Only `Public` videos are ranked into feeds: an `Unlisted` one is reachable
/// by its link only, a `Private` one by its creator only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    #[default]
    Public,
    Unlisted,
    Private,
}

impl Visibility {
    /// The lowercase name used in storage and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Unlisted => "unlisted",
            Self::Private => "private",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => Self::Public,
            "unlisted" => Self::Unlisted,
            "private" => Self::Private,
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
    /// Who may see it; only public videos are served in feeds.
    #[serde(default)]
    pub visibility: Visibility,
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
            && self.visibility == Visibility::Public
            && self.deleted_at.is_none()
            && self.published_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn published(visibility: Visibility) -> Video {
        let now = Utc::now();
        Video {
            id: VideoId(Uuid::new_v4()),
            creator_id: CreatorId(Uuid::new_v4()),
            title: "t".into(),
            duration_seconds: 10,
            status: VideoStatus::Published,
            visibility,
            media_key: "m".into(),
            thumbnail_key: "t".into(),
            published_at: Some(now),
            updated_at: now,
            deleted_at: None,
        }
    }

    #[test]
    fn only_public_published_videos_are_servable() {
        assert!(published(Visibility::Public).is_servable());
        assert!(!published(Visibility::Unlisted).is_servable());
        assert!(!published(Visibility::Private).is_servable());
    }

    #[test]
    fn visibility_names_round_trip() {
        for v in [
            Visibility::Public,
            Visibility::Unlisted,
            Visibility::Private,
        ] {
            assert_eq!(Visibility::parse(v.as_str()), Some(v));
        }
        assert_eq!(Visibility::parse("friends"), None);
    }
}
