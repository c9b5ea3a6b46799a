//! EngagementService: batches are validated all-or-nothing; watches are remembered before the sink.

use super::*;

fn engagement(mocks: Mocks) -> EngagementService {
    EngagementService::new(mocks.ports(), loaded_snapshot())
}

fn new_event(video: VideoId, event_type: EventType, completion: Option<f64>) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        video_id: video,
        event_type,
        watch_ms: None,
        completion,
        occurred_at: None,
    }
}

fn known_video() -> VideoId {
    videos(1)[0].id
}

#[tokio::test]
async fn sink_failure_is_unavailable_after_the_watch_was_recorded() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut mocks = Mocks::new();
    let log = calls.clone();
    mocks
        .history
        .expect_record_watched()
        .returning(move |u, videos, _| {
            log.lock()
                .expect("log")
                .push(format!("record_watched {u} {videos:?}"));
            Ok(())
        });
    let log = calls.clone();
    mocks.events.expect_publish().returning(move |batch| {
        log.lock()
            .expect("log")
            .push(format!("publish {}", batch.len()));
        Err(down())
    });
    let video = known_video();
    let result = engagement(mocks)
        .record(
            user(),
            vec![
                new_event(video, EventType::View, None),
                new_event(video, EventType::Complete, Some(1.0)),
            ],
        )
        .await;
    assert_eq!(result, Err(EngagementError::Unavailable(down())));
    assert_eq!(
        *calls.lock().expect("log"),
        vec![
            format!("record_watched {} {:?}", user(), vec![video]),
            "publish 2".to_owned()
        ],
        "the watch is remembered before the sink is asked, so the next page leaves it out"
    );
}

/// A service whose history and sink count their calls, to check that nothing was recorded.
fn counting_engagement(mocks: Mocks) -> (EngagementService, Arc<AtomicUsize>) {
    let mut mocks = mocks;
    let calls = counter();
    let seen = calls.clone();
    mocks
        .history
        .expect_record_watched()
        .returning(move |_, _, _| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    let seen = calls.clone();
    mocks.events.expect_publish().returning(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        Ok(PublishOutcome::default())
    });
    (engagement(mocks), calls)
}

#[tokio::test]
async fn invalid_completion_refuses_the_batch_naming_index_and_field() {
    let (service, calls) = counting_engagement(Mocks::new());
    let video = known_video();
    let result = service
        .record(
            user(),
            vec![
                new_event(video, EventType::Watch, Some(0.5)),
                new_event(video, EventType::Watch, Some(1.5)),
            ],
        )
        .await;
    match result {
        Err(EngagementError::Invalid { index, error }) => {
            assert_eq!((index, error.field), (1, "completion"));
        }
        other => panic!("expected an invalid completion, got {other:?}"),
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing of a refused batch is recorded"
    );
}

#[tokio::test]
async fn an_unknown_video_refuses_the_batch() {
    let mut mocks = Mocks::new();
    mocks
        .catalog
        .expect_videos_by_ids()
        .returning(|_| Ok(vec![]));
    let (service, calls) = counting_engagement(mocks);
    let result = service
        .record(
            user(),
            vec![
                new_event(known_video(), EventType::View, None),
                new_event(VideoId(Uuid::new_v4()), EventType::View, None),
            ],
        )
        .await;
    match result {
        Err(EngagementError::Invalid { index, error }) => {
            assert_eq!((index, error.field), (1, "video_id"));
        }
        other => panic!("expected an invalid video id, got {other:?}"),
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing of a refused batch is recorded"
    );
}

#[tokio::test]
async fn events_for_a_video_deleted_or_unpublished_after_it_was_served_are_accepted() {
    let mut gone = videos(22);
    let mut deleted = gone.pop().expect("a video outside the snapshot");
    deleted.status = VideoStatus::Deleted;
    deleted.deleted_at = Some(now());
    let mut unpublished = gone.pop().expect("another video outside the snapshot");
    unpublished.status = VideoStatus::Processing;
    let ids = [deleted.id, unpublished.id];
    let mut mocks = Mocks::new();
    mocks
        .catalog
        .expect_videos_by_ids()
        .returning(move |_| Ok(vec![deleted.clone(), unpublished.clone()]));
    let (service, calls) = counting_engagement(mocks);
    let result = service
        .record(
            user(),
            vec![
                new_event(known_video(), EventType::View, None),
                new_event(ids[0], EventType::Like, None),
                new_event(ids[1], EventType::Skip, None),
            ],
        )
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the batch was published");
}

