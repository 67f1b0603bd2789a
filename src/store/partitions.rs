//! The record's monthly partitions (migration V9): the month turn the writer makes, and the
//! partitions as the catalog lists them, for `archive` and the tests.

use sqlx::PgConnection;
use time::{Date, Month, OffsetDateTime};

/// The tables partitioned by seq range, one partition per month (V9's `record_partitioned_tables()`).
pub const TABLES: [&str; 5] = ["deliveries", "action_events", "messages", "commands", "ticket_anomalies"];

/// The first day of the month `t` falls in, in UTC: the record's month of a delivery recorded then.
pub fn month_of(t: OffsetDateTime) -> Date {
    let t = t.to_offset(time::UtcOffset::UTC);
    Date::from_calendar_date(t.year(), t.month(), 1).expect("the first of a month exists")
}

/// The first day of the month after `month`'s.
pub fn next_month(month: Date) -> Date {
    let (year, m) = match month.month() {
        Month::December => (month.year() + 1, Month::January),
        m => (month.year(), m.next()),
    };
    Date::from_calendar_date(year, m, 1).expect("the first of a month exists")
}

/// Called by the writer holding the ledger head, before it reads or writes the record: when the
/// batch is the first of a month (its recorded time is in another month than the head's), the
/// last month's partitions are closed at head + 1 and the new month's opened (V9's
/// `turn_month`). Any other batch costs nothing here. Returns the new month's first seq when
/// this call turned the month.
pub async fn turn_if_due(
    conn: &mut PgConnection,
    head_at: Option<OffsetDateTime>,
    recorded_at: OffsetDateTime,
) -> Result<Option<i64>, sqlx::Error> {
    let month = month_of(recorded_at);
    if head_at.is_some_and(|h| month_of(h) == month) {
        return Ok(None);
    }
    turn(conn, month).await
}

/// Turns the record to `month` (a no-op when it has begun). The caller holds the ledger head, or
/// this takes it.
pub async fn turn(conn: &mut PgConnection, month: Date) -> Result<Option<i64>, sqlx::Error> {
    let started = std::time::Instant::now();
    let first: Option<i64> = sqlx::query_scalar("SELECT turn_month($1)").bind(month).fetch_one(&mut *conn).await?;
    if let Some(first) = first {
        let spent = started.elapsed();
        metrics::histogram!("ticket_audit_month_turn_seconds").record(spent.as_secs_f64());
        tracing::info!(%month, first_seq = first, ms = spent.as_millis() as u64, "the record's month turned");
    }
    Ok(first)
}

/// One partition of a record table, as the catalog and `ledger_months` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub table: String,
    pub name: String,
    /// Its first seq; None for the legacy partition (everything before V9, from seq 1).
    pub from: Option<i64>,
    /// One past its last seq; None while it is the open (current) partition.
    pub to: Option<i64>,
}

/// The partitions of `table` (one of [`TABLES`]), in seq order.
pub async fn list(conn: &mut PgConnection, table: &str) -> Result<Vec<Partition>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) \
         FROM pg_partition_tree($1::regclass) p JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf",
    )
    .bind(table)
    .fetch_all(conn)
    .await?;
    let mut parts: Vec<Partition> = rows
        .into_iter()
        .map(|(name, bound)| {
            let (from, to) = parse_bound(&bound);
            Partition { table: table.to_owned(), name, from, to }
        })
        .collect();
    parts.sort_by_key(|p| p.from.unwrap_or(i64::MIN));
    Ok(parts)
}

/// `FOR VALUES FROM ('6') TO (MAXVALUE)` as (Some(6), None); MINVALUE and MAXVALUE as None.
fn parse_bound(bound: &str) -> (Option<i64>, Option<i64>) {
    let value = |s: &str| s.trim().trim_matches(|c| c == '(' || c == ')' || c == '\'').parse::<i64>().ok();
    let rest = bound.trim_start_matches("FOR VALUES FROM ");
    match rest.split_once(" TO ") {
        Some((from, to)) => (value(from), value(to)),
        None => (None, None),
    }
}

/// Enables or disables the TRUNCATE guard (V2's `<table>_no_truncate`) on `table` and every one
/// of its partitions: statement triggers are not inherited, so each partition has its own.
/// For the owner's `reproject`, which empties the projection's commands to rebuild them.
pub async fn set_truncate_guard(conn: &mut PgConnection, table: &str, enabled: bool) -> Result<(), sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar("SELECT relid::regclass::text FROM pg_partition_tree($1::regclass)")
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
    let verb = if enabled { "ENABLE" } else { "DISABLE" };
    for name in names {
        // Names from the catalog, as regclass prints them (quoted where needed).
        sqlx::query(&format!("ALTER TABLE {name} {verb} TRIGGER {table}_no_truncate")).execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(month_of(datetime!(2026-12-31 23:59:59.999999 UTC)), date!(2026 - 12 - 01));
        assert_eq!(month_of(datetime!(2027-01-01 00:30 +01:00)), date!(2026 - 12 - 01), "23:30 UTC on the 31st");
        assert_eq!(next_month(date!(2026 - 12 - 01)), date!(2027 - 01 - 01));
        assert_eq!(next_month(date!(2027 - 01 - 01)), date!(2027 - 02 - 01));
    }

    #[test]
    fn bounds_parse() {
        assert_eq!(parse_bound("FOR VALUES FROM ('6') TO (MAXVALUE)"), (Some(6), None));
        assert_eq!(parse_bound("FOR VALUES FROM (MINVALUE) TO ('6')"), (None, Some(6)));
        assert_eq!(parse_bound("FOR VALUES FROM ('1') TO ('1000001')"), (Some(1), Some(1_000_001)));
    }
}
