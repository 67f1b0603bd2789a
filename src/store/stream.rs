//! The live tail's reads: what is new since a cursor, from the database (never from a
//! notification), with the same rows and JSON the read API gives.
//!
//! Seqs are handed out under the lock on `ledger_head`, so batches commit in seq order across
//! processes: a snapshot that holds seq N holds every seq below it, and a keyset walk after the
//! last (seq, position) read can never step over a row committed later.

use sqlx::{PgPool, QueryBuilder};

use super::read::{self, CommandFilter, CommandRecord, Scope, TimelineRecord};
use super::text::PgText;

/// A timeline entry with the ticket it belongs to (the tail reads every ticket's at once, and
/// keeps the watched tickets').
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketEntry {
    pub ticket_name: PgText,
    #[sqlx(flatten)]
    pub entry: TimelineRecord,
}

/// The highest seq committed (0 for an empty record).
pub async fn head(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT seq FROM ledger_head").fetch_one(pool).await
}

/// Executed commands after `after`, oldest first, as `GET /api/v1/commands?executed=true&order=asc`
/// reads them (the same query), within `scope` and `filter`.
pub async fn executed_commands(
    pool: &PgPool,
    scope: &Scope,
    filter: &CommandFilter,
    after: (i64, i32),
    limit: i64,
) -> Result<Vec<CommandRecord>, sqlx::Error> {
    let filter = CommandFilter { executed: Some(true), ..filter.clone() };
    read::list_commands(pool, scope, &filter, true, Some(after), limit).await
}

/// Every ticket's timeline entries after `after`, oldest first (`sql/stream_entries.sql`).
pub async fn entries(pool: &PgPool, after: (i64, i32), limit: i64) -> Result<Vec<TicketEntry>, sqlx::Error> {
    let mut rows: Vec<TicketEntry> = entries_query(after, limit).build_query_as().fetch_all(pool).await?;
    read::mark_redacted(pool, &mut rows).await?;
    Ok(rows)
}

/// The timeline entries of the seqs `seqs` (ascending) after `after`, oldest first
/// (`sql/stream_entries_at.sql`): the tail's read when this process's writer said which seqs
/// concern the watched tickets.
pub async fn entries_at(
    pool: &PgPool,
    seqs: &[i64],
    after: (i64, i32),
    limit: i64,
) -> Result<Vec<TicketEntry>, sqlx::Error> {
    let mut rows: Vec<TicketEntry> = entries_at_query(seqs, after, limit).build_query_as().fetch_all(pool).await?;
    read::mark_redacted(pool, &mut rows).await?;
    Ok(rows)
}

impl read::MaybeRedacted for TicketEntry {
    fn seq(&self) -> i64 {
        self.entry.seq
    }
    fn looks_redacted(&self) -> bool {
        self.entry.looks_redacted()
    }
    fn mark(&mut self, r: &super::redaction::Redaction) {
        self.entry.mark(r);
    }
}

pub fn entries_query(after: (i64, i32), limit: i64) -> read::Built {
    use sqlx::Arguments;
    let mut args = sqlx::postgres::PgArguments::default();
    let bound = args.add(after.0).and_then(|()| args.add(after.1)).and_then(|()| args.add(limit));
    debug_assert!(bound.is_ok(), "integers always encode");
    QueryBuilder::with_arguments(include_str!("sql/stream_entries.sql"), args)
}

pub fn entries_at_query(seqs: &[i64], after: (i64, i32), limit: i64) -> read::Built {
    use sqlx::Arguments;
    let mut args = sqlx::postgres::PgArguments::default();
    let bound = args
        .add(seqs.to_vec())
        .and_then(|()| args.add(after.0))
        .and_then(|()| args.add(after.1))
        .and_then(|()| args.add(limit));
    debug_assert!(bound.is_ok(), "integers always encode");
    QueryBuilder::with_arguments(include_str!("sql/stream_entries_at.sql"), args)
}
