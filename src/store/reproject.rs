//! Rebuilding the projection (events, tickets, messages, commands) from the stored deliveries.

use sqlx::{Acquire, PgConnection};
use time::OffsetDateTime;

use super::batch::{project, Projected};
use super::text::PgText;
use crate::domain::derive;

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    at: OffsetDateTime,
    body: Vec<u8>,
    unprojected: bool,
    action: Option<PgText>,
    status_code: Option<i32>,
}

const CHUNK: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ReprojectError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("delivery {0} is not a JSON object any more: run `ticket-audit verify`")]
    Unreadable(i64),
}

/// Empties the projection and derives it again, in sequence order, through the same code live
/// ingestion uses, in one transaction that holds the ledger head (writers wait meanwhile); then
/// classifies the commands for reports again.
/// Commands are append-only for everyone else; here the owner lifts that for the rebuild only.
pub async fn reproject(conn: &mut PgConnection) -> Result<u64, ReprojectError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT 1 FROM ledger_head FOR UPDATE").execute(&mut *tx).await?;
    super::partitions::set_truncate_guard(&mut tx, "commands", false).await?;
    // The classifier's watermark first (a concurrent step finishes before), then its rows.
    sqlx::query("UPDATE reporting.classified SET seq = 0").execute(&mut *tx).await?;
    sqlx::query(
        "TRUNCATE action_events, messages, commands, tickets, ticket_anomalies, reporting.command_class, \
         reporting.proposal_runs, reporting.command_days, reporting.message_days, reporting.agent_days, \
         reporting.ticket_days, reporting.delivery_days, reporting.counted_pairs, reporting.pair_changes",
    )
    .execute(&mut *tx)
    .await?;
    super::partitions::set_truncate_guard(&mut tx, "commands", true).await?;
    // A redacted delivery's body is the tombstone: it is projected from what its redaction entry
    // kept (its rows, text blank), as the redaction left it.
    let entries = super::redaction::entries(&mut tx).await?;
    let applied: std::collections::HashSet<i64> =
        super::redaction::all(&mut tx).await?.into_iter().map(|r| r.target_seq).collect();
    let mut last = 0i64;
    let mut total = 0u64;
    loop {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, coalesce(recorded_at, received_at) AS at, body, unprojected, action, status_code \
             FROM deliveries WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(last)
        .bind(CHUNK)
        .fetch_all(&mut *tx)
        .await?;
        let Some(hi) = rows.last().map(|r| r.seq) else { break };
        let derived = rows
            .iter()
            .map(|r| match entries.get(&r.seq).filter(|_| applied.contains(&r.seq)) {
                Some((_, e)) => Ok(e.projection.normalized(r.action.as_ref().map(|a| a.0.clone()), r.status_code)),
                None => derive(&r.body, r.unprojected).ok_or(ReprojectError::Unreadable(r.seq)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let items: Vec<Projected<'_>> =
            rows.iter().zip(&derived).map(|(r, n)| Projected { seq: r.seq, at: r.at, normalized: n }).collect();
        project(&mut tx, &items).await?;
        total += items.len() as u64;
        last = hi;
    }
    tx.commit().await?;
    super::classify::catch_up(conn).await?;
    Ok(total)
}
