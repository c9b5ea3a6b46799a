//! Opaque, URL-safe, HMAC-signed page cursors.
//!
//! A cursor binds the user, the feed session, the position in it and an expiry, so a client can
//! neither forge a position nor use another user's cursor. Layout before base64url:
//! `version (1) | user (16) | session (16) | offset (4, BE) | expires unix s (8, BE) | tag (16)`,
//! where the tag is HMAC-SHA256 over everything before it, truncated to 128 bits.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use vrs_application::FeedPosition;
use vrs_domain::{SessionId, UserId};

const VERSION: u8 = 1;
const PAYLOAD: usize = 1 + 16 + 16 + 4 + 8;
const TAG: usize = 16;

/// Why a cursor was refused; all of them are a 400 `invalid_cursor` for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is malformed")]
    Malformed,
    #[error("the cursor signature does not match")]
    Tampered,
    #[error("the cursor belongs to another user")]
    WrongUser,
    #[error("the cursor has expired; request the first page again")]
    Expired,
}

/// Signs and verifies cursors with a server-side key.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(..)")
    }
}

impl CursorCodec {
    /// A codec with a secret key (at least 32 bytes is advised).
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    pub fn encode(
        &self,
        user: UserId,
        position: FeedPosition,
        expires_at: DateTime<Utc>,
    ) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD + TAG);
        bytes.push(VERSION);
        bytes.extend_from_slice(user.0.as_bytes());
        bytes.extend_from_slice(position.session_id.0.as_bytes());
        bytes.extend_from_slice(
            &u32::try_from(position.offset)
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        bytes.extend_from_slice(&expires_at.timestamp().to_be_bytes());
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes()[..TAG]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(
        &self,
        cursor: &str,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<FeedPosition, CursorError> {
        if cursor.len() > 128 {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| CursorError::Malformed)?;
        if bytes.len() != PAYLOAD + TAG || bytes[0] != VERSION {
            return Err(CursorError::Malformed);
        }
        let (payload, tag) = bytes.split_at(PAYLOAD);
        let mut mac = self.mac();
        mac.update(payload);
        mac.verify_truncated_left(tag)
            .map_err(|_| CursorError::Tampered)?;
        let uuid_at = |at: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&payload[at..at + 16]);
            Uuid::from_bytes(b)
        };
        if uuid_at(1) != user.0 {
            return Err(CursorError::WrongUser);
        }
        let mut offset = [0u8; 4];
        offset.copy_from_slice(&payload[33..37]);
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&payload[37..45]);
        if i64::from_be_bytes(expires) <= now.timestamp() {
            return Err(CursorError::Expired);
        }
        Ok(FeedPosition {
            session_id: SessionId(uuid_at(17)),
            offset: u32::from_be_bytes(offset) as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn fixture() -> (CursorCodec, UserId, FeedPosition, DateTime<Utc>) {
        (
            CursorCodec::new(b"0123456789abcdef0123456789abcdef".to_vec()),
            UserId(Uuid::new_v4()),
            FeedPosition {
                session_id: SessionId(Uuid::new_v4()),
                offset: 40,
            },
            Utc::now(),
        )
    }

    #[test]
    fn round_trips_and_is_url_safe() {
        let (codec, user, pos, now) = fixture();
        let cursor = codec.encode(user, pos, now + Duration::hours(1));
        assert!(
            cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(codec.decode(&cursor, user, now), Ok(pos));
    }

    #[test]
    fn refuses_other_users_tampering_expiry_and_garbage() {
        let (codec, user, pos, now) = fixture();
        let cursor = codec.encode(user, pos, now + Duration::hours(1));
        assert_eq!(
            codec.decode(&cursor, UserId(Uuid::new_v4()), now),
            Err(CursorError::WrongUser)
        );
        assert_eq!(
            codec.decode(&cursor, user, now + Duration::hours(2)),
            Err(CursorError::Expired)
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap_or_default();
        bytes[36] ^= 1; // offset
        assert_eq!(
            codec.decode(&URL_SAFE_NO_PAD.encode(&bytes), user, now),
            Err(CursorError::Tampered)
        );
        let other_key = CursorCodec::new(b"another key".to_vec());
        assert_eq!(
            other_key.decode(&cursor, user, now),
            Err(CursorError::Tampered)
        );
        assert_eq!(
            codec.decode("not a cursor!", user, now),
            Err(CursorError::Malformed)
        );
        assert_eq!(codec.decode("", user, now), Err(CursorError::Malformed));
    }
}
