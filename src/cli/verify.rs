//! `ticket-audit verify`: check the tamper-evidence of the stored record; exit non-zero on a
//! break, naming where.

use std::process::ExitCode;

use clap::Args;

use crate::config::DatabaseArgs;
use crate::store;
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Also prove the chain still passes through this head, recorded earlier (from GET /api/v1/ledger/head).
    #[arg(long, env = "EXPECT_HEAD", value_name = "SEQ:HASH")]
    pub expect_head: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: VerifyArgs) -> Result<ExitCode, BoxError> {
    let expect = args
        .expect_head
        .as_deref()
        .map(store::ledger::parse_head)
        .transpose()
        .map_err(|e| format!("--expect-head (EXPECT_HEAD): {e}"))?;
    let report =
        super::with_database(
            &args.database,
            |mut conn| async move { Ok(store::ledger::verify(&mut conn, expect).await?) },
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "checked {} deliveries and {} commands; head {}:{}",
            report.deliveries,
            report.commands,
            report.head.seq,
            hex::encode(&report.head.hash)
        );
    }
    match report.first_break {
        None => {
            println!("OK: the record is whole and unaltered");
            Ok(ExitCode::SUCCESS)
        }
        Some(b) => {
            let kind = serde_json::to_value(b.kind)?;
            Err(format!("BROKEN at seq {}: {} ({})", b.seq, kind.as_str().unwrap_or("?"), b.detail).into())
        }
    }
}
