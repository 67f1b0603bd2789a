//! The verifiable log's commands: `keygen`, `evidence`, `check-evidence`, and what
//! `verify --checkpoint` adds to `verify`.

use std::path::Path;

use serde::Serialize;
use sqlx::PgConnection;

use crate::checkpointing::{read_key_file, write_key_file, GENERATED_KEY_FILE};
use crate::config::CheckpointSettings;
use crate::domain::checkpoint::{Checkpoint, Signer, Verifier};
use crate::domain::evidence::{self, Evidence};
use crate::domain::merkle::check_tree;
use crate::store::{ledger, tree};
use crate::BoxError;

/// `keygen`: writes a private key file (mode 0600) and prints the verifier key.
pub fn keygen(name: Option<&str>, out: &Path) -> Result<(), BoxError> {
    let name = name.ok_or("give the key a name with --name (or CHECKPOINT_ORIGIN): the log's origin")?;
    let signer = Signer::generate(name)?;
    write_key_file(out, &signer)?;
    eprintln!("wrote the signing key to {} (mode 0600); the verifier key, to publish:", out.display());
    println!("{}", signer.verifier());
    Ok(())
}

/// A verifier key given as the line itself or a file holding it.
pub fn parse_verifier(arg: &str) -> Result<Verifier, BoxError> {
    let line = if Path::new(arg).is_file() { std::fs::read_to_string(arg)? } else { arg.to_owned() };
    Ok(Verifier::parse(line.trim()).map_err(|e| format!("the verifier key: {e}"))?)
}

/// `check-evidence`: offline, from the file and the key alone.
pub fn check_evidence(key: &str, file: &Path) -> Result<(), BoxError> {
    let key = parse_verifier(key)?;
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file)?
    };
    let doc: Evidence =
        serde_json::from_str(&text).map_err(|e| format!("FAILED document: not an evidence document ({e})"))?;
    match evidence::check(&doc, &key) {
        Ok(ok) => {
            println!(
                "OK: command {} was recorded from delivery {}, leaf {} of the tree of {} leaves signed by {}",
                ok.command_id,
                ok.seq,
                ok.seq - 1,
                ok.tree_size,
                key.label()
            );
            Ok(())
        }
        Err(e) => Err(format!("FAILED {}: {e}", e.kind()).into()),
    }
}

/// The verifier of the configured signing key, for `verify --checkpoint` without `--key`.
pub fn configured_verifier(settings: &CheckpointSettings, data_dir: &Path) -> Result<Verifier, BoxError> {
    let path = settings.checkpoint_key_file.clone().unwrap_or_else(|| data_dir.join(GENERATED_KEY_FILE));
    if !path.exists() {
        return Err(format!("no --key given and no signing key at {}", path.display()).into());
    }
    Ok(read_key_file(&path)?.verifier())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogBreakKind {
    /// The saved checkpoint does not verify with the key.
    CheckpointSignature,
    /// A stored tree hash does not match the leaves recomputed from the deliveries.
    TreeEdited,
    /// The tree does not cover exactly the ledger's entries.
    TreeIncomplete,
    /// The checkpoint signs more leaves than the tree has: history was cut.
    HistoryTruncated,
    /// Today's tree does not extend the checkpoint: history was rewritten.
    HistoryRewritten,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogBreak {
    pub kind: LogBreakKind,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    pub ok: bool,
    pub checkpoint_size: Option<u64>,
    pub tree_size: u64,
    #[serde(rename = "break")]
    pub first_break: Option<LogBreak>,
}

fn broken(kind: LogBreakKind, detail: String, checkpoint_size: Option<u64>, tree_size: u64) -> LogReport {
    LogReport { ok: false, checkpoint_size, tree_size, first_break: Some(LogBreak { kind, detail }) }
}

/// Checks, in one snapshot, the saved checkpoint `note` against today's tree: its signature, every
/// stored hash against the deliveries, and the consistency proof from it to today's root.
pub async fn check_checkpoint(conn: &mut PgConnection, note: &str, key: &Verifier) -> Result<LogReport, BoxError> {
    let mut tx = crate::store::snapshot(conn).await?;
    let size = tree::tree_size(&mut tx).await?;
    let cp = match Checkpoint::open(note, key) {
        Ok(cp) => cp,
        Err(e) => return Ok(broken(LogBreakKind::CheckpointSignature, e.to_string(), None, size)),
    };
    let m = Some(cp.size);
    let head = ledger::head(&mut tx).await?;
    if let Some(b) = tree::check_stored_hashes(&mut tx).await? {
        return Ok(broken(LogBreakKind::TreeEdited, format!("at seq {}: {}", b.seq, b.detail), m, size));
    }
    if head.seq as u64 != size {
        let detail = format!("the tree covers {size} leaves, the ledger's head is at {}", head.seq);
        return Ok(broken(LogBreakKind::TreeIncomplete, detail, m, size));
    }
    if cp.size > size {
        let detail = format!("the checkpoint signs {} leaves; the tree has only {size}", cp.size);
        return Ok(broken(LogBreakKind::HistoryTruncated, detail, m, size));
    }
    let root = tree::root(&mut tx, size).await?;
    let proof = tree::consistency(&mut tx, cp.size, size).await?;
    tx.commit().await?;
    if let Err(e) = check_tree(&proof, size, &root, cp.size, &cp.root) {
        let detail = format!("today's tree of {size} leaves does not extend the checkpoint of {} ({e})", cp.size);
        return Ok(broken(LogBreakKind::HistoryRewritten, detail, m, size));
    }
    Ok(LogReport { ok: true, checkpoint_size: m, tree_size: size, first_break: None })
}
