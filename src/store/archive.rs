//! Archiving whole months of the record (issue 15): each closed partition written as one file
//! per table (NDJSON compressed with zstd, rows as PostgreSQL's `row_to_json` gives them), with
//! a manifest tying its leaves to a signed checkpoint (domain/archive.rs); checking archive
//! directories, against the database or offline; dropping archived partitions.
//!
//! Memory stays constant: rows are streamed from the database to the encoder one at a time, and
//! the leaves folded into a [`RangeHasher`] (O(log n) hashes) as they pass.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::{Acquire, PgConnection};
use time::Date;

use super::partitions::{self, TABLES};
use super::text::{unescape, PgText};
use super::tree;
use crate::domain::archive::{
    check_range, tiling, ArchiveFile, Manifest, ManifestCheckpoint, RangeError, RangeHasher, RangeProof, FORMAT,
};
use crate::domain::checkpoint::{Checkpoint, Verifier};
use crate::domain::ledger::{leaf_hash, ChainedFields, Hash};
use crate::domain::merkle::stored_hash_index;

pub const MANIFEST: &str = "manifest.json";
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("--before {before} would take the current month ({current}): only months before it can be archived")]
    CurrentMonth { before: Date, current: Date },
    #[error("no signed checkpoint covers seq {0} yet: wait for the next checkpoint and run again")]
    NotSigned(i64),
    #[error("partition {partition}: {why}")]
    Partition { partition: String, why: String },
    #[error("{dir}: {why}")]
    Invalid { dir: PathBuf, why: String },
    #[error("{dir}: {source}")]
    Range { dir: PathBuf, source: RangeError },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_owned(), source }
}

/// A month's partitions (one per table in [`TABLES`]), closed: seq `first_seq..=last_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Month {
    /// `YYYY_MM`, or `legacy`.
    pub partition: String,
    pub first_seq: i64,
    pub last_seq: i64,
}

/// The closed partitions wholly before `before` (the first of a month), oldest first. The
/// current month is never archived: a `before` past it is refused.
pub async fn months_before(conn: &mut PgConnection, before: Date) -> Result<Vec<Month>, ArchiveError> {
    let (first_month, current): (Date, Date) =
        sqlx::query_as("SELECT min(month), max(month) FROM ledger_months").fetch_one(&mut *conn).await?;
    if before > current {
        return Err(ArchiveError::CurrentMonth { before, current });
    }
    let mut out = Vec::new();
    for p in partitions::list(conn, "deliveries").await? {
        let Some(to) = p.to else { continue };
        let suffix = p.name.trim_start_matches("deliveries_").to_owned();
        // The legacy partition ends in the month V9 ran, the first of ledger_months.
        let month = if suffix == "legacy" { Some(first_month) } else { parse_suffix(&suffix) };
        let Some(month) = month else { continue };
        if month < before && to > p.from.unwrap_or(1) {
            out.push(Month { partition: suffix, first_seq: p.from.unwrap_or(1), last_seq: to - 1 });
        }
    }
    Ok(out)
}

fn parse_suffix(s: &str) -> Option<Date> {
    let (y, m) = s.split_once('_')?;
    Date::from_calendar_date(y.parse().ok()?, time::Month::try_from(m.parse::<u8>().ok()?).ok()?, 1).ok()
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn order_of(table: &str) -> &'static str {
    if matches!(table, "deliveries" | "action_events") {
        "seq"
    } else {
        "seq, position"
    }
}

/// The leaf of an archived delivery line: its fields as stored (strings escaped, bytes as
/// `\x` hex), the leaf taking the strings unescaped, as the writer does.
#[derive(serde::Deserialize)]
struct LeafLine {
    seq: i64,
    received_at: String,
    dedup_key: String,
    action: Option<String>,
    status_code: Option<i32>,
    body_sha256: String,
}

fn leaf_of_line(line: &str) -> Result<(i64, Hash), String> {
    let l: LeafLine = serde_json::from_str(line).map_err(|e| format!("not a delivery line: {e}"))?;
    let received_at = time::OffsetDateTime::parse(&l.received_at, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("seq {}: received_at {:?}: {e}", l.seq, l.received_at))?;
    let body_sha256 = l
        .body_sha256
        .strip_prefix("\\x")
        .and_then(|h| hex::decode(h).ok())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| format!("seq {}: body_sha256 is not 32 bytes of hex", l.seq))?;
    let key = unescape(&l.dedup_key);
    let action = l.action.as_deref().map(unescape);
    let leaf = leaf_hash(&ChainedFields {
        seq: l.seq,
        received_at,
        key: &key,
        action: action.as_deref(),
        status_code: l.status_code,
        body_sha256: &body_sha256,
    });
    Ok((l.seq, leaf))
}

