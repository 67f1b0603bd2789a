//! `ticket-audit archive --before YYYY-MM --to DIR [--drop]`: write every whole month before
//! YYYY-MM to files (one directory per month: NDJSON compressed with zstd, one file per table,
//! and a manifest tying the month's leaves to a signed checkpoint); with `--drop`, check each
//! written month and drop its partitions from the database.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use time::Date;

use crate::config::DatabaseArgs;
use crate::store::{archive, Database};
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Archive the months before this one (UTC): YYYY-MM. The current month cannot be archived.
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month)]
    pub before: Date,
    /// The directory to write to (created if missing): DIR/YYYY_MM/ per month.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// After writing and checking a month (files, checksums, leaves against the tree), detach and
    /// drop its partitions. Without it the database keeps everything.
    #[arg(long)]
    pub drop: bool,
    /// Connections to read a month on: 2 streams its deliveries on one and its other tables on
    /// the other at the same time (two PostgreSQL backends, two cores); 1 reads them in turn.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub connections: u8,
}

/// `2026-11` as the first of that month.
pub fn parse_month(s: &str) -> Result<Date, String> {
    let bad = || format!("{s:?} is not a month: YYYY-MM");
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    let m = time::Month::try_from(m).map_err(|_| bad())?;
    Date::from_calendar_date(y, m, 1).map_err(|_| bad())
}

pub async fn run(args: ArchiveArgs) -> Result<ExitCode, BoxError> {
    std::fs::create_dir_all(&args.to).map_err(|e| format!("creating {}: {e}", args.to.display()))?;
    let (before, dir, drop) = (args.before, args.to.clone(), args.drop);
    let db = Database::resolve(&args.database, false, 0).await?;
    let result = async {
        db.prepare_schema(args.database.no_migrate).await?;
        let mut conn = db.connect().await?;
        let months = archive::months_before(&mut conn, before).await?;
        if months.is_empty() {
            println!("nothing to archive before {before}: no closed month in the database");
        }
        for month in months {
            let started = Instant::now();
            // A second connection streams the month's other tables beside its deliveries.
            let second = if args.connections > 1 { Some(db.connect().await?) } else { None };
            let manifest = archive::write_month(&mut conn, second, &month, &dir).await?;
            let spent = started.elapsed().as_secs_f64();
            let rows = |t: &str| manifest.files.iter().find(|f| f.table == t).map_or(0, |f| f.rows);
            println!(
                "archived {} (seq {}..={}): {} deliveries, {} commands in {:.1} s ({:.0} commands/s), tied to the checkpoint of {}",
                month.partition,
                month.first_seq,
                month.last_seq,
                rows("deliveries"),
                rows("commands"),
                spent,
                rows("commands") as f64 / spent.max(1e-9),
                manifest.checkpoint.tree_size
            );
            if drop {
                let sub = dir.join(&month.partition);
                archive::check_files(&sub, &manifest)?;
                archive::check_against_database(&mut conn, &sub, &manifest).await?;
                archive::drop_month(&mut conn, &month, &dir).await?;
                println!("dropped {}: checked against the tree; its partitions are gone", month.partition);
            }
        }
        Ok::<_, BoxError>(ExitCode::SUCCESS)
    }
    .await;
    db.stop().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse() {
        assert_eq!(parse_month("2026-11"), Ok(time::macros::date!(2026 - 11 - 01)));
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-11-01"] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }
}
