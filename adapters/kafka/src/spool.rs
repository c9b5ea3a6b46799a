//! A durable local queue of events Kafka did not acknowledge in time: a segmented, append-only
//! disk buffer.
//!
//! The spool directory holds numbered segment files (`seg-<20 digits>.spool`) and a `LOCK` file.
//! A record is `[magic: 4][body length: u32 LE][CRC-32C of length and body: u32 LE][body]`, where
//! the body is `[key length: u16 LE][key][value]`. Appends go to the newest segment and are
//! fsynced before they return; a segment is sealed at its size bound and a new one started (its
//! directory entry fsynced too). Delivered records are only marked in memory; a segment is deleted
//! once every record in it is delivered, so draining is linear and needs no free space. A crash
//! between a delivery and the deletion replays that segment's delivered records again, which the
//! pipeline's deduplication by event id absorbs.
//!
//! On open every segment is read; a record whose CRC or framing fails is skipped by searching for
//! the next magic whose record checks out, so one damaged record costs that record only (counted in
//! `event_spool_skipped_bytes_total`), never the records after it. Writing always continues in a
//! fresh segment, never behind a torn tail.
//!
//! The directory is locked exclusively (`flock`) for the spool's lifetime: a second process on the
//! same directory gets [`SpoolError::Locked`] instead of a share of the files.
//!
//! Only an index lives in memory (segment, offset, length and key hash per record); bodies are read
//! back from disk when replayed. The index lock is never held across I/O; the writer lock is held
//! across the append's write and fsync only, on a blocking thread.

use crc::{CRC_32_ISCSI, Crc};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The single file of the spool format before segments; read once and moved into a segment.
pub const SPOOL_FILE: &str = "engagement-events.spool";
/// Gauge of the spool's size on disk.
pub const SPOOL_BYTES_METRIC: &str = "event_spool_bytes";
/// Gauge of the records waiting in the spool.
pub const SPOOL_RECORDS_METRIC: &str = "event_spool_records";
/// Counter of bytes skipped because they did not form an intact record: on open (a torn tail
/// after a crash, or damage), or when a record read back for replay fails its checksum.
pub const SPOOL_SKIPPED_BYTES_METRIC: &str = "event_spool_skipped_bytes_total";
/// Size at which a segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

const LOCK_FILE: &str = "LOCK";
const MAGIC: [u8; 4] = [0xE5, 0x9F, 0x1A, 0xC7];
const HEADER_BYTES: usize = 12;
/// A body longer than this is damage, not a record (events are a few hundred bytes).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Why the spool did not take a batch, or could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The batch would grow the spool past its bound; nothing of it was written.
    #[error("event spool full: {used} + {needed} bytes exceed the bound of {max}")]
    Full { used: u64, needed: u64, max: u64 },
    /// The files could not be read or written.
    #[error("event spool I/O: {0}")]
    Io(#[from] io::Error),
    /// A record's key is longer than the format allows.
    #[error("event spool record key of {0} bytes is too long")]
    KeyTooLong(usize),
    /// Another process holds the spool directory.
    #[error(
        "event spool directory {0} is in use by another process (each process needs its own EVENT_SPOOL_DIR)"
    )]
    Locked(PathBuf),
}

/// One spooled Kafka message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolRecord {
    /// The message key.
    pub key: Vec<u8>,
    /// The message value.
    pub value: Vec<u8>,
}

impl SpoolRecord {
    /// Bytes this record takes on disk.
    pub fn encoded_len(&self) -> u64 {
        (HEADER_BYTES + 2 + self.key.len() + self.value.len()) as u64
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), SpoolError> {
        let key_len =
            u16::try_from(self.key.len()).map_err(|_| SpoolError::KeyTooLong(self.key.len()))?;
        let body_len = 2 + self.key.len() + self.value.len();
        if body_len > MAX_BODY_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "record too large").into());
        }
        let len = (body_len as u32).to_le_bytes();
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&len);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&key_len.to_le_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.value);
        let mut digest = CRC32C.digest();
        digest.update(&len);
        digest.update(&out[start + HEADER_BYTES..]);
        out[start + 8..start + 12].copy_from_slice(&digest.finalize().to_le_bytes());
        Ok(())
    }
}

