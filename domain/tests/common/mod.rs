//! Builders shared by the domain test suites: catalog videos, stats, pools and users.

#![allow(dead_code)] // each test crate uses a different subset

use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;
use vrs_domain::{
    CandidatePool, CreatorId, RankingConfig, UserContext, UserId, Video, VideoId, VideoStats,
    VideoStatus,
};

/// A fixed "now", so ages are exact and runs are reproducible.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
        .single()
        .expect("valid date")
}

pub fn vid(n: u128) -> VideoId {
    VideoId(Uuid::from_u128(n))
}

pub fn creator(n: u128) -> CreatorId {
    // Offset so creator and video ids never collide in assertions that print both.
    CreatorId(Uuid::from_u128(1_000_000 + n))
}

/// A published, servable video of `creator_n`, `age` old at [`now`].
pub fn video(n: u128, creator_n: u128, age: Duration) -> Video {
    let published = now() - age;
    Video {
        id: vid(n),
        creator_id: creator(creator_n),
        title: format!("video {n}"),
        duration_seconds: 30,
        status: VideoStatus::Published,
        visibility: vrs_domain::Visibility::Public,
        media_key: format!("media/{n}.mp4"),
        thumbnail_key: format!("thumbs/{n}.jpg"),
        published_at: Some(published),
        updated_at: published,
        deleted_at: None,
    }
}

/// Stats with the given views, net likes, shares, comments, and watches of the given mean completion.
pub fn stats(
    views: u64,
    likes: u64,
    shares: u64,
    comments: u64,
    watches: u64,
    mean: f64,
) -> VideoStats {
    VideoStats {
        views,
        likes,
        shares,
        comments,
        watches,
        completion_sum: mean * watches as f64,
        ..VideoStats::default()
    }
}

/// A pool of `videos` with the given stats (absent ones are all-zero) and trending list.
pub fn pool(
    videos: Vec<Video>,
    stats: &[(VideoId, VideoStats)],
    trending: &[VideoId],
) -> CandidatePool {
    let stats: HashMap<VideoId, VideoStats> = stats.iter().copied().collect();
    CandidatePool::build(videos, &stats, trending)
}

/// A user with no follows, no affinity history and nothing watched or served.
pub fn user() -> UserContext {
    UserContext::anonymous(UserId(Uuid::from_u128(42)), now())
}

/// A user with the given follows and raw affinity strengths.
pub fn user_with(follows: &[u128], affinity: &[(u128, f64)]) -> UserContext {
    let mut u = user();
    u.follows = follows.iter().map(|&c| creator(c)).collect::<HashSet<_>>();
    u.affinity = Some(affinity.iter().map(|&(c, s)| (creator(c), s)).collect());
    u
}

/// The product policy with a smaller session, so small pools exercise the session-size rules.
pub fn config(session_size: usize) -> RankingConfig {
    RankingConfig {
        session_size,
        ..RankingConfig::default()
    }
}
