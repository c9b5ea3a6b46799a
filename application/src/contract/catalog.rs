//! Contract of [`VideoCatalog`].

use super::{creator, micros, video_id};
use crate::ports::{CatalogWatermark, VideoCatalog, VideoChange};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use vrs_domain::{SourcePosition, Video, VideoId, VideoStatus, Visibility};

/// Runs every catalog case, each against a fresh adapter from `make`.
pub async fn catalog_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn VideoCatalog>>,
{
    upsert_then_read_by_ids(make().await).await;
    changed_since_lists_every_status_in_order(make().await).await;
    watermark_is_strict_and_ties_break_by_id(make().await).await;
    paging_with_a_limit_reads_each_change_once(make().await).await;
    upsert_replaces_and_moves_the_video_in_the_stream(make().await).await;
    no_watermark_reads_from_the_beginning(make().await).await;
    changes_apply_only_in_source_order(make().await).await;
    a_delete_is_never_undone_by_an_older_or_tied_update(make().await).await;
    tombstones_delete_at_the_stored_position(make().await).await;
    changes_in_one_call_apply_in_order(make().await).await;
    rows_without_a_position_take_any_change(make().await).await;
    // Last: it deletes every older video in the (possibly shared) catalog.
    truncate_deletes_every_older_video(make().await).await;
}

/// A random start time in 2001-2004, so cases sharing a catalog rarely overlap in time.
fn base_time() -> DateTime<Utc> {
    let offset = rand::thread_rng().gen_range(0..100_000_000i64);
    let start = Utc
        .with_ymd_and_hms(2001, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    micros(start + Duration::seconds(offset) + Duration::microseconds(offset % 1_000_000))
}

/// The watermark just before `t`: everything changed at or after `t` is past it.
fn just_before(t: DateTime<Utc>) -> Option<CatalogWatermark> {
    Some(CatalogWatermark {
        updated_at: t - Duration::microseconds(1),
        video_id: VideoId(uuid::Uuid::max()),
    })
}

fn video(status: VideoStatus, updated_at: DateTime<Utc>) -> Video {
    let id = video_id();
    let published = matches!(
        status,
        VideoStatus::Published | VideoStatus::Archived | VideoStatus::Deleted
    );
    Video {
        id,
        creator_id: creator(),
        title: format!("contract video {id}"),
        duration_seconds: 42,
        status,
        visibility: vrs_domain::Visibility::Public,
        media_key: format!("videos/{id}/master.m3u8"),
        thumbnail_key: format!("thumbnails/{id}.jpg"),
        published_at: published.then(|| updated_at - Duration::hours(1)),
        updated_at,
        deleted_at: (status == VideoStatus::Deleted).then_some(updated_at),
    }
}

fn key(v: &Video) -> (DateTime<Utc>, VideoId) {
    (v.updated_at, v.id)
}

fn assert_strictly_ordered(page: &[Video]) {
    assert!(
        page.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "changed_since orders by (updated_at, id) without repeats"
    );
}

/// Keeps only `mine`, in the order the catalog returned them.
fn only<'a>(page: &'a [Video], mine: &[Video]) -> Vec<&'a Video> {
    page.iter()
        .filter(|v| mine.iter().any(|m| m.id == v.id))
        .collect()
}

async fn upsert_then_read_by_ids(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let mut videos = vec![
        video(VideoStatus::Published, t),
        video(VideoStatus::Draft, t + Duration::seconds(1)),
        video(VideoStatus::Deleted, t + Duration::seconds(2)),
        Video {
            visibility: Visibility::Private,
            ..video(VideoStatus::Published, t + Duration::seconds(3))
        },
        Video {
            visibility: Visibility::Unlisted,
            ..video(VideoStatus::Published, t + Duration::seconds(4))
        },
    ];
    catalog.upsert_videos(&videos).await.expect("upsert");
    let mut ids: Vec<VideoId> = videos.iter().map(|v| v.id).collect();
    ids.push(video_id());
    let mut read = catalog.videos_by_ids(&ids).await.expect("videos_by_ids");
    read.sort_by_key(|v| v.id);
    videos.sort_by_key(|v| v.id);
    assert_eq!(
        read, videos,
        "videos_by_ids returns every stored record of any status and visibility, unchanged, and leaves out unknown ids"
    );
    assert!(
        catalog.videos_by_ids(&[]).await.expect("empty").is_empty(),
        "no ids, no videos"
    );
}

