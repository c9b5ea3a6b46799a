//! [`FeedCache`] on Redis: one binary value per session, plus a pointer to the current one.

use crate::connection::RedisConnection;
use crate::{codec, keys};
use async_trait::async_trait;
use fred::bytes::Bytes;
use fred::prelude::{KeysInterface, Value};
use std::time::Duration;
use uuid::Uuid;
use vrs_application::ports::{FeedCache, PortError};
use vrs_domain::{FeedSession, SessionId, UserId};

/// Feed sessions in Redis, each stored under its user's hash tag with the TTL it was given.
#[derive(Clone, Debug)]
pub struct RedisFeedCache {
    redis: RedisConnection,
}

impl RedisFeedCache {
    /// A feed cache on a shared connection.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }
}

/// Stores a session and points the user's current session at it, both with the same TTL, in one
/// atomic round trip. A script rather than MULTI or a pipeline: fred drops a single command whose
/// caller timed out instead of replaying it after a reconnect, but replays pipelines and
/// transactions, and a stale write could then land long after the caller was told it failed.
const STORE_SESSION: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// Rewrites a session that still exists, with a new TTL. `KEYS[1]`: the session; `ARGV`: value, TTL (ms).
/// Answers 0 when the session is gone (evicted or expired): it is not extended then.
const REFRESH_SESSION: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'XX') then return 1 end
return 0
"#;

/// The user's current session in one round trip: the pointer, then the session it names.
/// `KEYS[1]`: the pointer; `ARGV[1]`: the prefix of the user's session keys (same hash tag, so the
/// same slot: Redis and Redis Cluster run it, though the session key is not declared). Answers nil without a pointer, else `{id, session}` (the session nil when gone).
const CURRENT_SESSION: &str = r#"
local id = redis.call('GET', KEYS[1])
if not id then return false end
return {id, redis.call('GET', ARGV[1] .. id)}
"#;

/// Redis refuses a zero expiry; a session stored for less than a millisecond is gone at once anyway.
fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The session stored under `user` and `id`, decoded; one stored under another's key is refused.
fn decoded(user: UserId, id: SessionId, bytes: &[u8]) -> Result<FeedSession, PortError> {
    let session = codec::decode(bytes)?;
    if session.user_id != user || session.id != id {
        return Err(PortError::InvalidData(
            "stored session does not match its key".into(),
        ));
    }
    Ok(session)
}

fn invalid_reply() -> PortError {
    PortError::InvalidData("unexpected reply to current_session".into())
}

#[async_trait]
impl FeedCache for RedisFeedCache {
    async fn current_session(&self, user: UserId) -> Result<Option<FeedSession>, PortError> {
        let reply = self
            .redis
            .eval_reply(
                "EVAL current_session",
                CURRENT_SESSION,
                &[keys::current(user)],
                vec![Value::from(keys::session_prefix(user))],
            )
            .await?;
        // Lua's false is nil in RESP2 and a boolean in RESP3.
        let (id, session) = match reply {
            Value::Null | Value::Boolean(false) => return Ok(None),
            Value::Array(mut pair) if pair.len() == 2 => {
                let session = pair.pop().unwrap_or(Value::Null);
                let id = pair.pop().and_then(|v| v.into_string());
                (id.ok_or_else(invalid_reply)?, session)
            }
            _ => return Err(invalid_reply()),
        };
        let id = Uuid::parse_str(&id)
            .map_err(|e| PortError::InvalidData(format!("current session id: {e}")))?;
        match session {
            // The pointer and its session share a TTL; a session gone anyway reads as none.
            Value::Null | Value::Boolean(false) => Ok(None),
            value => {
                let bytes = value.into_bytes().ok_or_else(invalid_reply)?;
                decoded(user, SessionId(id), &bytes).map(Some)
            }
        }
    }

    async fn session(&self, user: UserId, id: SessionId) -> Result<Option<FeedSession>, PortError> {
        let bytes: Option<Bytes> = self
            .redis
            .traced("GET", self.redis.client().get(keys::session(user, id)))
            .await?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        decoded(user, id, &bytes).map(Some)
    }

    async fn store_session(&self, session: &FeedSession, ttl: Duration) -> Result<(), PortError> {
        let written = vec![
            keys::session(session.user_id, session.id),
            keys::current(session.user_id),
        ];
        let args = vec![
            Value::Bytes(Bytes::from(codec::encode(session)?)),
            Value::from(session.id.to_string()),
            Value::Integer(ttl_millis(ttl)),
        ];
        self.redis
            .eval("EVAL store_session", STORE_SESSION, &written, args)
            .await
    }

    async fn refresh_session(&self, session: &FeedSession, ttl: Duration) -> Result<(), PortError> {
        let args = vec![
            Value::Bytes(Bytes::from(codec::encode(session)?)),
            Value::Integer(ttl_millis(ttl)),
        ];
        let reply = self
            .redis
            .eval_reply(
                "EVAL refresh_session",
                REFRESH_SESSION,
                &[keys::session(session.user_id, session.id)],
                args,
            )
            .await?;
        match reply {
            Value::Integer(1) => Ok(()),
            // A cursor must not promise a session that is no longer there.
            _ => Err(PortError::InvalidData(
                "the session to extend is gone".into(),
            )),
        }
    }

    async fn invalidate(&self, user: UserId) -> Result<(), PortError> {
        self.redis
            .traced("DEL", self.redis.client().del::<(), _>(keys::current(user)))
            .await
    }

    /// SCANs for the current-session pointers and deletes them one by one (each key is in its
    /// user's slot, so a multi-key DEL would be refused by a cluster).
    async fn invalidate_all(&self) -> Result<u64, PortError> {
        use futures::{StreamExt, TryStreamExt};
        let pointers = self.redis.scan_keys(&keys::current_pattern()).await?;
        futures::stream::iter(pointers)
            .map(|key| async move {
                self.redis
                    .traced("DEL", self.redis.client().del::<u64, _>(key))
                    .await
            })
            .buffer_unordered(32)
            .try_fold(0u64, |total, n| async move { Ok(total + n) })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_positive_milliseconds() {
        assert_eq!(ttl_millis(Duration::from_secs(600)), 600_000);
        assert_eq!(ttl_millis(Duration::from_micros(1_999)), 1);
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::MAX), i64::MAX);
    }
}
