//! Connection settings, parsed once at the edge.

use crate::ClickHouseError;
use std::time::Duration;

/// The database used when `CLICKHOUSE_DATABASE` is not set.
pub const DEFAULT_DATABASE: &str = "nova";

/// Where and how to reach ClickHouse.
#[derive(Clone)]
pub struct ClickHouseConfig {
    /// `tcp://[user[:password]@]host[:port]` (`clickhouse://` is accepted too; port 9000 by
    /// default): the native-protocol endpoint, as in `TEST_CLICKHOUSE_URL`.
    pub url: String,
    /// Database holding the tables of `clickhouse/init-db.sql` (`CLICKHOUSE_DATABASE`).
    pub database: String,
    /// Limit on one call, connecting included; the server is also told to stop after it.
    pub query_timeout: Duration,
    /// Connections kept open; one query runs on a connection at a time.
    pub pool_size: usize,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("ClickHouseConfig")
            .field("database", &self.database)
            .field("query_timeout", &self.query_timeout)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl ClickHouseConfig {
    /// Defaults: 5 s per call, 4 connections.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: database.into(),
            query_timeout: Duration::from_secs(5),
            pool_size: 4,
        }
    }

    /// Checks the URL and the database name.
    pub(crate) fn endpoint(&self) -> Result<Endpoint, ClickHouseError> {
        validate_database(&self.database)?;
        let invalid = |why: &str| ClickHouseError::InvalidConfig(format!("ClickHouse URL: {why}"));
        let url = url::Url::parse(&self.url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "tcp" | "clickhouse") {
            return Err(invalid("the scheme must be tcp:// or clickhouse://"));
        }
        let host = url.host_str().ok_or_else(|| invalid("no host"))?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| invalid("credentials are not UTF-8"))
        };
        let username = match url.username() {
            "" => "default".to_owned(),
            name => decode(name)?,
        };
        let password = decode(url.password().unwrap_or(""))?;
        Ok(Endpoint {
            address: format!("{host}:{}", url.port().unwrap_or(9000)),
            username,
            password,
        })
    }
}

/// A parsed native-protocol endpoint.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// `host:port`.
    pub address: String,
    pub username: String,
    pub password: String,
}

/// Database names are spliced into SQL, so only plain identifiers are accepted.
pub(crate) fn validate_database(name: &str) -> Result<(), ClickHouseError> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if plain {
        Ok(())
    } else {
        Err(ClickHouseError::InvalidConfig(format!(
            "database name {name:?}: use letters, digits and _ (not first a digit), at most 64"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_test_url_form_with_defaults() {
        let e = ClickHouseConfig::new("tcp://127.0.0.1:9123", "nova")
            .endpoint()
            .expect("valid");
        assert_eq!(e.address, "127.0.0.1:9123");
        assert_eq!((e.username.as_str(), e.password.as_str()), ("default", ""));
        let e = ClickHouseConfig::new("clickhouse://ranker:p%40ss@ch.internal", "nova")
            .endpoint()
            .expect("valid");
        assert_eq!(e.address, "ch.internal:9000");
        assert_eq!(
            (e.username.as_str(), e.password.as_str()),
            ("ranker", "p@ss")
        );
    }

    #[test]
    fn rejects_other_schemes_and_unsafe_database_names() {
        assert!(
            ClickHouseConfig::new("http://127.0.0.1:8123", "nova")
                .endpoint()
                .is_err()
        );
        for bad in ["", "1nova", "nova; DROP", "a.b", "nova`"] {
            assert!(validate_database(bad).is_err(), "{bad:?}");
        }
        assert!(validate_database("vrs_test_0a1b").is_ok());
    }
}