/// The hash Kafka's default partitioner (`murmur2_random`, Java's default) places a key by:
/// the record's partition is this modulo the topic's partition count.
pub fn key_hash(key: &[u8]) -> u32 {
    murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff
}

/// Where a record is in the spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    segment: u64,
    index: u32,
}

/// A record handed out for delivery; settle it with [`EventSpool::settle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    /// Where it is, to settle it.
    pub id: RecordId,
    /// [`key_hash`] of its key.
    pub key_hash: u32,
    /// The record.
    pub record: SpoolRecord,
}

/// Options of [`EventSpool::open_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Bound of the spool's size on disk; past it appends are refused.
    pub max_bytes: u64,
    /// Size at which a segment is sealed.
    pub segment_bytes: u64,
}

/// The durable spool. `append`, `take`, `settle` and `open` block on file I/O (call them from
/// blocking threads); the counters and [`EventSpool::has_key`] never wait for I/O.
#[derive(Debug)]
pub struct EventSpool {
    dir: PathBuf,
    options: SpoolOptions,
    /// Held (locked) for the spool's lifetime.
    _lock: File,
    writer: Mutex<Writer>,
    index: Mutex<Index>,
    records: AtomicUsize,
    bytes: AtomicU64,
    skipped_at_open: u64,
}

#[derive(Debug)]
struct Writer {
    /// The segment appended to, with its length; `None` until the first append after open or
    /// after the active segment was sealed.
    active: Option<(u64, File, u64)>,
    next_id: u64,
}

#[derive(Debug, Default)]
struct Index {
    segments: BTreeMap<u64, Segment>,
    /// Undelivered records per key hash.
    keys: HashMap<u32, usize>,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    reader: Arc<File>,
    bytes: u64,
    entries: Vec<Entry>,
    undelivered: usize,
    /// Entries before this one are all delivered.
    first_open: usize,
    sealed: bool,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Offset of the body.
    offset: u64,
    len: u32,
    key_hash: u32,
    delivered: bool,
    in_flight: bool,
}

