//! Decoding of Debezium change events of the upstream `videos` table into catalog changes.
//!
//! Both the full envelope (`op`, `before`, `after`, optionally wrapped in `payload` when schemas
//! are enabled) and the ExtractNewRecordState form (columns at top level with `__op` and
//! `__deleted`) are read. No I/O.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;
use vrs_domain::{CreatorId, SourcePosition, Video, VideoId, VideoStatus, Visibility};

/// Counter of column values the decoder did not know, labelled by `column`; such a video is
/// withdrawn from feeds (status `archived`, visibility `private`) rather than left as it was.
pub const CDC_UNKNOWN_VALUES_METRIC: &str = "cdc_unknown_values_total";

/// Epoch numbers above this are microseconds, below it milliseconds: the two ranges overlap only
/// for dates before 1973 or after 5138.
const MICROS_THRESHOLD: i64 = 100_000_000_000_000;

/// Debezium operation of a change event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdcOp {
    /// Row inserted (`c`).
    Create,
    /// Row updated (`u`).
    Update,
    /// Row read by a snapshot (`r`).
    Read,
    /// Row deleted (`d`).
    Delete,
    /// Table truncated (`t`).
    Truncate,
}

impl CdcOp {
    /// Debezium's one-letter code, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "c",
            Self::Update => "u",
            Self::Read => "r",
            Self::Delete => "d",
            Self::Truncate => "t",
        }
    }

    fn parse(code: &str) -> Result<Self, CdcError> {
        Ok(match code {
            "c" => Self::Create,
            "u" => Self::Update,
            "r" => Self::Read,
            "d" => Self::Delete,
            "t" => Self::Truncate,
            other => return Err(CdcError::UnsupportedOp(other.to_owned())),
        })
    }
}

/// One decoded change of a video.
#[derive(Clone, Debug, PartialEq)]
pub enum CdcChange {
    /// The row as it now is (create, update or snapshot read).
    Upsert {
        op: CdcOp,
        video: Video,
        position: SourcePosition,
    },
    /// The row is gone. `row` is the last known row when the event carried it whole (with the
    /// default replica identity Debezium sends only the key). No position for a tombstone.
    Delete {
        id: VideoId,
        row: Option<Video>,
        position: Option<SourcePosition>,
    },
    /// The table was emptied.
    Truncate { position: SourcePosition },
}

impl CdcChange {
    /// The operation, for metrics.
    pub fn op(&self) -> CdcOp {
        match self {
            Self::Upsert { op, .. } => *op,
            Self::Delete { .. } => CdcOp::Delete,
            Self::Truncate { .. } => CdcOp::Truncate,
        }
    }

    /// The change's position in the source, when it has one.
    pub fn position(&self) -> Option<SourcePosition> {
        match self {
            Self::Upsert { position, .. } | Self::Truncate { position } => Some(*position),
            Self::Delete { position, .. } => *position,
        }
    }
}

/// Why a change event could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CdcError {
    /// Not JSON, not an object, or a row column missing or of the wrong type.
    #[error("malformed change event: {0}")]
    Malformed(String),
    /// An operation other than c, u, r, d, t (e.g. `m`, a logical-decoding message).
    #[error("unsupported change operation {0:?}")]
    UnsupportedOp(String),
}

impl CdcError {
    /// Bounded label for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnsupportedOp(_) => "unsupported_op",
        }
    }
}

fn malformed(reason: impl Into<String>) -> CdcError {
    CdcError::Malformed(reason.into())
}

/// The video id of a message key: Debezium's JSON key (`{"id": "…"}`, with or without the
/// `{"schema": …, "payload": …}` wrapper) or the bare UUID text.
pub fn decode_key(bytes: &[u8]) -> Result<VideoId, CdcError> {
    let text = std::str::from_utf8(bytes).map_err(|e| malformed(format!("key: {e}")))?;
    if let Ok(id) = Uuid::parse_str(text.trim().trim_matches('"')) {
        return Ok(VideoId(id));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| malformed(format!("key: {e}")))?;
    let key = match value {
        Value::Object(mut o) => match o.remove("payload") {
            Some(Value::Object(p)) => p,
            Some(_) => return Err(malformed("key payload is not an object")),
            None => o,
        },
        _ => return Err(malformed("key is not a JSON object or a UUID")),
    };
    uuid(&key, "id").map(VideoId)
}

