//! `ticket-audit redact --delivery ID --reason TEXT`: replace a delivery's body and the text of
//! its projection with a tombstone, keeping its proof, and record the redaction in the ledger.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config::DatabaseArgs;
use crate::store::{self, Database, Writer};
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct RedactArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The delivery to redact: its delivery_id (its seq).
    #[arg(long, value_name = "ID")]
    pub delivery: i64,
    /// Why, as recorded in the ledger and shown with the delivery (1 to 1,000 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who redacts, as recorded; by default the operating system's user ($USER).
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
    /// Print the redaction as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: RedactArgs) -> Result<ExitCode, BoxError> {
    let actor = match &args.actor {
        Some(a) => a.clone(),
        None => std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .map(|u| format!("os-user:{u}"))
            .unwrap_or_else(|_| "operator".to_owned()),
    };
    let db = Database::resolve(&args.database, false, 0).await?;
    let result = async {
        db.prepare_schema(args.database.no_migrate).await?;
        let pool = store::pool(db.options.clone(), 2, Duration::from_secs(30), None);
        let (writer, task) = Writer::spawn(pool.clone(), 4, 1)?;
        let redacted = store::redaction::redact(&writer, &pool, args.delivery, &args.reason, &actor).await;
        drop(writer);
        task.await?;
        pool.close().await;
        Ok::<_, BoxError>(redacted?)
    }
    .await;
    db.stop().await;
    let (r, duplicate) = result?;
    if args.json {
        println!("{}", serde_json::to_string(&serde_json::json!({"redaction": r, "duplicate": duplicate}))?);
    } else {
        let at = crate::domain::timestamp::format(r.redacted_at);
        let was = if duplicate { "was redacted before" } else { "redacted" };
        println!(
            "delivery {} {was}: redaction entry {}, {at}, by {}: {}",
            r.target_seq, r.redaction_seq, r.actor, r.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
