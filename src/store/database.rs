//! Which database to use: `DATABASE_URL`, or a private cluster in the data directory (with the
//! service's database created in it on first use); connecting with a bound; the schema's state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::config::DatabaseArgs;
use crate::postgres_local::{LocalOptions, LocalPgError, LocalPostgres};
use crate::store::migrate::{self, MigrateError};

/// Name of the database created in the private cluster.
pub const LOCAL_DATABASE: &str = "ticket_audit";
/// DATA_DIR when none is given.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// DATA_DIR when none is given and the server's user cannot reach ./data (root in a private home).
pub const ROOT_DATA_DIR: &str = "/var/lib/ticket-audit";

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("DATABASE_URL is not a PostgreSQL URL: {0}")]
    BadUrl(sqlx::Error),
    #[error("DATABASE_READ_URL is not a PostgreSQL URL: {0}")]
    BadReadUrl(sqlx::Error),
    #[error(transparent)]
    Local(#[from] LocalPgError),
    #[error(
        "no answer from the database at {target} within {ms} ms (DB_CONNECT_TIMEOUT_MS): is the server up, \
         and is this its address?"
    )]
    ConnectTimeout { target: String, ms: u64 },
    #[error("connecting to the database at {target}: {source}")]
    Connect { target: String, source: sqlx::Error },
    #[error("{what} (database at {target}): {source}")]
    Query { what: &'static str, target: String, source: sqlx::Error },
    #[error(
        "the database schema is at version {at}, this build needs version {need}, and NO_MIGRATE is set: \
         run `ticket-audit migrate` as the schema's owner first"
    )]
    SchemaBehind { at: i64, need: i64 },
    #[error(
        "the replica's schema is at version {at}, this build needs version {need}: migrate the primary \
         (`ticket-audit migrate`) and let the replica replay it"
    )]
    ReplicaSchemaBehind { at: i64, need: i64 },
    #[error("the database schema is at version {at}, newer than this build knows (version {known}): run a newer ticket-audit")]
    SchemaAhead { at: i64, known: i64 },
    #[error(
        "applying migrations (database at {target}): {source}. A login that may not change the schema can \
         still serve once the schema's owner has run `ticket-audit migrate` (see NO_MIGRATE)"
    )]
    Migrate { target: String, source: MigrateError },
}

/// The database to use, and the private cluster behind it when the service runs its own.
pub struct Database {
    pub options: PgConnectOptions,
    pub local: Option<LocalPostgres>,
    pub connect_timeout: Duration,
}

/// Where `options` points, for messages: host and port or socket directory, and the database.
pub fn describe(options: &PgConnectOptions) -> String {
    let db = options.get_database().unwrap_or("(default)");
    match options.get_socket() {
        Some(dir) => format!("socket {}, database {db}", dir.display()),
        None => format!("{}:{}, database {db}", options.get_host(), options.get_port()),
    }
}

/// Opens one connection, giving up after `timeout`: a server that accepts TCP and never answers
/// must not hang a command.
pub async fn connect(options: &PgConnectOptions, timeout: Duration) -> Result<PgConnection, DatabaseError> {
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(DatabaseError::Connect { target: describe(options), source }),
        Err(_) => Err(DatabaseError::ConnectTimeout { target: describe(options), ms: timeout.as_millis() as u64 }),
    }
}

impl Database {
    /// `DATABASE_URL` when set; otherwise a private cluster in the data directory (started for
    /// this process, or the one another ticket-audit process runs there unless `exclusive`).
    /// Statements are limited to `DB_STATEMENT_TIMEOUT_MS`, or `default_statement_timeout_ms`.
    pub async fn resolve(
        args: &DatabaseArgs,
        exclusive: bool,
        default_statement_timeout_ms: u64,
    ) -> Result<Self, DatabaseError> {
        let connect_timeout = args.connect_timeout();
        let limit = |options| limit_statements(options, args, default_statement_timeout_ms);
        if let Some(url) = &args.database_url {
            let options: PgConnectOptions = url.expose_secret().parse().map_err(DatabaseError::BadUrl)?;
            return Ok(Database { options: limit(options), local: None, connect_timeout });
        }
        let opts = LocalOptions { ephemeral: false, exclusive };
        let local = match &args.data_dir {
            Some(dir) => LocalPostgres::start(&dir.join("postgres"), opts).await?,
            None => match LocalPostgres::start(&Path::new(DEFAULT_DATA_DIR).join("postgres"), opts).await {
                Err(LocalPgError::DirNotAccessible { user, .. }) => {
                    let fallback = PathBuf::from(ROOT_DATA_DIR);
                    tracing::warn!(
                        "DATA_DIR is not set and the PostgreSQL server's user `{user}` cannot reach {DEFAULT_DATA_DIR} \
                         (a parent directory is private, like /root): using {} instead; set DATA_DIR to choose",
                        fallback.display()
                    );
                    LocalPostgres::start(&fallback.join("postgres"), opts).await?
                }
                other => other?,
            },
        };
        let admin = local.connect_options("postgres");
        let mut conn = connect(&admin, connect_timeout).await?;
        create_database_once(&mut conn, LOCAL_DATABASE).await.map_err(|source| DatabaseError::Query {
            what: "creating the database",
            target: describe(&admin),
            source,
        })?;
        let _ = conn.close().await;
        tracing::info!(
            data_dir = %local.data_dir().display(),
            socket_dir = %local.socket_dir().display(),
            "no DATABASE_URL: the record lives in the private PostgreSQL cluster in {}; open a SQL shell on it \
             with `ticket-audit psql`",
            local.data_dir().display()
        );
        let options = limit(local.connect_options(LOCAL_DATABASE));
        Ok(Database { options, local: Some(local), connect_timeout })
    }

