//! PostgreSQL: connecting, migrations, the write path (group commit), the read queries, and the ledger.

pub mod archive;
pub mod batch;
pub mod classify;
pub mod committed;
pub mod database;
pub mod evidence;
pub mod export;
pub mod lease;
pub mod ledger;
pub mod migrate;
pub mod partitions;
pub mod read;
pub mod redaction;
pub mod replica;
pub mod report;
pub mod reproject;
pub mod stream;
pub mod text;
pub mod tree;
pub mod writer;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgPool};

pub use batch::{NewDelivery, Outcome};
pub use database::{connect, Database, DatabaseError};
pub use read::Scope;
pub use writer::{WriteError, Writer};

/// The role the service serves with (created by migration V2): it may add to the record, never change it.
pub const WRITER_ROLE: &str = "ticket_audit_writer";

/// A pool that fails fast when the database is away, so callers can answer 503 instead of hanging.
/// With `role`, every connection switches to it first (SET ROLE), dropping the login's other rights.
pub fn pool(
    options: PgConnectOptions,
    max_connections: u32,
    acquire_timeout: Duration,
    role: Option<&'static str>,
) -> PgPool {
    pool_options(max_connections, acquire_timeout, role).connect_lazy_with(options)
}

fn pool_options(max_connections: u32, acquire_timeout: Duration, role: Option<&'static str>) -> PgPoolOptions {
    let mut opts = PgPoolOptions::new().max_connections(max_connections).acquire_timeout(acquire_timeout);
    if let Some(role) = role {
        opts = opts.after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(format!("SET ROLE {role}").as_str()).await?;
                Ok(())
            })
        });
    }
    opts
}

/// The writer's pool: [`pool`], with its connections set for the write path's statements, which
/// are prepared once per connection and kept with a generic plan (no planning per batch). With
/// sequential scans off, each of their reads is an index probe whatever the tables held when it
/// was planned (a plan made on empty tables would otherwise scan them whole on every batch once
/// they are large, until an ANALYZE); `tests/api/plans.rs` checks it.
pub fn write_pool(
    options: PgConnectOptions,
    max_connections: u32,
    acquire_timeout: Duration,
    role: Option<&'static str>,
) -> PgPool {
    let options = options.options(WRITE_SESSION);
    // No ping before each batch: a round trip on the writer's path for nothing. A connection
    // found dead (the server restarted) fails the batch's BEGIN, before anything of the batch
    // is sent, and the writer begins again on another (`writer::begin`).
    pool_options(max_connections, acquire_timeout, role).test_before_acquire(false).connect_lazy_with(options)
}

/// The writer's session settings (see [`write_pool`]). JIT off: with sequential scans priced out,
/// a statement that can only scan (the one-row head's `UPDATE`) costs more than `jit_above_cost`,
/// and compiling it took 100 ms on every batch.
pub const WRITE_SESSION: [(&str, &str); 3] =
    [("plan_cache_mode", "force_generic_plan"), ("enable_seqscan", "off"), ("jit", "off")];

/// Whether the login may act as the writer role (it may when it ran the migrations, or was made a member).
pub async fn can_use_writer_role(options: &PgConnectOptions, connect_timeout: Duration) -> Result<bool, DatabaseError> {
    let mut conn = connect(options, connect_timeout).await?;
    let member = is_member(&mut conn, WRITER_ROLE).await.map_err(|source| DatabaseError::Query {
        what: "checking role membership",
        target: database::describe(options),
        source,
    })?;
    let _ = conn.close().await;
    Ok(member)
}

/// Whether the session's user is a member of `role` (superusers are members of every role).
pub async fn is_member(conn: &mut sqlx::PgConnection, role: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')").bind(role).fetch_one(conn).await
}

/// A transaction that reads one consistent snapshot and writes nothing: what `verify`, the
/// tree's checks and the evidence read the record in.
pub async fn snapshot(conn: &mut sqlx::PgConnection) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    Ok(tx)
}
