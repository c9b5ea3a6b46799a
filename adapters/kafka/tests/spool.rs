//! The spool on its own: bounded, fsynced appends that survive a crash; damaged records skipped
//! without losing their neighbours; out-of-order settling; whole-segment deletion; the directory
//! lock; the single-file format read once.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use vrs_adapter_kafka::{EventSpool, SPOOL_FILE, SpoolError, SpoolOptions, SpoolRecord, key_hash};

fn record(i: usize) -> SpoolRecord {
    SpoolRecord {
        key: format!("user-{}", i % 2).into_bytes(),
        value: format!("{{\"n\":{i}}}").into_bytes(),
    }
}

fn records(range: std::ops::Range<usize>) -> Vec<SpoolRecord> {
    range.map(record).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "spool"))
        .collect();
    files.sort();
    files
}

fn small_segments(dir: &Path, records_per_segment: u64) -> EventSpool {
    EventSpool::open_with(
        dir,
        SpoolOptions {
            max_bytes: 1 << 20,
            segment_bytes: record(0).encoded_len() * records_per_segment,
        },
    )
    .expect("open")
}

#[test]
fn reopening_after_a_crash_keeps_every_appended_record_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    spool.append(&[record(0), record(1)]).expect("append");
    spool.append(&[record(2)]).expect("append");
    // Nothing is flushed or closed on the way out: only what append fsynced counts.
    drop(spool);
    let reopened = EventSpool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(reopened.peek(10), records(0..3));
    assert_eq!(reopened.len(), 3);
    assert_eq!(reopened.skipped_at_open(), 0);
}

#[test]
fn a_torn_tail_is_skipped_and_appends_go_on_in_a_new_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    spool.append(&[record(0), record(1)]).expect("append");
    drop(spool);
    // A crash in the middle of writing a third record: its header and half its body.
    let scratch = tempfile::tempdir().expect("tempdir");
    let other = EventSpool::open(scratch.path(), 1 << 20).expect("scratch spool");
    other.append(&[record(2)]).expect("append");
    let mut torn = std::fs::read(&segments(scratch.path())[0]).expect("read scratch");
    torn.truncate(torn.len() - 3);
    let first = segments(dir.path()).remove(0);
    OpenOptions::new()
        .append(true)
        .open(&first)
        .expect("open segment")
        .write_all(&torn)
        .expect("write torn record");

    let reopened = EventSpool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(reopened.peek(10), records(0..2));
    assert_eq!(reopened.skipped_at_open(), torn.len() as u64);
    reopened.append(&[record(3)]).expect("append");
    assert_eq!(
        segments(dir.path()).len(),
        2,
        "writing never continues behind a torn tail"
    );
    drop(reopened);
    let again = EventSpool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(again.peek(10), vec![record(0), record(1), record(3)]);
}

#[test]
fn a_corrupt_record_mid_segment_costs_that_record_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    spool.append(&records(0..5)).expect("append");
    drop(spool);
    let path = segments(dir.path()).remove(0);
    let mut raw = std::fs::read(&path).expect("read");
    let len = record(0).encoded_len() as usize;
    // One byte in the middle of the third record's body.
    raw[2 * len + len - 3] ^= 0xff;
    std::fs::write(&path, &raw).expect("write");
    let reopened = EventSpool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(
        reopened.peek(10),
        vec![record(0), record(1), record(3), record(4)]
    );
    assert_eq!(reopened.skipped_at_open(), len as u64);
}

#[test]
fn garbage_between_records_and_a_damaged_length_are_resynchronised_past() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    spool.append(&records(0..4)).expect("append");
    drop(spool);
    let path = segments(dir.path()).remove(0);
    let raw = std::fs::read(&path).expect("read");
    let len = record(0).encoded_len() as usize;
    let mut damaged = raw[..len].to_vec();
    damaged.extend_from_slice(&[0xAB; 97]);
    damaged.extend_from_slice(&raw[len..]);
    // The fourth record's length field now claims far more than the file holds.
    let fourth = 97 + 3 * len;
    damaged[fourth + 7] = 0x7f;
    std::fs::write(&path, &damaged).expect("write");
    let reopened = EventSpool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(reopened.peek(10), records(0..3));
    assert_eq!(reopened.skipped_at_open(), (97 + len) as u64);
}

#[test]
fn a_batch_past_the_bound_is_rejected_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = record(0).encoded_len() * 3;
    let spool = EventSpool::open(dir.path(), max).expect("open");
    spool.append(&[record(0), record(1)]).expect("append");
    let err = spool
        .append(&[record(2), record(3)])
        .expect_err("over the bound");
    assert!(matches!(err, SpoolError::Full { .. }), "{err:?}");
    assert_eq!(spool.len(), 2);
    spool.append(&[record(2)]).expect("still room for one");
    assert_eq!(spool.bytes(), max);
}

