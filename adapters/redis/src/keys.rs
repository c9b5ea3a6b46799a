//! Key names. Every key of a user shares the hash tag `{<user id>}`, so a user's keys live in one
//! Redis Cluster slot and the multi-key round trips below never span slots. No I/O.

use vrs_domain::{EventType, SessionId, UserId, VideoId};

/// The prefix of every key of `user`: `feed:u:{<user id>}`.
pub(crate) fn user_prefix(user: UserId) -> String {
    format!("feed:u:{{{user}}}")
}

/// One stored session: `feed:u:{<user id>}:s:<session id>`.
pub(crate) fn session(user: UserId, id: SessionId) -> String {
    format!("{}{id}", session_prefix(user))
}

/// What every session key of `user` starts with: `feed:u:{<user id>}:s:`.
pub(crate) fn session_prefix(user: UserId) -> String {
    format!("{}:s:", user_prefix(user))
}

/// The id of the user's current session: `feed:u:{<user id>}:cur`.
pub(crate) fn current(user: UserId) -> String {
    format!("{}:cur", user_prefix(user))
}

/// Matches every user's current-session pointer (for SCAN).
pub(crate) fn current_pattern() -> String {
    "feed:u:*:cur".to_owned()
}

/// Videos served to the user, scored by Unix milliseconds: `feed:u:{<user id>}:served`.
pub(crate) fn served(user: UserId) -> String {
    format!("{}:served", user_prefix(user))
}

/// Videos the user watched, scored by Unix milliseconds: `feed:u:{<user id>}:watched`.
pub(crate) fn watched(user: UserId) -> String {
    format!("{}:watched", user_prefix(user))
}

/// Videos the user marked "not interested", scored by Unix milliseconds:
/// `feed:u:{<user id>}:hidden_videos`.
pub(crate) fn hidden_videos(user: UserId) -> String {
    format!("{}:hidden_videos", user_prefix(user))
}

/// Creators the user hid, scored by Unix milliseconds: `feed:u:{<user id>}:hidden_creators`.
pub(crate) fn hidden_creators(user: UserId) -> String {
    format!("{}:hidden_creators", user_prefix(user))
}

/// Event ids of the user's accepted events, scored by Unix milliseconds: `feed:u:{<user id>}:events`.
pub(crate) fn events(user: UserId) -> String {
    format!("{}:events", user_prefix(user))
}

/// The claim of the user's reaction of one type on one video:
/// `feed:u:{<user id>}:r:<video id>:<type>`.
pub(crate) fn reaction(user: UserId, video: VideoId, event_type: EventType) -> String {
    format!("{}:r:{video}:{}", user_prefix(user), event_type.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn keys_carry_the_user_hash_tag() {
        let user = UserId(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef));
        let id = SessionId(Uuid::from_u128(1));
        let tag = "feed:u:{01234567-89ab-cdef-0123-456789abcdef}";
        assert_eq!(
            session(user, id),
            format!("{tag}:s:00000000-0000-0000-0000-000000000001")
        );
        assert_eq!(current(user), format!("{tag}:cur"));
        assert_eq!(served(user), format!("{tag}:served"));
        assert_eq!(watched(user), format!("{tag}:watched"));
    }
}
