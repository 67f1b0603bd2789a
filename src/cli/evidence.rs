//! `ticket-audit evidence`: print a command's evidence document, what `check-evidence` checks.

use std::process::ExitCode;

use clap::Args;

use crate::config::DatabaseArgs;
use crate::store::Scope;
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct EvidenceArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The command's id, as the read API gives it (`SEQ.POSITION`).
    pub command_id: String,
}

pub async fn run(args: EvidenceArgs) -> Result<ExitCode, BoxError> {
    let id = args.command_id.clone();
    let doc = super::with_database(&args.database, |mut conn| async move {
        Ok(crate::http::proofs::evidence_of(&mut conn, &Scope::All, &id).await?)
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(ExitCode::SUCCESS)
}
