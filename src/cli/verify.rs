//! `ticket-audit verify`: check the tamper-evidence of the stored record; exit non-zero on a
//! break, naming where.

use std::process::ExitCode;

use clap::Args;

use std::path::PathBuf;

use crate::config::{CheckpointSettings, DatabaseArgs};
use crate::log_commands;
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
    /// Also prove that today's tree extends this checkpoint, saved earlier (a signed note), and
    /// that every stored tree hash matches the deliveries.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// The verifier key to check the checkpoint's signature with (a line or a file); by default
    /// the configured signing key's. With --archive: check the archives offline, against each
    /// manifest's signed checkpoint, without a database.
    #[arg(long, value_name = "VERIFIER_KEY")]
    pub key: Option<String>,
    /// Check the archives `ticket-audit archive` wrote to DIR (every DIR/*/manifest.json): files,
    /// checksums, and each month's leaves against the tree in the database (or, with --key,
    /// offline against the manifest's signed checkpoint). Checks nothing else.
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
    #[command(flatten)]
    pub signing: CheckpointSettings,
}

pub async fn run(args: VerifyArgs) -> Result<ExitCode, BoxError> {
    if let Some(dir) = &args.archive {
        return verify_archive(dir, args.key.as_deref(), &args.database, args.json).await;
    }
    if args.key.is_some() && args.checkpoint.is_none() {
        return Err("--key checks a --checkpoint or an --archive: give one".into());
    }
    let expect = args
        .expect_head
        .as_deref()
        .map(store::ledger::parse_head)
        .transpose()
        .map_err(|e| format!("--expect-head (EXPECT_HEAD): {e}"))?;
    // The checkpoint and its key are read before the database: a wrong path fails first.
    let saved = match &args.checkpoint {
        Some(path) => {
            let note =
                std::fs::read_to_string(path).map_err(|e| format!("reading the checkpoint {}: {e}", path.display()))?;
            let key = match &args.key {
                Some(k) => log_commands::parse_verifier(k)?,
                None => log_commands::configured_verifier(&args.signing, &args.database.data_dir_or_default())?,
            };
            Some((note, key))
        }
        None => None,
    };
    let (report, log) = super::with_database(&args.database, |mut conn| async move {
        let report = store::ledger::verify(&mut conn, expect).await?;
        let log = match &saved {
            Some((note, key)) => Some(log_commands::check_checkpoint(&mut conn, note, key).await?),
            None => None,
        };
        Ok((report, log))
    })
    .await?;
    if args.json {
        let both = serde_json::json!({"record": report, "checkpoint": log});
        println!("{}", serde_json::to_string_pretty(if log.is_some() { &both } else { &both["record"] })?);
    } else {
        println!(
            "checked {} deliveries and {} commands; head {}:{}",
            report.deliveries,
            report.commands,
            report.head.seq,
            hex::encode(&report.head.hash)
        );
        // Reported, not broken: the chain and the leaf still cover each body's SHA-256.
        for r in &report.redacted {
            println!(
                "redacted: seq {} (redaction entry {}, {}, by {}): {}",
                r.seq, r.redaction_seq, r.at, r.actor, r.reason
            );
        }
        if let Some(log) = log.as_ref().filter(|l| l.ok) {
            println!(
                "checked every stored tree hash; the tree of {} leaves extends the checkpoint of {}",
                log.tree_size,
                log.checkpoint_size.unwrap_or(0)
            );
        }
    }
    if let Some(b) = report.first_break {
        let kind = serde_json::to_value(b.kind)?;
        return Err(format!("BROKEN at seq {}: {} ({})", b.seq, kind.as_str().unwrap_or("?"), b.detail).into());
    }
    if let Some(b) = log.and_then(|l| l.first_break) {
        let kind = serde_json::to_value(b.kind)?;
        return Err(format!("BROKEN: {} ({})", kind.as_str().unwrap_or("?"), b.detail).into());
    }
    println!("OK: the record is whole and unaltered");
    Ok(ExitCode::SUCCESS)
}

/// `verify --archive DIR`: every month in DIR from its files, then tied to the database's tree,
/// or, with `key`, to its manifest's signed checkpoint with no database at all.
async fn verify_archive(
    dir: &std::path::Path,
    key: Option<&str>,
    database: &DatabaseArgs,
    json: bool,
) -> Result<ExitCode, BoxError> {
    let months = store::archive::manifests(dir)?;
    let mut checked = Vec::new();
    for (sub, m) in &months {
        checked.push(store::archive::check_files(sub, m)?);
    }
    let against = match key {
        Some(k) => {
            let key = log_commands::parse_verifier(k)?;
            for (sub, m) in &months {
                store::archive::check_signature(sub, m, &key)?;
            }
            "its signed checkpoint"
        }
        None => {
            super::with_database(database, |mut conn| async move {
                for (sub, m) in &months {
                    store::archive::check_against_database(&mut conn, sub, m).await?;
                }
                Ok(())
            })
            .await?;
            "the database's tree"
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"ok": true, "against": against, "months": checked}))?
        );
    } else {
        for c in &checked {
            println!(
                "archive {}: seq {}..={}, {} rows: the leaves lead to the root of the checkpoint of {} ({against})",
                c.partition, c.first_seq, c.last_seq, c.rows, c.tree_size
            );
        }
        println!("OK: {} archived months are whole and in the log", checked.len());
    }
    Ok(ExitCode::SUCCESS)
}