    /// The replica (`DATABASE_READ_URL`) when one is given, for commands that only read (`report`):
    /// the primary is then not touched at all; otherwise as [`Database::resolve`].
    pub async fn resolve_for_reading(
        args: &DatabaseArgs,
        default_statement_timeout_ms: u64,
    ) -> Result<Self, DatabaseError> {
        match read_options(args, default_statement_timeout_ms)? {
            Some(options) => Ok(Database { options, local: None, connect_timeout: args.connect_timeout() }),
            None => Self::resolve(args, false, default_statement_timeout_ms).await,
        }
    }

    /// Checks, without writing anything (a replica cannot), that the replica's schema is this build's.
    pub async fn check_schema(&self) -> Result<(), DatabaseError> {
        let mut conn = self.connect().await?;
        let at = migrate::applied_version(&mut conn)
            .await
            .map_err(|source| DatabaseError::Query {
                what: "reading the schema version",
                target: describe(&self.options),
                source,
            })?
            .unwrap_or(0);
        let _ = conn.close().await;
        let need = migrate::latest_version();
        match at.cmp(&need) {
            std::cmp::Ordering::Less => Err(DatabaseError::ReplicaSchemaBehind { at, need }),
            std::cmp::Ordering::Greater => Err(DatabaseError::SchemaAhead { at, known: need }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    pub async fn connect(&self) -> Result<PgConnection, DatabaseError> {
        connect(&self.options, self.connect_timeout).await
    }

    /// Brings the schema to this build's version, or (with `no_migrate`) only checks that it is
    /// there. A schema already current is left alone, so a login without DDL rights can start.
    /// Returns how many migrations were applied.
    pub async fn prepare_schema(&self, no_migrate: bool) -> Result<usize, DatabaseError> {
        let mut conn = self.connect().await?;
        let target = || describe(&self.options);
        let at = migrate::applied_version(&mut conn)
            .await
            .map_err(|source| DatabaseError::Query { what: "reading the schema version", target: target(), source })?
            .unwrap_or(0);
        let need = migrate::latest_version();
        let applied = if at == need {
            tracing::info!(version = at, "the schema is current: nothing to migrate");
            0
        } else if at > need {
            return Err(DatabaseError::SchemaAhead { at, known: need });
        } else if no_migrate {
            return Err(DatabaseError::SchemaBehind { at, need });
        } else {
            // A migration may rewrite a large table: DB_STATEMENT_TIMEOUT_MS is for the service's queries.
            sqlx::query("SET statement_timeout = 0").execute(&mut conn).await.map_err(|source| {
                DatabaseError::Query { what: "lifting the statement timeout to migrate", target: target(), source }
            })?;
            let applied =
                migrate::run(&mut conn).await.map_err(|source| DatabaseError::Migrate { target: target(), source })?;
            tracing::info!(applied, from = at, to = need, "migrations applied");
            applied
        };
        // The verifiable log's tree over deliveries stored before it (V7), or by an older build.
        let added = super::tree::catch_up(&mut conn).await.map_err(|source| DatabaseError::Query {
            what: "building the verifiable log's tree",
            target: target(),
            source,
        })?;
        if added > 0 {
            tracing::info!(leaves = added, "the verifiable log's tree now covers every stored delivery");
        }
        let _ = conn.close().await;
        Ok(applied)
    }

    /// The private cluster is stopped if this process started it.
    pub async fn stop(self) {
        if let Some(local) = self.local {
            if let Err(e) = local.stop().await {
                tracing::error!(error = %e, "stopping the private PostgreSQL cluster");
            }
        }
    }
}

/// `DB_STATEMENT_TIMEOUT_MS`, or `default_ms`, on every connection made with `options`.
fn limit_statements(options: PgConnectOptions, args: &DatabaseArgs, default_ms: u64) -> PgConnectOptions {
    match args.db_statement_timeout_ms.unwrap_or(default_ms) {
        0 => options,
        ms => options.options([("statement_timeout", ms.to_string())]),
    }
}

/// `DATABASE_READ_URL`, with the same statement timeout as the primary, when one is given.
pub fn read_options(
    args: &DatabaseArgs,
    default_statement_timeout_ms: u64,
) -> Result<Option<PgConnectOptions>, DatabaseError> {
    let Some(url) = &args.database_read_url else { return Ok(None) };
    let options: PgConnectOptions = url.expose_secret().parse().map_err(DatabaseError::BadReadUrl)?;
    Ok(Some(limit_statements(options, args, default_statement_timeout_ms)))
}

/// CREATE DATABASE unless it exists (there is no IF NOT EXISTS; `name` is a constant identifier).
async fn create_database_once(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""))).execute(&mut *conn).await?;
    }
    Ok(())
}
