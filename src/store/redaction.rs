//! Redacting a delivery: the checks, the ledger entry that records it (stored by the writer,
//! which applies the redaction in the same transaction: `batch.rs`, V11's
//! `ticket_audit_redact`), and the redactions as stored.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::text::PgText;
use super::{NewDelivery, WriteError, Writer};
use crate::domain::ledger::sha256;
use crate::domain::redaction::{self, checked_text, Entry, InvalidText, MAX_ACTOR_CHARS, MAX_REASON_CHARS};
use crate::domain::timestamp::truncate_to_micros;
use crate::domain::{derive, normalize, DeliveryKey, Envelope};

/// A redaction as applied (a row of `redactions`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Redaction {
    /// The redacted delivery.
    pub target_seq: i64,
    /// The ledger entry that records the redaction.
    pub redaction_seq: i64,
    pub reason: String,
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    pub redacted_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error(transparent)]
    Invalid(#[from] InvalidText),
    #[error("no delivery {0}")]
    NotFound(i64),
    #[error(
        "delivery {seq} is in the month {partition}, archived to {directory} and dropped from the database: \
         the database holds no body of it to redact. Its body is in that archive's deliveries file; remove it \
         there (docs/operations.md, \"Redacting\")"
    )]
    Archived { seq: i64, partition: String, directory: String },
    #[error("delivery {0} is a redaction entry: the record of a redaction cannot itself be redacted")]
    RedactionEntry(i64),
    #[error("delivery {0}'s body is not a JSON object any more: run `ticket-audit verify`")]
    Unreadable(i64),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const COLUMNS: &str = "target_seq, redaction_seq, reason, actor, redacted_at";

/// The redaction of delivery `seq`, if it was redacted.
pub async fn find(pool: &PgPool, seq: i64) -> Result<Option<Redaction>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM redactions WHERE target_seq = $1"))
        .bind(seq)
        .fetch_optional(pool)
        .await
}

/// The redactions of those of `seqs` that were redacted.
pub async fn among(pool: &PgPool, seqs: &[i64]) -> Result<Vec<Redaction>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM redactions WHERE target_seq = ANY($1)"))
        .bind(seqs)
        .fetch_all(pool)
        .await
}

/// Every redaction applied, by the redacted delivery's seq.
pub async fn all(conn: &mut PgConnection) -> Result<Vec<Redaction>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM redactions ORDER BY target_seq")).fetch_all(conn).await
}

/// The redaction entries in the ledger, by the seq they redact: (the entry's seq, its body).
/// Found through their keys (scope `redaction`), and taken only when the entry's chained key
/// names the target its body names; what they say is read from their own (chained) bodies.
pub async fn entries(conn: &mut PgConnection) -> Result<HashMap<i64, (i64, Entry)>, sqlx::Error> {
    let rows: Vec<(i64, PgText, Vec<u8>)> = sqlx::query_as(
        "SELECT d.seq, d.dedup_key, d.body FROM delivery_keys k JOIN deliveries d ON d.seq = k.seq \
         WHERE k.scope = 'redaction' ORDER BY d.seq",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(seq, key, body)| {
            let target = redaction::target_of_key(&key.0)?;
            let entry = Entry::parse(&body).filter(|e| e.delivery_id == target && target < seq)?;
            Some((target, (seq, entry)))
        })
        .collect())
}

/// What to do for a redaction request.
pub enum Prepared {
    /// Redacted already: the redaction as it was made.
    Already(Redaction),
    /// The entry to store.
    Entry(Box<NewDelivery>),
}

/// Checks a request to redact delivery `target` and makes its ledger entry. `reason` and
/// `actor` are trimmed; each must be non-empty, without control characters, and at most
/// [`MAX_REASON_CHARS`] / [`MAX_ACTOR_CHARS`] long.
pub async fn prepare(
    pool: &PgPool,
    target: i64,
    reason: &str,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Prepared, RedactError> {
    let reason = checked_text("reason", reason, MAX_REASON_CHARS)?;
    let actor = checked_text("actor", actor, MAX_ACTOR_CHARS)?;
    if let Some(done) = find(pool, target).await? {
        return Ok(Prepared::Already(done));
    }
    let row: Option<(String, Vec<u8>, Vec<u8>, bool)> =
        sqlx::query_as("SELECT key_source, body, body_sha256, unprojected FROM deliveries WHERE seq = $1")
            .bind(target)
            .fetch_optional(pool)
            .await?;
    let Some((source, body, body_sha256, unprojected)) = row else {
        let archived: Option<(String, String)> = sqlx::query_as(
            "SELECT partition, directory FROM archived_partitions WHERE $1 BETWEEN first_seq AND last_seq",
        )
        .bind(target)
        .fetch_optional(pool)
        .await?;
        return Err(match archived {
            Some((partition, directory)) => RedactError::Archived { seq: target, partition, directory },
            None => RedactError::NotFound(target),
        });
    };
    if source == "redaction" {
        return Err(RedactError::RedactionEntry(target));
    }
    let projected = derive(&body, unprojected).ok_or(RedactError::Unreadable(target))?;
    let at = truncate_to_micros(now);
    let entry = Entry::new(target, &body_sha256, reason, actor, at, &projected);
    let body = entry.body();
    let envelope = Envelope::parse(&body).map_err(|_| RedactError::Unreadable(target))?;
    Ok(Prepared::Entry(Box::new(NewDelivery {
        key: DeliveryKey::redaction(target),
        received_at: at,
        body_sha256: sha256(&body),
        normalized: normalize(&envelope),
        body,
        headers: serde_json::json!({}),
        unprojected: false,
    })))
}

/// Redacts delivery `target`: stores its ledger entry through `writer`, which applies the
/// redaction in the same transaction. Returns the redaction and whether it had been made before
/// (the same delivery redacted again is answered with the first redaction, changing nothing).
/// `pool` is the primary's.
pub async fn redact(
    writer: &Writer,
    pool: &PgPool,
    target: i64,
    reason: &str,
    actor: &str,
) -> Result<(Redaction, bool), RedactError> {
    let entry = match prepare(pool, target, reason, actor, OffsetDateTime::now_utc()).await? {
        Prepared::Already(done) => return Ok((done, true)),
        Prepared::Entry(entry) => entry,
    };
    let outcome = writer.submit(*entry).await?;
    let done = find(pool, target).await?.ok_or_else(|| {
        sqlx::Error::Protocol(format!("the redaction of {target} was stored at seq {} but is not applied", outcome.seq))
    })?;
    Ok((done, outcome.duplicate))
}
