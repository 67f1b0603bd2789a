//! The verifiable log in PostgreSQL: the tree's stored hashes, grown with each batch, its proofs,
//! the signed checkpoints, and the check that every stored hash matches the leaves.

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::text::PgText;
use crate::domain::ledger::{leaf_hash, ChainedFields};
use crate::domain::merkle::{self, Hash, RightEdge};

/// Leaves hashed per transaction when the tree catches up with older deliveries.
const CATCH_UP_CHUNK: i64 = 5000;

fn corrupt(what: String) -> sqlx::Error {
    sqlx::Error::Protocol(format!("the verifiable log's storage is inconsistent: {what}"))
}

/// The stored hashes at `indexes`, in that order.
pub async fn read_hashes(conn: &mut PgConnection, indexes: &[u64]) -> Result<Vec<Hash>, sqlx::Error> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<i64> = indexes.iter().map(|&i| i as i64).collect();
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT index, hash FROM tree_hashes WHERE index = ANY($1)")
        .bind(&wanted)
        .fetch_all(&mut *conn)
        .await?;
    let found: std::collections::HashMap<i64, Vec<u8>> = rows.into_iter().collect();
    wanted
        .iter()
        .map(|i| {
            found
                .get(i)
                .and_then(|h| <Hash>::try_from(h.as_slice()).ok())
                .ok_or_else(|| corrupt(format!("stored hash {i} is missing")))
        })
        .collect()
}

/// The number of leaves the stored hashes cover.
pub async fn tree_size(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let last: Option<i64> = sqlx::query_scalar("SELECT max(index) FROM tree_hashes").fetch_one(&mut *conn).await?;
    let count = last.map_or(0, |i| i as u64 + 1);
    merkle::tree_size_for_stored_count(count).ok_or_else(|| corrupt(format!("{count} stored hashes end mid-leaf")))
}

/// The right edge of the stored tree of `size` leaves.
pub async fn load_edge(conn: &mut PgConnection, size: u64) -> Result<RightEdge, sqlx::Error> {
    let hashes = read_hashes(conn, &RightEdge::indexes(size)).await?;
    RightEdge::from_stored(size, hashes).map_err(|e| corrupt(e.to_string()))
}

pub async fn root(conn: &mut PgConnection, size: u64) -> Result<Hash, sqlx::Error> {
    let hashes = read_hashes(conn, &merkle::tree_hash_indexes(size)).await?;
    merkle::tree_hash(size, &hashes).map_err(|e| corrupt(e.to_string()))
}

/// The audit path of leaf `index` in the tree of `size` leaves (both checked by the caller).
pub async fn inclusion(conn: &mut PgConnection, size: u64, index: u64) -> Result<Vec<Hash>, sqlx::Error> {
    let need = merkle::record_proof_indexes(size, index).map_err(|e| corrupt(e.to_string()))?;
    let hashes = read_hashes(conn, &need).await?;
    merkle::record_proof(size, index, &hashes).map_err(|e| corrupt(e.to_string()))
}

/// The stored hash of leaf `index` and its audit path in the tree of `size` leaves, in one read.
pub async fn leaf_and_inclusion(
    conn: &mut PgConnection,
    size: u64,
    index: u64,
) -> Result<(Hash, Vec<Hash>), sqlx::Error> {
    let mut need = merkle::record_proof_indexes(size, index).map_err(|e| corrupt(e.to_string()))?;
    need.push(merkle::stored_hash_index(0, index));
    let mut hashes = read_hashes(conn, &need).await?;
    let leaf = hashes.pop().expect("the leaf was asked for");
    let proof = merkle::record_proof(size, index, &hashes).map_err(|e| corrupt(e.to_string()))?;
    Ok((leaf, proof))
}

/// The consistency proof from the tree of `first` leaves to the one of `second`.
pub async fn consistency(conn: &mut PgConnection, first: u64, second: u64) -> Result<Vec<Hash>, sqlx::Error> {
    let need = merkle::tree_proof_indexes(second, first).map_err(|e| corrupt(e.to_string()))?;
    let hashes = read_hashes(conn, &need).await?;
    merkle::tree_proof(second, first, &hashes).map_err(|e| corrupt(e.to_string()))
}

/// The stored hashes appending some leaves adds, as the columns of `tree_hashes`.
#[derive(Debug, Default)]
pub struct StoredHashes {
    index: Vec<i64>,
    hash: Vec<Vec<u8>>,
}

impl StoredHashes {
    /// Appends `leaves` to the tree whose edge is `edge`; the hashes to store.
    pub fn append(edge: &mut RightEdge, leaves: &[Hash]) -> Self {
        let mut s =
            StoredHashes { index: Vec::with_capacity(leaves.len() * 2), hash: Vec::with_capacity(leaves.len() * 2) };
        let mut index = merkle::stored_hash_index(0, edge.size()) as i64;
        for leaf in leaves {
            for h in edge.append(*leaf) {
                s.index.push(index);
                s.hash.push(h.to_vec());
                index += 1;
            }
        }
        s
    }

