//! The client shared by every Redis adapter: background connection, reconnection with backoff,
//! fail-fast commands, error counting and the mapping of failures onto `PortError`.

use crate::config::{RedisConfig, redacted};
use fred::clients::WithOptions;
use fred::prelude::{
    Builder, Client, ClientLike, Config, ErrorKind, EventInterface, Options, ReconnectPolicy, Value,
};
use fred::types::config::{ServerConfig, UnresponsiveConfig};
use fred::types::{ClusterHash, CustomCommand};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::AbortHandle;
use tracing::Instrument;
use tracing::field::Empty;
use vrs_application::ports::PortError;

/// Counter of connection errors and failed commands, labelled `error_type`.
pub const CONNECTION_ERRORS_METRIC: &str = "redis_connection_errors_total";

/// Reconnection backoff: 100 ms doubling up to 1 s, forever. A restarted Redis is picked up within
/// about a second, and a Redis that stays down costs one connection attempt per second.
const RECONNECT_MIN_DELAY_MS: u32 = 100;
const RECONNECT_MAX_DELAY_MS: u32 = 1_000;

/// A connection that answers nothing for this long (a hung server, a silent network partition) is
/// closed and reopened; without it, such a connection would look healthy forever.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(2);

/// After a command times out, the next commands fail at once for this long instead of each
/// waiting for its own timeout: a request whose steps read Redis one after another (a first
/// page: the current session, then its items' check) pays one timeout while Redis hangs, not
/// one per step, and falls back to the replica's tiers at once. Until fred notices the hang
/// ([`UNRESPONSIVE_AFTER`]) and fails fast by itself, one command per window tries again.
const BREAK_AFTER_TIMEOUT: Duration = Duration::from_millis(250);

/// Why the Redis client could not be set up. Redis being unreachable is not one of them: the
/// client keeps connecting in the background.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The configuration cannot work (e.g. an unparsable URL).
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    /// The client spawns its connection task, so it must be started inside a Tokio runtime.
    #[error("the Redis client must be started inside a Tokio runtime")]
    NoRuntime,
}

/// One Redis client, shared by the feed cache, the view history and the health probe. Cheap to
/// clone; the background tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct RedisConnection {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    /// What every command's client span says about the server.
    peer: Peer,
    /// Applied to every command: the command timeout, and failing at once while disconnected.
    options: Options,
    tasks: Vec<AbortHandle>,
    /// Commands fail at once until this many milliseconds after `epoch` (see
    /// [`BREAK_AFTER_TIMEOUT`]).
    broken_until_ms: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
}

/// The server of a centralized deployment (`None` for cluster or sentinel URLs, which name
/// several), and the database index.
struct Peer {
    address: Option<String>,
    port: Option<u16>,
    database: String,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("state", &self.shared.client.state())
            .finish()
    }
}

