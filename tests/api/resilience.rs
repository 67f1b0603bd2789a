//! When things go wrong: the database connection cut and restored mid-load, and the service
//! killed with SIGKILL mid-load and restarted. Whatever was acknowledged is stored exactly once.

use std::collections::{BTreeMap, HashSet};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgConnectOptions;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::JoinHandle;

use crate::helpers::*;

/// A TCP proxy in front of PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: PgConnectOptions) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c, l) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused as if the network were down
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    let _ = match upstream.get_socket() {
                        Some(dir) => {
                            let mut server = UnixStream::connect(dir.join(format!(".s.PGSQL.{}", upstream.get_port())))
                                .await
                                .unwrap();
                            tokio::io::copy_bidirectional(&mut client, &mut server).await
                        }
                        None => {
                            let mut server =
                                TcpStream::connect((upstream.get_host(), upstream.get_port())).await.unwrap();
                            tokio::io::copy_bidirectional(&mut client, &mut server).await
                        }
                    };
                });
                l.lock().unwrap().push(link);
            }
        });
        Proxy { port, cut, links }
    }

    /// Cuts every open connection and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Sends `ids` (as webhook-ids) until each is acknowledged; records what each answer said.
async fn send_all(
    client: &reqwest::Client,
    base: &str,
    ids: &[String],
    acked: &Mutex<BTreeMap<String, i64>>,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for id in ids {
        let body = message(&format!("R-{}", id.len() % 7), id, "ok", &[("uptime", "up")]);
        let res = client.post(format!("{base}/webhooks")).header("webhook-id", id).body(body).send().await;
        match res {
            Ok(r) => {
                let status = r.status().as_u16();
                statuses.push(status);
                if status == 202 || status == 200 {
                    let v: serde_json::Value = r.json().await.unwrap();
                    let seq = v["delivery_id"].as_i64().unwrap();
                    let previous = acked.lock().unwrap().insert(id.clone(), seq);
                    assert!(previous.is_none_or(|p| p == seq), "{id} acknowledged under two ids");
                } else {
                    assert_eq!(status, 503, "anything not acknowledged is a 503 to retry");
                    assert!(r.headers().contains_key("retry-after"));
                }
            }
            Err(_) => statuses.push(0),
        }
    }
    statuses
}

#[tokio::test]
async fn a_database_outage_gets_503s_and_the_service_recovers_by_itself() {
    let (options, name) = fresh_database().await;
    let proxy = Proxy::start(options.clone()).await;
    let via_proxy = PgConnectOptions::new().host("127.0.0.1").port(proxy.port).username("postgres").database(&name);
    let mut pools = pools();
    pools.db_acquire_timeout_ms = 500;
    let app = spawn_on(via_proxy, name, settings(), pools).await;
    let direct = sqlx::PgPool::connect_with(options).await.unwrap();
    let acked = Mutex::new(BTreeMap::new());
    let ids = |from: usize, n: usize| (from..from + n).map(|i| format!("out-{i}")).collect::<Vec<_>>();

    // Before: everything is acknowledged.
    let batches: Vec<Vec<String>> = (0..4).map(|k| ids(k * 50, 50)).collect();
    let before = futures::future::join_all(batches.iter().map(|b| send_all(&app.client, &app.base, b, &acked))).await;
    assert!(before.iter().flatten().all(|s| *s == 202));

    // During: not one 2xx, only 503 with Retry-After, and not ready.
    let outage = std::time::Instant::now();
    proxy.cut();
    let refused: Vec<Vec<String>> = (0..4).map(|k| ids(1000 + k * 10, 10)).collect();
    let during = futures::future::join_all(refused.iter().map(|b| send_all(&app.client, &app.base, b, &acked))).await;
    assert!(during.iter().flatten().all(|s| *s == 503), "{during:?}");
    assert_eq!(app.get("/readyz", None).await.status(), 503);
    assert_eq!(acked.lock().unwrap().len(), 200);

    // After: no restart; the same senders retry what was refused and it is all stored.
    proxy.restore();
    eprintln!("outage test: connection cut for {:?}, 40 deliveries refused with 503 meanwhile", outage.elapsed());
    assert_eq!(app.get("/readyz", None).await.status(), 200, "ready again without a restart");
    let after = futures::future::join_all(refused.iter().map(|b| send_all(&app.client, &app.base, b, &acked))).await;
    assert!(after.iter().flatten().all(|s| *s == 202), "{after:?}");

    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT dedup_key, seq FROM deliveries ORDER BY seq").fetch_all(&direct).await.unwrap();
    let acked = acked.into_inner().unwrap();
    assert_eq!(stored.len(), acked.len(), "nothing stored twice, nothing acknowledged missing");
    for (key, seq) in &stored {
        assert_eq!(acked.get(key), Some(seq));
    }
    let mut conn = direct.acquire().await.unwrap();
    assert!(ticket_audit::store::ledger::verify(&mut conn, None).await.unwrap().ok);
}

