//! `ticket-audit import FILE`: load deliveries from NDJSON through the writer, as if received.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config::DatabaseArgs;
use crate::store::{self, Database, Writer};
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// NDJSON file (`-` for standard input). Each line: {"body": <the delivery>, "headers": {...}, "received_at": "..."}
    /// (or "body_base64" for the exact bytes); a line without "body" or "body_base64" is itself the body.
    pub file: PathBuf,
}

/// Why an import stopped; the file is always named.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("opening {file}: {source}")]
    Open { file: String, source: std::io::Error },
    #[error("importing {file}: {source}")]
    Import { file: String, source: BoxError },
}

pub async fn run(args: ImportArgs) -> Result<ExitCode, BoxError> {
    let stdin = args.file.as_os_str() == "-";
    let file = if stdin { "standard input".to_owned() } else { args.file.display().to_string() };
    // Opened first: a missing file is reported before a cluster is started for nothing.
    let input = if stdin {
        None
    } else {
        let f = tokio::fs::File::open(&args.file)
            .await
            .map_err(|source| ImportError::Open { file: file.clone(), source })?;
        Some(f)
    };
    let db = Database::resolve(&args.database, false, 0).await?;
    let result = async {
        db.prepare_schema(args.database.no_migrate).await?;
        let pool = store::write_pool(db.options.clone(), 2, Duration::from_secs(30), None);
        let (writer, task) = Writer::spawn_in_order(pool.clone(), 8192, 256)?;
        let summary = match input {
            None => crate::ingest::import(tokio::io::BufReader::new(tokio::io::stdin()), &writer).await,
            Some(f) => crate::ingest::import(tokio::io::BufReader::with_capacity(1 << 20, f), &writer).await,
        };
        drop(writer);
        task.await?;
        pool.close().await;
        let summary = summary.map_err(|e| ImportError::Import { file: file.clone(), source: e.into() })?;
        // Reports read imported commands either way; classified, they read them fast.
        let mut conn = db.connect().await?;
        let classified = store::classify::catch_up(&mut conn).await?;
        tracing::info!(commands = classified, file = %file, "classified for reports");
        Ok::<_, BoxError>(summary)
    }
    .await;
    db.stop().await;
    println!("{}", serde_json::to_string(&result?)?);
    Ok(ExitCode::SUCCESS)
}
