//! A command's evidence, read in one snapshot: the command, its delivery's leaf fields and raw
//! body, the newest checkpoint, and the audit path from the leaf to that checkpoint's root.

use sqlx::PgConnection;

use super::read::{CommandRecord, Scope};
use super::text::PgText;
use super::tree::{self, LeafRow};
use crate::domain::evidence::{format_micros, Evidence, EvidenceDelivery};
use crate::domain::merkle::Hash;

pub enum Found {
    /// The command, with its evidence but for `command`, which the caller writes as its API does.
    Evidence(Box<(CommandRecord, Evidence)>),
    /// No such command, or not this scope's.
    NotFound,
    /// Recorded, but no checkpoint signs a tree that holds it yet (it will within the interval).
    NotYetSigned,
    /// In a month archived and dropped from the database (admin scope only): where it lives.
    Archived(super::archive::ArchivedAt),
    /// Its delivery was redacted: no body is left to check the command against (its leaf and
    /// inclusion proof still answer).
    Redacted(super::redaction::Redaction),
}

#[derive(sqlx::FromRow)]
struct Delivery {
    #[sqlx(flatten)]
    leaf: LeafRow,
    body: Vec<u8>,
}

pub async fn evidence(conn: &mut PgConnection, scope: &Scope, seq: i64, position: i32) -> Result<Found, sqlx::Error> {
    let mut tx = super::snapshot(conn).await?;
    let tenant = match scope {
        Scope::All => None,
        Scope::Tenant(t) => Some(PgText::from(t.as_str())),
    };
    let command: Option<CommandRecord> = sqlx::query_as(
        "SELECT c.seq, c.position, c.ticket_name, t.tenant_id, t.agent_name, t.agent_id, c.command, c.result, \
         c.executed, c.recorded_at FROM commands c LEFT JOIN tickets t ON t.name = c.ticket_name \
         WHERE c.seq = $1 AND c.position = $2 AND ($3::text IS NULL OR t.tenant_id = $3)",
    )
    .bind(seq)
    .bind(position)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(command) = command else {
        // Archived months are for the admins to fetch: a tenant's scope cannot be told without the rows.
        if matches!(scope, Scope::All) {
            if let Some(at) = super::archive::archived_at(&mut tx, seq).await? {
                return Ok(Found::Archived(at));
            }
        }
        return Ok(Found::NotFound);
    };
    let redaction: Option<super::redaction::Redaction> = sqlx::query_as(
        "SELECT target_seq, redaction_seq, reason, actor, redacted_at FROM redactions WHERE target_seq = $1",
    )
    .bind(seq)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = redaction {
        return Ok(Found::Redacted(r));
    }
    let d: Option<Delivery> = sqlx::query_as(
        "SELECT seq, received_at, dedup_key, action, status_code, body_sha256, body FROM deliveries WHERE seq = $1",
    )
    .bind(seq)
    .fetch_optional(&mut *tx)
    .await?;
    // A command row whose delivery is gone has nothing to prove it (`verify` names that break).
    let Some(d) = d else { return Ok(Found::NotFound) };
    let Some(cp) = tree::latest_checkpoint(&mut tx).await?.filter(|cp| cp.tree_size >= seq) else {
        return Ok(Found::NotYetSigned);
    };
    let size = cp.tree_size as u64;
    let index = seq as u64 - 1;
    let inclusion = tree::inclusion(&mut tx, size, index).await?;
    tx.commit().await?;
    let leaf = &d.leaf;
    let body_sha256: Hash = leaf
        .body_sha256
        .as_slice()
        .try_into()
        .map_err(|_| sqlx::Error::Protocol(format!("delivery {seq}'s body_sha256 is not 32 bytes")))?;
    let evidence = Evidence {
        command: serde_json::Value::Null,
        delivery: EvidenceDelivery {
            seq,
            received_at: format_micros(leaf.received_at),
            key: leaf.dedup_key.0.clone(),
            action: leaf.action.as_ref().map(|a| a.0.clone()),
            status_code: leaf.status_code,
            body_sha256,
            body: d.body,
        },
        leaf_index: index,
        leaf_hash: leaf.leaf_hash(),
        tree_size: size,
        inclusion,
        checkpoint: cp.note,
    };
    Ok(Found::Evidence(Box::new((command, evidence))))
}
