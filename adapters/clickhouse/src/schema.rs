//! Applies `clickhouse/init-db.sql` and, where the server supports it,
//! `clickhouse/init-db-modern.sql`, statement by statement. Both are idempotent, so this runs on
//! every deploy (`video-ranking-service clickhouse-init`).

use crate::ClickHouseError;
use crate::config::{ClickHouseConfig, validate_database};
use crate::pool::Pool;
use std::time::Duration;

/// The schema every supported server gets.
pub const INIT_DB_SQL: &str = include_str!("../../../clickhouse/init-db.sql");
/// TTL retention and skip indexes, for servers from [`MODERN_MAJOR_VERSION`] on.
pub const INIT_DB_MODERN_SQL: &str = include_str!("../../../clickhouse/init-db-modern.sql");
/// The schema for a cluster (one shard, any number of replicas): the same tables as
/// [`INIT_DB_SQL`], replicated, created `ON CLUSTER`. Applied by hand or by deployment tooling.
pub const INIT_DB_REPLICATED_SQL: &str = include_str!("../../../clickhouse/init-db-replicated.sql");
/// The placeholder the files use for the database name.
pub const DATABASE_PLACEHOLDER: &str = "${CLICKHOUSE_DATABASE}";
/// First major version given the modern statements: TTL arrived in 19.6, but `ADD INDEX IF NOT
/// EXISTS`, non-experimental skip indexes and `materialize_ttl_after_modify` only in 20.x/21.x.
pub const MODERN_MAJOR_VERSION: u32 = 21;

/// DDL on a busy server (or the first `CREATE DATABASE`) can take longer than a query.
const DDL_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`init_schema`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitReport {
    /// `SELECT version()` of the server.
    pub server_version: String,
    /// Statements of `init-db.sql` applied.
    pub base_statements: usize,
    /// Statements of `init-db-modern.sql` applied; 0 when the server is too old for them.
    pub modern_statements: usize,
    /// Whether the server was given the modern statements.
    pub modern_applied: bool,
}

#[derive(klickhouse::Row)]
struct VersionRow {
    version: String,
}

/// Creates database `database` and its tables on the server at `url` (as
/// [`ClickHouseConfig::url`]); a no-op when they exist.
pub async fn init_schema(url: &str, database: &str) -> Result<InitReport, ClickHouseError> {
    validate_database(database)?;
    let mut config = ClickHouseConfig::new(url, database);
    config.query_timeout = DDL_TIMEOUT;
    config.pool_size = 1;
    let pool = Pool::new(&config)?;
    let version = pool
        .run("init_schema", |client| async move {
            client
                .query_one::<VersionRow>("SELECT version() AS version")
                .await
        })
        .await
        .map_err(|e| ClickHouseError::Query {
            statement: "SELECT version()".into(),
            error: e.to_string(),
        })?
        .version;
    let base = statements(INIT_DB_SQL, database);
    apply(&pool, &base).await?;
    let modern_applied = supports_modern(&version);
    let modern = if modern_applied {
        let modern = statements(INIT_DB_MODERN_SQL, database);
        apply(&pool, &modern).await?;
        modern.len()
    } else {
        tracing::info!(
            %version,
            "ClickHouse is older than {MODERN_MAJOR_VERSION}.x: no TTL retention or skip indexes"
        );
        0
    };
    Ok(InitReport {
        server_version: version,
        base_statements: base.len(),
        modern_statements: modern,
        modern_applied,
    })
}

/// Runs the statements in order on one connection (the modern file's `SET` applies to the
/// statements after it).
async fn apply(pool: &Pool, statements: &[String]) -> Result<(), ClickHouseError> {
    for statement in statements {
        let sql = statement.clone();
        pool.run(
            "init_schema",
            |client| async move { client.execute(sql).await },
        )
        .await
        .map_err(|e| ClickHouseError::Query {
            statement: first_line(statement),
            error: e.to_string(),
        })?;
    }
    Ok(())
}

fn first_line(statement: &str) -> String {
    statement.lines().next().unwrap_or_default().to_owned()
}

