//! A few native-protocol connections, each running one query at a time, with per-call timeouts,
//! reconnection, metrics, and the mapping of failures onto `PortError`.
//!
//! A klickhouse connection does not survive a syntax error (the next query fails with "Unexpected
//! packet"), and one abandoned by a timeout may still be mid-query; so after any failure the
//! connection is dropped and the next call on that slot opens a fresh one.

use crate::ClickHouseError;
use crate::config::{ClickHouseConfig, Endpoint};
use klickhouse::{Client, ClientOptions, KlickhouseError};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};
use tracing::Instrument;
use tracing::field::Empty;
use vrs_application::ports::PortError;

/// Failed calls, by `query` and `error_type` (timeout, connection, server, decode).
pub const QUERY_ERRORS_METRIC: &str = "clickhouse_query_errors_total";
/// The `query` label values.
pub const QUERY_NAMES: [&str; 11] = [
    "video_stats",
    "trending",
    "affinity",
    "most_active_users",
    "known_event_ids",
    "running_inserts",
    "running_insert_ids",
    "queries_still_running",
    "insert_events",
    "health",
    "init_schema",
];
/// Server error codes that mean the data itself can never be stored (the same insert fails again
/// however often it is retried): CANNOT_PARSE_TEXT (6), CANNOT_PARSE_INPUT_ASSERTION_FAILED (27),
/// CANNOT_PARSE_DATE (38), CANNOT_PARSE_DATETIME (41), TYPE_MISMATCH (53), ARGUMENT_OUT_OF_BOUND
/// (69), CANNOT_CONVERT_TYPE (70), CANNOT_PARSE_NUMBER (72), INCORRECT_DATA (117),
/// VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE (321), CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN (349). Every
/// other server error (a missing or detached table, too many parts, memory, a read-only replica)
/// may pass and is retried.
const REJECTED_DATA_CODES: [i32; 11] = [6, 27, 38, 41, 53, 69, 70, 72, 117, 321, 349];

/// Duration of calls (successful or not), by `query`.
pub const QUERY_DURATION_METRIC: &str = "clickhouse_query_duration_seconds";

