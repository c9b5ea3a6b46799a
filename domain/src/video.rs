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

/// Where a change of a video stands in the history of the system the catalog follows (the posts
/// service's database): its commit time there, then its log position (PostgreSQL's LSN; 0 when the
/// source has none). Ordered by both, in that order. Changes are applied only in this order, never
/// by the time they happen to be received.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct SourcePosition {
    /// Commit time at the source, in microseconds since the Unix epoch.
    pub committed_at_us: i64,
    /// Position in the source's log; 0 when unknown.
    pub log_position: i64,
}

impl SourcePosition {
    /// Whether a change at `self` (a delete when `deleted`) replaces what the catalog holds: the
    /// catalog's last change at `stored` (a delete when its flag is set), or nothing. A change at
    /// the same position as the stored one replaces it (a redelivery rewrites the same row),
    /// except that an update never replaces a delete at the same position: a source that orders
    /// changes only to the millisecond, or a delete that carries only the row's last `updated_at`,
    /// must not bring a video back.
    pub fn supersedes(self, deleted: bool, stored: Option<(Self, bool)>) -> bool {
        match stored {
            None => true,
            Some((at, was_deleted)) => (self, deleted) >= (at, was_deleted),
        }
    }

    /// The commit time as a timestamp, when representable.
    pub fn committed_at(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.committed_at_us)
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
    fn later_changes_supersede_and_deletes_win_ties() {
        let at = |us, lsn| SourcePosition {
            committed_at_us: us,
            log_position: lsn,
        };
        assert!(at(5, 0).supersedes(false, None));
        assert!(at(5, 1).supersedes(false, Some((at(5, 0), false))));
        assert!(at(6, 0).supersedes(false, Some((at(5, 9), true))));
        assert!(!at(4, 9).supersedes(false, Some((at(5, 0), false))));
        assert!(!at(4, 9).supersedes(true, Some((at(5, 0), false))));
        // A redelivery of the same change applies again; an update never undoes a delete it ties.
        assert!(at(5, 0).supersedes(false, Some((at(5, 0), false))));
        assert!(at(5, 0).supersedes(true, Some((at(5, 0), false))));
        assert!(at(5, 0).supersedes(true, Some((at(5, 0), true))));
        assert!(!at(5, 0).supersedes(false, Some((at(5, 0), true))));
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
