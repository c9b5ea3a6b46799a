//! Errors: setup failures for `bootstrap`, and the mapping of query failures onto `PortError`.

use vrs_application::ports::PortError;

/// Why connecting or migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The configuration cannot work (e.g. an unparsable URL or a pool of zero connections).
    #[error("invalid PostgreSQL configuration: {0}")]
    Config(String),
    /// The server could not be reached or a statement failed.
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying a migration failed; it was rolled back.
    #[error("PostgreSQL migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An applied migration's file changed since: the schema may not be what the file says.
    #[error("migration {file} was modified after it was applied (checksum mismatch)")]
    ModifiedMigration {
        /// The migration's file name, e.g. `001_initial_schema.sql`.
        file: String,
    },
    /// A migration is recorded as partially applied and needs manual repair.
    #[error("migration {file} is only partially applied; repair the database before migrating")]
    DirtyMigration {
        /// The migration's file name.
        file: String,
    },
}

/// Maps a query failure onto the port's error kinds.
///
/// Timeouts (pool acquire, `statement_timeout`, lock waits) are `Timeout`; constraint and data
/// errors are `Rejected` (the input was refused); rows that cannot be decoded are `InvalidData`;
/// everything else (I/O, TLS, a closed pool, server shutdown) is `Unavailable`.
pub(crate) fn port_error(err: sqlx::Error) -> PortError {
    use sqlx::Error as E;
    let text = err.to_string();
    match &err {
        E::PoolTimedOut => {
            PortError::Timeout(format!("waiting for a PostgreSQL connection: {text}"))
        }
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                // query_canceled (statement_timeout), lock_not_available (lock_timeout).
                "57014" | "55P03" => PortError::Timeout(text),
                // Class 22 data exception, class 23 integrity constraint violation.
                c if c.starts_with("22") || c.starts_with("23") => PortError::Rejected(text),
                _ => PortError::Unavailable(text),
            }
        }
        E::Decode(_)
        | E::ColumnDecode { .. }
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. }
        | E::RowNotFound => PortError::InvalidData(text),
        _ => PortError::Unavailable(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_timeouts() {
        assert!(matches!(
            port_error(sqlx::Error::PoolTimedOut),
            PortError::Timeout(_)
        ));
    }

    #[test]
    fn io_failures_and_closed_pools_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            port_error(sqlx::Error::Io(io)),
            PortError::Unavailable(_)
        ));
        assert!(matches!(
            port_error(sqlx::Error::PoolClosed),
            PortError::Unavailable(_)
        ));
    }

    #[test]
    fn undecodable_rows_are_invalid_data() {
        let err = sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: "unexpected null".into(),
        };
        assert!(matches!(port_error(err), PortError::InvalidData(_)));
        assert!(matches!(
            port_error(sqlx::Error::Decode("bad".into())),
            PortError::InvalidData(_)
        ));
    }
}
