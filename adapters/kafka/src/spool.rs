//! A durable local queue of events Kafka did not acknowledge in time.
//!
//! One append-only file of records `[body length: u32 LE][CRC-32C of body: u32 LE][body]`, where the
//! body is `[key length: u16 LE][key][value]`. Appends are fsynced before they return. On open the
//! file is read up to the first incomplete or corrupt record (a write torn by a crash, never
//! acknowledged to the caller) and truncated there. Removing replayed records rewrites the rest
//! into a temporary file that atomically replaces the spool, so a crash leaves either the old or
//! the new file, never a mix. The records are mirrored in memory; the size bound keeps that small.

use crc::{CRC_32_ISCSI, Crc};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Name of the spool file inside the spool directory.
pub const SPOOL_FILE: &str = "engagement-events.spool";
/// Gauge of the spool file's size.
pub const SPOOL_BYTES_METRIC: &str = "event_spool_bytes";

const HEADER_BYTES: usize = 8;
const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Why the spool did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The batch would grow the spool past its bound; nothing of it was written.
    #[error("event spool full: {used} + {needed} bytes exceed the bound of {max}")]
    Full { used: u64, needed: u64, max: u64 },
    /// The file could not be read or written.
    #[error("event spool I/O: {0}")]
    Io(#[from] io::Error),
    /// A record's key is longer than the format allows.
    #[error("event spool record key of {0} bytes is too long")]
    KeyTooLong(usize),
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
    /// Bytes this record takes in the file.
    pub fn encoded_len(&self) -> u64 {
        (HEADER_BYTES + 2 + self.key.len() + self.value.len()) as u64
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), SpoolError> {
        let key_len =
            u16::try_from(self.key.len()).map_err(|_| SpoolError::KeyTooLong(self.key.len()))?;
        let mut body = Vec::with_capacity(2 + self.key.len() + self.value.len());
        body.extend_from_slice(&key_len.to_le_bytes());
        body.extend_from_slice(&self.key);
        body.extend_from_slice(&self.value);
        let body_len = u32::try_from(body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        out.extend_from_slice(&body_len.to_le_bytes());
        out.extend_from_slice(&CRC32C.checksum(&body).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(())
    }
}

/// The durable spool; all methods block on file I/O (call them from blocking threads).
#[derive(Debug)]
pub struct EventSpool {
    path: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    records: VecDeque<SpoolRecord>,
    bytes: u64,
}

impl EventSpool {
    /// Opens (or creates) the spool in `dir`, dropping a torn or corrupt tail.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir)?;
        let path = dir.join(SPOOL_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)?;
        let (records, good) = parse(&raw);
        if good < raw.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = raw.len() - good,
                "event spool ends in a torn or corrupt record; dropping it"
            );
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        let spool = Self {
            path,
            max_bytes,
            state: Mutex::new(State {
                file,
                records,
                bytes: good as u64,
            }),
        };
        spool.report(good as u64);
        Ok(spool)
    }

    /// Appends a batch and fsyncs it; all or nothing, and nothing when it would pass the bound.
    pub fn append(&self, batch: &[SpoolRecord]) -> Result<(), SpoolError> {
        let mut buf = Vec::new();
        for r in batch {
            r.encode_into(&mut buf)?;
        }
        let needed = buf.len() as u64;
        let mut state = self.lock();
        if state.bytes + needed > self.max_bytes {
            return Err(SpoolError::Full {
                used: state.bytes,
                needed,
                max: self.max_bytes,
            });
        }
        let written = state
            .file
            .write_all(&buf)
            .and_then(|()| state.file.sync_data());
        if let Err(e) = written {
            // Cut a partial write off so later appends do not land behind garbage.
            let _ = state.file.set_len(state.bytes);
            return Err(e.into());
        }
        state.bytes += needed;
        state.records.extend(batch.iter().cloned());
        self.report(state.bytes);
        Ok(())
    }

    /// Up to `max` of the oldest records, oldest first, without removing them.
    pub fn peek(&self, max: usize) -> Vec<SpoolRecord> {
        self.lock().records.iter().take(max).cloned().collect()
    }

    /// Removes the `n` oldest records (after Kafka acknowledged them), durably.
    pub fn remove_first(&self, n: usize) -> Result<(), SpoolError> {
        let mut state = self.lock();
        let n = n.min(state.records.len());
        if n == 0 {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in state.records.iter().skip(n) {
            r.encode_into(&mut buf)?;
        }
        let tmp = self.path.with_extension("spool.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename is durable only once the directory entry is.
            File::open(dir)?.sync_all()?;
        }
        state.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        state.records.drain(..n);
        state.bytes = buf.len() as u64;
        self.report(state.bytes);
        Ok(())
    }

    /// Number of spooled records.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether the spool holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the spool file in bytes.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The spool file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the in-memory mirror consistent with the file
        // (every mutation updates memory only after the file), so the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report(&self, bytes: u64) {
        metrics::gauge!(SPOOL_BYTES_METRIC).set(bytes as f64);
    }
}

/// The intact records of `raw` and the length of the intact prefix.
fn parse(raw: &[u8]) -> (VecDeque<SpoolRecord>, usize) {
    let mut records = VecDeque::new();
    let mut pos = 0;
    while let Some(header) = raw.get(pos..pos + HEADER_BYTES) {
        let (len, crc) = header.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let Some(body) = raw.get(pos + HEADER_BYTES..pos + HEADER_BYTES + len) else {
            break;
        };
        if len < 2 || CRC32C.checksum(body) != crc {
            break;
        }
        let key_len = u16::from_le_bytes([body[0], body[1]]) as usize;
        let Some(key) = body.get(2..2 + key_len) else {
            break;
        };
        records.push_back(SpoolRecord {
            key: key.to_vec(),
            value: body[2 + key_len..].to_vec(),
        });
        pos += HEADER_BYTES + len;
    }
    (records, pos)
}
