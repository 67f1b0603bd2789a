//! The compliance record: executed commands with who, where and when, streamed in constant memory.

use std::io::Write;

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::text::PgText;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Ndjson,
    Csv,
}

#[derive(sqlx::FromRow, Serialize)]
struct Executed {
    id: String,
    seq: i64,
    position: i32,
    #[serde(with = "time::serde::rfc3339")]
    recorded_at: OffsetDateTime,
    ticket: Option<PgText>,
    tenant_id: Option<PgText>,
    agent_name: Option<PgText>,
    agent_id: Option<PgText>,
    command: PgText,
    result: Option<PgText>,
    delivery_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes the executed commands recorded in `[since, until)` in (seq, position) order; returns how many.
/// Rows stream from the server one at a time, so memory does not grow with the range.
pub async fn export(
    conn: &mut PgConnection,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    format: Format,
    out: impl Write,
) -> Result<u64, ExportError> {
    let mut rows =
        sqlx::query_as::<_, Executed>(include_str!("sql/export_executed.sql")).bind(since).bind(until).fetch(conn);
    let mut n = 0u64;
    match format {
        Format::Ndjson => {
            let mut out = out;
            while let Some(row) = rows.try_next().await? {
                serde_json::to_writer(&mut out, &row)?;
                out.write_all(b"\n")?;
                n += 1;
            }
            out.flush()?;
        }
        Format::Csv => {
            // The header row comes from the field names, with the first record.
            let mut w = csv::Writer::from_writer(out);
            while let Some(row) = rows.try_next().await? {
                w.serialize(&row)?;
                n += 1;
            }
            w.flush()?;
        }
    }
    Ok(n)
}