/// Decodes one message value; `Ok(None)` for a tombstone (empty or `null` value, or a `null`
/// payload). A tombstone is a delete of the key's video: with Debezium's record flattening it can
/// be the only trace of a hard delete (see [`decode_key`]).
pub fn decode(bytes: &[u8]) -> Result<Option<CdcChange>, CdcError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let root = match value {
        Value::Null => return Ok(None),
        Value::Object(mut o) => match o.remove("payload") {
            Some(Value::Null) => return Ok(None),
            Some(Value::Object(p)) => p,
            Some(_) => return Err(malformed("payload is not an object")),
            None => o,
        },
        _ => return Err(malformed("not a JSON object")),
    };
    if root.contains_key("op") {
        envelope(&root)
    } else {
        flattened(&root)
    }
}

fn envelope(root: &Map<String, Value>) -> Result<Option<CdcChange>, CdcError> {
    let op = CdcOp::parse(root.get("op").and_then(Value::as_str).unwrap_or_default())?;
    let source = match root.get("source") {
        Some(Value::Object(source)) => Some(source),
        _ => None,
    };
    // The source's commit time, then its log position; Debezium ≥ 2.6 also gives microseconds.
    let from_source = source.and_then(|src| {
        let committed_at_us = number(src, "ts_us")
            .or_else(|| number(src, "ts_ns").map(|ns| ns / 1_000))
            .or_else(|| number(src, "ts_ms").map(|ms| ms.saturating_mul(1_000)))?;
        Some(SourcePosition {
            committed_at_us,
            log_position: number(src, "lsn").unwrap_or(0),
        })
    });
    // Without a source block: the event's own time, when the connector set it.
    let fallback = number(root, "ts_ms").map(|ms| SourcePosition {
        committed_at_us: ms.saturating_mul(1_000),
        log_position: 0,
    });
    if op == CdcOp::Truncate {
        let position = from_source
            .or(fallback)
            .ok_or_else(|| malformed("op t without a source position"))?;
        return Ok(Some(CdcChange::Truncate { position }));
    }
    let side = if op == CdcOp::Delete {
        "before"
    } else {
        "after"
    };
    let row = match root.get(side) {
        Some(Value::Object(row)) => row,
        _ => return Err(malformed(format!("op {} without {side}", op.as_str()))),
    };
    change(op, row, from_source, fallback).map(Some)
}

fn flattened(row: &Map<String, Value>) -> Result<Option<CdcChange>, CdcError> {
    let deleted = match row.get("__deleted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        Some(_) => return Err(malformed("__deleted is neither a boolean nor a string")),
    };
    let op = match row.get("__op").and_then(Value::as_str) {
        Some(code) => CdcOp::parse(code)?,
        None => CdcOp::Update,
    };
    let op = if deleted { CdcOp::Delete } else { op };
    if op == CdcOp::Truncate {
        return Err(malformed("op t in a flattened record"));
    }
    // ExtractNewRecordState's `add.fields=source.ts_ms,lsn` (or `source.ts_us`), prefixed `__`.
    let from_source = number(row, "__source_ts_us")
        .or_else(|| number(row, "__source_ts_ms").map(|ms| ms.saturating_mul(1_000)))
        .map(|committed_at_us| SourcePosition {
            committed_at_us,
            log_position: number(row, "__lsn")
                .or_else(|| number(row, "__source_lsn"))
                .unwrap_or(0),
        });
    let fallback = number(row, "__ts_ms").map(|ms| SourcePosition {
        committed_at_us: ms.saturating_mul(1_000),
        log_position: 0,
    });
    change(op, row, from_source, fallback).map(Some)
}

