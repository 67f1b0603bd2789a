//! Read replicas: a real streaming replica of the test server (`pg_basebackup -R`), shared by
//! the tests here, which take turns on it (one of them pauses its replay).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use ticket_audit::config::Secret;
use ticket_audit::postgres_local::{LocalOptions, LocalPostgres};

use crate::helpers::*;

/// The run's replica: its superuser options (database `postgres`).
fn replica() -> &'static PgConnectOptions {
    static REPLICA: OnceLock<PgConnectOptions> = OnceLock::new();
    REPLICA.get_or_init(|| {
        let primary = server_options();
        let (tx, rx) = std::sync::mpsc::channel();
        // As the test server: a thread and runtime of its own for the whole run; its guardian
        // stops the replica and removes its directory when the run ends, however it ends.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let dir = std::env::temp_dir().join(format!("ticket-audit-test-replica-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                let started = Instant::now();
                let cluster = LocalPostgres::start_replica(
                    &dir,
                    &primary,
                    LocalOptions { ephemeral: true, ..Default::default() },
                )
                .await
                .expect("a streaming replica of the test server (pg_basebackup -R)");
                eprintln!("replica of the test server built and started in {:?}", started.elapsed());
                tx.send(cluster.connect_options("postgres")).unwrap();
                let _cluster = cluster;
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("the replica starts")
    })
}

/// The tests here take turns: a paused replay would hold up another's database.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bound on anything these tests wait for: a failure, not a hang.
const BOUND: Duration = Duration::from_secs(30);

async fn connect(options: &PgConnectOptions) -> PgConnection {
    options.connect().await.expect("connect")
}

/// Returns once the replica has replayed everything the primary has logged until now. The
/// insert position, not the write position: the test server commits without waiting for its
/// WAL to be written (synchronous_commit off), so a commit just answered may be past the latter.
async fn until_replayed() {
    let mut primary = connect(&server_options()).await;
    let lsn: String =
        sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text").fetch_one(&mut primary).await.unwrap();
    primary.close().await.unwrap();
    let mut replica = connect(replica()).await;
    let started = Instant::now();
    loop {
        let done: bool = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
            .bind(&lsn)
            .fetch_one(&mut replica)
            .await
            .unwrap();
        if done {
            return;
        }
        assert!(started.elapsed() < BOUND, "the replica did not replay up to {lsn} within {BOUND:?}");
        tokio::task::yield_now().await;
    }
}

/// Pauses the replica's replay until dropped (also when the test fails, or the next test would
/// wait for a replica that never moves).
struct Paused;

impl Paused {
    async fn replay() -> Paused {
        let mut c = connect(replica()).await;
        sqlx::query("SELECT pg_wal_replay_pause()").execute(&mut c).await.unwrap();
        let started = Instant::now();
        loop {
            let state: String =
                sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()").fetch_one(&mut c).await.unwrap();
            if state == "paused" {
                return Paused;
            }
            assert!(started.elapsed() < BOUND, "replay did not pause");
            tokio::task::yield_now().await;
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let options = replica().clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut c = options.connect().await.expect("connect to the replica");
                sqlx::query("SELECT pg_wal_replay_resume()").execute(&mut c).await.expect("resume replay");
            });
        })
        .join()
        .expect("replay resumes");
    }
}

/// The app on a fresh database, reading from the replica's copy of it.
async fn spawn_with_replica(settings: ticket_audit::config::HttpSettings) -> (TestApp, String) {
    let (options, name) = fresh_database().await;
    until_replayed().await; // the new database exists on the replica too
    let read_url = socket_url(&replica().clone().database(&name));
    let pools =
        ticket_audit::config::DatabaseArgs { database_read_url: Some(Secret::from(read_url.clone())), ..pools() };
    (spawn_on(options, name, settings, pools).await, read_url)
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("GET")
}

