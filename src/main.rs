//! The `ticket-audit` binary: arguments in, one call into the library out.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ticket_audit::config::Cli::parse();
    match ticket_audit::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ticket-audit failed");
            eprintln!("ticket-audit: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