/// The writer does not ping a connection before each batch: one the server ended while it sat
/// idle fails the batch's BEGIN, and the batch begins again on another; no sender sees it.
#[tokio::test]
async fn write_connections_the_server_ended_while_idle_cost_no_delivery() {
    let (options, name) = fresh_database().await;
    let app = spawn_on(options.clone(), name.clone(), settings(), pools()).await;
    let direct = sqlx::PgPool::connect_with(options).await.unwrap();
    let acked = Mutex::new(BTreeMap::new());
    for round in 0..3 {
        // Several at once, so that the writer's pool holds more than one connection.
        let ids: Vec<Vec<String>> =
            (0..4).map(|k| (0..10).map(|i| format!("idle-{round}-{k}-{i}")).collect()).collect();
        let answers = futures::future::join_all(ids.iter().map(|b| send_all(&app.client, &app.base, b, &acked))).await;
        assert!(answers.iter().flatten().all(|s| *s == 202), "round {round}: {answers:?}");
        // Every other session of the service's database ended, the writer's idle ones among them.
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend') t",
        )
        .bind(&name)
        .fetch_one(&direct)
        .await
        .unwrap();
        assert!(ended >= 2, "round {round}: {ended} sessions ended");
    }
    let after: Vec<String> = (0..10).map(|i| format!("idle-after-{i}")).collect();
    assert!(send_all(&app.client, &app.base, &after, &acked).await.iter().all(|s| *s == 202));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&direct).await.unwrap();
    assert_eq!(stored, 130);
    assert_eq!(acked.into_inner().unwrap().len(), 130);
}

/// Starts the service binary on `url`; returns it and the address it listens on.
fn start_service(url: &str) -> (Child, String) {
    let b = start_binary(&[("DATABASE_URL", url), ("RUST_LOG", "info")]);
    (b.child, b.base)
}

#[tokio::test]
async fn killed_mid_load_nothing_acknowledged_is_lost_or_doubled() {
    let (options, name) = fresh_database().await;
    let url = database_url(&name);
    let direct = sqlx::PgPool::connect_with(options).await.unwrap();
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    let all: Vec<String> = (0..1200).map(|i| format!("kill-{i}")).collect();
    let mut pending: Vec<String> = all.clone();
    let mut kills = 0;
    let mut sent = 0usize;
    let mut duplicates = 0usize;
    let mut failed = 0usize;
    while !pending.is_empty() {
        let (mut child, base) = start_service(&url);
        // 16 senders go through what is pending; the service is killed once a quarter of it is acknowledged.
        let round = pending.clone();
        let target = acked.lock().unwrap().len() + round.len() / 4;
        let chunks: Vec<Vec<String>> = round.chunks(round.len().div_ceil(16)).map(|c| c.to_vec()).collect();
        let senders: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
                tokio::spawn(async move { send_all(&client, &base, &chunk, &acked).await })
            })
            .collect();
        if kills < 3 {
            // Kill once enough answers came back: no sleep, the test watches the acknowledgements.
            while acked.lock().unwrap().len() < target {
                tokio::task::yield_now().await;
            }
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        for s in senders {
            let statuses = s.await.unwrap();
            sent += statuses.len();
            duplicates += statuses.iter().filter(|s| **s == 200).count();
            failed += statuses.iter().filter(|s| **s != 200 && **s != 202).count();
        }
        let _ = child.kill();
        child.wait().unwrap();
        let done: HashSet<String> = acked.lock().unwrap().keys().cloned().collect();
        pending.retain(|id| !done.contains(id));
    }
    assert_eq!(kills, 3);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), all.len(), "every delivery was acknowledged in the end");
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT dedup_key, seq FROM deliveries ORDER BY seq").fetch_all(&direct).await.unwrap();
    assert_eq!(stored.len(), all.len(), "each stored exactly once");
    for (key, seq) in &stored {
        assert_eq!(acked.get(key), Some(seq), "{key}: stored under the id it was acknowledged with");
    }
    let seqs: Vec<i64> = stored.iter().map(|s| s.1).collect();
    assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>(), "gapless");
    let mut conn = direct.acquire().await.unwrap();
    assert!(ticket_audit::store::ledger::verify(&mut conn, None).await.unwrap().ok);
    eprintln!(
        "crash test: {sent} requests sent, {failed} not acknowledged (retried), {duplicates} answered as duplicates, \
         {} deliveries acknowledged and stored once each, {kills} kills survived",
        acked.len()
    );
}

#[tokio::test]
async fn sigterm_answers_every_delivery_in_flight_then_exits_0() {
    let (options, name) = fresh_database().await;
    let direct = sqlx::PgPool::connect_with(options).await.unwrap();
    let (mut child, base) = start_service(&database_url(&name));
    // Hold the writer on the ledger lock so that 40 deliveries are in flight when SIGTERM comes.
    let mut tx = direct.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_head FOR UPDATE").execute(&mut *tx).await.unwrap();
    let client = reqwest::Client::new();
    let in_flight: Vec<_> = (0..40)
        .map(|i| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let body = message("T-term", &format!("m{i}"), "ok", &[]);
                client.post(format!("{base}/webhooks")).body(body).send().await.map(|r| r.status().as_u16())
            })
        })
        .collect();
    loop {
        let waiting: i64 = sqlx::query_scalar(WAITING_HERE_SQL).fetch_one(&direct).await.unwrap();
        // Every delivery has reached the writer: queued, or in the batch it holds on the lock.
        let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        let value = |name: &str| -> f64 {
            metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
        };
        let reached = value("ticket_audit_write_queue_depth") + value("ticket_audit_write_batch_size_sum");
        if waiting > 0 && reached == 40.0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    // New connections are refused once it stops accepting.
    let mut refused = false;
    for _ in 0..1000 {
        if client.get(format!("{base}/healthz")).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "it stops accepting after SIGTERM");
    tx.rollback().await.unwrap();
    for r in in_flight {
        assert_eq!(r.await.unwrap().unwrap(), 202, "each delivery in flight is answered");
    }
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit 0");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&direct).await.unwrap();
    assert_eq!(n, 40);
}
