//! [`EventLedger`] on Redis: per user, a sorted set of recorded event ids scored by Unix
//! milliseconds, so one user's ids live in one cluster slot and one script reads or writes a batch.

use crate::connection::RedisConnection;
use crate::keys;
use async_trait::async_trait;
use fred::prelude::Value;
use std::time::Duration;
use uuid::Uuid;
use vrs_application::ports::{EventLedger, PortError};
use vrs_domain::{EventType, LIKE_WINDOW_SECONDS, REACTION_WINDOW_SECONDS, Reaction, UserId};

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

/// Claims reactions by the rules of [`Reaction`]. `KEYS[2i-1]`: the claim of reaction `i`,
/// `KEYS[2i]`: the like claim of its video. `ARGV[1]`: the like window (ms), `ARGV[2]`: the other
/// types' (ms); then each reaction's event id; then each one's kind: `l` like, `u` unlike, `o`
/// other. A claim holds its event id; an unlike's holds `<id>|<id of the like it cancelled>`.
const CLAIM_REACTIONS: &str = r#"
local n = #KEYS / 2
local out = {}
for i = 1, n do
  local own, like, id, kind = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 + i], ARGV[2 + n + i]
  local held = redis.call('GET', own)
  if held and (held == id or string.sub(held, 1, #id + 1) == id .. '|') then
    out[i] = 1
  elseif kind == 'u' then
    local liked = redis.call('GET', like)
    if liked then
      redis.call('DEL', like)
      redis.call('SET', own, id .. '|' .. liked, 'PX', ARGV[2])
      out[i] = 1
    else
      out[i] = 0
    end
  elseif held then
    out[i] = 0
  else
    redis.call('SET', own, id, 'PX', kind == 'l' and ARGV[1] or ARGV[2])
    out[i] = 1
  end
end
return out
"#;

/// Frees each claim `KEYS[2i-1]` that event `ARGV[1 + i]` still holds; an unlike's puts back the
/// like it cancelled at `KEYS[2i]` (unless a newer like holds it). `ARGV[1]`: the like window (ms).
const RELEASE_REACTIONS: &str = r#"
for i = 1, #KEYS / 2 do
  local own, like, id = KEYS[2 * i - 1], KEYS[2 * i], ARGV[1 + i]
  local held = redis.call('GET', own)
  if held == id then
    redis.call('DEL', own)
  elseif held and string.sub(held, 1, #id + 1) == id .. '|' then
    redis.call('DEL', own)
    local liked = string.sub(held, #id + 2)
    if liked ~= '' then
      redis.call('SET', like, liked, 'PX', ARGV[1], 'NX')
    end
  end
end
return 1
"#;

/// A script's reply of one 0/1 flag per input, in order.
fn flags(reply: Value, what: &str, expected: usize) -> Result<Vec<bool>, PortError> {
    let invalid = |detail: String| PortError::InvalidData(format!("{what} reply: {detail}"));
    let Value::Array(values) = reply else {
        return Err(invalid(format!("{reply:?}")));
    };
    if values.len() != expected {
        return Err(invalid("wrong length".into()));
    }
    values
        .iter()
        .map(|v| match v {
            Value::Integer(n) => Ok(*n == 1),
            other => Err(invalid(format!("{other:?}"))),
        })
        .collect()
}

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
        flags(reply, "event ledger", ids.len())
    }

    async fn claim_reactions(
        &self,
        user: UserId,
        reactions: &[Reaction],
    ) -> Result<Vec<bool>, PortError> {
        if reactions.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = reactions
            .iter()
            .flat_map(|r| {
                [
                    keys::reaction(user, r.video_id, r.event_type),
                    keys::reaction(user, r.video_id, EventType::Like),
                ]
            })
            .collect();
        let mut args = Vec::with_capacity(2 + 2 * reactions.len());
        args.push(Value::Integer(LIKE_WINDOW_SECONDS * 1_000));
        args.push(Value::Integer(REACTION_WINDOW_SECONDS * 1_000));
        args.extend(
            reactions
                .iter()
                .map(|r| Value::from(r.event_id.to_string())),
        );
        args.extend(reactions.iter().map(|r| {
            Value::from(match r.event_type {
                EventType::Like => "l",
                EventType::Unlike => "u",
                _ => "o",
            })
        }));
        let reply = self
            .redis
            .eval_reply("EVAL claim_reactions", CLAIM_REACTIONS, &keys, args)
            .await?;
        flags(reply, "reaction claim", reactions.len())
    }

    async fn release_reactions(
        &self,
        user: UserId,
        reactions: &[Reaction],
    ) -> Result<(), PortError> {
        if reactions.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = reactions
            .iter()
            .flat_map(|r| {
                [
                    keys::reaction(user, r.video_id, r.event_type),
                    keys::reaction(user, r.video_id, EventType::Like),
                ]
            })
            .collect();
        let mut args = Vec::with_capacity(1 + reactions.len());
        args.push(Value::Integer(LIKE_WINDOW_SECONDS * 1_000));
        args.extend(
            reactions
                .iter()
                .map(|r| Value::from(r.event_id.to_string())),
        );
        self.redis
            .eval_reply("EVAL release_reactions", RELEASE_REACTIONS, &keys, args)
            .await
            .map(|_| ())
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