/// Writes one table's partition of `month` to `out/<table>.ndjson.zst`, in seq order, folding
/// the deliveries' leaves into `range` (deliveries only; it must start at `month.first_seq`).
async fn write_table(
    conn: &mut PgConnection,
    table: &str,
    month: &Month,
    out: &Path,
    mut range: Option<&mut RangeHasher>,
) -> Result<ArchiveFile, ArchiveError> {
    let name = format!("{table}.ndjson.zst");
    let path = out.join(&name);
    let file = std::fs::File::create(&path).map_err(io(&path))?;
    let mut enc = zstd::Encoder::new(Hashing { inner: std::io::BufWriter::new(file), sha: Sha256::new() }, ZSTD_LEVEL)
        .map_err(io(&path))?;
    let partition = format!("{table}_{}", month.partition);
    let sql = format!("SELECT row_to_json(p)::text FROM {partition} p ORDER BY {}", order_of(table));
    let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *conn);
    let mut n = 0u64;
    while let Some(line) = rows.try_next().await? {
        if let Some(range) = range.as_deref_mut() {
            let (seq, leaf) =
                leaf_of_line(&line).map_err(|why| ArchiveError::Partition { partition: partition.clone(), why })?;
            if seq != month.first_seq + n as i64 {
                return Err(ArchiveError::Partition {
                    partition,
                    why: format!("seq {} where {} was next", seq, month.first_seq + n as i64),
                });
            }
            range.push(leaf);
        }
        enc.write_all(line.as_bytes()).map_err(io(&path))?;
        enc.write_all(b"\n").map_err(io(&path))?;
        n += 1;
    }
    drop(rows);
    let mut hashing = enc.finish().map_err(io(&path))?;
    hashing.flush().map_err(io(&path))?;
    Ok(ArchiveFile { table: table.to_owned(), file: name, rows: n, sha256: hex::encode(hashing.sha.finalize()) })
}

/// Session settings for reading a month: times in UTC (row_to_json prints them in the session's
/// zone), and no JIT (a month's scan is costed high enough to be JIT-compiled, which made it
/// slower, not faster).
async fn archive_session(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET LOCAL TimeZone = 'UTC'").execute(&mut *conn).await?;
    sqlx::query("SET LOCAL jit = off").execute(&mut *conn).await?;
    Ok(())
}

/// Writes `month` to `dir/<partition>/`: one file per table and the manifest. Returns the
/// manifest. The deliveries (with the leaves, the checkpoint and the proof) are read on `conn`,
/// in one snapshot; given a second connection, the other tables are read on it at the same time,
/// on a task of their own (a closed partition never changes, so no shared snapshot is needed),
/// which puts a second PostgreSQL backend and a second core to work.
pub async fn write_month(
    conn: &mut PgConnection,
    second: Option<PgConnection>,
    month: &Month,
    dir: &Path,
) -> Result<Manifest, ArchiveError> {
    let out = dir.join(&month.partition);
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let others: Vec<&'static str> = TABLES.iter().copied().filter(|t| *t != "deliveries").collect();
    let beside = second.map(|mut c| {
        let (month, out, tables) = (month.clone(), out.clone(), others.clone());
        tokio::spawn(async move {
            let mut tx = c.begin().await?;
            archive_session(&mut tx).await?;
            let mut files = Vec::new();
            for table in tables {
                files.push(write_table(&mut tx, table, &month, &out, None).await?);
            }
            tx.commit().await?;
            Ok::<_, ArchiveError>(files)
        })
    });
    let mut tx = super::snapshot(conn).await?;
    archive_session(&mut tx).await?;
    let mut range = RangeHasher::new(month.first_seq as u64 - 1);
    let mut files = vec![write_table(&mut tx, "deliveries", month, &out, Some(&mut range)).await?];
    match beside {
        Some(task) => {
            files.extend(task.await.map_err(|e| ArchiveError::Partition {
                partition: month.partition.clone(),
                why: format!("the second connection's task failed: {e}"),
            })??);
        }
        None => {
            for table in &others {
                files.push(write_table(&mut tx, table, month, &out, None).await?);
            }
        }
    }
    // The manifest lists the files in TABLES order, however they were written.
    files.sort_by_key(|f| TABLES.iter().position(|t| *t == f.table));
    let want = (month.last_seq - month.first_seq + 1) as u64;
    if range.leaves() != want {
        return Err(ArchiveError::Partition {
            partition: month.partition.clone(),
            why: format!(
                "{} deliveries where seq {}..={} needs {want}",
                range.leaves(),
                month.first_seq,
                month.last_seq
            ),
        });
    }
    let checkpoint: Option<(i64, Vec<u8>, String)> = sqlx::query_as(
        "SELECT tree_size, root_hash, note FROM checkpoints WHERE tree_size >= $1 ORDER BY tree_size, id LIMIT 1",
    )
    .bind(month.last_seq)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((size, root, note)) = checkpoint else { return Err(ArchiveError::NotSigned(month.last_seq)) };
    let size = size as u64;
    let proof = RangeProof {
        left: subtree_hashes(&mut tx, 0, month.first_seq as u64 - 1).await?,
        right: subtree_hashes(&mut tx, month.last_seq as u64, size).await?,
    };
    tx.commit().await?;
    let root_hash: Hash =
        root.try_into().map_err(|_| sqlx::Error::Protocol("checkpoint root is not 32 bytes".into()))?;
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        partition: month.partition.clone(),
        first_seq: month.first_seq,
        last_seq: month.last_seq,
        range_root: range.range_root(),
        files,
        checkpoint: ManifestCheckpoint { tree_size: size, root_hash, note },
        proof,
    };
    // The database's own tree must agree with its rows before anything is written as proof.
    check_range(&manifest, &range).map_err(|source| ArchiveError::Range { dir: out.clone(), source })?;
    let path = out.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes");
    std::fs::write(&path, text + "\n").map_err(io(&path))?;
    Ok(manifest)
}

