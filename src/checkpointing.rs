//! Signing the verifiable log: the key (given, or generated in the data directory), and the task
//! that signs a checkpoint whenever the tree has grown, at most once per interval.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::CheckpointSettings;
use crate::domain::checkpoint::{Checkpoint, Signer};
use crate::domain::merkle::check_tree;
use crate::store::tree::{self, CheckpointRow};
use crate::BoxError;

/// The file the generated key is kept in, inside the data directory.
pub const GENERATED_KEY_FILE: &str = "checkpoint.key";

/// Writes a new private key to `path`, mode 0600, refusing to replace a file.
pub fn write_key_file(path: &Path, signer: &Signer) -> Result<(), BoxError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("writing the key file {}: {e}", path.display()))?;
    writeln!(f, "{}", signer.to_private_key())?;
    f.sync_all()?;
    Ok(())
}

pub fn read_key_file(path: &Path) -> Result<Signer, BoxError> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading the key file {}: {e}", path.display()))?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the checkpoint key file is readable by others: chmod 600 it");
    }
    Ok(Signer::parse(text.trim()).map_err(|e| format!("the key file {}: {e}", path.display()))?)
}

/// A name for a deployment that was given none: unique, so that two deployments' checkpoints
/// are never confused.
fn generated_origin() -> Result<String, BoxError> {
    let mut id = [0u8; 6];
    getrandom::getrandom(&mut id)?;
    Ok(format!("ticket-audit/{}", hex::encode(id)))
}

/// The signing key: `CHECKPOINT_KEY_FILE`, else `DATA_DIR/checkpoint.key`, generated (and its
/// verifier key logged) the first time. Its name must be the configured origin, if one is.
pub fn load_signer(settings: &CheckpointSettings, data_dir: &Path) -> Result<Signer, BoxError> {
    let (signer, path) = match &settings.checkpoint_key_file {
        Some(path) => (read_key_file(path)?, path.clone()),
        None => {
            let path: PathBuf = data_dir.join(GENERATED_KEY_FILE);
            if path.exists() {
                (read_key_file(&path)?, path)
            } else {
                let name = match &settings.checkpoint_origin {
                    Some(o) => o.clone(),
                    None => generated_origin()?,
                };
                let signer = Signer::generate(&name)?;
                write_key_file(&path, &signer)?;
                tracing::warn!(
                    path = %path.display(),
                    verifier_key = %signer.verifier(),
                    "no CHECKPOINT_KEY_FILE: generated a checkpoint signing key; publish its verifier key"
                );
                (signer, path)
            }
        }
    };
    if let Some(origin) = &settings.checkpoint_origin {
        if origin != signer.name() {
            return Err(format!(
                "CHECKPOINT_ORIGIN is {origin:?} but the key in {} is named {:?}: the origin is the key's name \
                 (make a key for it with `ticket-audit keygen --name {origin}`)",
                path.display(),
                signer.name()
            )
            .into());
        }
    }
    Ok(signer)
}

/// What was last signed, the tree any new checkpoint must extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    pub size: u64,
    pub root: crate::domain::merkle::Hash,
}

