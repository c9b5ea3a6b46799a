//! [`EventLedger`] on Redis: per user, a sorted set of claimed event ids scored by Unix
//! milliseconds, so one user's claims live in one cluster slot and one script claims a batch.

use crate::connection::RedisConnection;
use crate::keys;
use async_trait::async_trait;
use fred::prelude::{SortedSetsInterface, Value};
use std::time::Duration;
use uuid::Uuid;
use vrs_application::ports::{EventLedger, PortError};
use vrs_domain::UserId;

/// How long a claimed event id is remembered.
pub const LEDGER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3_600);
/// Per user, at most this many claims are kept (the oldest go first): far above what one user
/// sends in a week, so only abuse is cut short.
pub const LEDGER_CAP: usize = 100_000;

/// Drops claims past retention, claims each id with ZADD NX (1 = new, 0 = duplicate, so a repeat
/// within the batch is a duplicate too), bounds the set and refreshes its TTL, in one atomic round
/// trip. `ARGV`: now (Unix ms), retention (ms), cap, TTL (s), ids.
const CLAIM: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[1]) - tonumber(ARGV[2])))
local claimed = {}
for i = 5, #ARGV do
  claimed[#claimed + 1] = redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[i])
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[3]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return claimed
"#;

/// Claimed event ids in Redis, bounded and expiring.
#[derive(Clone, Debug)]
pub struct RedisEventLedger {
    redis: RedisConnection,
}

impl RedisEventLedger {
    /// An event ledger on a shared connection.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl EventLedger for RedisEventLedger {
    async fn claim(&self, user: UserId, ids: &[Uuid]) -> Result<Vec<bool>, PortError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = chrono::Utc::now().timestamp_millis();
        let retention = i64::try_from(LEDGER_RETENTION.as_millis()).unwrap_or(i64::MAX);
        let ttl = i64::try_from(LEDGER_RETENTION.as_secs()).unwrap_or(i64::MAX);
        let mut args = Vec::with_capacity(4 + ids.len());
        args.extend([
            Value::Integer(now),
            Value::Integer(retention),
            Value::Integer(i64::try_from(LEDGER_CAP).unwrap_or(i64::MAX)),
            Value::Integer(ttl),
        ]);
        args.extend(ids.iter().map(|id| Value::from(id.to_string())));
        let reply = self
            .redis
            .eval_reply("EVAL claim_events", CLAIM, &[keys::events(user)], args)
            .await?;
        let flags = match reply {
            Value::Array(values) => values
                .iter()
                .map(|v| match v {
                    Value::Integer(n) => Ok(*n == 1),
                    other => Err(PortError::InvalidData(format!(
                        "event claim reply: {other:?}"
                    ))),
                })
                .collect::<Result<Vec<bool>, PortError>>()?,
            other => {
                return Err(PortError::InvalidData(format!(
                    "event claim reply: {other:?}"
                )));
            }
        };
        if flags.len() != ids.len() {
            return Err(PortError::InvalidData(
                "event claim reply has the wrong length".into(),
            ));
        }
        Ok(flags)
    }

    async fn release(&self, user: UserId, ids: &[Uuid]) -> Result<(), PortError> {
        if ids.is_empty() {
            return Ok(());
        }
        let members: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        self.redis
            .traced(
                "ZREM",
                self.redis
                    .client()
                    .zrem::<i64, _, _>(keys::events(user), members),
            )
            .await
            .map(|_| ())
    }
}