#[test]
fn records_settle_in_any_order_and_drained_segments_are_deleted_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = small_segments(dir.path(), 3);
    for i in 0..10 {
        spool.append(&[record(i)]).expect("append");
    }
    assert_eq!(segments(dir.path()).len(), 4, "3 + 3 + 3 + 1 records");
    let full = spool.bytes();

    let first = spool.take(4, |_| true).expect("take");
    let values: Vec<SpoolRecord> = first.iter().map(|t| t.record.clone()).collect();
    assert_eq!(values, records(0..4));
    assert_eq!(
        spool.take(2, |_| true).expect("take").len(),
        2,
        "records handed out are not handed out again until settled"
    );
    // Out of order: the fourth delivered, the second failed, the rest delivered.
    let ids: Vec<_> = first.iter().map(|t| t.id).collect();
    spool
        .settle(&[ids[3], ids[0], ids[2]], &[ids[1]])
        .expect("settle");
    assert_eq!(spool.len(), 7);
    assert_eq!(
        segments(dir.path()).len(),
        4,
        "the first segment still holds a failed record"
    );
    let again = spool.take(1, |_| true).expect("take");
    assert_eq!(
        again[0].record,
        record(1),
        "a failed record is handed out again, first"
    );
    spool.settle(&[again[0].id], &[]).expect("settle");
    assert_eq!(
        segments(dir.path()).len(),
        3,
        "a drained segment is deleted"
    );
    assert!(spool.bytes() < full);
    drop(spool);

    // Delivered records of a segment not yet drained come back after a reopen (Kafka may then
    // hold them twice, which the pipeline's deduplication absorbs); nothing undelivered is lost.
    let reopened = small_segments(dir.path(), 3);
    let left = reopened.peek(20);
    assert_eq!(
        left[..],
        records(3..10)[..],
        "the second segment whole, and the rest"
    );
}

#[test]
fn draining_everything_leaves_no_segment_and_writing_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = small_segments(dir.path(), 4);
    spool.append(&records(0..6)).expect("append");
    let all = spool.take(100, |_| true).expect("take");
    assert_eq!(all.len(), 6);
    let ids: Vec<_> = all.iter().map(|t| t.id).collect();
    spool.settle(&ids, &[]).expect("settle");
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    assert!(
        segments(dir.path()).is_empty(),
        "{:?}",
        segments(dir.path())
    );
    spool.append(&[record(7)]).expect("append after draining");
    drop(spool);
    assert_eq!(small_segments(dir.path(), 4).peek(10), vec![record(7)]);
}

#[test]
fn take_skips_keys_it_is_told_to_and_tracks_waiting_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    spool.append(&records(0..6)).expect("append");
    let user0 = key_hash(b"user-0");
    let user1 = key_hash(b"user-1");
    assert!(spool.has_key(user0) && spool.has_key(user1));
    let ones = spool.take(10, |h| h != user0).expect("take");
    assert_eq!(
        ones.iter().map(|t| t.record.clone()).collect::<Vec<_>>(),
        vec![record(1), record(3), record(5)]
    );
    assert!(ones.iter().all(|t| t.key_hash == user1));
    let ids: Vec<_> = ones.iter().map(|t| t.id).collect();
    spool.settle(&ids, &[]).expect("settle");
    assert!(!spool.has_key(user1), "no record of user-1 waits any more");
    assert!(spool.has_key(user0));
    assert_eq!(spool.peek(10), vec![record(0), record(2), record(4)]);
}

#[test]
fn a_second_process_on_the_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    spool.append(&[record(0)]).expect("append");
    let err = EventSpool::open(dir.path(), 1 << 20).expect_err("locked");
    assert!(matches!(err, SpoolError::Locked(_)), "{err:?}");
    assert!(err.to_string().contains("another process"), "{err}");
    drop(spool);
    let reopened = EventSpool::open(dir.path(), 1 << 20).expect("free again");
    assert_eq!(reopened.peek(10), vec![record(0)]);
}

#[test]
fn a_spool_file_of_the_single_file_format_is_moved_into_a_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut raw = Vec::new();
    for r in records(0..3) {
        let mut body = (r.key.len() as u16).to_le_bytes().to_vec();
        body.extend_from_slice(&r.key);
        body.extend_from_slice(&r.value);
        raw.extend_from_slice(&(body.len() as u32).to_le_bytes());
        raw.extend_from_slice(&crc.checksum(&body).to_le_bytes());
        raw.extend_from_slice(&body);
    }
    std::fs::write(dir.path().join(SPOOL_FILE), &raw).expect("write");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    assert_eq!(spool.peek(10), records(0..3));
    assert!(!dir.path().join(SPOOL_FILE).exists());
    drop(spool);
    assert_eq!(
        EventSpool::open(dir.path(), 1 << 20)
            .expect("reopen")
            .peek(10),
        records(0..3),
        "moved, not copied twice"
    );
}