/// Signs a checkpoint of the current tree when it has grown, and only if it extends what was
/// signed before (`last`): a tree rewritten under the service, by someone with the database's
/// rights, is never signed; it is logged as the alarm it is.
pub async fn sign_if_grown(
    pool: &PgPool,
    signer: &Signer,
    dir: Option<&Path>,
    last: &mut Option<Signed>,
) -> Result<Option<CheckpointRow>, BoxError> {
    let mut conn = pool.acquire().await?;
    let key = signer.verifier();
    if last.is_none() {
        // After a restart: continue from the newest checkpoint this key signed, in the database
        // or in CHECKPOINT_DIR, whichever is larger: the directory is out of the database
        // superuser's reach, so deleting checkpoint rows does not reset what must be extended.
        let in_db = tree::latest_checkpoint(&mut conn)
            .await?
            .and_then(|cp| Checkpoint::open(&cp.note, &key).ok())
            .map(|cp| Signed { size: cp.size, root: cp.root });
        let in_dir = dir.and_then(|d| newest_in_dir(d, &key));
        *last = match (in_db, in_dir) {
            (Some(a), Some(b)) if a.size > b.size => Some(a),
            (a, None) => a,
            (_, b) => b,
        };
    }
    let (size, root) = tree::current(&mut conn).await?;
    if let Some(prev) = *last {
        if prev.size == size && prev.root == root {
            return Ok(None);
        }
        let extends = if size < prev.size {
            false
        } else {
            let proof = tree::consistency(&mut conn, prev.size, size).await?;
            check_tree(&proof, size, &root, prev.size, &prev.root).is_ok()
        };
        if !extends {
            metrics::counter!("ticket_audit_checkpoint_refusals_total").increment(1);
            return Err(format!(
                "NOT SIGNING: the stored tree (size {size}) does not extend the last checkpoint signed (size {}): \
                 the record was changed under the service; run `ticket-audit verify --checkpoint`",
                prev.size
            )
            .into());
        }
    }
    let note = Checkpoint { origin: signer.name().to_owned(), size, root }.sign(signer)?;
    // Other instances may sign with this key too: in turns, and only what is larger than the
    // newest checkpoint stored, so the checkpoints' sizes grow with their ids (the newest is the
    // largest; none is stored twice). What another stored must extend our tree, or nothing is.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    tree::lock_checkpoints(&mut tx).await?;
    let newest = tree::latest_checkpoint(&mut tx).await?.and_then(|cp| Checkpoint::open(&cp.note, &key).ok());
    if let Some(newest) = newest.filter(|n| n.size >= size) {
        let proof = tree::consistency(&mut tx, size, newest.size).await?;
        tx.commit().await?;
        if check_tree(&proof, newest.size, &newest.root, size, &root).is_err() {
            metrics::counter!("ticket_audit_checkpoint_refusals_total").increment(1);
            return Err(format!(
                "NOT SIGNING: a checkpoint of size {} signed with this key does not extend the stored tree of                  size {size}: the record was changed under the service; run `ticket-audit verify --checkpoint`",
                newest.size
            )
            .into());
        }
        *last = Some(Signed { size, root });
        return Ok(None);
    }
    let row = tree::insert_checkpoint(&mut tx, size, &root, key.key_id(), &note).await?;
    tx.commit().await?;
    if let Some(dir) = dir {
        let path = dir.join(format!("{size:012}-{:08x}.checkpoint", key.key_id()));
        std::fs::write(&path, &note).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    *last = Some(Signed { size, root });
    metrics::gauge!("ticket_audit_checkpoint_tree_size").set(size as f64);
    Ok(Some(row))
}

/// The largest checkpoint in `dir` that `key` signed.
fn newest_in_dir(dir: &Path, key: &crate::domain::checkpoint::Verifier) -> Option<Signed> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|note| Checkpoint::open(&note, key).ok())
        .max_by_key(|cp| cp.size)
        .map(|cp| Signed { size: cp.size, root: cp.root })
}

/// Signs a checkpoint whenever the tree has grown, at most every `interval`, until `stop`.
///
/// The first checkpoint is signed before this returns (when the database answers): a service
/// that takes deliveries has signed the tree as it found it, size 0 on a fresh database.
pub async fn spawn(
    pool: PgPool,
    signer: Signer,
    interval: Duration,
    dir: Option<PathBuf>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    if let Some(dir) = &dir {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::error!(error = %e, dir = %dir.display(), "cannot create CHECKPOINT_DIR");
        }
    }
    let mut last = None;
    if let Err(e) = sign_if_grown(&pool, &signer, dir.as_deref(), &mut last).await {
        tracing::error!(error = %e, "signing the first checkpoint");
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = stop.changed() => if changed.is_err() { return },
            }
            let stopping = *stop.borrow();
            match sign_if_grown(&pool, &signer, dir.as_deref(), &mut last).await {
                Ok(Some(cp)) => tracing::debug!(tree_size = cp.tree_size, "checkpoint signed"),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "signing a checkpoint"),
            }
            if stopping {
                // One last checkpoint covers what was committed before shutdown.
                return;
            }
        }
    })
}
