//! Compact binary encoding of a feed session. No I/O.
//!
//! Layout of version 1 (integers and floats little-endian):
//! `version u8 | session id [16] | user id [16] | created_at i64 | expires_at i64 |
//! weights 5×f64 | item count u32 | items`, each item
//! `video id [16] | creator id [16] | score f64 | reason u8 | signals 5×f32`.
//!
//! Version 2 is version 1 followed by the session's experiment assignments:
//! `count u8 | per assignment: experiment id [16] | name len u8 | name | variant len u8 | variant`.
//! A session without assignments is written as version 1, which every reader knows.
//!
//! Times are whole microseconds since the Unix epoch: the contract suites (and PostgreSQL) keep
//! microsecond precision, and milliseconds would change a session on its way through the cache.
//! Signal values are only shown in explanations, so f32 (about 7 digits) is enough for them; a
//! 200-item session takes about 12 KB instead of about 60 KB of JSON.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vrs_application::ports::PortError;
use vrs_domain::{
    Assignment, CreatorId, FeedSession, Reason, SessionId, SessionItem, Signal, SignalValues,
    UserId, VideoId, Weights,
};

/// The version written by [`encode`] for a session without experiment assignments.
pub(crate) const VERSION: u8 = 1;
/// The version written for a session with assignments.
pub(crate) const VERSION_WITH_EXPERIMENTS: u8 = 2;

const HEADER_LEN: usize = 1 + 16 + 16 + 8 + 8 + 5 * 8 + 4;
const ITEM_LEN: usize = 16 + 16 + 8 + 1 + 5 * 4;

/// Reasons by their stored code; the position is the code, so append only.
const REASONS: [Reason; 4] = [
    Reason::Following,
    Reason::Affinity,
    Reason::Trending,
    Reason::Fresh,
];

fn reason_code(reason: Reason) -> u8 {
    match reason {
        Reason::Following => 0,
        Reason::Affinity => 1,
        Reason::Trending => 2,
        Reason::Fresh => 3,
    }
}

