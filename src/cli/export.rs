//! `ticket-audit export`: the compliance record (executed commands) as NDJSON or CSV.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::DatabaseArgs;
use crate::store;
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// First time included (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub since: Option<time::OffsetDateTime>,
    /// First time excluded (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub until: Option<time::OffsetDateTime>,
    /// Output format: one JSON object per executed command and line (ndjson), or CSV with a header row.
    #[arg(long, value_enum, default_value_t = store::export::Format::Ndjson)]
    pub format: store::export::Format,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

fn rfc3339(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("`{s}` is not an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"))
}

pub async fn run(args: ExportArgs) -> Result<ExitCode, BoxError> {
    // Opened before the database is touched: a path that cannot be written fails at once, by name.
    let out: Box<dyn std::io::Write + Send> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path).map_err(|e| format!("creating the export file {}: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let (since, until, format) = (args.since, args.until, args.format);
    let n = super::with_database(&args.database, |mut conn| async move {
        let out = std::io::BufWriter::with_capacity(1 << 16, out);
        Ok(store::export::export(&mut conn, since, until, format, out).await?)
    })
    .await?;
    tracing::info!(commands = n, "exported");
    Ok(ExitCode::SUCCESS)
}
