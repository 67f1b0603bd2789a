//! The ledger: its head, and the check that the record is whole and unaltered.
//!
//! `verify` walks the deliveries in sequence order inside one snapshot, recomputes every chain
//! hash and every body hash, re-derives each delivery's commands and compares them with the
//! command rows, and stops at the first break, naming its kind.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::batch::chain_link;
use super::text::PgText;
use crate::domain::derive;
use crate::domain::ledger::{sha256, Hash, GENESIS};

const CHUNK: i64 = 2000;

#[derive(Debug, Clone, Serialize)]
pub struct Head {
    pub seq: i64,
    #[serde(serialize_with = "hex_hash")]
    pub hash: Vec<u8>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
}

fn hex_hash<S: serde::Serializer>(h: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

pub async fn head(conn: &mut PgConnection) -> Result<Head, sqlx::Error> {
    let (seq, hash, at) = sqlx::query_as("SELECT seq, hash, at FROM ledger_head").fetch_one(conn).await?;
    Ok(Head { seq, hash, at })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The body's bytes no longer hash to the body_sha256 stored with them.
    BodyEdited,
    /// A chained field (seq, time, key, action, status, body hash) or the hash itself changed.
    RowEdited,
    /// Sequence numbers are missing.
    RowDeleted,
    /// A row that was never received stands in the chain.
    RowInserted,
    /// Rows stand at sequence numbers other than their own.
    RowsReordered,
    /// The ledger head does not match the last row.
    HeadMismatch,
    /// The chain no longer passes through a head recorded earlier (`--expect-head`).
    HistoryRewritten,
    /// A command row differs from what its delivery says.
    CommandEdited,
    /// A command its delivery says was recorded has no row.
    CommandMissing,
    /// A command row no delivery accounts for.
    CommandInserted,
}

#[derive(Debug, Clone, Serialize)]
pub struct Break {
    pub kind: BreakKind,
    pub seq: i64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub deliveries: u64,
    pub commands: u64,
    pub head: Head,
    #[serde(rename = "break")]
    pub first_break: Option<Break>,
    /// Deliveries whose body is the tombstone of a redaction recorded in the ledger: reported,
    /// not a break. Their chain link and leaf are checked like any other's.
    pub redacted: Vec<Redacted>,
}

/// A redacted delivery, as `verify` found it: the tombstone, and the entry that recorded it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Redacted {
    pub seq: i64,
    /// The ledger entry that records the redaction.
    pub redaction_seq: i64,
    pub reason: String,
    pub actor: String,
    pub at: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    received_at: OffsetDateTime,
    recorded_at: OffsetDateTime,
    dedup_key: PgText,
    action: Option<PgText>,
    status_code: Option<i32>,
    body: Vec<u8>,
    body_sha256: Vec<u8>,
    hash: Vec<u8>,
    unprojected: bool,
}

impl Row {
    /// The chain hash this row has when it stands at `seq` after `prev`.
    fn link(&self, prev: &Hash, seq: i64) -> Hash {
        let action = self.action.as_ref().map(|a| a.0.as_str());
        chain_link(prev, seq, self.received_at, &self.dedup_key.0, action, self.status_code, &self.body_sha256)
    }
}

const ROW_COLUMNS: &str = "seq, received_at, coalesce(recorded_at, received_at) AS recorded_at, dedup_key, action, \
     status_code, body, body_sha256, hash, unprojected";

#[derive(sqlx::FromRow, Debug, PartialEq, Eq)]
struct CommandRow {
    seq: i64,
    position: i32,
    ticket_name: Option<PgText>,
    command: PgText,
    result: Option<PgText>,
    executed: bool,
    recorded_at: OffsetDateTime,
}

fn brk(kind: BreakKind, seq: i64, detail: impl Into<String>) -> Option<Break> {
    Some(Break { kind, seq, detail: detail.into() })
}

