//! `ticket-audit reproject`: rebuild the normalized tables from the stored deliveries.

use std::process::ExitCode;

use clap::Args;

use crate::config::DatabaseArgs;
use crate::store;
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct ReprojectArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

pub async fn run(args: ReprojectArgs) -> Result<ExitCode, BoxError> {
    let n =
        super::with_database(
            &args.database,
            |mut conn| async move { Ok(store::reproject::reproject(&mut conn).await?) },
        )
        .await?;
    println!("reprojected {n} deliveries");
    Ok(ExitCode::SUCCESS)
}
