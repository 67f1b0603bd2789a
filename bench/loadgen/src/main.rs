//! ticket-audit-bench: load generator for ticket-audit. `ingest` sends signed deliveries from
//! concurrent senders and reports throughput and latency; `reads` times the read API's paths.

mod client;
mod ingest;
mod reads;
mod report;
mod streams;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ticket-audit-bench", version, about)]
struct Cli {
    /// Runtime worker threads. The default, 1, leaves the other core to the service and PostgreSQL
    /// on a small machine; the generator still keeps hundreds of requests in flight.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send signed deliveries from an NDJSON file at a fixed concurrency; print deliveries/s,
    /// latency percentiles and answers by status.
    Ingest(ingest::IngestArgs),
    /// Time a ticket's timeline and commands and filtered, deep pages of /api/v1/commands.
    Reads(reads::ReadsArgs),
    /// Hold N live-tail streams open (GET /api/v1/stream) and count the events they read.
    Streams(streams::StreamsArgs),
}

fn main() {
    let cli = Cli::parse();
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads).enable_all().build()
    }
    .expect("a tokio runtime");
    let result = rt.block_on(async {
        match cli.command {
            Command::Ingest(args) => ingest::run(args).await,
            Command::Reads(args) => reads::run(args).await,
            Command::Streams(args) => streams::run(args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("ticket-audit-bench: {e}");
        std::process::exit(1);
    }
}