/// Connections to one ClickHouse server.
pub(crate) struct Pool {
    endpoint: Endpoint,
    /// The database, for the calls' client spans.
    database: String,
    timeout: Duration,
    slots: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

/// Why a call failed, before it becomes a `PortError`.
enum Failure {
    Timeout,
    Klickhouse(KlickhouseError),
}

impl Pool {
    /// Validates the configuration; connections are opened on first use, so a server that is down
    /// at start-up delays nothing (calls fail and the health probe reports it).
    pub fn new(config: &ClickHouseConfig) -> Result<Self, ClickHouseError> {
        // Every series exists from the start, so the first error shows in rate() at once.
        for query in QUERY_NAMES {
            for error_type in ["timeout", "connection", "server", "rejected", "decode"] {
                metrics::counter!(QUERY_ERRORS_METRIC, "query" => query, "error_type" => error_type)
                    .increment(0);
            }
        }
        Ok(Self {
            endpoint: config.endpoint()?,
            database: config.database.clone(),
            timeout: config.query_timeout,
            slots: (0..config.pool_size.max(1))
                .map(|_| Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `call` on a pooled connection within the timeout, recording metrics under `query`
    /// (a fixed name: label values stay bounded) and a client span named after it.
    pub async fn run<T, F, Fut>(&self, query: &'static str, call: F) -> Result<T, PortError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, KlickhouseError>>,
    {
        let (address, port) = match self.endpoint.address.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().ok()),
            None => (self.endpoint.address.as_str(), None),
        };
        let span = tracing::info_span!(
            "clickhouse",
            otel.name = query,
            otel.kind = "client",
            otel.status_code = Empty,
            db.system = "clickhouse",
            db.operation.name = query,
            db.namespace = self.database.as_str(),
            server.address = address,
            server.port = port,
        );
        let result = self.run_on_slot(query, call).instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    async fn run_on_slot<T, F, Fut>(&self, query: &'static str, call: F) -> Result<T, PortError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, KlickhouseError>>,
    {
        let started = Instant::now();
        let mut slot = self.acquire().await;
        let outcome = tokio::time::timeout(self.timeout, async {
            let client = match slot.as_ref().filter(|c| !c.is_closed()) {
                Some(client) => client.clone(),
                None => {
                    let client = self.connect().await?;
                    *slot = Some(client.clone());
                    client
                }
            };
            call(client).await
        })
        .await
        .map_err(|_| Failure::Timeout)
        .and_then(|r| r.map_err(Failure::Klickhouse));
        metrics::histogram!(QUERY_DURATION_METRIC, "query" => query)
            .record(started.elapsed().as_secs_f64());
        outcome.map_err(|failure| {
            *slot = None;
            port_error(query, failure)
        })
    }

    /// A free connection slot if there is one, else the next in turn once it frees up.
    async fn acquire(&self) -> MutexGuard<'_, Option<Client>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        for i in 0..n {
            if let Ok(guard) = self.slots[(start + i) % n].try_lock() {
                return guard;
            }
        }
        self.slots[start % n].lock().await
    }

    async fn connect(&self) -> Result<Client, KlickhouseError> {
        let options = ClientOptions {
            username: self.endpoint.username.clone(),
            password: self.endpoint.password.clone(),
            ..ClientOptions::default()
        };
        let client = Client::connect(self.endpoint.address.as_str(), options).await?;
        // Settings in ClientOptions are not sent to servers older than protocol revision 54429
        // (ClickHouse 18.16 among them), so the limit is set on the session instead: the server
        // stops work that nobody waits for any more.
        let seconds = self.timeout.as_secs().max(1);
        client
            .execute(format!("SET max_execution_time = {seconds}"))
            .await?;
        Ok(client)
    }
}

fn port_error(query: &'static str, failure: Failure) -> PortError {
    let (error_type, error) = match failure {
        Failure::Timeout => (
            "timeout",
            PortError::Timeout(format!("ClickHouse {query}: no answer in time")),
        ),
        Failure::Klickhouse(e) => classify(query, e),
    };
    metrics::counter!(QUERY_ERRORS_METRIC, "query" => query, "error_type" => error_type)
        .increment(1);
    tracing::warn!(query, error_type, %error, "ClickHouse call failed");
    error
}

fn classify(query: &'static str, e: KlickhouseError) -> (&'static str, PortError) {
    use KlickhouseError as K;
    match e {
        K::ServerException {
            code,
            name,
            message,
            ..
        } => {
            let text = format!("ClickHouse {query}: {code} {name}: {message}");
            // Only an insert's data can be at fault; the same code on a read is the server's.
            if query == "insert_events" && REJECTED_DATA_CODES.contains(&code) {
                ("rejected", PortError::Rejected(text))
            } else {
                ("server", PortError::Unavailable(text))
            }
        }
        K::Io(_) | K::ProtocolError(_) => (
            "connection",
            PortError::Unavailable(format!("ClickHouse {query}: {e}")),
        ),
        other => (
            "decode",
            PortError::InvalidData(format!("ClickHouse {query}: {other}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(klickhouse::Row)]
    struct One {
        one: u8,
    }

    /// A pool of one connection on the test server; `None` (skip) outside CI without a server.
    fn test_pool(timeout: Duration) -> Option<Pool> {
        let url = match std::env::var("TEST_CLICKHOUSE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("TEST_CLICKHOUSE_URL is not set: in CI the ClickHouse tests must run")
            }
            _ => {
                eprintln!("notice: TEST_CLICKHOUSE_URL is not set; skipping this ClickHouse test");
                return None;
            }
        };
        let mut config = ClickHouseConfig::new(url, "default");
        config.pool_size = 1;
        config.query_timeout = timeout;
        Some(Pool::new(&config).expect("valid config"))
    }

    async fn one(pool: &Pool) -> Result<u8, PortError> {
        let rows = pool
            .run("health", |c| async move {
                c.query_collect::<One>("SELECT 1 AS one").await
            })
            .await?;
        Ok(rows.first().map_or(0, |r| r.one))
    }

    #[tokio::test]
    async fn the_connection_is_replaced_after_a_syntax_error() {
        let Some(pool) = test_pool(Duration::from_secs(5)) else {
            return;
        };
        assert_eq!(one(&pool).await, Ok(1));
        for bad in ["SELEC nonsense", "SELECT * FROM no_such_table_anywhere"] {
            let result = pool
                .run("health", |c| async move { c.execute(bad).await })
                .await;
            assert!(
                matches!(result, Err(PortError::Unavailable(_))),
                "{result:?}"
            );
            // klickhouse's connection dies with a syntax error; the pool's only slot reconnects.
            assert_eq!(one(&pool).await, Ok(1), "after {bad:?}");
        }
    }

    #[tokio::test]
    async fn a_slow_query_times_out_and_the_next_one_works() {
        let Some(pool) = test_pool(Duration::from_millis(500)) else {
            return;
        };
        let started = Instant::now();
        let result = pool
            .run(
                "health",
                |c| async move { c.execute("SELECT sleep(2)").await },
            )
            .await;
        assert!(matches!(result, Err(PortError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert_eq!(one(&pool).await, Ok(1));
    }
}
