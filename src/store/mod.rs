//! PostgreSQL: connecting, migrations, the write path (group commit) and the read queries.

pub mod migrate;
pub mod read;
pub mod text;
pub mod write;
pub mod writer;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use read::Scope;
pub use write::{NewDelivery, Outcome};
pub use writer::{WriteError, Writer};

/// A pool that fails fast when the database is away, so callers can answer 503 instead of hanging.
pub async fn pool(options: PgConnectOptions, max_connections: u32, acquire_timeout: Duration) -> PgPool {
    PgPoolOptions::new().max_connections(max_connections).acquire_timeout(acquire_timeout).connect_lazy_with(options)
}
