//! [`EventLedger`] on Redis: per user, a sorted set of recorded event ids scored by Unix
//! milliseconds, so one user's ids live in one cluster slot and one script reads or writes a batch.

use crate::connection::RedisConnection;
use crate::keys;
use async_trait::async_trait;
use fred::prelude::Value;
use std::time::Duration;
use uuid::Uuid;
use vrs_application::ports::{EventLedger, PortError};
use vrs_domain::UserId;

/// How long a recorded event id is remembered.
pub const LEDGER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3_600);
/// Per user, at most this many ids are kept (the oldest go first): far above what one user
/// sends in a week, so only abuse is cut short.
pub const LEDGER_CAP: usize = 100_000;

/// Whether each id is recorded within retention. `ARGV`: oldest score kept (Unix ms), ids.
const RECORDED: &str = r#"
local found = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) >= tonumber(ARGV[1]) then found[#found + 1] = 1 else found[#found + 1] = 0 end
end
return found
"#;

/// Drops ids past retention, records each id with ZADD NX (a repeat keeps its first time), bounds
/// the set and refreshes its TTL, in one atomic round trip. `ARGV`: now (Unix ms), retention (ms),
/// cap, TTL (s), ids.
const RECORD: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[1]) - tonumber(ARGV[2])))
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[i])
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[3]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// Recorded event ids in Redis, bounded and expiring.
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

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventLedger for RedisEventLedger {
    async fn recorded(&self, user: UserId, ids: &[Uuid]) -> Result<Vec<bool>, PortError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let oldest = chrono::Utc::now().timestamp_millis() - millis(LEDGER_RETENTION);
        let mut args = Vec::with_capacity(1 + ids.len());
        args.push(Value::Integer(oldest));
        args.extend(ids.iter().map(|id| Value::from(id.to_string())));
        let reply = self
            .redis
            .eval_reply(
                "EVAL recorded_events",
                RECORDED,
                &[keys::events(user)],
                args,
            )
            .await?;
        let flags = match reply {
            Value::Array(values) => values
                .iter()
                .map(|v| match v {
                    Value::Integer(n) => Ok(*n == 1),
                    other => Err(PortError::InvalidData(format!(
                        "event ledger reply: {other:?}"
                    ))),
                })
                .collect::<Result<Vec<bool>, PortError>>()?,
            other => {
                return Err(PortError::InvalidData(format!(
                    "event ledger reply: {other:?}"
                )));
            }
        };
        if flags.len() != ids.len() {
            return Err(PortError::InvalidData(
                "event ledger reply has the wrong length".into(),
            ));
        }
        Ok(flags)
    }

    async fn record(&self, user: UserId, ids: &[Uuid]) -> Result<(), PortError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ttl = i64::try_from(LEDGER_RETENTION.as_secs()).unwrap_or(i64::MAX);
        let mut args = Vec::with_capacity(4 + ids.len());
        args.extend([
            Value::Integer(chrono::Utc::now().timestamp_millis()),
            Value::Integer(millis(LEDGER_RETENTION)),
            Value::Integer(i64::try_from(LEDGER_CAP).unwrap_or(i64::MAX)),
            Value::Integer(ttl),
        ]);
        args.extend(ids.iter().map(|id| Value::from(id.to_string())));
        self.redis
            .eval_reply("EVAL record_events", RECORD, &[keys::events(user)], args)
            .await
            .map(|_| ())
    }
}
