//! The `ticket-audit` binary: arguments in, one call into the library out.

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ticket_audit::cli::Cli::parse();
    ticket_audit::cli::run(cli).await
}
