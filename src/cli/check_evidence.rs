//! `ticket-audit check-evidence`: check a command's evidence document offline (no database, no
//! network); exit non-zero naming what failed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct CheckEvidenceArgs {
    /// The log's verifier key line (from GET /api/v1/ledger/key), or a file holding it.
    #[arg(long)]
    pub key: String,
    /// The evidence document (`-` for standard input).
    pub file: PathBuf,
}

pub async fn run(args: CheckEvidenceArgs) -> Result<ExitCode, BoxError> {
    crate::log_commands::check_evidence(&args.key, &args.file)?;
    Ok(ExitCode::SUCCESS)
}
