//! Migrations: refinery's runner over a sqlx connection, so the service keeps one PostgreSQL driver.

use refinery::Migration;
use refinery_core::traits::r#async::{AsyncMigrate, AsyncQuery, AsyncTransaction};
use sqlx::{Connection, Executor, PgConnection, Row};
use time::format_description::well_known::Rfc3339;

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("taking the migration lock: {0}")]
    Lock(#[from] sqlx::Error),
    #[error(transparent)]
    Migration(#[from] refinery::Error),
}

/// Arbitrary constant: the advisory lock that keeps two processes from migrating at once.
const MIGRATION_LOCK: i64 = 0x7469_636b_6574_6d67;

/// Applies pending migrations; safe to call from several processes at once.
pub async fn run(conn: &mut PgConnection) -> Result<usize, MigrateError> {
    run_with(conn, refinery::Target::Latest).await
}

/// Applies pending migrations up to `version` and no further: a database as an older release
/// left it, for the tests that migrate one the rest of the way and compare.
pub async fn run_to(conn: &mut PgConnection, version: i32) -> Result<usize, MigrateError> {
    run_with(conn, refinery::Target::Version(version)).await
}

async fn run_with(conn: &mut PgConnection, target: refinery::Target) -> Result<usize, MigrateError> {
    sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await?;
    let report = embedded::migrations::runner().set_target(target).run_async(&mut SqlxMigrator(&mut *conn)).await;
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await?;
    Ok(report?.applied_migrations().len())
}

/// The newest migration version this build knows, for readiness checks.
pub fn latest_version() -> i64 {
    embedded::migrations::runner().get_migrations().iter().map(|m| i64::from(m.version())).max().unwrap_or(0)
}

/// The newest migration applied to the database (None: never migrated). Reads only
/// refinery_schema_history, which the writer and reporting roles may read: no DDL rights needed.
pub async fn applied_version(conn: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('refinery_schema_history') IS NOT NULL").fetch_one(&mut *conn).await?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT max(version)::int8 FROM refinery_schema_history").fetch_one(&mut *conn).await
}

struct SqlxMigrator<'c>(&'c mut PgConnection);

impl AsyncTransaction for SqlxMigrator<'_> {
    type Error = sqlx::Error;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let mut tx = self.0.begin().await?;
        let mut count = 0;
        for query in queries {
            // A plain string runs as a simple query: several statements per migration are fine.
            tx.execute(query).await?;
            count += 1;
        }
        tx.commit().await?;
        Ok(count)
    }
}

impl AsyncQuery<Vec<Migration>> for SqlxMigrator<'_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        let conn: &mut PgConnection = self.0;
        let rows = conn.fetch_all(query).await?;
        rows.iter()
            .map(|row| {
                let applied_on: String = row.try_get(2)?;
                let checksum: String = row.try_get(3)?;
                Ok(Migration::applied(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    time::OffsetDateTime::parse(&applied_on, &Rfc3339).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    checksum.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                ))
            })
            .collect()
    }
}

impl AsyncMigrate for SqlxMigrator<'_> {}
