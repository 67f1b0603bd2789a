//! ticket-audit: the audit record of an AI ServiceDesk. Receives its webhook deliveries, keeps
//! each byte for byte in a hash-chained ledger, normalizes them into tickets, messages and
//! commands, and serves them over a read API.

pub mod config;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod postgres_local;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::net::TcpListener;

use crate::config::{Cli, Command, DatabaseArgs, HttpSettings};
use crate::http::auth::{ApiAuth, WebhookAuth};
use crate::postgres_local::{LocalOptions, LocalPostgres};
use crate::store::Writer;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The database to use, and the private cluster behind it when the service runs its own.
pub struct Database {
    pub options: PgConnectOptions,
    pub local: Option<LocalPostgres>,
}

/// Name of the database created in the private cluster.
const LOCAL_DATABASE: &str = "ticket_audit";

impl Database {
    /// `DATABASE_URL` when set; otherwise a private cluster in the data directory.
    pub async fn resolve(args: &DatabaseArgs) -> Result<Self, BoxError> {
        if let Some(url) = &args.database_url {
            let options: PgConnectOptions = url.expose().parse()?;
            return Ok(Database { options, local: None });
        }
        let dir = args.data_dir.join("postgres");
        let local = LocalPostgres::start(&dir, LocalOptions { ephemeral: false }).await?;
        let admin: PgConnectOptions = local.url("postgres").parse()?;
        let mut conn = admin.connect().await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(LOCAL_DATABASE)
            .fetch_one(&mut conn)
            .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {LOCAL_DATABASE}")).execute(&mut conn).await?;
        }
        conn.close().await?;
        tracing::info!(
            data_dir = %local.data_dir().display(),
            "no DATABASE_URL: running a private PostgreSQL cluster; connect with psql -h {} -U postgres {LOCAL_DATABASE}",
            local.socket_dir().display()
        );
        let options = local.url(LOCAL_DATABASE).parse()?;
        Ok(Database { options, local: Some(local) })
    }

    pub async fn stop(self) {
        if let Some(local) = self.local {
            if let Err(e) = local.stop().await {
                tracing::error!(error = %e, "stopping the private PostgreSQL cluster");
            }
        }
    }
}

pub async fn migrate(options: &PgConnectOptions) -> Result<usize, BoxError> {
    let mut conn = options.connect().await?;
    let applied = store::migrate::run(&mut conn).await?;
    conn.close().await?;
    Ok(applied)
}

/// Serves on `listener` until `shutdown` resolves, then stops taking requests, answers those in
/// flight, lets the writer commit what it holds, and closes the pools.
pub async fn serve(
    listener: TcpListener,
    db: PgConnectOptions,
    pools: &DatabaseArgs,
    settings: &HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let webhook_auth = WebhookAuth::from_settings(
        settings.webhook_secret.as_ref(),
        settings.ingest_token.as_ref(),
        settings.webhook_tolerance_secs,
    )?;
    if matches!(webhook_auth, WebhookAuth::Open) {
        tracing::warn!("neither WEBHOOK_SECRET nor INGEST_TOKEN is set: anyone who can reach POST /webhooks can write to the record");
    }
    let api_auth = ApiAuth::from_settings(settings.api_tokens.as_ref())?;
    if api_auth.is_open() {
        tracing::warn!("API_TOKENS is not set: the read API is open to anyone who can reach it");
    }
    let acquire = Duration::from_millis(pools.db_acquire_timeout_ms);
    let role = match store::can_use_writer_role(&db).await {
        Ok(true) => Some(store::WRITER_ROLE),
        Ok(false) => {
            tracing::warn!(
                "the database login is not a member of {}: serving with the login's own rights",
                store::WRITER_ROLE
            );
            None
        }
        Err(e) => {
            // Not reachable now: serve anyway (503s until it is) and take the least rights.
            tracing::warn!(error = %e, "database unreachable at start-up");
            Some(store::WRITER_ROLE)
        }
    };
    let pool = store::pool(db.clone(), pools.db_max_connections, acquire, role);
    let write_pool = store::pool(db, 2, acquire, role);
    let (writer, writer_task) =
        Writer::spawn(write_pool.clone(), settings.write_queue_capacity, settings.write_batch_max)?;
    let (stop_classifier, stop) = tokio::sync::watch::channel(false);
    let classifier = store::classify::spawn(pool.clone(), writer.activity(), stop);
    let state = http::AppState::new(http::Inner {
        pool: pool.clone(),
        writer,
        webhook_auth,
        api_auth,
        max_body_bytes: settings.max_body_bytes,
        max_delivery_rows: settings.max_delivery_rows,
    });
    tracing::info!(
        addr = %listener.local_addr()?,
        webhook_auth = state.webhook_auth.describe(),
        batch_max = settings.write_batch_max,
        "listening"
    );
    http::metrics::handle();
    let app = http::router(state, Duration::from_secs(settings.request_timeout_secs), settings.max_concurrent_requests);
    // The writer ending while we serve means its supervisor gave up: stop serving (every delivery
    // would get 503) and exit non-zero, so whatever runs the service restarts it.
    let writer_task = writer_task.shared();
    let writer_died = {
        let w = writer_task.clone();
        async move {
            let _ = w.await;
        }
    };
    let stop = async move {
        tokio::select! {
            () = shutdown => false,
            () = writer_died => true,
        }
    }
    .shared();
    let stopped = stop.clone();
    let limits = http::server::Limits::from_settings(settings);
    http::server::serve(listener, app, limits, async move {
        let _ = stopped.await;
    })
    .await?;
    // The router (and with it the last handle on the writer's queue) is gone: the writer drains and ends.
    // The classifier finishes its step and ends too, whatever becomes of the writer.
    let _ = stop_classifier.send(true);
    let drained = writer_task.await;
    classifier.await?;
    if stop.await {
        return Err("the writer stopped and could not be restarted: no delivery can be stored".into());
    }
    drained?;
    pool.close().await;
    write_pool.close().await;
    Ok(())
}