async fn changed_since_lists_every_status_in_order(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let same = t + Duration::seconds(3);
    let statuses = [
        VideoStatus::Published,
        VideoStatus::Draft,
        VideoStatus::Processing,
        VideoStatus::Archived,
        VideoStatus::Deleted,
    ];
    let mut videos: Vec<Video> = statuses
        .iter()
        .enumerate()
        .map(|(i, &s)| video(s, t + Duration::milliseconds(1500 * i as i64)))
        .collect();
    // Two changes at the same instant: the id breaks the tie.
    videos.push(video(VideoStatus::Published, same));
    videos.push(video(VideoStatus::Published, same));
    // Stored out of order, so the adapter has to sort.
    let mut shuffled = videos.clone();
    shuffled.reverse();
    catalog.upsert_videos(&shuffled).await.expect("upsert");

    let page = catalog
        .changed_since(just_before(t), 1_000)
        .await
        .expect("changed_since");
    assert_strictly_ordered(&page);
    videos.sort_by_key(key);
    let expected: Vec<&Video> = videos.iter().collect();
    assert_eq!(
        only(&page, &videos),
        expected,
        "deleted and unpublished videos are part of the change stream, in (updated_at, id) order"
    );
}

async fn watermark_is_strict_and_ties_break_by_id(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let mut pair = [
        video(VideoStatus::Published, t),
        video(VideoStatus::Published, t),
    ];
    pair.sort_by_key(|v| v.id);
    let later = video(VideoStatus::Published, t + Duration::seconds(1));
    let all = [pair[0].clone(), pair[1].clone(), later.clone()];
    catalog.upsert_videos(&all).await.expect("upsert");

    let after_first = catalog
        .changed_since(Some(CatalogWatermark::of(&pair[0])), 10)
        .await
        .expect("changed_since");
    assert_eq!(
        only(&after_first, &all),
        vec![&pair[1], &later],
        "past the first of two same-instant changes comes the one with the larger id, not the first itself"
    );
    let after_second = catalog
        .changed_since(Some(CatalogWatermark::of(&pair[1])), 10)
        .await
        .expect("changed_since");
    assert_eq!(
        only(&after_second, &all),
        vec![&later],
        "the watermark's own change is not returned again"
    );
    let after_last = catalog
        .changed_since(Some(CatalogWatermark::of(&later)), 10)
        .await
        .expect("changed_since");
    assert!(
        only(&after_last, &all).is_empty(),
        "nothing of this case lies past its last change"
    );
}

async fn paging_with_a_limit_reads_each_change_once(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let mut videos: Vec<Video> = (0..7)
        .map(|i| video(VideoStatus::Published, t + Duration::seconds(i / 2)))
        .collect();
    catalog.upsert_videos(&videos).await.expect("upsert");
    videos.sort_by_key(key);

    const PAGE: usize = 3;
    let mut read: Vec<Video> = Vec::new();
    let mut watermark = just_before(t);
    // Bounded: a catalog shared with concurrent cases may hold more changes after these.
    for _ in 0..20 {
        let page = catalog
            .changed_since(watermark, PAGE)
            .await
            .expect("changed_since");
        assert!(page.len() <= PAGE, "at most `limit` videos per call");
        assert_strictly_ordered(&page);
        if let (Some(first), Some(w)) = (page.first(), watermark) {
            assert!(
                (first.updated_at, first.id) > (w.updated_at, w.video_id),
                "every change is strictly after the watermark"
            );
        }
        let Some(last) = page.last() else { break };
        watermark = Some(CatalogWatermark::of(last));
        let short = page.len() < PAGE;
        read.extend(page);
        if short || read.iter().any(|v| v.id == videos[videos.len() - 1].id) {
            break;
        }
    }
    let expected: Vec<&Video> = videos.iter().collect();
    assert_eq!(
        only(&read, &videos),
        expected,
        "paging by watermark returns each change exactly once, in order"
    );
}

