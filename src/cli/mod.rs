//! The commands of the `ticket-audit` binary, one file each: each parses its own arguments, calls
//! the library and formats its own output. Settings shared by several live in `config`.

mod archive;
mod check_evidence;
mod evidence;
mod export;
mod import;
mod keygen;
mod migrate;
mod psql;
mod redact;
mod report;
mod reproject;
mod serve;
mod signal;
mod verify;

use std::future::Future;

use clap::{Parser, Subcommand};

use crate::config::{DatabaseArgs, LogArgs};
use crate::store::Database;
use crate::BoxError;

#[derive(Debug, Parser)]
#[command(
    name = "ticket-audit",
    version,
    about = "The audit record of an AI ServiceDesk: receive, record, normalize, serve."
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations (unless the schema is current or NO_MIGRATE is set), then serve HTTP.
    Serve(serve::ServeArgs),
    /// Apply migrations and exit.
    Migrate(migrate::MigrateArgs),
    /// Check the tamper-evidence of the stored record; exit non-zero on a break, naming where.
    Verify(verify::VerifyArgs),
    /// Write the compliance record (executed commands) as NDJSON or CSV.
    Export(export::ExportArgs),
    /// Load deliveries from NDJSON, one stored delivery per line, as if received.
    Import(import::ImportArgs),
    /// Rebuild the normalized tables from the stored deliveries.
    Reproject(reproject::ReprojectArgs),
    /// Run one of the reports of sql/ (embedded in the binary) and print its rows.
    Report(report::ReportArgs),
    /// Open psql on the database the service uses (the private cluster, or DATABASE_URL).
    Psql(psql::PsqlArgs),
    /// Write a checkpoint signing key (a file, mode 0600) and print its verifier key.
    Keygen(keygen::KeygenArgs),
    /// Print a command's evidence document: what `check-evidence` checks offline.
    Evidence(evidence::EvidenceArgs),
    /// Check an evidence document offline (no database, no network); exit non-zero naming what failed.
    CheckEvidence(check_evidence::CheckEvidenceArgs),
    /// Write whole months before --before to files (zstd NDJSON and a manifest tied to a signed checkpoint); --drop then drops them.
    Archive(archive::ArchiveArgs),
    /// Redact a delivery: its body and projected text become a tombstone that keeps its proof; the redaction is a ledger entry of its own.
    Redact(redact::RedactArgs),
}

/// Runs the command; on failure, logs and prints the error with its causes, and exits 1.
pub async fn run(cli: Cli) -> std::process::ExitCode {
    crate::telemetry::init(cli.log.log_format, &cli.log.rust_log);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Export(args) => export::run(args).await,
        Command::Import(args) => import::run(args).await,
        Command::Reproject(args) => reproject::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Psql(args) => psql::run(args).await,
        Command::Keygen(args) => keygen::run(args).await,
        Command::Evidence(args) => evidence::run(args).await,
        Command::CheckEvidence(args) => check_evidence::run(args).await,
        Command::Archive(args) => archive::run(args).await,
        Command::Redact(args) => redact::run(args).await,
    };
    match result {
        Ok(code) => code,
        // `ticket-audit report x | head`: the reader has all it wanted.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            let text = error_chain(e.as_ref());
            tracing::error!(error = %text, "ticket-audit failed");
            eprintln!("ticket-audit: {text}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once (many errors repeat their source's text).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

/// Runs `f` on one connection to the (given or private) database, its schema brought up to date
/// first (or only checked, with NO_MIGRATE); stops a private cluster started for it.
async fn with_database<T, F, Fut>(args: &DatabaseArgs, f: F) -> Result<T, BoxError>
where
    F: FnOnce(sqlx::PgConnection) -> Fut,
    Fut: Future<Output = Result<T, BoxError>>,
{
    let db = Database::resolve(args, false, 0).await?;
    let result = async {
        db.prepare_schema(args.no_migrate).await?;
        f(db.connect().await?).await
    }
    .await;
    db.stop().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_log_filter_flag_has_the_variables_name_and_keeps_the_old_one() {
        let cli = Cli::try_parse_from(["ticket-audit", "--rust-log", "debug", "migrate"]).unwrap();
        assert_eq!(cli.log.rust_log, "debug");
        let old = Cli::try_parse_from(["ticket-audit", "migrate", "--log-filter", "warn"]).unwrap();
        assert_eq!(old.log.rust_log, "warn");
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--rust-log") && !help.contains("--log-filter"), "{help}");
    }

    #[test]
    fn every_command_lists_its_settings_with_their_variables() {
        let mut cli = Cli::command();
        for sub in cli.get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            for arg in sub.get_arguments() {
                if arg.is_hide_set() || arg.get_long().is_none() {
                    continue;
                }
                if let Some(env) = arg.get_env() {
                    let flag = arg.get_long().unwrap().replace('-', "_").to_uppercase();
                    assert_eq!(env.to_str().unwrap(), flag, "{}: the flag has the variable's name", sub.get_name());
                    assert!(help.contains(&flag), "{} --help lists {flag}", sub.get_name());
                }
                assert!(arg.get_help().is_some(), "{} --{} has help text", sub.get_name(), arg.get_long().unwrap());
            }
        }
    }

    #[test]
    fn an_error_shows_its_causes_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading line 3 of deliveries.ndjson")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(error_chain(&e), "reading line 3 of deliveries.ndjson: disk on fire");
    }
}