/// The stored hashes of the subtrees tiling leaves `[begin, end)` (all complete in the tree).
async fn subtree_hashes(conn: &mut PgConnection, begin: u64, end: u64) -> Result<Vec<Hash>, sqlx::Error> {
    let indexes: Vec<u64> = tiling(begin, end).iter().map(|n| stored_hash_index(n.level, n.start >> n.level)).collect();
    tree::read_hashes(conn, &indexes).await
}

/// What checking one archived month found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    pub partition: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub tree_size: u64,
    pub rows: u64,
}

/// The months of an archive directory: every `*/manifest.json` under it, in name order.
pub fn manifests(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>, ArchiveError> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for sub in entries {
        let path = sub.join(MANIFEST);
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| ArchiveError::Invalid { dir: sub.clone(), why: format!("{MANIFEST}: {e}") })?;
        if m.format != FORMAT {
            return Err(ArchiveError::Invalid { dir: sub, why: format!("format {:?}, not {FORMAT:?}", m.format) });
        }
        out.push((sub, m));
    }
    if out.is_empty() {
        return Err(ArchiveError::Invalid { dir: dir.to_owned(), why: format!("no */{MANIFEST} in it") });
    }
    Ok(out)
}

/// Checks one archived month from its files alone: each file's checksum and row count, and the
/// deliveries' leaves against the manifest's range root and, through the proof, its checkpoint's
/// root. Reads each file once, in constant memory. The checkpoint's signature is the caller's.
pub fn check_files(dir: &Path, m: &Manifest) -> Result<Checked, ArchiveError> {
    let bad = |why: String| ArchiveError::Invalid { dir: dir.to_owned(), why };
    let mut range = RangeHasher::new(m.first_seq.max(1) as u64 - 1);
    let mut rows = 0;
    for table in TABLES {
        let f = m.files.iter().find(|f| f.table == table).ok_or_else(|| bad(format!("no file for {table}")))?;
        if f.file.contains('/') || f.file.contains('\\') || f.file.starts_with('.') {
            return Err(bad(format!("file name {:?} leaves the directory", f.file)));
        }
        let path = dir.join(&f.file);
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        let mut sha = Sha256::new();
        let tee = Tee { inner: file, sha: &mut sha };
        let mut lines = BufReader::new(zstd::Decoder::new(tee).map_err(io(&path))?);
        let mut n = 0u64;
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).map_err(io(&path))? == 0 {
                break;
            }
            if table == "deliveries" {
                let (seq, leaf) = leaf_of_line(line.trim_end()).map_err(|why| bad(format!("{}: {why}", f.file)))?;
                if seq != m.first_seq + n as i64 {
                    return Err(bad(format!("{}: seq {seq} where {} was next", f.file, m.first_seq + n as i64)));
                }
                range.push(leaf);
            }
            n += 1;
        }
        // Whatever follows the compressed stream counts in the checksum too.
        let mut rest = lines.into_inner().finish();
        std::io::copy(&mut rest, &mut std::io::sink()).map_err(io(&path))?;
        drop(rest);
        if hex::encode(sha.finalize()) != f.sha256 {
            return Err(bad(format!("{}: its SHA-256 is not the manifest's", f.file)));
        }
        if n != f.rows {
            return Err(bad(format!("{}: {n} rows, the manifest says {}", f.file, f.rows)));
        }
        rows += n;
    }
    check_range(m, &range).map_err(|source| ArchiveError::Range { dir: dir.to_owned(), source })?;
    Ok(Checked {
        partition: m.partition.clone(),
        first_seq: m.first_seq,
        last_seq: m.last_seq,
        tree_size: m.checkpoint.tree_size,
        rows,
    })
}

