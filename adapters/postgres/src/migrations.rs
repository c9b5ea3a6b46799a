//! Schema migrations, embedded from the workspace's `migrations/` directory.
//!
//! Bookkeeping is sqlx's (`_sqlx_migrations`, with a SHA-384 checksum per file); the loop is ours so
//! that each applied file can be reported as it lands. Migrations recorded in the database but
//! unknown to this binary were applied by a newer release and are left alone: schema changes are
//! expand-then-contract, so an older binary still runs on them during a rolling deploy.

use crate::error::PostgresError;
use sqlx::migrate::{AppliedMigration, Migrate, Migration, Migrator};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The file a migration was embedded from, e.g. `001_initial_schema.sql`. sqlx keeps only the
/// version number and the description (underscores turned into spaces); file names use three-digit
/// versions, which the `migration_files_round_trip` test checks against the directory.
fn file_name(migration: &Migration) -> String {
    format!(
        "{:03}_{}.sql",
        migration.version,
        migration.description.replace(' ', "_")
    )
}

fn file_name_of_version(version: i64) -> String {
    MIGRATOR
        .iter()
        .find(|m| m.version == version)
        .map_or_else(|| format!("version {version}"), file_name)
}

/// Every migration file embedded in this binary, in the order they apply.
pub fn migration_files() -> Vec<String> {
    up_migrations().map(file_name).collect()
}

fn up_migrations() -> impl Iterator<Item = &'static Migration> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
}

/// The embedded migrations not yet applied, after checking that applied ones are unchanged.
fn unapplied(applied: &[AppliedMigration]) -> Result<Vec<&'static Migration>, PostgresError> {
    let applied: HashMap<i64, &AppliedMigration> = applied.iter().map(|a| (a.version, a)).collect();
    let mut pending = Vec::new();
    for migration in up_migrations() {
        match applied.get(&migration.version) {
            Some(a) if a.checksum != migration.checksum => {
                return Err(PostgresError::ModifiedMigration {
                    file: file_name(migration),
                });
            }
            Some(_) => {}
            None => pending.push(migration),
        }
    }
    Ok(pending)
}

async fn ensure_clean(conn: &mut PgConnection) -> Result<(), PostgresError> {
    match conn.dirty_version().await? {
        Some(version) => Err(PostgresError::DirtyMigration {
            file: file_name_of_version(version),
        }),
        None => Ok(()),
    }
}

/// Applies the pending migrations one at a time, each in its own transaction, calling `report`
/// with each file name (e.g. `001_initial_schema.sql`) once it is committed. Returns how many were
/// applied: 0 when the schema is current.
///
/// Concurrent callers (several replicas starting at once) are serialized by an advisory lock; the
/// later ones find nothing to do. Fails without applying anything when an applied migration's file
/// was modified ([`PostgresError::ModifiedMigration`]). Runs without the pool's statement timeout:
/// an index build may legitimately take minutes.
pub async fn migrate(pool: &PgPool, mut report: impl FnMut(&str)) -> Result<usize, PostgresError> {
    // A connection of its own, closed afterwards rather than returned to the pool: it changes the
    // session's statement timeout and holds a session-level advisory lock, and closing undoes both
    // even when a migration fails half-way.
    let mut conn = pool.acquire().await?.detach();
    let result = migrate_on(&mut conn, &mut report).await;
    if let Err(e) = sqlx::Connection::close(conn).await {
        tracing::debug!(error = %e, "closing the migration connection failed");
    }
    result
}

async fn migrate_on(
    conn: &mut PgConnection,
    report: &mut impl FnMut(&str),
) -> Result<usize, PostgresError> {
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await?;
    conn.lock().await?;
    conn.ensure_migrations_table().await?;
    ensure_clean(conn).await?;
    let applied = conn.list_applied_migrations().await?;
    let pending = unapplied(&applied)?;
    for migration in &pending {
        conn.apply(migration).await?;
        let file = file_name(migration);
        tracing::info!(migration = %file, "applied migration");
        report(&file);
    }
    conn.unlock().await?;
    Ok(pending.len())
}

/// The file names of the migrations [`migrate`] would apply, in order; empty when the schema is
/// current. Read-only (it does not create the bookkeeping table), so a production start can refuse
/// an outdated schema without touching it. Fails like [`migrate`] on a modified or partially
/// applied migration.
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<String>, PostgresError> {
    let mut conn = pool.acquire().await?;
    let bookkept: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    let applied = if bookkept {
        ensure_clean(&mut conn).await?;
        conn.list_applied_migrations().await?
    } else {
        Vec::new()
    };
    Ok(unapplied(&applied)?.into_iter().map(file_name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_round_trip() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("migrations directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        on_disk.sort();
        assert_eq!(
            migration_files(),
            on_disk,
            "every file is embedded and reported under its own name"
        );
        assert_eq!(
            migration_files().first().map(String::as_str),
            Some("001_initial_schema.sql")
        );
        assert!(migration_files().contains(&"012_deep_learning_models.sql".to_owned()));
    }
}
