//! `ticket-audit serve`: bring the schema up to date (unless current, or NO_MIGRATE), then serve
//! until a stop signal.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use tokio::net::TcpListener;

use crate::config::{DatabaseArgs, HttpSettings, DEFAULT_STATEMENT_TIMEOUT_MS_SERVE};
use crate::store::Database;
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    #[command(flatten)]
    pub http: HttpSettings,
}

pub async fn run(args: ServeArgs) -> Result<ExitCode, BoxError> {
    // Before anything slow: a signal during start-up stops us cleanly too (and stops the cluster).
    let stop = super::signal::stop_token()?;
    // Exclusive: a service must own the private cluster it depends on, or another process's exit
    // would stop the server under it; a second `serve` on one data directory is refused here.
    let db = Database::resolve(&args.database, true, DEFAULT_STATEMENT_TIMEOUT_MS_SERVE).await?;
    let result = async {
        db.prepare_schema(args.database.no_migrate).await?;
        let listener = TcpListener::bind(args.listen_addr)
            .await
            .map_err(|e| format!("listening on {} (LISTEN_ADDR): {e}", args.listen_addr))?;
        crate::serve(listener, db.options.clone(), &args.database, &args.http, stop.cancelled_owned()).await
    }
    .await;
    db.stop().await;
    result.map(|()| ExitCode::SUCCESS)
}