async fn upsert_replaces_and_moves_the_video_in_the_stream(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let original = video(VideoStatus::Published, t);
    let middle = video(VideoStatus::Published, t + Duration::seconds(10));
    catalog
        .upsert_videos(&[original.clone(), middle.clone()])
        .await
        .expect("upsert");
    let deleted = Video {
        status: VideoStatus::Deleted,
        title: "renamed before deletion".into(),
        updated_at: t + Duration::seconds(20),
        deleted_at: Some(t + Duration::seconds(20)),
        ..original.clone()
    };
    catalog
        .upsert_videos(std::slice::from_ref(&deleted))
        .await
        .expect("upsert");

    assert_eq!(
        catalog.videos_by_ids(&[original.id]).await.expect("read"),
        vec![deleted.clone()],
        "an upsert replaces the record by id, keeping the given updated_at"
    );
    let mine = [original.clone(), middle.clone()];
    let from_start = catalog
        .changed_since(just_before(t), 100)
        .await
        .expect("changed_since");
    assert_eq!(
        only(&from_start, &mine),
        vec![&middle, &deleted],
        "a replaced video appears once, at its new position, with its new record"
    );
    let past_middle = catalog
        .changed_since(Some(CatalogWatermark::of(&middle)), 100)
        .await
        .expect("changed_since");
    assert_eq!(
        only(&past_middle, &mine),
        vec![&deleted],
        "a reader past the old position still sees the change"
    );
}

async fn no_watermark_reads_from_the_beginning(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let mut videos = vec![
        video(VideoStatus::Published, t),
        video(VideoStatus::Draft, t + Duration::seconds(1)),
    ];
    catalog.upsert_videos(&videos).await.expect("upsert");
    videos.sort_by_key(key);
    const LIMIT: usize = 10_000;
    let page = catalog
        .changed_since(None, LIMIT)
        .await
        .expect("changed_since");
    assert_strictly_ordered(&page);
    assert!(page.len() <= LIMIT, "at most `limit` videos");
    // A shared catalog may hold more than a page of older changes; a fresh one holds only these.
    if page.len() < LIMIT {
        let expected: Vec<&Video> = videos.iter().collect();
        assert_eq!(
            only(&page, &videos),
            expected,
            "without a watermark every change is read"
        );
    }
    let first = catalog.changed_since(None, 1).await.expect("changed_since");
    assert_eq!(first.len(), 1, "the limit applies without a watermark too");
    assert_eq!(
        first.first().map(key),
        page.first().map(key),
        "a smaller limit returns a prefix of the same stream"
    );
}

/// Positions `n` microseconds after `t`.
fn pos(t: DateTime<Utc>, n: i64, lsn: i64) -> SourcePosition {
    SourcePosition {
        committed_at_us: t.timestamp_micros() + n,
        log_position: lsn,
    }
}

fn upsert(video: &Video, position: SourcePosition) -> VideoChange {
    VideoChange::Upsert {
        video: video.clone(),
        position,
    }
}

fn titled(video: &Video, title: &str, updated_at: DateTime<Utc>) -> Video {
    Video {
        title: title.to_owned(),
        updated_at,
        ..video.clone()
    }
}

async fn one(catalog: &Arc<dyn VideoCatalog>, id: VideoId) -> Option<Video> {
    catalog
        .videos_by_ids(&[id])
        .await
        .expect("videos_by_ids")
        .pop()
}

async fn apply(catalog: &Arc<dyn VideoCatalog>, changes: &[VideoChange]) -> usize {
    catalog.apply_changes(changes).await.expect("apply_changes")
}

