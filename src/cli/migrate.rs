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
        // The verifiable log's tree over deliveries stored before it (V7), or by an older build.
        let added = crate::store::tree::catch_up(&mut conn).await?;
        if added > 0 {
            tracing::info!(leaves = added, "the verifiable log's tree now covers every stored delivery");
        }
        Ok::<_, BoxError>(())
    }
    .await;
    db.stop().await;
    result.map(|()| ExitCode::SUCCESS)
}