/// `name value` of one sample line of the Prometheus text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_come_from_the_replica_proofs_from_the_primary_and_lag_is_exposed() {
    let _turn = TURN.lock().await;
    let settings = ticket_audit::config::HttpSettings { min_seq_wait_ms: 2000, ..settings() };
    let (app, _) = spawn_with_replica(settings).await;

    let first = app.deliver(&add_ticket("REP-1", "tenant-a", "agent")).await;
    until_replayed().await;
    assert_eq!(app.get("/api/v1/tickets/REP-1", None).await.status(), 200);
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["replica"]["status"], "ok", "{ready}");
    assert_eq!(ready["replica"]["replay_paused"], false, "{ready}");

    let paused = Paused::replay().await;
    let second = app.deliver(&add_ticket("REP-2", "tenant-a", "agent")).await;
    assert_eq!(second, first + 1);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE seq = $1")
        .bind(second)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 1, "the primary has it");
    // The read API does not: it reads the replica, which has not replayed it.
    assert_eq!(app.get("/api/v1/tickets/REP-2", None).await.status(), 404);
    assert_eq!(app.get(&format!("/api/v1/deliveries/{second}"), None).await.status(), 404);
    let tickets = app.get_json("/api/v1/tickets").await;
    assert_eq!(tickets["items"].as_array().unwrap().len(), 1, "{tickets}");
    // The head and the proofs are the primary's: they cover what was just acknowledged.
    assert_eq!(app.get_json("/api/v1/ledger/head").await["seq"], second);
    until_checkpoint(&app.db, second).await;
    let proof = app.get(&format!("/api/v1/ledger/proof/inclusion?seq={second}&tree_size={second}"), None).await;
    assert_eq!(proof.status(), 200, "an inclusion proof of what the replica has not replayed");

    // Lag, in /readyz and /metrics: bytes at once (the primary wrote, the replica did not
    // replay), seconds once the replica has received what it does not replay.
    let started = Instant::now();
    let ready = loop {
        let ready = app.get_json("/readyz").await;
        if ready["replica"]["lag_seconds"].as_f64().is_some_and(|s| s > 0.0) {
            break ready;
        }
        assert!(started.elapsed() < BOUND, "no lag in seconds while replay is paused: {ready}");
        tokio::task::yield_now().await;
    };
    assert_eq!(ready["status"], "ready", "a lagging replica does not make the service unready");
    assert_eq!(ready["replica"]["replay_paused"], true, "{ready}");
    assert!(ready["replica"]["lag_bytes"].as_u64().is_some_and(|b| b > 0), "{ready}");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(sample(&metrics, "ticket_audit_replica_up"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "ticket_audit_replica_replay_paused"), Some(1.0), "{metrics}");
    assert!(sample(&metrics, "ticket_audit_replica_lag_bytes").is_some_and(|b| b > 0.0), "{metrics}");
    assert!(sample(&metrics, "ticket_audit_replica_lag_seconds").is_some_and(|s| s > 0.0), "{metrics}");

    // Reading one's own write: X-Min-Seq waits for the replica, bounded, then 503.
    let bad = get_with(&app, "/api/v1/tickets/REP-2", &[("x-min-seq", "two")]).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    let beyond = get_with(&app, "/api/v1/tickets/REP-2", &[("x-min-seq", &(second + 1).to_string())]).await;
    assert_eq!(beyond.status(), 400, "a seq the primary does not have either is not waited for");
    let waited = Instant::now();
    let late = get_with(&app, "/api/v1/tickets/REP-2", &[("x-min-seq", &second.to_string())]).await;
    assert_eq!(late.status(), 503);
    assert!(late.headers().contains_key("retry-after"));
    assert!(waited.elapsed() >= Duration::from_millis(2000), "it waited MIN_SEQ_WAIT_MS first");
    // A read already satisfied does not wait.
    let now = get_with(&app, "/api/v1/tickets/REP-1", &[("x-min-seq", &first.to_string())]).await;
    assert_eq!(now.status(), 200);
    // A read waiting when replay resumes answers with the delivery.
    let waiting = {
        let (client, url, seq) = (app.client.clone(), app.url("/api/v1/tickets/REP-2"), second.to_string());
        tokio::spawn(async move { client.get(url).header("x-min-seq", seq).send().await.unwrap() })
    };
    drop(paused);
    let res = waiting.await.unwrap();
    assert_eq!(res.status(), 200, "X-Min-Seq answered once the replica replayed it");
    let ticket: serde_json::Value = res.json().await.unwrap();
    assert_eq!(ticket["name"], "REP-2");
    until_replayed().await;
    assert_eq!(app.get_json("/readyz").await["replica"]["replay_paused"], false);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(sample(&metrics, "ticket_audit_replica_replay_paused"), Some(0.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_x_min_seq_a_read_right_after_ingest_sees_the_delivery() {
    let _turn = TURN.lock().await;
    let (app, _) = spawn_with_replica(settings()).await;
    let rounds = 10;
    let (mut missed_without, mut waited) = (0, Vec::new());
    for i in 0..rounds {
        let seq = app.deliver(&add_ticket(&format!("RYW-{i}"), "tenant-a", "agent")).await;
        let path = format!("/api/v1/deliveries/{seq}");
        if app.get(&path, None).await.status() == 404 {
            missed_without += 1;
        }
        let started = Instant::now();
        let res = get_with(&app, &path, &[("x-min-seq", &seq.to_string())]).await;
        waited.push(started.elapsed());
        assert_eq!(res.status(), 200, "round {i}: X-Min-Seq {seq} reads its own write");
    }
    waited.sort();
    eprintln!(
        "read-your-writes on the replica: {missed_without}/{rounds} reads right after ingest missed the delivery \
         without X-Min-Seq; with it none did, waiting p50 {:?}, max {:?}",
        waited[rounds / 2],
        waited[rounds - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_is_gone_is_reported_not_fatal_to_ingest() {
    let _turn = TURN.lock().await; // the replica gauges are the process's
    let (options, name) = fresh_database().await;
    // Nothing listens there: a replica that went away.
    let dir = std::env::temp_dir().join(format!("ticket-audit-no-replica-{}", std::process::id()));
    let gone = format!("postgres://postgres@localhost/{name}?host={}&port=5432", dir.display());
    let pools = ticket_audit::config::DatabaseArgs {
        database_read_url: Some(Secret::from(gone)),
        db_acquire_timeout_ms: 500,
        ..pools()
    };
    let app = spawn_on(options, name, settings(), pools).await;
    app.deliver(&add_ticket("GONE-1", "tenant-a", "agent")).await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200, "ingest needs only the primary");
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["replica"]["status"], "unreachable", "{ready}");
    let read = app.get("/api/v1/tickets/GONE-1", None).await;
    assert_eq!(read.status(), 503, "reads need the replica");
    assert!(read.headers().contains_key("retry-after"));
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(sample(&metrics, "ticket_audit_replica_up"), Some(0.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_and_psql_read_the_replica() {
    let _turn = TURN.lock().await;
    let (app, read_url) = spawn_with_replica(settings()).await;
    app.deliver(&add_ticket("REP-R", "tenant-a", "agent")).await;
    until_replayed().await;
    // No DATABASE_URL, and a DATA_DIR that must stay empty: the report reads the replica alone.
    let data_dir = std::env::temp_dir().join(format!("ticket-audit-report-replica-{}", std::process::id()));
    let data = data_dir.to_str().unwrap();
    let ran = run_bounded(
        cli(
            &["report", "tickets_by_status", "--format", "json"],
            &[("DATABASE_READ_URL", &read_url), ("DATA_DIR", data)],
        ),
        BOUND,
    );
    assert!(ran.status.success(), "{}", ran.stderr);
    assert!(ran.stdout.contains("\"REP-R\""), "{}", ran.stdout);
    assert!(!data_dir.exists(), "no private cluster was started");

    let primary_url = database_url(&app.db_name);
    let psql = |extra: &[&str]| {
        let mut args = vec!["psql"];
        args.extend_from_slice(extra);
        args.extend(["--", "-At", "-c", "SELECT pg_is_in_recovery()"]);
        let env = [("DATABASE_URL", primary_url.as_str()), ("DATABASE_READ_URL", read_url.as_str())];
        run_bounded(cli(&args, &env), BOUND)
    };
    let on_replica = psql(&[]);
    assert!(on_replica.status.success(), "{}", on_replica.stderr);
    assert_eq!(on_replica.stdout.trim(), "t", "psql opens on the replica");
    let on_primary = psql(&["--primary"]);
    assert!(on_primary.status.success(), "{}", on_primary.stderr);
    assert_eq!(on_primary.stdout.trim(), "f", "psql --primary opens on the primary");
}
