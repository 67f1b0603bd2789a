//! `ticket-audit migrate`: apply the migrations this build holds, and exit.

use std::process::ExitCode;

use clap::Args;

use crate::config::DatabaseArgs;
use crate::store::{migrate, Database, DatabaseError};
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

pub async fn run(args: MigrateArgs) -> Result<ExitCode, BoxError> {
    let db = Database::resolve(&args.database, false, 0).await?;
    let result = async {
        let mut conn = db.connect().await?;
        let target = crate::store::database::describe(&db.options);
        let applied = migrate::run(&mut conn).await.map_err(|source| DatabaseError::Migrate { target, source })?;
        tracing::info!(applied, version = migrate::latest_version(), "migrations applied");
        Ok::<_, BoxError>(())
    }
    .await;
    db.stop().await;
    result.map(|()| ExitCode::SUCCESS)
}