async fn changes_apply_only_in_source_order(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let v = video(VideoStatus::Published, t);
    let newer = titled(&v, "newer", t + Duration::seconds(2));
    assert_eq!(apply(&catalog, &[upsert(&newer, pos(t, 20, 7))]).await, 1);
    let older = titled(&v, "older", t + Duration::seconds(3));
    assert_eq!(
        apply(&catalog, &[upsert(&older, pos(t, 10, 9))]).await,
        0,
        "an older commit time loses, whatever its log position and updated_at"
    );
    assert_eq!(
        apply(&catalog, &[upsert(&older, pos(t, 20, 6))]).await,
        0,
        "at the same commit time, an older log position loses"
    );
    assert_eq!(one(&catalog, v.id).await.as_ref(), Some(&newer));
    assert_eq!(
        apply(&catalog, &[upsert(&newer, pos(t, 20, 7))]).await,
        1,
        "a redelivery of the stored change applies again, harmlessly"
    );
    let private = Video {
        visibility: Visibility::Private,
        ..titled(&v, "private", t + Duration::seconds(4))
    };
    assert_eq!(apply(&catalog, &[upsert(&private, pos(t, 20, 8))]).await, 1);
    assert_eq!(one(&catalog, v.id).await.as_ref(), Some(&private));
}

async fn a_delete_is_never_undone_by_an_older_or_tied_update(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let v = video(VideoStatus::Published, t);
    assert_eq!(apply(&catalog, &[upsert(&v, pos(t, 10, 0))]).await, 1);
    let gone_at = t + Duration::seconds(5);
    let delete = VideoChange::Delete {
        id: v.id,
        position: Some(pos(t, 20, 0)),
        updated_at: gone_at,
    };
    assert_eq!(apply(&catalog, &[delete]).await, 1);
    let deleted = one(&catalog, v.id).await.expect("kept as deleted");
    assert_eq!(deleted.status, VideoStatus::Deleted);
    assert_eq!(deleted.deleted_at, Some(gone_at));
    assert_eq!(
        deleted.updated_at, gone_at,
        "a delete moves the video in the change stream"
    );
    assert!(!deleted.is_servable());
    let late = titled(&v, "late", t + Duration::seconds(9));
    assert_eq!(
        apply(
            &catalog,
            &[upsert(&late, pos(t, 10, 0)), upsert(&late, pos(t, 20, 0))]
        )
        .await,
        0,
        "an older update, or one at the delete's own position, never brings the video back"
    );
    assert_eq!(one(&catalog, v.id).await, Some(deleted));
    let stale_delete = VideoChange::Delete {
        id: v.id,
        position: Some(pos(t, 15, 0)),
        updated_at: t + Duration::seconds(11),
    };
    assert_eq!(
        apply(&catalog, &[stale_delete]).await,
        0,
        "a delete older than the stored delete changes nothing"
    );
    let restored = titled(&v, "restored", t + Duration::seconds(10));
    assert_eq!(
        apply(&catalog, &[upsert(&restored, pos(t, 30, 0))]).await,
        1,
        "a newer change applies"
    );
    assert_eq!(one(&catalog, v.id).await, Some(restored));
}

async fn tombstones_delete_at_the_stored_position(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let v = video(VideoStatus::Published, t);
    assert_eq!(apply(&catalog, &[upsert(&v, pos(t, 50, 0))]).await, 1);
    let gone_at = t + Duration::seconds(5);
    let tombstone = VideoChange::Delete {
        id: v.id,
        position: None,
        updated_at: gone_at,
    };
    assert_eq!(apply(&catalog, std::slice::from_ref(&tombstone)).await, 1);
    let deleted = one(&catalog, v.id).await.expect("kept as deleted");
    assert_eq!(deleted.status, VideoStatus::Deleted);
    assert_eq!(deleted.updated_at, gone_at);
    let replay = titled(&v, "replayed", t + Duration::seconds(6));
    assert_eq!(
        apply(
            &catalog,
            &[
                upsert(&replay, pos(t, 40, 0)),
                upsert(&replay, pos(t, 50, 0))
            ]
        )
        .await,
        0,
        "after a tombstone, the changes it followed stay undone"
    );
    assert_eq!(one(&catalog, v.id).await, Some(deleted));

    let unknown = VideoChange::Delete {
        id: video_id(),
        position: None,
        updated_at: gone_at,
    };
    assert_eq!(
        apply(&catalog, std::slice::from_ref(&unknown)).await,
        0,
        "a delete of a video the catalog never had changes nothing"
    );
    assert_eq!(one(&catalog, unknown.id()).await, None);
}