/// Encodes a session as [`VERSION`] 1 bytes.
pub(crate) fn encode(session: &FeedSession) -> Result<Vec<u8>, PortError> {
    let count = u32::try_from(session.items.len())
        .map_err(|_| PortError::Rejected("too many session items to encode".into()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + ITEM_LEN * session.items.len());
    out.push(if session.experiments.is_empty() {
        VERSION
    } else {
        VERSION_WITH_EXPERIMENTS
    });
    out.extend_from_slice(session.id.0.as_bytes());
    out.extend_from_slice(session.user_id.0.as_bytes());
    out.extend_from_slice(&session.created_at.timestamp_micros().to_le_bytes());
    out.extend_from_slice(&session.expires_at.timestamp_micros().to_le_bytes());
    for signal in Signal::ALL {
        out.extend_from_slice(&session.weights.get(signal).to_le_bytes());
    }
    out.extend_from_slice(&count.to_le_bytes());
    for item in &session.items {
        out.extend_from_slice(item.video_id.0.as_bytes());
        out.extend_from_slice(item.creator_id.0.as_bytes());
        out.extend_from_slice(&item.score.to_le_bytes());
        out.push(reason_code(item.reason));
        for signal in Signal::ALL {
            // Narrowing is the point of the format; signal values are in [0, 1].
            out.extend_from_slice(&(item.signals.get(signal) as f32).to_le_bytes());
        }
    }
    if !session.experiments.is_empty() {
        let count = u8::try_from(session.experiments.len())
            .map_err(|_| PortError::Rejected("too many experiment assignments".into()))?;
        out.push(count);
        for a in &session.experiments {
            out.extend_from_slice(a.experiment_id.as_bytes());
            for text in [&a.experiment, &a.variant] {
                let len = u8::try_from(text.len())
                    .map_err(|_| PortError::Rejected("experiment name too long".into()))?;
                out.push(len);
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    Ok(out)
}

/// Decodes bytes written by [`encode`]; anything else is `PortError::InvalidData`, never a panic.
pub(crate) fn decode(bytes: &[u8]) -> Result<FeedSession, PortError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != VERSION && version != VERSION_WITH_EXPERIMENTS {
        return Err(invalid(format!(
            "unknown session encoding version {version}"
        )));
    }
    let id = SessionId(r.uuid()?);
    let user_id = UserId(r.uuid()?);
    let created_at = r.time()?;
    let expires_at = r.time()?;
    let [f, c, e, a, m] = [r.f64()?, r.f64()?, r.f64()?, r.f64()?, r.f64()?];
    let weights =
        Weights::new(f, c, e, a, m).map_err(|err| invalid(format!("session weights: {err}")))?;
    let count = r.u32()? as usize;
    // Checking the length first keeps a corrupt count from allocating more than the input.
    let items_len = count.saturating_mul(ITEM_LEN);
    let fits = if version == VERSION {
        r.0.len() == items_len
    } else {
        r.0.len() > items_len
    };
    if !fits {
        return Err(invalid(format!(
            "{count} session items need {} bytes, found {}",
            count.saturating_mul(ITEM_LEN),
            r.0.len()
        )));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let video_id = VideoId(r.uuid()?);
        let creator_id = CreatorId(r.uuid()?);
        let score = r.f64()?;
        let code = r.u8()?;
        let reason = *REASONS
            .get(usize::from(code))
            .ok_or_else(|| invalid(format!("unknown reason code {code}")))?;
        let [freshness, completion, engagement, affinity, model] =
            [r.f32()?, r.f32()?, r.f32()?, r.f32()?, r.f32()?];
        items.push(SessionItem {
            video_id,
            creator_id,
            score,
            reason,
            signals: SignalValues {
                freshness,
                completion,
                engagement,
                affinity,
                model,
            },
        });
    }
    let mut experiments = Vec::new();
    if version == VERSION_WITH_EXPERIMENTS {
        let count = r.u8()?;
        for _ in 0..count {
            let experiment_id = r.uuid()?;
            let experiment = r.text()?;
            let variant = r.text()?;
            experiments.push(Assignment {
                experiment_id,
                experiment,
                variant,
            });
        }
        if !r.0.is_empty() {
            return Err(invalid("trailing bytes after the session".into()));
        }
    }
    Ok(FeedSession {
        id,
        user_id,
        created_at,
        expires_at,
        weights,
        items,
        experiments,
    })
}

fn invalid(what: String) -> PortError {
    PortError::InvalidData(what)
}

/// Reads fixed-width fields from the front of a slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], PortError> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(invalid("truncated session".into()));
        };
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, PortError> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, PortError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn f64(&mut self) -> Result<f64, PortError> {
        Ok(f64::from_le_bytes(self.take()?))
    }

    fn f32(&mut self) -> Result<f64, PortError> {
        Ok(f64::from(f32::from_le_bytes(self.take()?)))
    }

    /// A length-prefixed (u8) UTF-8 string.
    fn text(&mut self) -> Result<String, PortError> {
        let len = usize::from(self.u8()?);
        if self.0.len() < len {
            return Err(invalid("truncated session".into()));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(head.to_vec()).map_err(|_| invalid("experiment name is not UTF-8".into()))
    }

    fn uuid(&mut self) -> Result<Uuid, PortError> {
        Ok(Uuid::from_bytes(self.take()?))
    }

    fn time(&mut self) -> Result<DateTime<Utc>, PortError> {
        let micros = i64::from_le_bytes(self.take()?);
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| invalid(format!("session time {micros} out of range")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn session(items: usize) -> FeedSession {
        let created_at = Utc
            .timestamp_micros(1_750_000_000_123_456)
            .single()
            .unwrap();
        FeedSession {
            id: SessionId(Uuid::new_v4()),
            user_id: UserId(Uuid::new_v4()),
            created_at,
            expires_at: created_at + Duration::minutes(30),
            weights: Weights::new(0.1, 0.4, 0.25, 0.2, 0.05).unwrap(),
            items: (0..items)
                .map(|i| SessionItem {
                    video_id: VideoId(Uuid::new_v4()),
                    creator_id: CreatorId(Uuid::new_v4()),
                    score: 0.987_654_321_012_345 - i as f64 / 1_000.0,
                    reason: REASONS[i % REASONS.len()],
                    signals: SignalValues {
                        freshness: 0.5,
                        completion: 0.25,
                        engagement: 1.0,
                        affinity: 0.0,
                        model: 0.125,
                    },
                })
                .collect(),
            experiments: Vec::new(),
        }
    }

    fn with_experiments(items: usize) -> FeedSession {
        let mut s = session(items);
        s.experiments = vec![
            Assignment {
                experiment_id: Uuid::new_v4(),
                experiment: "weights-2026-12".into(),
                variant: "control".into(),
            },
            Assignment {
                experiment_id: Uuid::new_v4(),
                experiment: "model-v7".into(),
                variant: "treatment".into(),
            },
        ];
        s
    }

    #[test]
    fn sessions_with_experiments_round_trip_as_version_2() {
        for n in [0, 1, 50] {
            let s = with_experiments(n);
            let bytes = encode(&s).unwrap();
            assert_eq!(bytes[0], VERSION_WITH_EXPERIMENTS);
            assert_eq!(decode(&bytes).unwrap(), s);
            for len in 0..bytes.len() {
                assert!(
                    matches!(decode(&bytes[..len]), Err(PortError::InvalidData(_))),
                    "truncated to {len} bytes"
                );
            }
            let mut trailing = bytes.clone();
            trailing.push(0);
            assert!(matches!(decode(&trailing), Err(PortError::InvalidData(_))));
        }
    }

    #[test]
    fn round_trips_a_session_exactly() {
        for n in [0, 1, 200] {
            let s = session(n);
            let bytes = encode(&s).unwrap();
            assert_eq!(bytes.len(), HEADER_LEN + n * ITEM_LEN);
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode(&bytes).unwrap(), s);
        }
    }

    #[test]
    fn every_reason_round_trips() {
        for (code, reason) in REASONS.into_iter().enumerate() {
            assert_eq!(usize::from(reason_code(reason)), code);
        }
    }

    #[test]
    fn signal_values_keep_f32_precision() {
        let mut s = session(1);
        s.items[0].signals.completion = 0.1;
        let back = decode(&encode(&s).unwrap()).unwrap();
        let kept = back.items[0].signals.completion;
        assert!((kept - 0.1).abs() < 1e-7, "{kept}");
        assert_eq!(back.items[0].score, s.items[0].score, "scores stay f64");
    }

    #[test]
    fn times_before_the_epoch_round_trip() {
        let mut s = session(1);
        s.created_at = Utc.timestamp_micros(-1_000_001).single().unwrap();
        assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn every_truncation_is_invalid_data() {
        let bytes = encode(&session(3)).unwrap();
        for len in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..len]), Err(PortError::InvalidData(_))),
                "truncated to {len} bytes"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_invalid_data() {
        let mut bytes = encode(&session(2)).unwrap();
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(PortError::InvalidData(_))));
    }

    #[test]
    fn unknown_versions_are_invalid_data() {
        let mut bytes = encode(&session(1)).unwrap();
        for version in [0, 3, b'{', u8::MAX] {
            bytes[0] = version;
            let err = decode(&bytes).unwrap_err();
            assert!(
                matches!(&err, PortError::InvalidData(m) if m.contains("version")),
                "{err}"
            );
        }
        assert!(matches!(
            decode(b"{\"id\":1}"),
            Err(PortError::InvalidData(_))
        ));
    }

    #[test]
    fn corrupt_fields_are_invalid_data() {
        let bytes = encode(&session(1)).unwrap();
        let corrupt = |offset: usize, value: &[u8]| {
            let mut b = bytes.clone();
            b[offset..offset + value.len()].copy_from_slice(value);
            decode(&b)
        };
        let weights_at = 1 + 16 + 16 + 8 + 8;
        let count_at = weights_at + 5 * 8;
        let reason_at = HEADER_LEN + 16 + 16 + 8;
        let cases = [
            (
                "time out of range",
                corrupt(1 + 32, &i64::MAX.to_le_bytes()),
            ),
            (
                "weights not summing to 1",
                corrupt(weights_at, &0.9f64.to_le_bytes()),
            ),
            ("NaN weight", corrupt(weights_at, &f64::NAN.to_le_bytes())),
            (
                "huge item count",
                corrupt(count_at, &u32::MAX.to_le_bytes()),
            ),
            (
                "count beyond the items",
                corrupt(count_at, &2u32.to_le_bytes()),
            ),
            ("unknown reason", corrupt(reason_at, &[4])),
        ];
        for (what, result) in cases {
            assert!(
                matches!(result, Err(PortError::InvalidData(_))),
                "{what}: {result:?}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every single-byte change of a valid encoding either decodes
        // or is refused as invalid data.
        let bytes = encode(&session(2)).unwrap();
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                match decode(&b) {
                    Ok(_) | Err(PortError::InvalidData(_)) => {}
                    Err(other) => panic!("byte {i}: unexpected {other}"),
                }
            }
        }
    }
}
