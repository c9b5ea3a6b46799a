//! The generated demo catalog, seeded through the ports: feeds of its users follow the rules.

use super::*;
use std::collections::HashMap;
use vrs_application::demo::{self, DemoSize, demo_user_id};
use vrs_application::ports::ViewHistory;

#[tokio::test]
async fn demo_users_get_unique_servable_unwatched_videos() {
    let app = App::new();
    let size = DemoSize {
        videos: 400,
        creators: 40,
        users: 30,
    };
    let data = demo::generate(size, app.now(), 7);
    demo::seed(&app.ports, &data, |_, _| {})
        .await
        .expect("seed");
    app.refresh().await;
    let catalog: HashMap<VideoId, &Video> = data.videos.iter().map(|v| (v.id, v)).collect();

    for n in 1..=5 {
        let u = demo_user_id(n);
        let watched = app
            .adapters
            .history
            .watched_since(u, app.now() - Duration::days(30))
            .await
            .expect("watched");
        assert!(!watched.is_empty(), "demo users have a watch history");
        let pages = app.walk(u, 20).await;
        let seen = all_ids(&pages);
        assert!(
            seen.len() >= 100,
            "a long feed from 400 videos: {}",
            seen.len()
        );
        assert_unique(&seen, "no video twice within a session");
        assert!(
            seen.iter().all(|v| !watched.contains(v)),
            "watched videos are never ranked"
        );
        assert!(
            seen.iter()
                .all(|v| catalog.get(v).is_some_and(|v| v.is_servable())),
            "only published, undeleted videos"
        );
    }
}