impl RedisConnection {
    /// Starts connecting in the background and returns at once, whether or not Redis is up.
    ///
    /// Until the first connection succeeds (and while reconnecting later) every call fails at once
    /// with `PortError::Unavailable`. Fails only on an unusable configuration or outside a Tokio
    /// runtime.
    pub fn start(config: &RedisConfig) -> Result<Self, RedisError> {
        tokio::runtime::Handle::try_current().map_err(|_| RedisError::NoRuntime)?;
        // Every series exists from the start, so the first error shows in rate() at once.
        for error_type in ["connection", "timeout", "unavailable", "invalid_data"] {
            metrics::counter!(CONNECTION_ERRORS_METRIC, "error_type" => error_type).increment(0);
        }
        // Built without fred's TLS features, fred would only log a warning for a TLS URL and
        // then send the password in plain text.
        let scheme = config.url.split("://").next().unwrap_or_default();
        if scheme.starts_with("rediss") || scheme.starts_with("valkeys") {
            return Err(RedisError::Config(format!(
                "REDIS_URL {}: TLS is not supported by this build",
                redacted(&config.url)
            )));
        }
        let mut fred_config = Config::from_url(&config.url)
            .map_err(|e| RedisError::Config(format!("REDIS_URL {}: {e}", redacted(&config.url))))?;
        // Without this the first connection attempt is not retried: a service started while
        // Redis is down would never use it.
        fred_config.fail_fast = false;
        let (address, port) = match &fred_config.server {
            ServerConfig::Centralized { server } => {
                (Some(server.host.to_string()), Some(server.port))
            }
            _ => (None, None),
        };
        let peer = Peer {
            address,
            port,
            database: fred_config.database.unwrap_or(0).to_string(),
        };

        let mut builder = Builder::from_config(fred_config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = config.connect_timeout;
                c.internal_command_timeout = config.connect_timeout;
                c.tcp.nodelay = Some(true);
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(UNRESPONSIVE_AFTER),
                    interval: UNRESPONSIVE_AFTER / 4,
                };
            })
            .with_performance_config(|p| p.default_command_timeout = config.command_timeout)
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_DELAY_MS,
                RECONNECT_MAX_DELAY_MS,
                2,
            ));
        let client = builder
            .build()
            .map_err(|e| RedisError::Config(e.to_string()))?;

        // Listen before connecting, so that the first failed attempt is counted too.
        let errors = tokio::spawn(count_connection_errors(client.clone()));
        let reconnects = tokio::spawn(log_reconnections(client.clone()));
        let router = client.connect();
        let router_abort = router.abort_handle();
        let watcher = tokio::spawn(async move {
            match router.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "Redis client stopped"),
                Err(e) if e.is_cancelled() => {}
                Err(e) => tracing::error!(error = %e, "Redis connection task failed"),
            }
        });

        Ok(Self {
            shared: Arc::new(Shared {
                client,
                peer,
                options: Options {
                    timeout: Some(config.command_timeout),
                    // Commands issued while disconnected would otherwise wait in the client's
                    // queue until it reconnects, and run late, long after their caller gave up.
                    fail_fast: true,
                    ..Options::default()
                },
                tasks: vec![
                    router_abort,
                    watcher.abort_handle(),
                    errors.abort_handle(),
                    reconnects.abort_handle(),
                ],
                broken_until_ms: std::sync::atomic::AtomicU64::new(0),
                epoch: std::time::Instant::now(),
            }),
        })
    }

    /// Whether the client is connected right now.
    pub fn is_connected(&self) -> bool {
        self.shared.client.is_connected()
    }

    /// Waits up to `timeout` for the client to be connected; `true` when it is. Nothing requires
    /// it: startup may use it so as not to begin in degraded mode while Redis is a moment away.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// The client with the adapter's per-command options applied.
    pub(crate) fn client(&self) -> WithOptions<Client> {
        self.shared.client.with_options(&self.shared.options)
    }

    /// Runs a Lua script on keys of one user (one hash slot) with the per-command options; the
    /// script's reply is ignored.
    // fred 10.1 implements `LuaInterface` for `Client` but not for `WithOptions`, so
    // `client().eval(..)` would deref to the bare client and silently drop the timeout and
    // fail-fast options. A custom EVAL command keeps them.
    pub(crate) async fn eval(
        &self,
        operation: &'static str,
        script: &'static str,
        keys: &[String],
        args: Vec<Value>,
    ) -> Result<(), PortError> {
        self.eval_reply(operation, script, keys, args)
            .await
            .map(|_| ())
    }

    /// Like [`Self::eval`], returning the script's reply.
    ///
    /// Sent as EVALSHA (the script's SHA1, so Redis neither receives nor hashes its text again),
    /// and as EVAL only when the server does not know the script yet (after its start or a
    /// SCRIPT FLUSH): EVAL loads it for the next calls.
    pub(crate) async fn eval_reply(
        &self,
        operation: &'static str,
        script: &'static str,
        keys: &[String],
        args: Vec<Value>,
    ) -> Result<Value, PortError> {
        let slot = keys
            .first()
            .map(|key| fred::util::redis_keyslot(key.as_bytes()));
        let mut all = Vec::with_capacity(2 + keys.len() + args.len());
        all.push(Value::from(script_sha(script)));
        all.push(Value::Integer(
            i64::try_from(keys.len()).unwrap_or(i64::MAX),
        ));
        all.extend(keys.iter().map(|key| Value::from(key.as_str())));
        all.extend(args);
        let run = async {
            let evalsha = CustomCommand::new_static("EVALSHA", ClusterHash::from(slot), false);
            match self
                .client()
                .custom::<Value, Value>(evalsha, all.clone())
                .await
            {
                Err(e) if e.details().starts_with("NOSCRIPT") => {
                    all[0] = Value::from(script);
                    let eval = CustomCommand::new_static("EVAL", ClusterHash::from(slot), false);
                    self.client().custom::<Value, Value>(eval, all).await
                }
                other => other,
            }
        };
        self.traced(operation, run).await
    }

    /// Runs one command inside its client span (OpenTelemetry database conventions) and maps its
    /// failure onto `PortError`. `operation` is the command, e.g. `GET` or `EVAL record_events`.
    pub(crate) async fn traced<T>(
        &self,
        operation: &'static str,
        command: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, PortError> {
        use std::sync::atomic::Ordering::Relaxed;
        let shared = &self.shared;
        let now_ms = || u64::try_from(shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now_ms() < shared.broken_until_ms.load(Relaxed) {
            // Not sent: the future is dropped unpolled.
            count_error("unavailable");
            return Err(PortError::Unavailable(format!(
                "Redis {operation}: not sent, a command timed out less than {} ms ago",
                BREAK_AFTER_TIMEOUT.as_millis()
            )));
        }
        let peer = &shared.peer;
        let span = tracing::info_span!(
            "redis",
            otel.name = operation,
            otel.kind = "client",
            otel.status_code = Empty,
            db.system = "redis",
            db.operation.name = operation.split(' ').next().unwrap_or(operation),
            db.namespace = peer.database.as_str(),
            server.address = peer.address.as_deref(),
            server.port = peer.port,
        );
        command.instrument(span.clone()).await.map_err(|e| {
            span.record("otel.status_code", "ERROR");
            let mapped = command_error(operation, e);
            if matches!(mapped, PortError::Timeout(_)) {
                let until = now_ms().saturating_add(
                    u64::try_from(BREAK_AFTER_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
                );
                shared.broken_until_ms.fetch_max(until, Relaxed);
            }
            mapped
        })
    }

    /// Every key matching `pattern`, from every primary of a cluster. SCAN visits the keyspace in
    /// pages without blocking the server; keys written meanwhile may or may not be seen.
    pub(crate) async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, PortError> {
        use futures::TryStreamExt;
        const PAGE: u32 = 1_000;
        let client = &self.shared.client;
        let scan = async {
            if client.is_clustered() {
                client
                    .scan_cluster_buffered(pattern.to_owned(), Some(PAGE), None)
                    .try_collect()
                    .await
            } else {
                client
                    .scan_buffered(pattern.to_owned(), Some(PAGE), None)
                    .try_collect()
                    .await
            }
        };
        let keys: Vec<fred::types::Key> = self.traced("SCAN", scan).await?;
        Ok(keys.into_iter().filter_map(|k| k.into_string()).collect())
    }

    /// The client with its fail-fast behaviour but another timeout.
    pub(crate) fn client_with_timeout(&self, timeout: Duration) -> WithOptions<Client> {
        let options = Options {
            timeout: Some(timeout),
            ..self.shared.options.clone()
        };
        self.shared.client.with_options(&options)
    }
}

/// The SHA1 (hex) of a script, computed once per script.
fn script_sha(script: &'static str) -> String {
    use std::collections::HashMap;
    use std::sync::{LazyLock, RwLock};
    // Keyed by where the text is and its length: every script is a `static` string.
    static SHAS: LazyLock<RwLock<HashMap<(usize, usize), String>>> =
        LazyLock::new(Default::default);
    let key = (script.as_ptr() as usize, script.len());
    if let Some(sha) = SHAS.read().ok().and_then(|m| m.get(&key).cloned()) {
        return sha;
    }
    let sha = sha1_smol::Sha1::from(script).digest().to_string();
    if let Ok(mut m) = SHAS.write() {
        m.insert(key, sha.clone());
    }
    sha
}

async fn count_connection_errors(client: Client) {
    let mut errors = client.error_rx();
    loop {
        match errors.recv().await {
            Ok((error, server)) => {
                count_error("connection");
                let server = server.map(|s| s.to_string()).unwrap_or_default();
                tracing::warn!(error = %error, server, "Redis connection error");
            }
            // The broadcast buffer overflowed: the skipped events were errors too.
            Err(RecvError::Lagged(skipped)) => {
                metrics::counter!(CONNECTION_ERRORS_METRIC, "error_type" => "connection")
                    .increment(skipped);
            }
            Err(RecvError::Closed) => break,
        }
    }
}

async fn log_reconnections(client: Client) {
    let mut reconnects = client.reconnect_rx();
    loop {
        match reconnects.recv().await {
            Ok(server) => tracing::info!(server = %server, "connected to Redis"),
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => break,
        }
    }
}

fn count_error(error_type: &'static str) {
    metrics::counter!(CONNECTION_ERRORS_METRIC, "error_type" => error_type).increment(1);
}

/// Counts a failed command and maps it onto the port's error kinds: timeouts are `Timeout`,
/// unparsable replies `InvalidData`, everything else (I/O, disconnected, refused) `Unavailable`.
pub(crate) fn command_error(operation: &'static str, error: fred::error::Error) -> PortError {
    let text = format!("Redis {operation}: {error}");
    let (error_type, mapped) = match error.kind() {
        ErrorKind::Timeout => ("timeout", PortError::Timeout(text)),
        ErrorKind::Parse | ErrorKind::Protocol => ("invalid_data", PortError::InvalidData(text)),
        _ => ("unavailable", PortError::Unavailable(text)),
    };
    count_error(error_type);
    mapped
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::Error;

    #[test]
    fn errors_map_onto_port_errors() {
        let map = |kind| command_error("GET", Error::new(kind, "x"));
        assert!(matches!(map(ErrorKind::Timeout), PortError::Timeout(_)));
        assert!(matches!(map(ErrorKind::Parse), PortError::InvalidData(_)));
        assert!(matches!(
            map(ErrorKind::Protocol),
            PortError::InvalidData(_)
        ));
        for kind in [
            ErrorKind::IO,
            ErrorKind::Canceled,
            ErrorKind::Routing,
            ErrorKind::Unknown,
            ErrorKind::Backpressure,
            ErrorKind::Auth,
        ] {
            assert!(matches!(map(kind), PortError::Unavailable(_)));
        }
    }

    #[test]
    fn a_script_is_named_by_the_sha1_of_its_text() {
        // `echo -n "return 1" | sha1sum`
        assert_eq!(
            script_sha("return 1"),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        assert_eq!(script_sha("return 1"), script_sha("return 1"));
    }

    #[test]
    fn starting_needs_a_runtime() {
        let started = RedisConnection::start(&RedisConfig::new("redis://127.0.0.1:1"));
        assert!(matches!(started, Err(RedisError::NoRuntime)));
    }

    #[tokio::test]
    async fn tls_urls_are_refused_rather_than_used_in_plain_text() {
        for url in [
            "rediss://:pw@cache:6380",
            "rediss-cluster://cache",
            "valkeys://cache",
        ] {
            let started = RedisConnection::start(&RedisConfig::new(url));
            assert!(
                matches!(&started, Err(RedisError::Config(m)) if m.contains("TLS")),
                "{url}: {started:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_unparsable_url_is_a_config_error_that_hides_the_password() {
        let started = RedisConnection::start(&RedisConfig::new("redis://:s3cret@cache:notaport"));
        match started {
            Err(RedisError::Config(message)) => assert!(!message.contains("s3cret"), "{message}"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
}
