//! Identifier newtypes, so a user id can never be passed where a video id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A signed-in user (the JWT `sub`).
    UserId
);
id_type!(
    /// A video in the catalog.
    VideoId
);
id_type!(
    /// The creator who published a video.
    CreatorId
);
id_type!(
    /// One ranked feed session: the list that a first page and its follow-up pages are cut from.
    SessionId
);

/// A map keyed by ids. Ids are random UUIDs, so the hash need not be a slow, keyed one
/// (SipHash was a tenth of a cache miss's ranking CPU, see docs/performance.md); foldhash is
/// still seeded per process.
pub type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

impl SessionId {
    /// When the session was ranked, for ids that carry it (UUIDv7, to the millisecond, rounded
    /// down); `None` for other ids.
    pub fn created_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        if self.0.get_version_num() != 7 {
            return None;
        }
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_version_7_session_ids_carry_their_creation_time() {
        // 2025-06-01T12:00:00.123Z in the first 48 bits.
        let v7 = Uuid::from_u128((0x0197_2B5C_EE7B_u128 << 80) | (0x7 << 76) | (0b10 << 62) | 42);
        let at = SessionId(v7).created_at().expect("a v7 id has a time");
        assert_eq!(at.timestamp_millis(), 0x0197_2B5C_EE7B);
        assert_eq!(SessionId(Uuid::new_v4()).created_at(), None);
        assert_eq!(SessionId(Uuid::nil()).created_at(), None);
    }
}