/// Checks the whole record in one snapshot. With `expect`, also that the chain passes through
/// that (seq, hash), recorded earlier elsewhere.
pub async fn verify(conn: &mut PgConnection, expect: Option<(i64, Hash)>) -> Result<Report, sqlx::Error> {
    let mut tx = super::snapshot(conn).await?;
    let head = head(&mut tx).await?;
    let (mut deliveries, mut commands) = (0u64, 0u64);
    let mut prev: Hash = GENESIS;
    let mut prev2: Hash = GENESIS;
    let mut last_seq = 0i64;
    let mut expected_hash_at: Option<Vec<u8>> = None;
    let mut found: Option<Break> = None;
    let mut redacted = Vec::new();
    // Redactions, as their own entries in the ledger say (each entry is checked in its turn).
    let redactions = super::redaction::entries(&mut tx).await?;
    // Months archived and dropped (store/archive.rs) are checked from their files
    // (`verify --archive`); the chain takes up after them, from the hash recorded at the drop.
    let archived: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT last_seq, last_hash FROM archived_partitions ORDER BY last_seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((seq, hash)) = archived {
        last_seq = seq;
        prev = hash.try_into().map_err(|_| sqlx::Error::Protocol("archived_partitions.last_hash".into()))?;
        prev2 = prev;
    }

    'walk: loop {
        let rows: Vec<Row> =
            sqlx::query_as(&format!("SELECT {ROW_COLUMNS} FROM deliveries WHERE seq > $1 ORDER BY seq LIMIT $2"))
                .bind(last_seq)
                .bind(CHUNK)
                .fetch_all(&mut *tx)
                .await?;
        let Some(hi) = rows.last().map(|r| r.seq) else { break };
        let cmds: Vec<CommandRow> = sqlx::query_as(
            "SELECT seq, position, ticket_name, command, result, executed, recorded_at FROM commands \
             WHERE seq > $1 AND seq <= $2 ORDER BY seq, position",
        )
        .bind(last_seq)
        .bind(hi)
        .fetch_all(&mut *tx)
        .await?;
        let mut cmds = cmds.into_iter().peekable();

        for r in &rows {
            let expected_seq = last_seq + 1;
            if r.seq != expected_seq {
                found = brk(
                    BreakKind::RowDeleted,
                    expected_seq,
                    format!("sequence numbers {expected_seq}..{} are missing", r.seq - 1),
                );
                break 'walk;
            }
            // A body that no longer hashes to its SHA-256 is a break, unless it is the tombstone of
            // a redaction recorded by a later entry that names this very body.
            let redaction = redactions.get(&r.seq).filter(|(_, e)| e.body_sha256 == hex::encode(&r.body_sha256));
            let tombstone = match redaction {
                Some((entry_seq, e)) if r.body.is_empty() => Some((*entry_seq, e)),
                _ => None,
            };
            if tombstone.is_none() && sha256(&r.body).as_slice() != r.body_sha256.as_slice() {
                let detail = if redaction.is_some() {
                    "the body no longer matches its SHA-256, and is not the tombstone its redaction left"
                } else {
                    "the body no longer matches its SHA-256"
                };
                found = brk(BreakKind::BodyEdited, r.seq, detail);
                break 'walk;
            }
            let h = r.link(&prev, r.seq);
            if h.as_slice() != r.hash.as_slice() && r.seq > head.seq {
                found = brk(BreakKind::RowInserted, r.seq, format!("a row past the head at {}", head.seq));
                break 'walk;
            }
            if h.as_slice() != r.hash.as_slice() {
                found = Some(name_break(&mut tx, r, &prev, &prev2).await?);
                break 'walk;
            }
            if let Some((seq, _)) = expect {
                if seq == r.seq {
                    expected_hash_at = Some(r.hash.clone());
                }
            }
            // Commands: what the delivery says against the rows, position by position (for a
            // redacted one, what its redaction entry kept of it: the rows with their text blank).
            let derived = match tombstone {
                Some((entry_seq, e)) => {
                    redacted.push(Redacted {
                        seq: r.seq,
                        redaction_seq: entry_seq,
                        reason: e.reason.clone(),
                        actor: e.actor.clone(),
                        at: e.at.clone(),
                    });
                    let action = r.action.as_ref().map(|a| a.0.clone());
                    Some(e.projection.normalized(action, r.status_code))
                }
                None => derive(&r.body, r.unprojected),
            };
            let want: Vec<CommandRow> = derived
                .iter()
                .flat_map(|n| {
                    n.commands.iter().map(|c| CommandRow {
                        seq: r.seq,
                        position: c.position,
                        ticket_name: n.ticket.as_deref().map(PgText::from),
                        command: c.command.as_str().into(),
                        result: c.result.as_deref().map(PgText::from),
                        executed: c.executed,
                        recorded_at: r.recorded_at,
                    })
                })
                .collect();
            if let Some(stray) = cmds.next_if(|c| c.seq < r.seq) {
                found = brk(
                    BreakKind::CommandInserted,
                    stray.seq,
                    format!("command row at position {} has no delivery", stray.position),
                );
                break 'walk;
            }
            let mut have = Vec::new();
            while let Some(c) = cmds.next_if(|c| c.seq == r.seq) {
                have.push(c);
            }
            if let Some(b) = compare_commands(r.seq, &want, &have) {
                found = Some(b);
                break 'walk;
            }
            commands += have.len() as u64;
            deliveries += 1;
            prev2 = prev;
            prev = h;
            last_seq = r.seq;
        }
        if let Some(stray) = cmds.next() {
            found = brk(
                BreakKind::CommandInserted,
                stray.seq,
                format!("command row at position {} has no delivery", stray.position),
            );
            break;
        }
    }

    if found.is_none() {
        let stray: Option<(i64, i32)> =
            sqlx::query_as("SELECT seq, position FROM commands WHERE seq > $1 ORDER BY seq, position LIMIT 1")
                .bind(last_seq)
                .fetch_optional(&mut *tx)
                .await?;
        found = if let Some((seq, pos)) = stray {
            brk(BreakKind::CommandInserted, seq, format!("command row at position {pos} has no delivery"))
        } else if head.seq > last_seq {
            brk(
                BreakKind::RowDeleted,
                last_seq + 1,
                format!("the head is at {} but the rows end at {last_seq}", head.seq),
            )
        } else if head.seq < last_seq {
            brk(BreakKind::RowInserted, head.seq + 1, format!("rows go on to {last_seq} past the head at {}", head.seq))
        } else if head.hash.as_slice() != prev.as_slice() {
            brk(BreakKind::HeadMismatch, head.seq, "the head's hash is not the last row's")
        } else {
            None
        };
    }
    if let (None, Some((seq, hash))) = (&found, expect) {
        found = match expected_hash_at {
            Some(h) if h.as_slice() == hash.as_slice() => None,
            Some(h) => brk(
                BreakKind::HistoryRewritten,
                seq,
                format!(
                    "the chain passes through {seq}:{} , not the recorded {seq}:{}",
                    hex::encode(h),
                    hex::encode(hash)
                ),
            ),
            None => brk(
                BreakKind::HistoryRewritten,
                seq,
                format!("the chain ends at {last_seq}, before the recorded head {seq}"),
            ),
        };
    }
    tx.commit().await?;
    Ok(Report { ok: found.is_none(), deliveries, commands, head, first_break: found, redacted })
}

