//! The spool on its own: bound, fsynced appends that survive a crash, torn tails, ordered removal.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use vrs_adapter_kafka::{EventSpool, SPOOL_FILE, SpoolError, SpoolRecord};

fn record(i: usize) -> SpoolRecord {
    SpoolRecord {
        key: format!("user-{}", i % 2).into_bytes(),
        value: format!("{{\"n\":{i}}}").into_bytes(),
    }
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
    assert_eq!(reopened.peek(10), vec![record(0), record(1), record(2)]);
}

#[test]
fn a_torn_tail_record_is_dropped_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    spool.append(&[record(0), record(1)]).expect("append");
    let intact = spool.bytes();
    drop(spool);

    // A crash in the middle of writing a third record: its header and half its body.
    let mut torn = Vec::new();
    let scratch = tempfile::tempdir().expect("tempdir");
    let other = EventSpool::open(scratch.path(), 1 << 20).expect("scratch spool");
    other.append(&[record(2)]).expect("append");
    torn.extend_from_slice(&std::fs::read(other.path()).expect("read scratch"));
    torn.truncate(torn.len() - 3);
    OpenOptions::new()
        .append(true)
        .open(dir.path().join(SPOOL_FILE))
        .expect("open file")
        .write_all(&torn)
        .expect("write torn record");

    let reopened = EventSpool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(reopened.peek(10), vec![record(0), record(1)]);
    assert_eq!(reopened.bytes(), intact);
    // Appends after the cut land right behind the intact records.
    reopened.append(&[record(3)]).expect("append");
    drop(reopened);
    let again = EventSpool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(again.peek(10), vec![record(0), record(1), record(3)]);
}

#[test]
fn a_corrupt_record_and_everything_after_it_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    spool.append(&[record(0), record(1)]).expect("append");
    let first = record(0).encoded_len() as usize;
    drop(spool);
    let path = dir.path().join(SPOOL_FILE);
    let mut raw = std::fs::read(&path).expect("read");
    let last = raw.len() - 1;
    raw[last] ^= 0xff;
    std::fs::write(&path, &raw).expect("write");
    let reopened = EventSpool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(reopened.peek(10), vec![record(0)]);
    assert_eq!(reopened.bytes(), first as u64);
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
fn removal_keeps_the_rest_in_order_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = EventSpool::open(dir.path(), 1 << 20).expect("open");
    spool
        .append(&[record(0), record(1), record(2), record(3)])
        .expect("append");
    spool.remove_first(3).expect("remove");
    spool.append(&[record(4)]).expect("append after removal");
    assert_eq!(spool.peek(10), vec![record(3), record(4)]);
    drop(spool);
    let reopened = EventSpool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(reopened.peek(10), vec![record(3), record(4)]);
    reopened.remove_first(2).expect("remove all");
    assert!(reopened.is_empty());
    assert_eq!(std::fs::metadata(reopened.path()).expect("stat").len(), 0);
}
