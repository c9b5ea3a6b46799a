//! Connection settings, parsed from the environment by `bootstrap`.

use std::fmt;
use std::time::Duration;

/// Pool size when `DATABASE_MAX_CONNECTIONS` is unset.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 20;
/// Wait for a free pooled connection when `DATABASE_ACQUIRE_TIMEOUT_MS` is unset.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// Server-side statement limit when `DATABASE_STATEMENT_TIMEOUT_MS` is unset.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach PostgreSQL and how to bound the pool. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Connection URL (`DATABASE_URL`), e.g. `postgres://nova:secret@db:5432/nova`.
    pub url: String,
    /// Most connections the pool opens (`DATABASE_MAX_CONNECTIONS`); must be at least 1.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing with `PortError::Timeout`.
    pub acquire_timeout: Duration,
    /// Server-side limit on one statement (`statement_timeout`); zero disables it. Migrations run
    /// without it.
    pub statement_timeout: Duration,
}

impl PostgresConfig {
    /// A configuration for `url` with the default pool bounds.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        }
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redacted(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// The URL with its password replaced, so configurations can be logged.
pub(crate) fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "<unparsable url>".into();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    // The last `@` of the authority ends the user info; a password may itself contain `@`.
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let config = PostgresConfig::new("postgres://nova:s3cr@t@db:5432/nova?sslmode=require");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("postgres://nova:***@db:5432/nova?sslmode=require"));
    }

    #[test]
    fn urls_without_a_password_are_shown_as_is() {
        assert_eq!(
            redacted("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(redacted("postgres://db/nova"), "postgres://db/nova");
        assert_eq!(redacted("not a url"), "<unparsable url>");
    }

    #[test]
    fn defaults_match_the_documented_environment_defaults() {
        let c = PostgresConfig::new("postgres://db/nova");
        assert_eq!(c.max_connections, 20);
        assert_eq!(c.acquire_timeout, Duration::from_millis(2_000));
        assert_eq!(c.statement_timeout, Duration::from_millis(5_000));
    }
}
