//! Decoding of Debezium change events of the upstream `videos` table into catalog changes.
//!
//! Both the full envelope (`op`, `before`, `after`, optionally wrapped in `payload` when schemas
//! are enabled) and the ExtractNewRecordState form (columns at top level with `__op` and
//! `__deleted`) are read. No I/O.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;
use vrs_domain::{CreatorId, Video, VideoId, VideoStatus, Visibility};

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
}

impl CdcOp {
    /// Debezium's one-letter code, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "c",
            Self::Update => "u",
            Self::Read => "r",
            Self::Delete => "d",
        }
    }

    fn parse(code: &str) -> Result<Self, CdcError> {
        Ok(match code {
            "c" => Self::Create,
            "u" => Self::Update,
            "r" => Self::Read,
            "d" => Self::Delete,
            other => return Err(CdcError::UnsupportedOp(other.to_owned())),
        })
    }
}

/// One decoded change of a video.
#[derive(Clone, Debug, PartialEq)]
pub enum CdcChange {
    /// The row as it now is (create, update or snapshot read).
    Upsert { op: CdcOp, video: Video },
    /// The row is gone. `row` is the last known row when the event carried it whole (with the
    /// default replica identity Debezium sends only the key).
    Delete { id: VideoId, row: Option<Video> },
}

impl CdcChange {
    /// The video this change is about.
    pub fn id(&self) -> VideoId {
        match self {
            Self::Upsert { video, .. } => video.id,
            Self::Delete { id, .. } => *id,
        }
    }

    /// The operation, for metrics.
    pub fn op(&self) -> CdcOp {
        match self {
            Self::Upsert { op, .. } => *op,
            Self::Delete { .. } => CdcOp::Delete,
        }
    }
}

/// Why a change event could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CdcError {
    /// Not JSON, not an object, or a row column missing or of the wrong type.
    #[error("malformed change event: {0}")]
    Malformed(String),
    /// An operation other than c, u, r, d (e.g. `t`, truncate).
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
    let side = if op == CdcOp::Delete {
        "before"
    } else {
        "after"
    };
    let row = match root.get(side) {
        Some(Value::Object(row)) => row,
        _ => return Err(malformed(format!("op {} without {side}", op.as_str()))),
    };
    change(op, row).map(Some)
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
    change(op, row).map(Some)
}

fn change(op: CdcOp, row: &Map<String, Value>) -> Result<CdcChange, CdcError> {
    if op == CdcOp::Delete {
        let id = VideoId(uuid(row, "id")?);
        return Ok(CdcChange::Delete {
            id,
            row: video(row).ok(),
        });
    }
    Ok(CdcChange::Upsert {
        op,
        video: video(row)?,
    })
}

fn video(row: &Map<String, Value>) -> Result<Video, CdcError> {
    let status = text(row, "status")?;
    Ok(Video {
        id: VideoId(uuid(row, "id")?),
        creator_id: CreatorId(uuid(row, "creator_id")?),
        title: text(row, "title")?.to_owned(),
        duration_seconds: row
            .get("duration_seconds")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| malformed("duration_seconds is not a non-negative integer"))?,
        status: VideoStatus::parse(status)
            .ok_or_else(|| malformed(format!("unknown status {status:?}")))?,
        visibility: visibility(row),
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
        Some(v) => Visibility::parse(v).unwrap_or(Visibility::Private),
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
            Ok(Some(CdcChange::Upsert { op, video })) => (op, video),
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
            Ok(Some(CdcChange::Delete { id, row: Some(v) })) => {
                assert_eq!(id.0.to_string(), ID);
                assert_eq!(v.title, "Cat");
            }
            other => panic!("expected a delete, got {other:?}"),
        }
        // The default replica identity sends only the key in `before`.
        let key_only = json!({"op": "d", "before": {"id": ID, "title": null}, "after": null});
        match decoded(key_only) {
            Ok(Some(change @ CdcChange::Delete { row: None, .. })) => {
                assert_eq!(change.id().0.to_string(), ID);
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
            kind(br#"{"op": "t", "after": null}"#),
            Err("unsupported_op")
        );
        assert_eq!(kind(br#"{"op": "c", "after": null}"#), Err("malformed"));
        assert_eq!(
            kind(br#"{"op": "d", "before": {"id": "nope"}}"#),
            Err("malformed")
        );
        let mut status = row(json!("2026-11-30T09:00:00Z"));
        status["status"] = json!("live");
        let err = decoded(json!({"op": "u", "after": status})).expect_err("bad status");
        assert!(err.to_string().contains("live"), "{err}");
        let mut negative = row(json!("2026-11-30T09:00:00Z"));
        negative["duration_seconds"] = json!(-1);
        assert_eq!(
            decoded(json!({"op": "u", "after": negative})).map_err(|e| e.kind()),
            Err("malformed")
        );
    }
}
