//! `ticket-audit report NAME`: run one of the reports of `sql/` (embedded) on the database the
//! service uses, and print its rows as a table, CSV or JSON. `report --list` lists them.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::config::DatabaseArgs;
use crate::reports::{self, REPORTS};
use crate::store::report::ResultSet;
use crate::store::Database;
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The report to run (`report --list` names them).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// A parameter of the report, NAME=VALUE (as `psql -v NAME=VALUE`; e.g. since=2025-06-01); repeat for more.
    #[arg(long = "param", short = 'v', value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// How to print the rows: an aligned table, CSV (as `psql --csv`), or JSON (one array of row objects per result set and line).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// List the reports, each with what it answers and its parameters, and exit.
    #[arg(long, conflicts_with = "name")]
    pub list: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    reports::parse_param(s).map_err(|e| e.to_string())
}

pub async fn run(args: ReportArgs) -> Result<ExitCode, BoxError> {
    let mut out = std::io::stdout().lock();
    if args.list {
        for r in REPORTS {
            let params: Vec<String> = r.parameters().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "{:<24} {}", r.name, r.description())?;
            writeln!(out, "{:<24} parameters: {}", "", params.join(" "))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.name.as_deref().expect("clap requires a name without --list");
    // Checked before a database is touched: a typo fails at once.
    let report = reports::find(name)?;
    let statements = report.prepare(&args.params)?;
    let db = Database::resolve(&args.database, false, 0).await?;
    let result = async {
        db.prepare_schema(args.database.no_migrate).await?;
        let mut conn = db.connect().await?;
        let sets = crate::store::report::run(&mut conn, &statements)
            .await
            .map_err(|e| format!("report {}: {e}", report.name))?;
        Ok::<_, BoxError>(sets)
    }
    .await;
    db.stop().await;
    let sets = result?;
    for set in &sets {
        match args.format {
            Format::Table => write_table(&mut out, set)?,
            Format::Csv => write_csv(&mut out, set)?,
            Format::Json => write_json(&mut out, set)?,
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// psql's aligned format: centred headers, numbers to the right, a row count and a blank line.
fn write_table(out: &mut impl Write, set: &ResultSet) -> std::io::Result<()> {
    let cell = |v: &crate::store::report::Value| v.text.clone().unwrap_or_default();
    let mut widths: Vec<usize> = set.columns.iter().map(|c| c.name.chars().count()).collect();
    for row in &set.rows {
        for (w, v) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell(v).chars().count());
        }
    }
    let header: Vec<String> = set
        .columns
        .iter()
        .zip(&widths)
        .map(|(c, w)| {
            let pad = w - c.name.chars().count();
            format!("{}{}{}", " ".repeat(pad / 2), c.name, " ".repeat(pad - pad / 2))
        })
        .collect();
    writeln!(out, " {} ", header.join(" | "))?;
    writeln!(out, "{}", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"))?;
    for row in &set.rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&set.columns)
            .zip(&widths)
            .enumerate()
            .map(|(k, ((v, c), &w))| match (c.is_numeric(), k + 1 == set.columns.len()) {
                (true, _) => format!("{:>w$}", cell(v)),
                (false, false) => format!("{:<w$}", cell(v)),
                (false, true) => cell(v), // psql pads no last text column (and keeps a value's own spaces)
            })
            .collect();
        writeln!(out, " {}", cells.join(" | "))?;
    }
    let n = set.rows.len();
    writeln!(out, "({n} {})\n", if n == 1 { "row" } else { "rows" })
}

/// As `psql --csv`: a header line; a field is quoted when it holds a comma, a quote or a line break.
fn write_csv(out: &mut impl Write, set: &ResultSet) -> std::io::Result<()> {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) || s == "\\." {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let header: Vec<String> = set.columns.iter().map(|c| field(&c.name)).collect();
    writeln!(out, "{}", header.join(","))?;
    for row in &set.rows {
        let cells: Vec<String> = row.iter().map(|v| field(v.text.as_deref().unwrap_or(""))).collect();
        writeln!(out, "{}", cells.join(","))?;
    }
    Ok(())
}

/// One JSON array of row objects (columns in the report's order, values typed) per line.
fn write_json(out: &mut impl Write, set: &ResultSet) -> std::io::Result<()> {
    let rows: Vec<String> = set
        .rows
        .iter()
        .map(|row| {
            let fields: Vec<String> = set
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| format!("{}:{}", serde_json::Value::String(c.name.clone()), v.json))
                .collect();
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    writeln!(out, "[{}]", rows.join(","))
}