/// The statements of a schema file with the database name filled in: whole-line `--` comments
/// dropped, split at `;` (the files keep `;` out of strings and trailing comments).
pub fn statements(file: &str, database: &str) -> Vec<String> {
    let text: String = file
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(|line| format!("{line}\n"))
        .collect();
    text.replace(DATABASE_PLACEHOLDER, database)
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether a `version()` string is at least [`MODERN_MAJOR_VERSION`].
pub fn supports_modern(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|major| major.trim().parse::<u32>().ok())
        .is_some_and(|major| major >= MODERN_MAJOR_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrs_domain::EventType;

    #[test]
    fn splits_the_schema_files_into_statements_with_the_database_filled_in() {
        let base = statements(INIT_DB_SQL, "nova_x");
        assert!(base.len() >= 9, "{base:#?}");
        assert!(base[0].starts_with("CREATE DATABASE IF NOT EXISTS nova_x"));
        for s in base.iter().chain(&statements(INIT_DB_MODERN_SQL, "nova_x")) {
            assert!(!s.contains("${"), "placeholder left: {s}");
            assert!(!s.contains("--"), "comment left: {s}");
            let creates = s.starts_with("CREATE");
            assert!(
                !creates || s.contains("IF NOT EXISTS"),
                "not idempotent: {s}"
            );
        }
    }

    #[test]
    fn modern_statements_only_from_version_21() {
        assert!(!supports_modern("18.16.1"));
        assert!(!supports_modern("20.3.5.21"));
        assert!(supports_modern("23.8.2.7"));
        assert!(supports_modern("26.9.1.1"));
        assert!(!supports_modern("garbage"));
    }

    #[test]
    fn the_schema_uses_the_domain_affinity_weights() {
        // The materialized views carry their own copy of EventType::affinity_weight: one for the
        // engagement types, one for negative feedback.
        let transform = |types: &[EventType]| {
            let names: Vec<String> = types.iter().map(|t| format!("'{}'", t.as_str())).collect();
            let weights: Vec<String> = types
                .iter()
                .map(|t| {
                    let w = format!("{:?}", t.affinity_weight());
                    w.strip_suffix(".0").map_or(w.clone(), |w| format!("{w}."))
                })
                .collect();
            format!(
                "transform(event_type, [{}], [{}], 0.)",
                names.join(", "),
                weights.join(", ")
            )
        };
        let (negative, engagement): (Vec<EventType>, Vec<EventType>) = EventType::ALL
            .into_iter()
            .partition(|t| EventType::NEGATIVE_FEEDBACK.contains(t));
        for expected in [transform(&engagement), transform(&negative)] {
            assert!(
                INIT_DB_SQL.contains(&expected),
                "init-db.sql must contain {expected}"
            );
        }
    }

    #[test]
    fn the_schema_counts_quick_skips_as_the_domain_does() {
        assert!(INIT_DB_SQL.contains(&format!(
            "WHERE event_type = 'skip' AND watch_ms < {}",
            vrs_domain::QUICK_SKIP_MS
        )));
    }

    /// `init-db-replicated.sql` is `init-db.sql` but for `ON CLUSTER` and the replicated engines
    /// (whose ZooKeeper path names the table), so the two never drift apart.
    #[test]
    fn the_replicated_schema_is_the_base_schema_replicated() {
        let replicated = statements(INIT_DB_REPLICATED_SQL, "nova");
        let base = statements(INIT_DB_SQL, "nova");
        assert_eq!(replicated.len(), base.len());
        for (r, b) in replicated.iter().zip(&base) {
            let mut normalized = r.replace(" ON CLUSTER ${CLICKHOUSE_CLUSTER}", "");
            if let Some(start) = normalized.find("ENGINE = Replicated") {
                let end = normalized[start..]
                    .find(')')
                    .map_or(normalized.len(), |i| start + i + 1);
                let engine = &normalized[start..end];
                let name = engine
                    .trim_start_matches("ENGINE = Replicated")
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let table = b
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("nova."))
                    .unwrap_or_default();
                assert!(
                    engine.contains(&format!("/clickhouse/tables/{{shard}}/nova/{table}'")),
                    "{engine}"
                );
                assert!(engine.ends_with("'{replica}')"), "{engine}");
                normalized.replace_range(start..end, &format!("ENGINE = {name}()"));
            } else {
                assert!(!normalized.contains("ENGINE ="), "{r}");
            }
            assert_eq!(&normalized, b);
            if b.starts_with("CREATE") {
                assert!(r.contains(" ON CLUSTER ${CLICKHOUSE_CLUSTER}"), "{r}");
            }
        }
    }
}