async fn changes_in_one_call_apply_in_order(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let v = video(VideoStatus::Published, t);
    let w = video(VideoStatus::Published, t);
    let w_new = titled(&w, "w newer", t + Duration::seconds(2));
    let w_old = titled(&w, "w older", t + Duration::seconds(3));
    let applied = apply(
        &catalog,
        &[
            upsert(&v, pos(t, 10, 0)),
            upsert(&w_new, pos(t, 30, 0)),
            VideoChange::Delete {
                id: v.id,
                position: None,
                updated_at: t + Duration::seconds(4),
            },
            upsert(&w_old, pos(t, 20, 0)),
            upsert(&v, pos(t, 10, 0)),
        ],
    )
    .await;
    assert_eq!(
        applied, 3,
        "v's upsert and delete and w's newer change apply; the rest are older"
    );
    let v_now = one(&catalog, v.id).await.expect("v");
    assert_eq!(v_now.status, VideoStatus::Deleted, "v ends deleted");
    assert_eq!(
        one(&catalog, w.id).await,
        Some(w_new),
        "w keeps its newer change"
    );
}

async fn rows_without_a_position_take_any_change(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let v = video(VideoStatus::Published, t);
    catalog
        .upsert_videos(std::slice::from_ref(&v))
        .await
        .expect("upsert");
    let changed = titled(&v, "from the source", t + Duration::seconds(1));
    assert_eq!(
        apply(&catalog, &[upsert(&changed, SourcePosition::default())]).await,
        1,
        "a row written without a position (an import) takes the source's change"
    );
    assert_eq!(one(&catalog, v.id).await, Some(changed.clone()));
    // An unconditional write keeps the position: an older change still loses afterwards.
    let imported = titled(&v, "imported", t + Duration::seconds(2));
    catalog
        .upsert_videos(std::slice::from_ref(&imported))
        .await
        .expect("upsert");
    let older = titled(&v, "older", t + Duration::seconds(3));
    assert_eq!(
        apply(
            &catalog,
            &[upsert(
                &older,
                SourcePosition {
                    committed_at_us: -1,
                    log_position: 0
                }
            )]
        )
        .await,
        0,
        "upsert_videos kept the stored position"
    );
    assert_eq!(one(&catalog, v.id).await, Some(imported));
}

async fn truncate_deletes_every_older_video(catalog: Arc<dyn VideoCatalog>) {
    let t = base_time();
    let older = video(VideoStatus::Published, t);
    let newer = video(VideoStatus::Published, t);
    let unpositioned = video(VideoStatus::Published, t);
    apply(
        &catalog,
        &[upsert(&older, pos(t, 10, 0)), upsert(&newer, pos(t, 90, 0))],
    )
    .await;
    catalog
        .upsert_videos(std::slice::from_ref(&unpositioned))
        .await
        .expect("upsert");
    let at = t + Duration::seconds(7);
    let deleted = catalog.truncate(pos(t, 50, 0), at).await.expect("truncate");
    assert!(
        deleted >= 2,
        "at least this case's two older videos: {deleted}"
    );
    for id in [older.id, unpositioned.id] {
        let v = one(&catalog, id).await.expect("kept as deleted");
        assert_eq!(v.status, VideoStatus::Deleted);
        assert_eq!(
            v.updated_at, at,
            "the truncate moves it in the change stream"
        );
    }
    assert_eq!(
        one(&catalog, newer.id).await,
        Some(newer.clone()),
        "a change after the truncate stays"
    );
    assert_eq!(
        apply(&catalog, &[upsert(&older, pos(t, 40, 0))]).await,
        0,
        "a change older than the truncate does not bring a video back"
    );
    let late_create = video(VideoStatus::Published, t);
    assert_eq!(
        apply(&catalog, &[upsert(&late_create, pos(t, 45, 0))]).await,
        0,
        "a create older than the truncate, arriving after it, is skipped too"
    );
    assert_eq!(one(&catalog, late_create.id).await, None);
    let after = video(VideoStatus::Published, t);
    assert_eq!(
        apply(&catalog, &[upsert(&after, pos(t, 55, 0))]).await,
        1,
        "a change after the truncate applies"
    );
}
