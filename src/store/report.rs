//! Runs a report's statements (see `crate::reports`) in one read-only transaction, as the
//! reporting role when the login may take it, and returns each result set with every value both
//! as PostgreSQL prints it (what psql shows) and as JSON.

use sqlx::{Column, Connection, Executor, PgConnection, Row, TypeInfo};

use crate::reports::Statement;

/// The read-only role reports are meant to run with (migration V3).
pub const REPORTING_ROLE: &str = "ticket_audit_reporting";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<ResultColumn>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultColumn {
    pub name: String,
    /// PostgreSQL's name of the type (INT8, NUMERIC, TEXT, ...).
    pub type_name: String,
}

impl ResultColumn {
    /// Numbers are right-aligned in a table, as psql does.
    pub fn is_numeric(&self) -> bool {
        matches!(self.type_name.as_str(), "INT2" | "INT4" | "INT8" | "NUMERIC" | "FLOAT4" | "FLOAT8" | "OID" | "MONEY")
    }
}

/// One value: `None` for NULL; `text` as PostgreSQL's output function writes it, `json` as to_json does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub text: Option<String>,
    pub json: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ReportRunError {
    what: String,
    #[source]
    source: sqlx::Error,
}

fn context(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> ReportRunError {
    let what = what.into();
    move |source| ReportRunError { what, source }
}

/// Runs `statements` in order and returns the result sets of those that return rows. Nothing is
/// changed: the transaction is read-only and rolled back.
pub async fn run(conn: &mut PgConnection, statements: &[Statement]) -> Result<Vec<ResultSet>, ReportRunError> {
    let mut tx = conn.begin().await.map_err(context("starting a transaction"))?;
    tx.execute("SET TRANSACTION READ ONLY").await.map_err(context("making the transaction read-only"))?;
    if super::is_member(&mut tx, REPORTING_ROLE).await.map_err(context("checking role membership"))? {
        tx.execute(format!("SET LOCAL ROLE {REPORTING_ROLE}").as_str())
            .await
            .map_err(context(format!("taking the role {REPORTING_ROLE}")))?;
    } else {
        tracing::info!("the database login is not a member of {REPORTING_ROLE}: the report runs with the login's own rights, read-only");
    }
    let mut sets = Vec::new();
    for (k, statement) in statements.iter().enumerate() {
        let what = || format!("statement {} of the report: {}", k + 1, first_line(&statement.sql));
        if !statement.returns_rows {
            let mut query = sqlx::query(&statement.sql);
            for value in &statement.binds {
                query = query.bind(value);
            }
            query.execute(&mut *tx).await.map_err(context(what()))?;
            continue;
        }
        let described = (&mut *tx).describe(&statement.sql).await.map_err(context(what()))?;
        let columns: Vec<ResultColumn> = described
            .columns()
            .iter()
            .map(|c| ResultColumn { name: c.name().to_owned(), type_name: c.type_info().name().to_owned() })
            .collect();
        // Columns renamed by position (r.c1, r.c2, ...): names may repeat or need quoting.
        let aliases: Vec<String> = (1..=columns.len()).map(|n| format!("c{n}")).collect();
        // concat() writes a value with its output function, as psql shows it (a cast to text would
        // write booleans as true/false where psql shows t/f); NULL stays NULL.
        let texts = aliases
            .iter()
            .map(|a| format!("CASE WHEN r.{a} IS NULL THEN NULL ELSE concat(r.{a}) END"))
            .collect::<Vec<_>>()
            .join(", ");
        let jsons = aliases.iter().map(|a| format!("to_json(r.{a})::text")).collect::<Vec<_>>().join(", ");
        let wrapped = format!(
            "SELECT ARRAY[{texts}]::text[], ARRAY[{jsons}]::text[] FROM ({}\n) AS r({})",
            statement.sql,
            aliases.join(", ")
        );
        let mut query = sqlx::query(&wrapped);
        for value in &statement.binds {
            query = query.bind(value);
        }
        let fetched = query.fetch_all(&mut *tx).await.map_err(context(what()))?;
        let mut rows = Vec::with_capacity(fetched.len());
        for row in fetched {
            let texts: Vec<Option<String>> = row.try_get(0).map_err(context(what()))?;
            let jsons: Vec<Option<String>> = row.try_get(1).map_err(context(what()))?;
            let values = texts
                .into_iter()
                .zip(jsons)
                .map(|(text, json)| Value { text, json: json.unwrap_or_else(|| "null".into()) })
                .collect();
            rows.push(values);
        }
        sets.push(ResultSet { columns, rows });
    }
    tx.rollback().await.map_err(context("ending the transaction"))?;
    Ok(sets)
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or("")
}