/// Names a break in the chain at row `r`, given the verified hashes before it.
async fn name_break(tx: &mut PgConnection, r: &Row, prev: &Hash, prev2: &Hash) -> Result<Break, sqlx::Error> {
    let n = r.seq;
    // A correctly hashed row inserted just before `r`, with `r` and those after renumbered.
    if n > 1 && r.link(prev2, n - 1).as_slice() == r.hash.as_slice() {
        return Ok(Break {
            kind: BreakKind::RowInserted,
            seq: n - 1,
            detail: format!("the row at {} was never received; the one at {n} belongs at {}", n - 1, n - 1),
        });
    }
    // Which later row belongs at `n`?
    let later: Vec<Row> = sqlx::query_as(
        "SELECT seq, received_at, received_at AS recorded_at, dedup_key, action, status_code, ''::bytea AS body, \
         body_sha256, hash, false AS unprojected FROM deliveries WHERE seq > $1 ORDER BY seq",
    )
    .bind(n)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(x) = later.iter().find(|x| x.link(prev, n).as_slice() == x.hash.as_slice()) {
        let r_fits_after_x = r.link(&hash_of(&x.hash), n + 1).as_slice() == r.hash.as_slice();
        if x.seq == n + 1 && !r_fits_after_x {
            return Ok(Break {
                kind: BreakKind::RowInserted,
                seq: n,
                detail: format!("the row at {n} was never received; the one now at {} belongs at {n}", n + 1),
            });
        }
        return Ok(Break {
            kind: BreakKind::RowsReordered,
            seq: n,
            detail: format!("the row at {} belongs at {n}", x.seq),
        });
    }
    Ok(Break {
        kind: BreakKind::RowEdited,
        seq: n,
        detail: "a chained field or the hash of this row was changed".into(),
    })
}

fn hash_of(v: &[u8]) -> Hash {
    v.try_into().unwrap_or(GENESIS)
}

fn compare_commands(seq: i64, want: &[CommandRow], have: &[CommandRow]) -> Option<Break> {
    for w in want {
        match have.iter().find(|h| h.position == w.position) {
            None => {
                return brk(BreakKind::CommandMissing, seq, format!("command at position {} has no row", w.position))
            }
            Some(h) if h != w => {
                return brk(
                    BreakKind::CommandEdited,
                    seq,
                    format!("command at position {} differs from its delivery", w.position),
                )
            }
            Some(_) => {}
        }
    }
    have.iter().find(|h| !want.iter().any(|w| w.position == h.position)).and_then(|h| {
        brk(BreakKind::CommandInserted, seq, format!("command row at position {} is not in its delivery", h.position))
    })
}

/// Parses `SEQ:HASH` (hash in hex).
pub fn parse_head(s: &str) -> Result<(i64, Hash), String> {
    let (seq, hash) = s.split_once(':').ok_or("expected SEQ:HASH")?;
    let seq = seq.trim().parse().map_err(|_| "SEQ is not a number")?;
    let hash = hex::decode(hash.trim()).map_err(|_| "HASH is not hex")?;
    Ok((seq, hash.try_into().map_err(|_| "HASH is not 32 bytes")?))
}