impl EventSpool {
    /// Opens (or creates) the spool in `dir` with the default segment size.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        Self::open_with(
            dir,
            SpoolOptions {
                max_bytes,
                segment_bytes: DEFAULT_SEGMENT_BYTES,
            },
        )
    }

    /// Opens (or creates) the spool in `dir`: locks it, reads every segment (skipping damaged
    /// records) and moves a spool of the older single-file format into a segment.
    pub fn open_with(dir: &Path, options: SpoolOptions) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        metrics::counter!(SPOOL_SKIPPED_BYTES_METRIC).increment(0);

        let mut index = Index::default();
        let mut skipped = 0;
        let mut next_id = 1;
        let mut ids: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("seg-")?.strip_suffix(".spool"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        for id in ids {
            next_id = next_id.max(id + 1);
            let path = segment_path(dir, id);
            let raw = fs::read(&path)?;
            let (entries, skip) = scan(&raw);
            if skip > 0 {
                tracing::warn!(
                    path = %path.display(),
                    skipped_bytes = skip,
                    kept_records = entries.len(),
                    "event spool segment holds bytes that are no intact record; skipping them"
                );
            }
            skipped += skip;
            if entries.is_empty() {
                fs::remove_file(&path)?;
                continue;
            }
            for e in &entries {
                *index.keys.entry(e.key_hash).or_default() += 1;
            }
            index.segments.insert(
                id,
                Segment {
                    reader: Arc::new(File::open(&path)?),
                    path,
                    bytes: raw.len() as u64,
                    undelivered: entries.len(),
                    entries,
                    first_open: 0,
                    sealed: true,
                },
            );
        }
        metrics::counter!(SPOOL_SKIPPED_BYTES_METRIC).increment(skipped);
        let records = index.segments.values().map(|s| s.undelivered).sum();
        let bytes = index.segments.values().map(|s| s.bytes).sum();
        let spool = Self {
            dir: dir.to_owned(),
            options,
            _lock: lock,
            writer: Mutex::new(Writer {
                active: None,
                next_id,
            }),
            index: Mutex::new(index),
            records: AtomicUsize::new(records),
            bytes: AtomicU64::new(bytes),
            skipped_at_open: skipped,
        };
        spool.migrate_single_file()?;
        spool.report();
        Ok(spool)
    }

    /// Moves the records of a spool file of the single-file format (same framing without the
    /// magic) into a segment, then removes the file.
    fn migrate_single_file(&self) -> Result<(), SpoolError> {
        let legacy = self.dir.join(SPOOL_FILE);
        let raw = match fs::read(&legacy) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let records = parse_single_file(&raw);
        if !records.is_empty() {
            tracing::info!(
                records = records.len(),
                "moving the spool file of the single-file format into a segment"
            );
            self.write(&records, u64::MAX)?;
        }
        fs::remove_file(&legacy)?;
        let _ = fs::remove_file(self.dir.join(format!("{SPOOL_FILE}.tmp")));
        Ok(())
    }

    /// Appends a batch and fsyncs it; all or nothing, and nothing when it would pass the bound.
    pub fn append(&self, batch: &[SpoolRecord]) -> Result<(), SpoolError> {
        self.write(batch, self.options.max_bytes)
    }

    fn write(&self, batch: &[SpoolRecord], max_bytes: u64) -> Result<(), SpoolError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut frames = Vec::with_capacity(batch.len());
        for r in batch {
            let start = buf.len();
            r.encode_into(&mut buf)?;
            frames.push((start, buf.len() - start, key_hash(&r.key)));
        }
        let needed = buf.len() as u64;
        let mut writer = lock(&self.writer);
        let used = self.bytes.load(Ordering::Acquire);
        if used.saturating_add(needed) > max_bytes {
            return Err(SpoolError::Full {
                used,
                needed,
                max: max_bytes,
            });
        }
        let rotate = match &writer.active {
            Some((_, _, len)) => *len > 0 && len + needed > self.options.segment_bytes,
            None => true,
        };
        if rotate {
            self.seal_active(&mut writer);
            let id = writer.next_id;
            writer.next_id += 1;
            let path = segment_path(&self.dir, id);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            // The segment's directory entry must be durable before records in it are.
            if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                let _ = fs::remove_file(&path);
                return Err(e.into());
            }
            let reader = Arc::new(File::open(&path)?);
            lock(&self.index).segments.insert(
                id,
                Segment {
                    path,
                    reader,
                    bytes: 0,
                    entries: Vec::new(),
                    undelivered: 0,
                    first_open: 0,
                    sealed: false,
                },
            );
            writer.active = Some((id, file, 0));
        }
        let Some((id, file, len)) = writer.active.as_mut() else {
            return Err(io::Error::other("no active segment").into());
        };
        let (id, start) = (*id, *len);
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            // Cut a partial write off; if even that fails, seal the segment: the damage is then
            // at its end, where the next open skips it, and appends go on in a new segment.
            if file.set_len(start).and_then(|()| file.sync_data()).is_err() {
                let mut index = lock(&self.index);
                if let Some(segment) = index.segments.get_mut(&id) {
                    segment.bytes = start + needed;
                }
                drop(index);
                self.bytes.fetch_add(needed, Ordering::AcqRel);
                self.seal_active(&mut writer);
            }
            return Err(e.into());
        }
        *len += needed;
        let mut index = lock(&self.index);
        for (offset, frame_len, hash) in &frames {
            *index.keys.entry(*hash).or_default() += 1;
            if let Some(segment) = index.segments.get_mut(&id) {
                segment.entries.push(Entry {
                    offset: start + (offset + HEADER_BYTES) as u64,
                    len: (frame_len - HEADER_BYTES) as u32,
                    key_hash: *hash,
                    delivered: false,
                    in_flight: false,
                });
                segment.undelivered += 1;
                segment.bytes += *frame_len as u64;
            }
        }
        // Counted under the index lock, so a settle of these records cannot count them first.
        self.records.fetch_add(batch.len(), Ordering::AcqRel);
        self.bytes.fetch_add(needed, Ordering::AcqRel);
        drop(index);
        self.report();
        Ok(())
    }

    /// Seals the active segment (appends go to a new one); deletes it at once when it is drained.
    fn seal_active(&self, writer: &mut Writer) {
        let Some((id, _, _)) = writer.active.take() else {
            return;
        };
        let drained = {
            let mut index = lock(&self.index);
            match index.segments.get_mut(&id) {
                Some(segment) => {
                    segment.sealed = true;
                    if segment.undelivered == 0 {
                        index.segments.remove(&id)
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        if let Some(segment) = drained {
            self.delete(segment);
        }
    }

    /// Hands out up to `max` undelivered records not already handed out whose key hash
    /// `eligible` accepts, oldest first, read back from disk. Settle each with [`Self::settle`].
    pub fn take(
        &self,
        max: usize,
        eligible: impl Fn(u32) -> bool,
    ) -> Result<Vec<Taken>, SpoolError> {
        let mut picked: Vec<(RecordId, Arc<File>, Entry)> = Vec::new();
        {
            let mut index = lock(&self.index);
            'segments: for (id, segment) in index.segments.iter_mut() {
                while segment
                    .entries
                    .get(segment.first_open)
                    .is_some_and(|e| e.delivered)
                {
                    segment.first_open += 1;
                }
                let first_open = segment.first_open;
                for (i, entry) in segment.entries.iter_mut().enumerate().skip(first_open) {
                    if picked.len() >= max {
                        break 'segments;
                    }
                    if entry.delivered || entry.in_flight || !eligible(entry.key_hash) {
                        continue;
                    }
                    entry.in_flight = true;
                    picked.push((
                        RecordId {
                            segment: *id,
                            index: i as u32,
                        },
                        segment.reader.clone(),
                        *entry,
                    ));
                }
            }
        }
        let mut taken = Vec::with_capacity(picked.len());
        let mut damaged = Vec::new();
        for (id, file, entry) in picked {
            // The whole frame, checked again: the disk may have changed since the index was built.
            let mut frame = vec![0; entry.len as usize + HEADER_BYTES];
            let start = entry.offset - HEADER_BYTES as u64;
            let intact = file
                .read_exact_at(&mut frame, start)
                .map_err(|e| {
                    tracing::error!(error = %e, segment = id.segment, "could not read a spooled record");
                })
                .ok()
                .and_then(|()| record_at(&frame, 0))
                .and_then(|(body, len)| split_body(&frame[body..body + len]));
            match intact {
                Some(record) => taken.push(Taken {
                    id,
                    key_hash: entry.key_hash,
                    record,
                }),
                None => damaged.push((id, entry.len as u64 + HEADER_BYTES as u64)),
            }
        }
        // A record that was intact when indexed but cannot be read back intact (damage, or an
        // I/O error) can never be sent: it is dropped, as a delivered one would be, and counted,
        // so it never holds back the records after it nor its key.
        if !damaged.is_empty() {
            let bytes: u64 = damaged.iter().map(|(_, b)| b).sum();
            tracing::error!(
                records = damaged.len(),
                bytes,
                "spooled records read back damaged; dropping them"
            );
            metrics::counter!(SPOOL_SKIPPED_BYTES_METRIC).increment(bytes);
            let ids: Vec<RecordId> = damaged.into_iter().map(|(id, _)| id).collect();
            self.settle(&ids, &[])?;
        }
        Ok(taken)
    }

    /// Marks handed-out records as delivered (gone for good) or failed (handed out again later).
    /// Segments left without undelivered records are deleted; the segment being appended to is
    /// sealed first.
    pub fn settle(&self, delivered: &[RecordId], failed: &[RecordId]) -> Result<(), SpoolError> {
        let mut drained: Vec<u64> = Vec::new();
        let mut delivered_now = 0;
        {
            let mut index = lock(&self.index);
            let Index { segments, keys } = &mut *index;
            for id in failed {
                if let Some(e) = segments
                    .get_mut(&id.segment)
                    .and_then(|s| s.entries.get_mut(id.index as usize))
                {
                    e.in_flight = false;
                }
            }
            for id in delivered {
                let Some(segment) = segments.get_mut(&id.segment) else {
                    continue;
                };
                let Some(e) = segment.entries.get_mut(id.index as usize) else {
                    continue;
                };
                e.in_flight = false;
                if e.delivered {
                    continue;
                }
                e.delivered = true;
                segment.undelivered -= 1;
                delivered_now += 1;
                if let Some(n) = keys.get_mut(&e.key_hash) {
                    *n -= 1;
                    if *n == 0 {
                        keys.remove(&e.key_hash);
                    }
                }
                if segment.undelivered == 0 {
                    drained.push(id.segment);
                }
            }
            self.records.fetch_sub(delivered_now, Ordering::AcqRel);
        }
        if !drained.is_empty() {
            let mut writer = lock(&self.writer);
            let active = writer.active.as_ref().map(|(id, _, _)| *id);
            if active.is_some_and(|id| drained.contains(&id)) {
                self.seal_active(&mut writer);
            }
            drop(writer);
            let removed: Vec<Segment> = {
                let mut index = lock(&self.index);
                drained
                    .iter()
                    .filter_map(|id| {
                        let done = index
                            .segments
                            .get(id)
                            .is_some_and(|s| s.sealed && s.undelivered == 0);
                        if done {
                            index.segments.remove(id)
                        } else {
                            None
                        }
                    })
                    .collect()
            };
            for segment in removed {
                self.delete(segment);
            }
        }
        self.report();
        Ok(())
    }

    /// Removes a drained segment's file. A failure leaves the file, whose records a later open
    /// replays again (duplicates the pipeline absorbs); its bytes stay counted until then.
    fn delete(&self, segment: Segment) {
        match fs::remove_file(&segment.path) {
            Ok(()) => {
                self.bytes.fetch_sub(segment.bytes, Ordering::AcqRel);
            }
            Err(e) => tracing::error!(
                path = %segment.path.display(),
                error = %e,
                "could not delete a drained spool segment"
            ),
        }
    }

    /// Up to `max` undelivered records, oldest first, without handing them out (for inspection).
    pub fn peek(&self, max: usize) -> Vec<SpoolRecord> {
        let picked: Vec<(Arc<File>, Entry)> = {
            let index = lock(&self.index);
            index
                .segments
                .values()
                .flat_map(|s| {
                    s.entries
                        .iter()
                        .filter(|e| !e.delivered)
                        .map(|e| (s.reader.clone(), *e))
                })
                .take(max)
                .collect()
        };
        picked
            .into_iter()
            .filter_map(|(file, e)| {
                let mut body = vec![0; e.len as usize];
                file.read_exact_at(&mut body, e.offset).ok()?;
                split_body(&body)
            })
            .collect()
    }

    /// Whether undelivered records with this [`key_hash`] wait in the spool (a new record of the
    /// key must queue behind them to keep the key's order). Never waits for I/O.
    pub fn has_key(&self, key_hash: u32) -> bool {
        lock(&self.index).keys.contains_key(&key_hash)
    }

    /// Number of undelivered records.
    pub fn len(&self) -> usize {
        self.records.load(Ordering::Acquire)
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the spool's segments on disk in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Bytes skipped when the spool was opened because they formed no intact record.
    pub fn skipped_at_open(&self) -> u64 {
        self.skipped_at_open
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files.
    pub fn segments(&self) -> usize {
        lock(&self.index).segments.len()
    }

    /// Sets the spool's gauges (also called periodically by the replayer, so a gauge never
    /// sticks at a value a racing update overwrote).
    pub(crate) fn report(&self) {
        metrics::gauge!(SPOOL_BYTES_METRIC).set(self.bytes() as f64);
        metrics::gauge!(SPOOL_RECORDS_METRIC).set(self.len() as f64);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every mutation finishes the file work before it touches the guarded state, so a panic
    // while holding a lock leaves the state usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:020}.spool"))
}

/// The key and value of a body.
fn split_body(body: &[u8]) -> Option<SpoolRecord> {
    let key_len = u16::from_le_bytes([*body.first()?, *body.get(1)?]) as usize;
    let key = body.get(2..2 + key_len)?;
    Some(SpoolRecord {
        key: key.to_vec(),
        value: body[2 + key_len..].to_vec(),
    })
}

/// The intact record at `pos`: its body's offset and length.
fn record_at(raw: &[u8], pos: usize) -> Option<(usize, usize)> {
    let header = raw.get(pos..pos + HEADER_BYTES)?;
    if header[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if !(2..=MAX_BODY_BYTES).contains(&len) {
        return None;
    }
    let body = raw.get(pos + HEADER_BYTES..pos + HEADER_BYTES + len)?;
    let mut digest = CRC32C.digest();
    digest.update(&header[4..8]);
    digest.update(body);
    if digest.finalize() != crc {
        return None;
    }
    let key_len = u16::from_le_bytes([body[0], body[1]]) as usize;
    (2 + key_len <= len).then_some((pos + HEADER_BYTES, len))
}

/// The intact records of a segment, and how many bytes were skipped between and after them.
fn scan(raw: &[u8]) -> (Vec<Entry>, u64) {
    let mut entries = Vec::new();
    let mut skipped = 0u64;
    let mut pos = 0;
    while pos < raw.len() {
        match record_at(raw, pos) {
            Some((body, len)) => {
                let key_len = u16::from_le_bytes([raw[body], raw[body + 1]]) as usize;
                entries.push(Entry {
                    offset: body as u64,
                    len: len as u32,
                    key_hash: key_hash(&raw[body + 2..body + 2 + key_len]),
                    delivered: false,
                    in_flight: false,
                });
                pos = body + len;
            }
            None => {
                // Resynchronise at the next magic that starts an intact record.
                let next = (pos + 1..raw.len())
                    .find(|&p| raw[p..].starts_with(&MAGIC) && record_at(raw, p).is_some())
                    .unwrap_or(raw.len());
                skipped += (next - pos) as u64;
                pos = next;
            }
        }
    }
    (entries, skipped)
}

/// The intact prefix of a spool file of the single-file format (`[len][crc][body]`, no magic).
fn parse_single_file(raw: &[u8]) -> Vec<SpoolRecord> {
    let mut records = Vec::new();
    let mut pos = 0;
    while let Some(header) = raw.get(pos..pos + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(body) = raw.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if len < 2 || CRC32C.checksum(body) != crc {
            break;
        }
        let Some(record) = split_body(body) else {
            break;
        };
        records.push(record);
        pos += 8 + len;
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_kafkas_murmur2() {
        // Kafka's own reference values (UtilsTest.testMurmur2), as Java ints.
        for (key, java) in [
            (&b"21"[..], -973_932_308i32),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(key_hash(key), (java as u32) & 0x7fff_ffff, "{key:?}");
        }
    }

    #[test]
    fn a_record_survives_any_single_flipped_byte_of_its_neighbours() {
        let records: Vec<SpoolRecord> = (0..3)
            .map(|i| SpoolRecord {
                key: format!("user-{i}").into_bytes(),
                value: format!("{{\"n\":{i}}}").into_bytes(),
            })
            .collect();
        let mut raw = Vec::new();
        for r in &records {
            r.encode_into(&mut raw).expect("encode");
        }
        let first = records[0].encoded_len() as usize;
        let second = first + records[1].encoded_len() as usize;
        for at in first..second {
            let mut damaged = raw.clone();
            damaged[at] ^= 0x5a;
            let (entries, skipped) = scan(&damaged);
            let bodies: Vec<SpoolRecord> = entries
                .iter()
                .filter_map(|e| {
                    split_body(&damaged[e.offset as usize..e.offset as usize + e.len as usize])
                })
                .collect();
            assert_eq!(
                bodies,
                vec![records[0].clone(), records[2].clone()],
                "byte {at} flipped"
            );
            assert_eq!(skipped, (second - first) as u64, "byte {at} flipped");
        }
    }
}
