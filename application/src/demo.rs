//! A deterministic demo catalog: creators, videos, users with follows and engagement history.
//!
//! The embedded mode loads it into the memory adapters and `seed-demo` into the real stores, so a
//! newcomer gets visibly personalized feeds without any data. Ids are readable: demo user `n` is
//! `00000000-0000-4000-8000-{n:012}` (hexadecimal digits), creators start with `00000001-`, videos
//! with `00000002-`.

use crate::ports::{PortError, Ports};
use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use uuid::Uuid;
use vrs_domain::{CreatorId, EngagementEvent, EventType, UserId, Video, VideoId, VideoStatus};

/// How large the demo data set is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoSize {
    pub videos: usize,
    pub creators: usize,
    pub users: usize,
}

impl Default for DemoSize {
    fn default() -> Self {
        Self {
            videos: 10_000,
            creators: 1_000,
            users: 2_000,
        }
    }
}

/// The generated data.
#[derive(Clone, Debug, Default)]
pub struct DemoCatalog {
    pub videos: Vec<Video>,
    pub follows: Vec<(UserId, CreatorId)>,
    pub events: Vec<EngagementEvent>,
}

fn demo_uuid(kind: u32, n: u64) -> Uuid {
    Uuid::from_u128(
        (u128::from(kind) << 96) | (0x4000u128 << 64) | (0x8000u128 << 48) | u128::from(n),
    )
}

/// Demo user number `n` (from 1).
pub fn demo_user_id(n: u64) -> UserId {
    UserId(demo_uuid(0, n))
}

/// Demo creator number `n` (from 1).
pub fn demo_creator_id(n: u64) -> CreatorId {
    CreatorId(demo_uuid(1, n))
}

/// Demo video number `n` (from 1).
pub fn demo_video_id(n: u64) -> VideoId {
    VideoId(demo_uuid(2, n))
}

const TOPICS: [&str; 12] = [
    "street food",
    "skateboarding",
    "home workout",
    "guitar cover",
    "cat antics",
    "travel vlog",
    "speed painting",
    "coding tips",
    "dance challenge",
    "cooking hack",
    "science trick",
    "football skills",
];

