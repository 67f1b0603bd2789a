//! PostgreSQL: connecting, migrations, the write path (group commit), the read queries, and the ledger.

pub mod batch;
pub mod classify;
pub mod evidence;
pub mod export;
pub mod ledger;
pub mod migrate;
pub mod read;
pub mod reproject;
pub mod text;
pub mod tree;
pub mod writer;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};

pub use batch::{NewDelivery, Outcome};
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
    let mut opts = PgPoolOptions::new().max_connections(max_connections).acquire_timeout(acquire_timeout);
    if let Some(role) = role {
        opts = opts.after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(format!("SET ROLE {role}").as_str()).await?;
                Ok(())
            })
        });
    }
    opts.connect_lazy_with(options)
}

/// Whether the login may act as the writer role (it may when it ran the migrations).
pub async fn can_use_writer_role(options: &PgConnectOptions) -> Result<bool, sqlx::Error> {
    let mut conn = options.connect().await?;
    let member: bool = sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')")
        .bind(WRITER_ROLE)
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(member)
}
