//! Connection settings, parsed from the environment by `bootstrap`.

use std::fmt;
use std::time::Duration;

/// Per-command limit when `REDIS_COMMAND_TIMEOUT_MS` is unset.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(50);
/// Limit on opening one connection (TCP connect and handshake).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How to reach Redis and how long to wait for it. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Connection URL (`REDIS_URL`), e.g. `redis://:secret@cache:6379/0`.
    pub url: String,
    /// Limit on one command or round trip; a call that exceeds it fails with `PortError::Timeout`.
    pub command_timeout: Duration,
    /// Limit on opening one connection; reconnection attempts use it too.
    pub connect_timeout: Duration,
}

impl RedisConfig {
    /// A configuration for `url` with the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted(&self.url))
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The URL with its password replaced, so configurations and errors can be logged.
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
    // `user:password@` keeps the user; a bare `secret@` may be a password, so it goes entirely.
    let user = rest[..at].find(':').map_or("", |colon| &rest[..colon]);
    format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        for url in [
            "redis://:s3cr@t@cache:6379/0",
            "redis://nova:s3cr@t@cache:6379",
            "rediss://s3cr@cache",
        ] {
            let shown = format!("{:?}", RedisConfig::new(url));
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains(":***@cache"), "{shown}");
        }
    }

    #[test]
    fn urls_without_credentials_are_shown_as_is() {
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted("not a url"), "<unparsable url>");
    }

    #[test]
    fn defaults() {
        let c = RedisConfig::new("redis://cache");
        assert_eq!(c.command_timeout, Duration::from_millis(50));
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
    }
}