/// The command line: parse in `main`, everything else here.
pub async fn run(cli: Cli) -> Result<(), BoxError> {
    telemetry::init(cli.log_format, &cli.log_filter);
    match cli.command {
        Command::Migrate(args) => {
            let db = Database::resolve(&args).await?;
            let result = migrate(&db.options).await;
            db.stop().await;
            tracing::info!(applied = result?, "migrations applied");
            Ok(())
        }
        Command::Verify(args) => {
            let expect = args.expect_head.as_deref().map(store::ledger::parse_head).transpose()?;
            let report =
                with_database(
                    &args.database,
                    |mut conn| async move { Ok(store::ledger::verify(&mut conn, expect).await?) },
                )
                .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "checked {} deliveries and {} commands; head {}:{}",
                    report.deliveries,
                    report.commands,
                    report.head.seq,
                    hex::encode(&report.head.hash)
                );
            }
            match report.first_break {
                None => {
                    println!("OK: the record is whole and unaltered");
                    Ok(())
                }
                Some(b) => {
                    let kind = serde_json::to_value(b.kind)?;
                    Err(format!("BROKEN at seq {}: {} ({})", b.seq, kind.as_str().unwrap_or("?"), b.detail).into())
                }
            }
        }
        Command::Export(args) => {
            let n = with_database(&args.database, |mut conn| async move {
                let out: Box<dyn std::io::Write + Send> = match &args.output {
                    Some(path) => Box::new(std::fs::File::create(path)?),
                    None => Box::new(std::io::stdout()),
                };
                let out = std::io::BufWriter::with_capacity(1 << 16, out);
                Ok(store::export::export(&mut conn, args.since, args.until, args.format, out).await?)
            })
            .await?;
            tracing::info!(commands = n, "exported");
            Ok(())
        }
        Command::Import(args) => {
            let db = Database::resolve(&args.database).await?;
            let result = async {
                migrate(&db.options).await?;
                let pool = store::pool(db.options.clone(), 2, Duration::from_secs(30), None);
                let (writer, task) = Writer::spawn(pool.clone(), 8192, 256)?;
                let summary: Result<_, BoxError> = if args.file.as_os_str() == "-" {
                    ingest::import(tokio::io::BufReader::new(tokio::io::stdin()), &writer).await.map_err(Into::into)
                } else {
                    let file =
                        tokio::fs::File::open(&args.file).await.map_err(|e| format!("{}: {e}", args.file.display()))?;
                    ingest::import(tokio::io::BufReader::with_capacity(1 << 20, file), &writer)
                        .await
                        .map_err(|e| format!("{}: {e}", args.file.display()).into())
                };
                drop(writer);
                task.await?;
                pool.close().await;
                // Reports read imported commands either way; classified, they read them fast.
                let mut conn = db.options.connect().await?;
                let classified = store::classify::catch_up(&mut conn).await?;
                tracing::info!(commands = classified, "classified for reports");
                summary
            }
            .await;
            db.stop().await;
            let summary = result?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
        Command::Reproject(args) => {
            let n = with_database(&args, |mut conn| async move { Ok(store::reproject::reproject(&mut conn).await?) })
                .await?;
            println!("reprojected {n} deliveries");
            Ok(())
        }
        Command::Serve(args) => {
            let db = Database::resolve(&args.database).await?;
            let result = async {
                let applied = migrate(&db.options).await?;
                tracing::info!(applied, "migrations applied");
                let listener = TcpListener::bind(args.listen_addr).await?;
                serve(listener, db.options.clone(), &args.database, &args.http, shutdown_signal()).await
            }
            .await;
            db.stop().await;
            result
        }
    }
}

/// Runs `f` on one connection to the (given or private) database, migrated first.
async fn with_database<T, F, Fut>(args: &DatabaseArgs, f: F) -> Result<T, BoxError>
where
    F: FnOnce(sqlx::PgConnection) -> Fut,
    Fut: Future<Output = Result<T, BoxError>>,
{
    let db = Database::resolve(args).await?;
    let result = async {
        migrate(&db.options).await?;
        f(db.options.connect().await?).await
    }
    .await;
    db.stop().await;
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}