/// An integer field (a JSON number, or a string of digits as some converters write 64-bit values).
fn number(map: &Map<String, Value>, field: &str) -> Option<i64> {
    match map.get(field)? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX))),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A change at the source's position when the event has one, else at the row's `updated_at` (the
/// posts service's own change time), else at the event's time.
fn change(
    op: CdcOp,
    row: &Map<String, Value>,
    from_source: Option<SourcePosition>,
    fallback: Option<SourcePosition>,
) -> Result<CdcChange, CdcError> {
    let from_row = timestamp(row, "updated_at")?.map(|t| SourcePosition {
        committed_at_us: t.timestamp_micros(),
        log_position: 0,
    });
    let position = from_source.or(from_row).or(fallback);
    if op == CdcOp::Delete {
        let id = VideoId(uuid(row, "id")?);
        return Ok(CdcChange::Delete {
            id,
            row: video(row).ok(),
            position,
        });
    }
    Ok(CdcChange::Upsert {
        op,
        video: video(row)?,
        position: position.unwrap_or_default(),
    })
}

fn video(row: &Map<String, Value>) -> Result<Video, CdcError> {
    let status = text(row, "status")?;
    // A status this service does not know (a newer upstream state) withdraws the video: it is
    // never served until a known status arrives.
    let (status, visibility) = match VideoStatus::parse(status) {
        Some(known) => (known, visibility(row)),
        None => {
            metrics::counter!(CDC_UNKNOWN_VALUES_METRIC, "column" => "status").increment(1);
            (VideoStatus::Archived, Visibility::Private)
        }
    };
    Ok(Video {
        id: VideoId(uuid(row, "id")?),
        creator_id: CreatorId(uuid(row, "creator_id")?),
        title: text(row, "title")?.to_owned(),
        duration_seconds: row
            .get("duration_seconds")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| malformed("duration_seconds is not a non-negative integer"))?,
        status,
        visibility,
        media_key: text(row, "media_key")?.to_owned(),
        thumbnail_key: text(row, "thumbnail_key")?.to_owned(),
        published_at: timestamp(row, "published_at")?,
        // Restamped by the consumer anyway; absent only in hand-written events.
        updated_at: timestamp(row, "updated_at")?.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        deleted_at: timestamp(row, "deleted_at")?,
    })
}

/// The row's visibility: public when the column is absent (its default in the posts service's
/// schema); an unknown value counts as private, so a new kind of restriction never leaks a video.
fn visibility(row: &Map<String, Value>) -> Visibility {
    match row.get("visibility").and_then(Value::as_str) {
        None => Visibility::Public,
        Some(v) => Visibility::parse(v).unwrap_or_else(|| {
            metrics::counter!(CDC_UNKNOWN_VALUES_METRIC, "column" => "visibility").increment(1);
            Visibility::Private
        }),
    }
}

fn text<'a>(row: &'a Map<String, Value>, column: &str) -> Result<&'a str, CdcError> {
    row.get(column)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("{column} is missing or not a string")))
}

fn uuid(row: &Map<String, Value>, column: &str) -> Result<Uuid, CdcError> {
    Uuid::parse_str(text(row, column)?).map_err(|e| malformed(format!("{column}: {e}")))
}