#[tokio::test]
async fn occurred_at_is_bounded_in_both_directions() {
    let (service, calls) = counting_engagement(Mocks::new());
    let at = |offset: chrono::Duration| {
        let mut e = new_event(known_video(), EventType::Like, None);
        e.occurred_at = Some(now() + offset);
        e
    };
    let year_one = {
        let mut e = new_event(known_video(), EventType::Like, None);
        e.occurred_at = Some(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        e
    };
    for bad in [
        at(chrono::Duration::days(-8)),
        at(chrono::Duration::minutes(6)),
        year_one,
    ] {
        match service.record(user(), vec![bad]).await {
            Err(EngagementError::Invalid { index, error }) => {
                assert_eq!((index, error.field), (0, "occurred_at"));
            }
            other => panic!("expected an invalid occurred_at, got {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    for good in [
        at(chrono::Duration::days(-6)),
        at(chrono::Duration::minutes(4)),
    ] {
        assert!(service.record(user(), vec![good]).await.is_ok());
    }
}

#[tokio::test]
async fn a_video_outside_the_snapshot_is_resolved_through_the_catalog() {
    let fresh = videos(20).pop().expect("a video outside the snapshot");
    let id = fresh.id;
    let mut mocks = Mocks::new();
    mocks
        .catalog
        .expect_videos_by_ids()
        .returning(move |_| Ok(vec![fresh.clone()]));
    let outcome = engagement(mocks)
        .record(user(), vec![new_event(id, EventType::Like, None)])
        .await;
    assert_eq!(outcome.map(|o| o.accepted), Ok(1));
}

#[tokio::test]
async fn catalog_error_while_resolving_is_unavailable() {
    let mut mocks = Mocks::new();
    mocks
        .catalog
        .expect_videos_by_ids()
        .returning(|_| Err(down()));
    let result = engagement(mocks)
        .record(
            user(),
            vec![new_event(VideoId(Uuid::new_v4()), EventType::View, None)],
        )
        .await;
    assert_eq!(result, Err(EngagementError::Unavailable(down())));
}

#[tokio::test]
async fn batches_hold_one_to_a_hundred_events() {
    let service = engagement(Mocks::new());
    let batch = |n: usize| -> Vec<NewEvent> {
        (0..n)
            .map(|_| new_event(known_video(), EventType::Impression, None))
            .collect()
    };
    assert_eq!(
        service.record(user(), batch(0)).await,
        Err(EngagementError::BatchSize)
    );
    assert_eq!(
        service.record(user(), batch(101)).await,
        Err(EngagementError::BatchSize)
    );
    let full = service.record(user(), batch(100)).await;
    assert_eq!(
        full.map(|o| o.accepted),
        Ok(100),
        "100 events are one full batch"
    );
}

#[tokio::test]
async fn a_retry_after_a_sink_failure_is_accepted_and_a_repeat_after_success_is_a_duplicate() {
    let attempts = counter();
    let mut mocks = Mocks::new();
    mocks
        .history
        .expect_record_watched()
        .returning(|_, _, _| Ok(()));
    let seen = attempts.clone();
    mocks.events.expect_publish().returning(move |batch| {
        // The first attempt fails; later ones succeed.
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(down())
        } else {
            Ok(PublishOutcome {
                accepted: batch.len(),
                duplicates: 0,
            })
        }
    });
    let service = engagement(mocks);
    let batch = vec![
        new_event(known_video(), EventType::Like, None),
        new_event(known_video(), EventType::Share, None),
    ];
    assert!(service.record(user(), batch.clone()).await.is_err());
    assert_eq!(
        service.record(user(), batch.clone()).await,
        Ok(RecordOutcome {
            accepted: 2,
            duplicates: 0,
            repeated_reactions: vec![],
        }),
        "a failed batch was never recorded, so the retry is not a duplicate"
    );
    let mut repeat = batch;
    repeat.push(new_event(known_video(), EventType::View, None));
    assert_eq!(
        service.record(user(), repeat).await,
        Ok(RecordOutcome {
            accepted: 1,
            duplicates: 2,
            repeated_reactions: vec![],
        }),
        "events accepted before count as duplicates and are not published again"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_watch_reported_by_its_duration_alone_completes_its_share_of_the_video() {
    let fresh = videos(20).pop().expect("a video outside the snapshot");
    let (id, seconds) = (fresh.id, fresh.duration_seconds);
    assert!(seconds > 0);
    let mut mocks = Mocks::new();
    mocks
        .catalog
        .expect_videos_by_ids()
        .returning(move |_| Ok(vec![fresh.clone()]));
    mocks
        .history
        .expect_record_watched()
        .returning(|_, _, _| Ok(()));
    let published = Arc::new(Mutex::new(Vec::new()));
    let log = published.clone();
    mocks.events.expect_publish().returning(move |batch| {
        log.lock().expect("log").extend(batch.iter().cloned());
        Ok(PublishOutcome {
            accepted: batch.len(),
            duplicates: 0,
        })
    });
    let watch = |ms: u64, completion: Option<f64>, kind: EventType| NewEvent {
        watch_ms: Some(ms),
        ..new_event(id, kind, completion)
    };
    let half = u64::from(seconds) * 500;
    let outcome = engagement(mocks)
        .record(
            user(),
            vec![
                watch(half, None, EventType::Watch),
                watch(u64::from(seconds) * 3000, None, EventType::Watch),
                watch(half, Some(0.9), EventType::Watch),
                watch(half, None, EventType::Complete),
            ],
        )
        .await;
    assert_eq!(outcome.map(|o| o.accepted), Ok(4));
    let completions: Vec<Option<f64>> = published
        .lock()
        .expect("log")
        .iter()
        .map(|e| e.completion)
        .collect();
    assert_eq!(
        completions,
        vec![Some(0.5), Some(1.0), Some(0.9), None],
        "derived from watch_ms and the duration (capped at 1); a given completion is kept; a \
         complete event keeps counting as 1"
    );
}

#[tokio::test]
async fn one_account_counts_one_like_of_a_video_however_many_it_sends() {
    let published = counter();
    let mut mocks = Mocks::new();
    let seen = published.clone();
    mocks.events.expect_publish().returning(move |batch| {
        seen.fetch_add(1, Ordering::SeqCst);
        Ok(PublishOutcome {
            accepted: batch.len(),
            duplicates: 0,
        })
    });
    let service = engagement(mocks);
    let likes: Vec<NewEvent> = (0..100)
        .map(|_| new_event(known_video(), EventType::Like, None))
        .collect();
    let outcome = service.record(user(), likes).await.expect("accepted");
    assert_eq!((outcome.accepted, outcome.duplicates), (1, 99));
    assert_eq!(outcome.repeated_reactions.len(), 99);
    let again: Vec<NewEvent> = (0..10)
        .map(|_| new_event(known_video(), EventType::Like, None))
        .collect();
    let outcome = service.record(user(), again).await.expect("accepted");
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 10));
    // An unlike cancels it once; then a like counts again, nets to one like.
    let toggles = vec![
        new_event(known_video(), EventType::Unlike, None),
        new_event(known_video(), EventType::Unlike, None),
        new_event(known_video(), EventType::Like, None),
    ];
    let outcome = service.record(user(), toggles).await.expect("accepted");
    assert_eq!((outcome.accepted, outcome.duplicates), (2, 1));
    assert_eq!(
        published.load(Ordering::SeqCst),
        2,
        "a batch of repeats alone reaches no sink"
    );
    // Another account's like counts.
    let other = UserId(Uuid::new_v4());
    let outcome = service
        .record(other, vec![new_event(known_video(), EventType::Like, None)])
        .await
        .expect("accepted");
    assert_eq!(outcome.accepted, 1);
}

#[tokio::test]
async fn a_like_whose_batch_failed_does_not_block_the_next_one() {
    let attempts = counter();
    let mut mocks = Mocks::new();
    let seen = attempts.clone();
    mocks.events.expect_publish().returning(move |batch| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(down())
        } else {
            Ok(PublishOutcome {
                accepted: batch.len(),
                duplicates: 0,
            })
        }
    });
    let service = engagement(mocks);
    let failed = vec![new_event(known_video(), EventType::Like, None)];
    assert!(service.record(user(), failed).await.is_err());
    let outcome = service
        .record(
            user(),
            vec![new_event(known_video(), EventType::Like, None)],
        )
        .await
        .expect("accepted");
    assert_eq!(
        outcome.accepted, 1,
        "the failed batch gave its claim back, so a new like (another id) counts"
    );
}

#[tokio::test]
async fn with_the_ledger_down_reactions_are_still_claimed_once_in_process() {
    let mut mocks = Mocks::new();
    let mut ledger = MockEventLedger::new();
    ledger.expect_recorded().returning(|_, _| Err(down()));
    ledger.expect_record().returning(|_, _| Err(down()));
    ledger
        .expect_claim_reactions()
        .returning(|_, _| Err(down()));
    mocks.event_ledger = Some(Arc::new(ledger));
    let service = engagement(mocks)
        .with_local_reactions(Arc::new(vrs_adapter_memory::MemoryEventLedger::default()));
    let likes: Vec<NewEvent> = (0..20)
        .map(|_| new_event(known_video(), EventType::Share, None))
        .collect();
    let outcome = service.record(user(), likes).await.expect("accepted");
    assert_eq!((outcome.accepted, outcome.duplicates), (1, 19));
}