    /// Binds `$58, $59` of `sql/store_batch.sql`.
    pub fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.index).bind(&self.hash)
    }
}

/// Appends leaves to the tree whose edge is `edge`, storing the new hashes, in the caller's
/// transaction (the catch-up; the writer stores them with the batch's one statement).
pub async fn append(conn: &mut PgConnection, edge: &mut RightEdge, leaves: &[Hash]) -> Result<(), sqlx::Error> {
    if leaves.is_empty() {
        return Ok(());
    }
    let s = StoredHashes::append(edge, leaves);
    sqlx::query("INSERT INTO tree_hashes (index, hash) SELECT * FROM UNNEST($1::bigint[], $2::bytea[])")
        .bind(&s.index)
        .bind(&s.hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A stored delivery's leaf fields, strings unescaped as the read API gives them.
#[derive(sqlx::FromRow)]
pub struct LeafRow {
    pub seq: i64,
    pub received_at: OffsetDateTime,
    pub dedup_key: PgText,
    pub action: Option<PgText>,
    pub status_code: Option<i32>,
    pub body_sha256: Vec<u8>,
}

impl LeafRow {
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&ChainedFields {
            seq: self.seq,
            received_at: self.received_at,
            key: &self.dedup_key.0,
            action: self.action.as_ref().map(|a| a.0.as_str()),
            status_code: self.status_code,
            body_sha256: &self.body_sha256,
        })
    }
}

pub async fn leaf_rows(conn: &mut PgConnection, after: i64, limit: i64) -> Result<Vec<LeafRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, received_at, dedup_key, action, status_code, body_sha256 FROM deliveries \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Grows the tree whose edge is `edge` to cover every delivery up to `head_seq`, in this
/// transaction. The writer calls it when its edge is not the head's (another process wrote, or
/// the tree lags after the migration); normally there is nothing to do.
pub async fn grow_to(conn: &mut PgConnection, edge: &mut RightEdge, head_seq: i64) -> Result<(), sqlx::Error> {
    while (edge.size() as i64) < head_seq {
        let rows = leaf_rows(conn, edge.size() as i64, CATCH_UP_CHUNK).await?;
        if rows.is_empty() {
            return Err(corrupt(format!("the head is at {head_seq} but the deliveries end at {}", edge.size())));
        }
        let mut leaves = Vec::with_capacity(rows.len());
        for r in &rows {
            if r.seq != edge.size() as i64 + 1 + leaves.len() as i64 {
                return Err(corrupt(format!("delivery {} is missing", edge.size() + 1 + leaves.len() as u64)));
            }
            leaves.push(r.leaf_hash());
        }
        append(conn, edge, &leaves).await?;
    }
    Ok(())
}

/// The edge the writer should continue from, under the ledger head's lock: `cached` when it is
/// still the head's, else rebuilt from the stored hashes, and grown to the head.
pub async fn edge_at_head(
    conn: &mut PgConnection,
    cached: Option<&RightEdge>,
    head_seq: i64,
) -> Result<RightEdge, sqlx::Error> {
    if let Some(edge) = cached.filter(|e| e.size() as i64 == head_seq) {
        return Ok(edge.clone());
    }
    let size = tree_size(conn).await?;
    if size as i64 > head_seq {
        return Err(corrupt(format!("the tree has {size} leaves, past the head at {head_seq}")));
    }
    let mut edge = load_edge(conn, size).await?;
    grow_to(conn, &mut edge, head_seq).await?;
    Ok(edge)
}

/// Builds the tree for deliveries stored before it existed, one chunk per transaction (each
/// under the ledger head's lock, so the writer waits rather than races), memory flat.
/// Returns the number of leaves added.
pub async fn catch_up(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    use sqlx::Connection;
    let mut added = 0;
    loop {
        let mut tx = conn.begin().await?;
        let head: i64 = sqlx::query_scalar("SELECT seq FROM ledger_head FOR UPDATE").fetch_one(&mut *tx).await?;
        let size = tree_size(&mut tx).await?;
        if size as i64 >= head {
            tx.commit().await?;
            return Ok(added);
        }
        let mut edge = load_edge(&mut tx, size).await?;
        let target = head.min(size as i64 + CATCH_UP_CHUNK);
        grow_to(&mut tx, &mut edge, target).await?;
        tx.commit().await?;
        added += target as u64 - size;
        if added % 100_000 < CATCH_UP_CHUNK as u64 {
            tracing::info!(leaves = target, head, "building the verifiable log's tree");
        }
    }
}

/// Where the stored tree disagrees with the leaves recomputed from the deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeBreak {
    pub seq: i64,
    pub detail: String,
}

