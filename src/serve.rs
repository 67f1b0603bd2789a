//! Start-up and shutdown of the service: the pools, the writer, the classifier and the HTTP
//! surface on a listener the caller bound (tests bind port 0), until `shutdown` resolves.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{DatabaseArgs, HttpSettings};
use crate::http::auth::{ApiAuth, WebhookAuth};
use crate::store::{self, Writer};
use crate::BoxError;

/// Applies pending migrations on `options` (for tests and tools that bring their own database).
pub async fn migrate(options: &PgConnectOptions) -> Result<usize, BoxError> {
    let mut conn = store::connect(options, Duration::from_millis(crate::config::DEFAULT_CONNECT_TIMEOUT_MS)).await?;
    let applied = store::migrate::run(&mut conn).await?;
    store::tree::catch_up(&mut conn).await?;
    sqlx::Connection::close(conn).await?;
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
    let signer = crate::checkpointing::load_signer(&settings.signing, &pools.data_dir_or_default())?;
    tracing::info!(origin = signer.name(), verifier_key = %signer.verifier(), "checkpoints are signed with this key");
    let acquire = Duration::from_millis(pools.db_acquire_timeout_ms);
    let role = match store::can_use_writer_role(&db, pools.connect_timeout()).await {
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
    // A physical replica has the primary's roles, so it serves with the same one.
    let replica = store::database::read_options(pools, crate::config::DEFAULT_STATEMENT_TIMEOUT_MS_SERVE)?
        .map(|options| {
            tracing::info!(replica = %store::database::describe(&options), "the read API reads from the replica (DATABASE_READ_URL)");
            store::pool(options, pools.db_max_connections, acquire, role)
        });
    // Two batches at once (one committing, the next going in), and one to spare for a locked retry.
    // Instances that pass deliveries on name their writer's connections after their URL.
    let advertised = match &settings.advertise_url {
        Some(setting) => Some(crate::http::forward::advertised(setting, listener.local_addr()?)?),
        None => None,
    };
    let write_db = match &advertised {
        Some(url) => db.clone().application_name(&format!("{}{url}", store::lease::ADVERTISED)),
        None => db.clone(),
    };
    let write_pool = store::write_pool(write_db, 3, acquire, role);
    let (writer, writer_task) =
        Writer::spawn(write_pool.clone(), settings.write_queue_capacity, settings.write_batch_max)?;
    let stop_classifier = CancellationToken::new();
    let classifier = store::classify::spawn(pool.clone(), writer.activity(), stop_classifier.clone());
    let log_key = signer.verifier();
    // Keep-alives well inside the idle timeout, which a stream's traffic keeps from expiring.
    let keep_alive =
        crate::http::stream::KEEP_ALIVE.min(Duration::from_secs(settings.keepalive_idle_timeout_secs.max(1)) / 2);
    let (stream, tail) = crate::http::stream::Hub::start(pool.clone(), writer.committed(), keep_alive);
    let (stop_checkpoints, checkpoints_stop) = tokio::sync::watch::channel(false);
    let checkpointer = crate::checkpointing::spawn(
        pool.clone(),
        signer,
        Duration::from_millis(settings.checkpoint_interval_ms),
        settings.checkpoint_dir.clone(),
        checkpoints_stop,
    )
    .await;
    let stop_forwarding = CancellationToken::new();
    let forwarder = advertised.map(|url| {
        tracing::info!(url = %url, "deliveries go to the instance that writes (ADVERTISE_URL)");
        crate::http::forward::Forwarder::start(pool.clone(), url, stop_forwarding.clone())
    });
    let state = crate::http::AppState::new(crate::http::Inner {
        pool: pool.clone(),
        replica: replica.clone(),
        min_seq_wait: Duration::from_millis(settings.min_seq_wait_ms),
        writer,
        webhook_auth,
        api_auth,
        max_body_bytes: settings.max_body_bytes,
        max_delivery_rows: settings.max_delivery_rows,
        log_key,
        stream: stream.clone(),
        forwarder,
    });
    tracing::info!(
        addr = %listener.local_addr()?,
        webhook_auth = state.webhook_auth.describe(),
        batch_max = settings.write_batch_max,
        "listening"
    );
    // The address a browser can open: a wildcard bind is reached on the loopback address.
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() { "127.0.0.1".to_owned() } else { local.ip().to_string() };
    let host = if local.is_ipv6() && !local.ip().is_unspecified() { format!("[{host}]") } else { host };
    tracing::info!(url = %format!("http://{host}:{}/ui", local.port()), "the web page");
    crate::http::metrics::handle();
    let app = crate::http::router(
        state,
        Duration::from_secs(settings.request_timeout_secs),
        settings.max_concurrent_requests,
    );
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
    let limits = crate::http::server::Limits::from_settings(settings);
    crate::http::server::serve(listener, app, limits, async move {
        let _ = stopped.await;
        // Open streams end now, so connections can close rather than wait out their grace.
        stream.close();
    })
    .await?;
    let _ = tail.await;
    // The router (and with it the last handle on the writer's queue) is gone: the writer drains and ends.
    // The classifier finishes its step and ends too, whatever becomes of the writer.
    stop_classifier.cancel();
    stop_forwarding.cancel();
    let drained = writer_task.await;
    classifier.await?;
    // Last, so that its last checkpoint covers everything the writer committed.
    let _ = stop_checkpoints.send(true);
    checkpointer.await?;
    if stop.await {
        return Err("the writer stopped and could not be restarted: no delivery can be stored".into());
    }
    drained?;
    pool.close().await;
    write_pool.close().await;
    if let Some(replica) = replica {
        replica.close().await;
    }
    Ok(())
}