/// A reader that hashes what passes through it.
struct Tee<'a, R> {
    inner: R,
    sha: &'a mut Sha256,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

/// Offline: the manifest's checkpoint is signed by `key` and says what the manifest says.
pub fn check_signature(dir: &Path, m: &Manifest, key: &Verifier) -> Result<(), ArchiveError> {
    let bad = |why: String| ArchiveError::Invalid { dir: dir.to_owned(), why };
    let cp = Checkpoint::open(&m.checkpoint.note, key).map_err(|e| bad(format!("checkpoint: {e}")))?;
    if cp.size != m.checkpoint.tree_size || cp.root != m.checkpoint.root_hash {
        return Err(bad("the signed checkpoint is not the manifest's tree size and root".into()));
    }
    Ok(())
}

/// Against the database: the manifest's checkpoint is one the service signed, and the stored
/// tree has that root at that size (the tree's hashes stay in the database for ever). While the
/// month is still in the database, its rows are the files' too (counts).
pub async fn check_against_database(conn: &mut PgConnection, dir: &Path, m: &Manifest) -> Result<(), ArchiveError> {
    let bad = |why: String| ArchiveError::Invalid { dir: dir.to_owned(), why };
    let mut tx = super::snapshot(conn).await?;
    let signed: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM checkpoints WHERE tree_size = $1 AND note = $2)")
        .bind(m.checkpoint.tree_size as i64)
        .bind(&m.checkpoint.note)
        .fetch_one(&mut *tx)
        .await?;
    if !signed {
        return Err(bad("its checkpoint is not among the database's".into()));
    }
    if tree::tree_size(&mut tx).await? < m.checkpoint.tree_size {
        return Err(bad("the database's tree is smaller than the manifest's checkpoint".into()));
    }
    if tree::root(&mut tx, m.checkpoint.tree_size).await? != m.checkpoint.root_hash {
        return Err(bad("the database's tree has another root at the checkpoint's size".into()));
    }
    for f in &m.files {
        let partition = format!("{}_{}", f.table, m.partition);
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&partition).fetch_one(&mut *tx).await?;
        if !exists {
            continue;
        }
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {partition}")).fetch_one(&mut *tx).await?;
        if n as u64 != f.rows {
            return Err(bad(format!("{partition} holds {n} rows, {} holds {}", f.file, f.rows)));
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Detaches and drops a month's partitions, checked by the caller, and records where it went.
/// One transaction, holding the ledger head: the writer waits meanwhile.
pub async fn drop_month(conn: &mut PgConnection, month: &Month, dir: &Path) -> Result<(), ArchiveError> {
    let manifest_path = dir.join(&month.partition).join(MANIFEST);
    let manifest = std::fs::read(&manifest_path).map_err(io(&manifest_path))?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT 1 FROM ledger_head FOR UPDATE").execute(&mut *tx).await?;
    let last_hash: Vec<u8> =
        sqlx::query_scalar(&format!("SELECT hash FROM deliveries_{} WHERE seq = $1", month.partition))
            .bind(month.last_seq)
            .fetch_one(&mut *tx)
            .await?;
    for table in TABLES {
        let partition = format!("{table}_{}", month.partition);
        sqlx::query(&format!("ALTER TABLE {table} DETACH PARTITION {partition}")).execute(&mut *tx).await?;
        sqlx::query(&format!("DROP TABLE {partition}")).execute(&mut *tx).await?;
    }
    sqlx::query(
        "INSERT INTO archived_partitions (partition, first_seq, last_seq, last_hash, directory, manifest_sha256) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&month.partition)
    .bind(month.first_seq)
    .bind(month.last_seq)
    .bind(last_hash)
    .bind(PgText::from(dir.display().to_string().as_str()))
    .bind(hex::encode(Sha256::digest(&manifest)))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Where an archived delivery lives: the directory `archive --to` was given, the month's
/// partition (a sub-directory), and the delivery's line in its `deliveries.ndjson.zst`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchivedAt {
    pub directory: String,
    pub partition: String,
    pub file: String,
    pub line: i64,
}

pub async fn archived_at(conn: &mut PgConnection, seq: i64) -> Result<Option<ArchivedAt>, sqlx::Error> {
    let row: Option<(PgText, String, i64)> = sqlx::query_as(
        "SELECT directory, partition, first_seq FROM archived_partitions WHERE first_seq <= $1 AND last_seq >= $1",
    )
    .bind(seq)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(directory, partition, first)| ArchivedAt {
        directory: directory.0,
        file: format!("{partition}/deliveries.ndjson.zst"),
        partition,
        line: seq - first + 1,
    }))
}