/// Recomputes every stored hash from the deliveries, in one snapshot (the caller's transaction),
/// streaming: the edge and one chunk in memory.
pub async fn check_stored_hashes(conn: &mut PgConnection) -> Result<Option<TreeBreak>, sqlx::Error> {
    let size = tree_size(conn).await.map_err(|e| corrupt(e.to_string()))?;
    let mut edge = RightEdge::default();
    let mut after = 0i64;
    loop {
        let rows = leaf_rows(conn, after, CATCH_UP_CHUNK).await?;
        if rows.is_empty() || edge.size() >= size {
            break;
        }
        let first_index = merkle::stored_hash_index(0, edge.size()) as i64;
        let stored: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT index, hash FROM tree_hashes WHERE index >= $1 ORDER BY index LIMIT $2")
                .bind(first_index)
                .bind(CATCH_UP_CHUNK * 2 + 64)
                .fetch_all(&mut *conn)
                .await?;
        let mut stored = stored.into_iter().peekable();
        for r in &rows {
            if edge.size() >= size {
                break;
            }
            if r.seq != edge.size() as i64 + 1 {
                return Ok(Some(TreeBreak {
                    seq: edge.size() as i64 + 1,
                    detail: format!("the tree has leaf {} but no delivery has seq {}", edge.size(), edge.size() + 1),
                }));
            }
            let first = merkle::stored_hash_index(0, edge.size()) as i64;
            for (level, want) in edge.append(r.leaf_hash()).into_iter().enumerate() {
                let index = first + level as i64;
                match stored.next() {
                    Some((i, h)) if i == index && h.as_slice() == want => {}
                    Some((i, _)) if i == index => {
                        let what = if level == 0 { "leaf hash".to_owned() } else { format!("level-{level} hash") };
                        return Ok(Some(TreeBreak {
                            seq: r.seq,
                            detail: format!("the stored {what} at index {index} does not match the delivery"),
                        }));
                    }
                    _ => return Ok(Some(TreeBreak { seq: r.seq, detail: format!("stored hash {index} is missing") })),
                }
            }
            after = r.seq;
        }
    }
    if edge.size() < size {
        return Ok(Some(TreeBreak {
            seq: edge.size() as i64 + 1,
            detail: format!("the tree covers {size} leaves but the deliveries end at {}", edge.size()),
        }));
    }
    Ok(None)
}

// ---------------------------------------------------------------- checkpoints

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CheckpointRow {
    pub id: i64,
    pub tree_size: i64,
    pub root_hash: Vec<u8>,
    pub signed_at: OffsetDateTime,
    pub note: String,
}

const CHECKPOINT_COLUMNS: &str = "SELECT id, tree_size, root_hash, signed_at, note FROM checkpoints";

pub async fn latest_checkpoint(conn: &mut PgConnection) -> Result<Option<CheckpointRow>, sqlx::Error> {
    sqlx::query_as(&format!("{CHECKPOINT_COLUMNS} ORDER BY id DESC LIMIT 1")).fetch_optional(conn).await
}

/// The newest checkpoint of exactly `size` leaves.
pub async fn checkpoint_of_size(conn: &mut PgConnection, size: u64) -> Result<Option<CheckpointRow>, sqlx::Error> {
    sqlx::query_as(&format!("{CHECKPOINT_COLUMNS} WHERE tree_size = $1 ORDER BY id DESC LIMIT 1"))
        .bind(size as i64)
        .fetch_optional(conn)
        .await
}

/// Checkpoints newest first, before the id `before` (a page).
pub async fn list_checkpoints(
    conn: &mut PgConnection,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<CheckpointRow>, sqlx::Error> {
    sqlx::query_as(&format!("{CHECKPOINT_COLUMNS} WHERE id < $1 ORDER BY id DESC LIMIT $2"))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Arbitrary constant: the advisory lock under which a signer stores a checkpoint.
const CHECKPOINT_LOCK: i64 = 0x7461_5f63_6b70; // "ta_ckp"

/// Takes the checkpoint lock until the end of the caller's transaction: several instances
/// signing with one key take turns, so each sees what the others stored before it stores its own.
pub async fn lock_checkpoints(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHECKPOINT_LOCK).execute(conn).await?;
    Ok(())
}

pub async fn insert_checkpoint(
    conn: &mut PgConnection,
    size: u64,
    root: &Hash,
    key_id: u32,
    note: &str,
) -> Result<CheckpointRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO checkpoints (tree_size, root_hash, key_id, note) VALUES ($1, $2, $3, $4) \
         RETURNING id, tree_size, root_hash, signed_at, note",
    )
    .bind(size as i64)
    .bind(root.as_slice())
    .bind(key_id.to_be_bytes().as_slice())
    .bind(note)
    .fetch_one(conn)
    .await
}

/// The current tree: its size (the ledger head's seq) and root, in one snapshot.
pub async fn current(conn: &mut PgConnection) -> Result<(u64, Hash), sqlx::Error> {
    let mut tx = super::snapshot(conn).await?;
    let size = tree_size(&mut tx).await?;
    let root = root(&mut tx, size).await?;
    tx.commit().await?;
    Ok((size, root))
}