/// Generates the demo data relative to `now`, the same for the same `seed` and size.
pub fn generate(size: DemoSize, now: DateTime<Utc>, seed: u64) -> DemoCatalog {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let creators = size.creators.max(1);
    // Popular creators (low numbers) publish more and get followed more: u^2 skews toward 0.
    let skewed =
        |rng: &mut ChaCha8Rng, n: usize| ((rng.r#gen::<f64>().powi(2)) * n as f64) as usize % n;

    let mut videos = Vec::with_capacity(size.videos);
    let mut by_creator: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut quality = Vec::with_capacity(size.videos);
    for n in 0..size.videos {
        let creator = skewed(&mut rng, creators);
        let age = Duration::seconds((rng.r#gen::<f64>().powf(1.5) * 30.0 * 86_400.0) as i64);
        let published_at = now - age;
        let status = match rng.gen_range(0..100) {
            0 => VideoStatus::Deleted,
            1 => VideoStatus::Draft,
            _ => VideoStatus::Published,
        };
        let id = demo_video_id(n as u64 + 1);
        let q: f64 = rng.r#gen::<f64>() * 0.8 + 0.1;
        quality.push(q);
        by_creator.entry(creator).or_default().push(n);
        videos.push(Video {
            id,
            creator_id: demo_creator_id(creator as u64 + 1),
            title: format!("{} #{}", TOPICS[rng.gen_range(0..TOPICS.len())], n + 1),
            duration_seconds: rng.gen_range(5..=90),
            status,
            visibility: vrs_domain::Visibility::Public,
            media_key: format!("videos/{id}/master.m3u8"),
            thumbnail_key: format!("thumbnails/{id}.jpg"),
            published_at: (status != VideoStatus::Draft).then_some(published_at),
            updated_at: published_at,
            deleted_at: (status == VideoStatus::Deleted)
                .then_some(published_at + Duration::hours(1)),
        });
    }

    let mut follows = Vec::new();
    let mut events = Vec::new();
    for u in 0..size.users {
        let user = demo_user_id(u as u64 + 1);
        let mut followed: Vec<usize> = (0..rng.gen_range(3..=30))
            .map(|_| skewed(&mut rng, creators))
            .collect();
        followed.sort_unstable();
        followed.dedup();
        follows.extend(
            followed
                .iter()
                .map(|&c| (user, demo_creator_id(c as u64 + 1))),
        );
        if videos.is_empty() {
            continue;
        }
        for _ in 0..rng.gen_range(10..=60) {
            // Mostly videos of followed creators, the rest from anywhere.
            let n = match followed
                .get(rng.gen_range(0..followed.len().max(1) * 2))
                .and_then(|c| by_creator.get(c))
            {
                Some(list) if !list.is_empty() => list[rng.gen_range(0..list.len())],
                _ => rng.gen_range(0..videos.len()),
            };
            let video = &videos[n];
            let Some(published_at) = video.published_at else {
                continue;
            };
            if !video.is_servable() {
                continue;
            }
            let span = (now - published_at).num_seconds().max(1);
            let at = published_at + Duration::seconds(rng.gen_range(0..span));
            let q = quality[n];
            let mut push =
                |rng: &mut ChaCha8Rng, event_type: EventType, completion: Option<f64>| {
                    events.push(EngagementEvent {
                        event_id: Uuid::from_u128(rng.r#gen()),
                        user_id: user,
                        video_id: video.id,
                        creator_id: video.creator_id,
                        event_type,
                        watch_ms: completion
                            .map(|c| (c * f64::from(video.duration_seconds) * 1000.0) as u64),
                        completion,
                        occurred_at: at,
                    });
                };
            push(&mut rng, EventType::Impression, None);
            if rng.r#gen::<f64>() > q.mul_add(0.6, 0.2) {
                push(&mut rng, EventType::Skip, None);
                continue;
            }
            push(&mut rng, EventType::View, None);
            let completion = (q + rng.gen_range(-0.3..0.3)).clamp(0.05, 1.0);
            if completion >= 0.95 {
                push(&mut rng, EventType::Complete, Some(1.0));
            } else if rng.gen_bool(0.5) {
                push(&mut rng, EventType::Watch, Some(completion));
            }
            if rng.gen_bool(q * 0.4) {
                push(&mut rng, EventType::Like, None);
            }
            if rng.gen_bool(q * 0.08) {
                push(&mut rng, EventType::Share, None);
            }
            if rng.gen_bool(q * 0.1) {
                push(&mut rng, EventType::Comment, None);
            }
        }
    }
    DemoCatalog {
        videos,
        follows,
        events,
    }
}

/// Writes the demo data through the ports: catalog, follows, events (through the event sink, so
/// repeated seeding counts every event as a duplicate) and the users' watch history.
/// `progress(done, total)` is called after each chunk.
pub async fn seed(
    ports: &Ports,
    demo: &DemoCatalog,
    progress: impl Fn(u64, u64),
) -> Result<(), PortError> {
    const CHUNK: usize = 1_000;
    let total = (demo.videos.len() + demo.follows.len() + demo.events.len()) as u64;
    let mut done = 0u64;
    for chunk in demo.videos.chunks(CHUNK) {
        ports.catalog.upsert_videos(chunk).await?;
        done += chunk.len() as u64;
        progress(done, total);
    }
    for chunk in demo.follows.chunks(CHUNK) {
        ports.follows.add_follows(chunk).await?;
        done += chunk.len() as u64;
        progress(done, total);
    }
    let mut watched: HashMap<UserId, Vec<(VideoId, DateTime<Utc>)>> = HashMap::new();
    for chunk in demo.events.chunks(CHUNK) {
        ports.events.publish(chunk).await?;
        for e in chunk.iter().filter(|e| e.event_type.is_watch()) {
            watched
                .entry(e.user_id)
                .or_default()
                .push((e.video_id, e.occurred_at));
        }
        done += chunk.len() as u64;
        progress(done, total);
    }
    for (user, list) in watched {
        for (video, at) in list {
            ports.history.record_watched(user, &[video], at).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let now = Utc::now();
        let size = DemoSize {
            videos: 500,
            creators: 50,
            users: 40,
        };
        let a = generate(size, now, 7);
        let b = generate(size, now, 7);
        assert_eq!(a.videos, b.videos);
        assert_eq!(a.events, b.events);
        assert_eq!(a.videos.len(), 500);
        assert!(a.follows.len() >= 40 * 3 / 2);
        assert!(a.events.iter().any(|e| e.event_type == EventType::Like));
        assert!(a.videos.iter().any(|v| !v.is_servable()));
        assert_ne!(generate(size, now, 8).videos, a.videos);
    }

    #[test]
    fn demo_ids_are_readable() {
        assert_eq!(
            demo_user_id(1).to_string(),
            "00000000-0000-4000-8000-000000000001"
        );
        assert!(demo_video_id(10).to_string().starts_with("00000002-"));
    }
}
