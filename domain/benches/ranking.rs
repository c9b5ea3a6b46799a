//! Cost of one feed-cache miss (`ranking::rank` over a 10k-video pool) and of a pool rebuild.
//!
//! The data is generated from a fixed seed so runs compare: 10,000 videos by 1,000 creators published
//! over the last 30 days (all of them are fresh candidates), 200 trending, and a user with 50 follows,
//! affinity with 100 creators, 300 watched and 200 recently served videos.

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{BatchSize, Criterion, black_box, criterion_group, criterion_main};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use uuid::Uuid;
use vrs_domain::{
    CandidatePool, CreatorId, RankingConfig, UserContext, UserId, Video, VideoId, VideoStats,
    VideoStatus, Weights, ranking, signals,
};

const VIDEOS: usize = 10_000;
const CREATORS: usize = 1_000;
const TRENDING: usize = 200;

/// Catalog, stats and trending list of the benchmark pool.
struct Catalog {
    videos: Vec<Video>,
    stats: HashMap<VideoId, VideoStats>,
    trending: Vec<VideoId>,
    creators: Vec<CreatorId>,
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
        .single()
        .expect("valid date")
}

fn uuid(rng: &mut ChaCha8Rng) -> Uuid {
    Uuid::from_u128(rng.r#gen())
}

fn catalog(rng: &mut ChaCha8Rng) -> Catalog {
    let creators: Vec<CreatorId> = (0..CREATORS).map(|_| CreatorId(uuid(rng))).collect();
    let mut videos = Vec::with_capacity(VIDEOS);
    let mut stats = HashMap::with_capacity(VIDEOS);
    for n in 0..VIDEOS {
        let id = VideoId(uuid(rng));
        let published = now() - Duration::seconds(rng.gen_range(0..30 * 24 * 3600));
        videos.push(Video {
            id,
            creator_id: creators[rng.gen_range(0..CREATORS)],
            title: format!("video {n}"),
            duration_seconds: rng.gen_range(5..180),
            status: VideoStatus::Published,
            visibility: vrs_domain::Visibility::Public,
            media_key: format!("media/{id}.mp4"),
            thumbnail_key: format!("thumbs/{id}.jpg"),
            published_at: Some(published),
            updated_at: published,
            deleted_at: None,
        });
        let views = rng.gen_range(0..10_000u64);
        let watches = rng.gen_range(0..=views);
        stats.insert(
            id,
            VideoStats {
                impressions: views + rng.gen_range(0..10_000),
                views,
                watches,
                completion_sum: watches as f64 * rng.r#gen::<f64>(),
                likes: rng.gen_range(0..=views / 5),
                unlikes: rng.gen_range(0..=views / 50),
                shares: rng.gen_range(0..=views / 20),
                comments: rng.gen_range(0..=views / 10),
                skips: rng.gen_range(0..=views / 4),
            },
        );
    }
    let mut trending: Vec<VideoId> = videos
        .choose_multiple(rng, TRENDING)
        .map(|v| v.id)
        .collect();
    trending
        .sort_by(|a, b| signals::engagement(&stats[b]).total_cmp(&signals::engagement(&stats[a])));
    Catalog {
        videos,
        stats,
        trending,
        creators,
    }
}

fn user(rng: &mut ChaCha8Rng, catalog: &Catalog) -> UserContext {
    let mut u = UserContext::anonymous(UserId(uuid(rng)), now());
    u.follows = catalog.creators.choose_multiple(rng, 50).copied().collect();
    u.affinity = Some(
        catalog
            .creators
            .choose_multiple(rng, 100)
            .map(|&c| (c, rng.gen_range(0.0..50.0)))
            .collect(),
    );
    let mut seen = catalog.videos.choose_multiple(rng, 500).map(|v| v.id);
    u.watched = seen.by_ref().take(300).collect();
    u.recently_served = seen.collect();
    u
}

fn benches(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED);
    let catalog = catalog(&mut rng);
    let user = user(&mut rng, &catalog);
    let pool = CandidatePool::build(catalog.videos.clone(), &catalog.stats, &catalog.trending);
    let config = RankingConfig::default();
    let weights = Weights::DEFAULT;
    assert_eq!(pool.len(), VIDEOS);
    assert_eq!(
        ranking::rank(&pool, &user, &weights, &config).items.len(),
        config.session_size
    );

    c.bench_function("rank/10k_candidates", |b| {
        b.iter(|| ranking::rank(black_box(&pool), black_box(&user), &weights, &config))
    });
    // The stages of a ranking, for a returning user at the histories' caps (5,000 watched,
    // 5,000 served): their cost must not follow the histories' length.
    let mut heavy = user.clone();
    let mut seen = catalog
        .videos
        .choose_multiple(&mut rng, 10_000)
        .map(|v| v.id);
    heavy.watched = seen.by_ref().take(5_000).collect();
    heavy.recently_served = seen.collect();
    c.bench_function("candidates/10k_pool_5k_watched_5k_served", |b| {
        b.iter(|| {
            ranking::filter_candidates(
                &pool,
                &heavy,
                ranking::gather_candidates(&pool, &heavy, &config),
                &config,
            )
        })
    });
    let candidates = ranking::filter_candidates(
        &pool,
        &user,
        ranking::gather_candidates(&pool, &user, &config),
        &config,
    );
    let model: Vec<f64> = (0..candidates.len())
        .map(|i| (i % 100) as f64 / 100.0)
        .collect();
    c.bench_function("score/10k_candidates_with_model", |b| {
        b.iter(|| ranking::score_candidates(&pool, &user, &candidates, &weights, Some(&model)))
    });
    let (_, scored) = ranking::score_candidates(&pool, &user, &candidates, &weights, Some(&model));
    c.bench_function("select_diverse/10k_candidates", |b| {
        b.iter_batched(
            || scored.clone(),
            |scored| ranking::select_diverse(&pool, scored, &config),
            BatchSize::LargeInput,
        )
    });
    c.bench_function("pool_build/10k_videos", |b| {
        b.iter_batched(
            || catalog.videos.clone(),
            |videos| CandidatePool::build(videos, &catalog.stats, &catalog.trending),
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(ranking_benches, benches);
criterion_main!(ranking_benches);