/// An ISO-8601 string (Debezium's `timestamptz`), or epoch microseconds or milliseconds.
fn timestamp(row: &Map<String, Value>, column: &str) -> Result<Option<DateTime<Utc>>, CdcError> {
    let parsed = match row.get(column) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok(),
        Some(Value::Number(n)) => n.as_i64().and_then(|n| {
            if n.abs() >= MICROS_THRESHOLD {
                DateTime::from_timestamp_micros(n)
            } else {
                DateTime::from_timestamp_millis(n)
            }
        }),
        Some(_) => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| malformed(format!("{column} is not a timestamp")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "00000000-0000-0000-0000-0000000004de";
    const CREATOR: &str = "00000000-0000-0000-0000-000000000001";

    fn row(updated_at: Value) -> Value {
        json!({"id": ID, "creator_id": CREATOR, "title": "Cat", "description": "",
               "duration_seconds": 31, "status": "published", "visibility": "public",
               "media_key": "m/1.mp4", "thumbnail_key": "t/1.jpg", "hashtags": ["cat"],
               "created_at": "2026-11-30T08:00:00Z", "published_at": "2026-11-30T08:00:00.5Z",
               "updated_at": updated_at, "deleted_at": null})
    }

    fn decoded(value: Value) -> Result<Option<CdcChange>, CdcError> {
        decode(value.to_string().as_bytes())
    }

    fn upserted(value: Value) -> (CdcOp, Video) {
        match decoded(value) {
            Ok(Some(CdcChange::Upsert { op, video, .. })) => (op, video),
            other => panic!("expected an upsert, got {other:?}"),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("timestamp")
            .with_timezone(&Utc)
    }

    #[test]
    fn envelope_with_and_without_payload_wrapper() {
        let inner = json!({"op": "c", "before": null, "after": row(json!("2026-11-30T09:00:00Z")),
                           "source": {"table": "videos"}, "ts_ms": 1});
        let wrapped = json!({"schema": {}, "payload": inner.clone()});
        for value in [inner, wrapped] {
            let (op, video) = upserted(value);
            assert_eq!(op, CdcOp::Create);
            assert_eq!(video.id.0.to_string(), ID);
            assert_eq!(video.creator_id.0.to_string(), CREATOR);
            assert_eq!(video.duration_seconds, 31);
            assert_eq!(video.status, VideoStatus::Published);
            assert_eq!(video.published_at, Some(at("2026-11-30T08:00:00.5Z")));
            assert_eq!(video.updated_at, at("2026-11-30T09:00:00Z"));
            assert_eq!(video.deleted_at, None);
        }
    }

    #[test]
    fn visibility_is_read_and_an_unknown_value_counts_as_private() {
        for (value, expected) in [
            (json!("public"), Visibility::Public),
            (json!("unlisted"), Visibility::Unlisted),
            (json!("private"), Visibility::Private),
            (json!("followers_only"), Visibility::Private),
        ] {
            let mut after = row(json!("2026-11-30T09:00:00Z"));
            after["visibility"] = value.clone();
            let (_, video) = upserted(json!({"op": "u", "before": null, "after": after}));
            assert_eq!(video.visibility, expected, "{value}");
        }
        let mut after = row(json!("2026-11-30T09:00:00Z"));
        after.as_object_mut().map(|o| o.remove("visibility"));
        let (_, video) = upserted(json!({"op": "u", "before": null, "after": after}));
        assert_eq!(video.visibility, Visibility::Public, "the column's default");
    }

    #[test]
    fn update_read_and_delete_ops() {
        let after = row(json!("2026-11-30T09:00:00Z"));
        for (code, op) in [("u", CdcOp::Update), ("r", CdcOp::Read)] {
            let value = json!({"op": code, "before": null, "after": after.clone()});
            assert_eq!(upserted(value).0, op);
        }
        let delete = json!({"op": "d", "before": after, "after": null});
        match decoded(delete) {
            Ok(Some(CdcChange::Delete {
                id, row: Some(v), ..
            })) => {
                assert_eq!(id.0.to_string(), ID);
                assert_eq!(v.title, "Cat");
            }
            other => panic!("expected a delete, got {other:?}"),
        }
        // The default replica identity sends only the key in `before`.
        let key_only = json!({"op": "d", "before": {"id": ID, "title": null}, "after": null});
        match decoded(key_only) {
            Ok(Some(
                change @ CdcChange::Delete {
                    id,
                    row: None,
                    position: None,
                },
            )) => {
                assert_eq!(id.0.to_string(), ID);
                assert_eq!(change.op(), CdcOp::Delete);
            }
            other => panic!("expected a key-only delete, got {other:?}"),
        }
    }

    #[test]
    fn flattened_form_with_deleted_marker() {
        let mut value = row(json!("2026-11-30T09:00:00Z"));
        value["__op"] = json!("u");
        value["__deleted"] = json!("false");
        assert_eq!(upserted(value.clone()).0, CdcOp::Update);
        value["__deleted"] = json!("true");
        assert!(matches!(
            decoded(value),
            Ok(Some(CdcChange::Delete { row: Some(_), .. }))
        ));
        let mut key_only = json!({"id": ID, "__op": "d"});
        assert!(matches!(
            decoded(key_only.clone()),
            Ok(Some(CdcChange::Delete { row: None, .. }))
        ));
        key_only["__op"] = json!("c");
        key_only["__deleted"] = json!(true);
        assert!(matches!(
            decoded(key_only),
            Ok(Some(CdcChange::Delete { .. }))
        ));
    }

    #[test]
    fn timestamps_as_iso_strings_or_epoch_micros_or_millis() {
        let expected = at("2026-11-30T09:00:00.123Z");
        let millis = expected.timestamp_millis();
        for ts in [
            json!("2026-11-30T09:00:00.123Z"),
            json!("2026-11-30T10:00:00.123+01:00"),
            json!(millis),
            json!(millis * 1000),
        ] {
            let mut value = row(ts.clone());
            value["__op"] = json!("r");
            assert_eq!(upserted(value).1.updated_at, expected, "{ts}");
        }
        let mut bad = row(json!("yesterday"));
        bad["__op"] = json!("r");
        assert_eq!(
            decoded(bad),
            Err(malformed("updated_at is not a timestamp"))
        );
    }

    #[test]
    fn keys_are_read_bare_or_as_debezium_json() {
        let expected = Uuid::parse_str(ID).map(VideoId).ok();
        for key in [
            ID.to_owned(),
            format!("\"{ID}\""),
            json!({"id": ID}).to_string(),
            json!({"schema": {"type": "struct"}, "payload": {"id": ID}}).to_string(),
        ] {
            assert_eq!(decode_key(key.as_bytes()).ok(), expected, "{key}");
        }
        for bad in ["", "nope", "{\"id\": 3}", "[1]"] {
            assert!(decode_key(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_unknown_status_withdraws_the_video() {
        let mut after = row(json!("2026-11-30T09:00:00Z"));
        after["status"] = json!("live");
        let (_, video) = upserted(json!({"op": "u", "after": after}));
        assert_eq!(video.status, VideoStatus::Archived);
        assert_eq!(video.visibility, Visibility::Private);
        assert!(!video.is_servable());
    }

    fn position(value: Value) -> Option<SourcePosition> {
        decoded(value)
            .expect("decodes")
            .expect("a change")
            .position()
    }

    fn at_us(committed_at_us: i64, log_position: i64) -> Option<SourcePosition> {
        Some(SourcePosition {
            committed_at_us,
            log_position,
        })
    }

    #[test]
    fn positions_come_from_the_source_then_the_row_then_the_event() {
        let after = row(json!("2026-11-30T09:00:00Z"));
        let row_us = at("2026-11-30T09:00:00Z").timestamp_micros();
        let source = json!({"table": "videos", "ts_ms": 1_700_000_000_123i64, "lsn": 24_023_128});
        assert_eq!(
            position(json!({"op": "u", "after": after, "source": source, "ts_ms": 5})),
            at_us(1_700_000_000_123_000, 24_023_128),
            "Debezium's source block: commit time and LSN"
        );
        let micro = json!({"ts_ms": 1_700_000_000_123i64, "ts_us": 1_700_000_000_123_456i64,
                           "lsn": "24023129"});
        assert_eq!(
            position(json!({"op": "u", "after": after, "source": micro})),
            at_us(1_700_000_000_123_456, 24_023_129),
            "microseconds when given; a 64-bit LSN written as a string"
        );
        assert_eq!(
            position(json!({"op": "u", "after": after, "ts_ms": 5})),
            at_us(row_us, 0),
            "without a source block, the row's updated_at"
        );
        assert_eq!(
            position(json!({"op": "d", "before": {"id": ID}, "ts_ms": 5})),
            at_us(5_000, 0),
            "a key-only delete without a source block: the event's time"
        );
        let mut flat = row(json!("2026-11-30T09:00:00Z"));
        flat["__op"] = json!("u");
        assert_eq!(position(flat.clone()), at_us(row_us, 0));
        flat["__source_ts_ms"] = json!(1_700_000_000_500i64);
        flat["__lsn"] = json!(77);
        assert_eq!(position(flat), at_us(1_700_000_000_500_000, 77));
        let truncate = json!({"op": "t", "source": {"ts_ms": 9, "lsn": 10}});
        assert_eq!(
            decoded(truncate),
            Ok(Some(CdcChange::Truncate {
                position: SourcePosition {
                    committed_at_us: 9_000,
                    log_position: 10
                }
            }))
        );
    }

    #[test]
    fn tombstones_are_skipped() {
        assert_eq!(decode(b""), Ok(None));
        assert_eq!(decode(b"null"), Ok(None));
        assert_eq!(decoded(json!({"schema": {}, "payload": null})), Ok(None));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let kind = |bytes: &[u8]| decode(bytes).map(|_| ()).map_err(|e| e.kind());
        assert_eq!(kind(b"{not json"), Err("malformed"));
        assert_eq!(kind(b"[1, 2]"), Err("malformed"));
        assert_eq!(kind(br#"{"payload": 3}"#), Err("malformed"));
        assert_eq!(
            kind(br#"{"op": "m", "after": null}"#),
            Err("unsupported_op")
        );
        assert_eq!(
            kind(br#"{"op": "t", "after": null}"#),
            Err("malformed"),
            "a truncate without a position could delete what came after it"
        );
        assert_eq!(kind(br#"{"op": "c", "after": null}"#), Err("malformed"));
        assert_eq!(
            kind(br#"{"op": "d", "before": {"id": "nope"}}"#),
            Err("malformed")
        );
        let mut negative = row(json!("2026-11-30T09:00:00Z"));
        negative["duration_seconds"] = json!(-1);
        assert_eq!(
            decoded(json!({"op": "u", "after": negative})).map_err(|e| e.kind()),
            Err("malformed")
        );
    }
}
