//! `ticket-audit report NAME`: run one of the reports of `sql/` (embedded) on the database the
//! service uses (its replica, given DATABASE_READ_URL), and print its rows as a table, CSV or JSON. `report --list` lists them.

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
    // On the replica when there is one: a report is a long read, the kind a replica is for.
    let db = Database::resolve_for_reading(&args.database, 0).await?;
    let result = async {
        if args.database.database_read_url.is_some() {
            db.check_schema().await?;
        } else {
            db.prepare_schema(args.database.no_migrate).await?;
        }
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

/// psql's aligned format: centred headers, numbers to the right, a value of several lines on
/// as many lines with `+` at each break, a row count and a blank line.
fn write_table(out: &mut impl Write, set: &ResultSet) -> std::io::Result<()> {
    let cells: Vec<Vec<Vec<&str>>> = set
        .rows
        .iter()
        .map(|row| row.iter().map(|v| v.text.as_deref().unwrap_or("").split('\n').collect()).collect())
        .collect();
    let mut widths: Vec<usize> = set.columns.iter().map(|c| c.name.chars().count()).collect();
    for row in &cells {
        for (w, lines) in widths.iter_mut().zip(row) {
            *w = lines.iter().map(|l| l.chars().count()).fold(*w, usize::max);
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
    for row in &cells {
        let height = row.iter().map(Vec::len).max().unwrap_or(1);
        for i in 0..height {
            let mut line = String::new();
            for (k, ((lines, column), &w)) in row.iter().zip(&set.columns).zip(&widths).enumerate() {
                let (text, more, last) =
                    (lines.get(i).copied().unwrap_or(""), i + 1 < lines.len(), k + 1 == widths.len());
                line.push(' ');
                match (column.is_numeric(), last && !more) {
                    (true, _) => line.push_str(&format!("{text:>w$}")),
                    // psql pads no last text column (and keeps a value's own trailing spaces)
                    (false, true) => line.push_str(text),
                    (false, false) => line.push_str(&format!("{text:<w$}")),
                }
                line.push_str(match (more, last) {
                    (true, _) => "+",
                    (false, false) => " ",
                    (false, true) => "",
                });
                if !last {
                    line.push('|');
                }
            }
            writeln!(out, "{line}")?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::report::{ResultColumn, Value};

    #[test]
    fn a_table_of_values_on_several_lines_is_printed_as_psql_prints_it() {
        let column = |name: &str, type_name: &str| ResultColumn { name: name.into(), type_name: type_name.into() };
        let v = |t: &str| Value { text: Some(t.into()), json: String::new() };
        let set = ResultSet {
            columns: vec![column("command", "TEXT"), column("n", "INT4"), column("last", "TEXT")],
            rows: vec![vec![v("line one\nl2"), v("12"), v("x")], vec![v("short"), v("3"), v("a\nbb")]],
        };
        let mut out = Vec::new();
        write_table(&mut out, &set).unwrap();
        // What psql 15 prints for the same rows.
        let psql = " command  | n  | last \n----------+----+------\n line one+| 12 | x\n l2       |    | \n \
                    short    |  3 | a   +\n          |    | bb\n(2 rows)\n\n";
        assert_eq!(String::from_utf8(out).unwrap(), psql);
    }
}
