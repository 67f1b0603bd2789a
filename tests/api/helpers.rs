//! The test harness: one PostgreSQL for the run (a private cluster unless DATABASE_URL is set),
//! one migrated template database, and per test a fresh clone of it with the app on port 0.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use ticket_audit::config::{DatabaseArgs, HttpSettings, Secret};
use ticket_audit::postgres_local::{LocalOptions, LocalPostgres};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Server {
    /// Connection to a maintenance database, for CREATE/DROP DATABASE.
    admin: PgConnectOptions,
    /// The same as a URL, for child processes (the CLI).
    admin_url: String,
    template: String,
    /// Databases on a server we do not own are dropped after each test.
    shared: bool,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// Starts (once per run) the server and the migrated template. The private cluster lives on a
/// thread of its own, with its own runtime, for the whole run; its guardian stops it at exit.
fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let (admin_url, shared, cluster) = match std::env::var("DATABASE_URL") {
                    Ok(url) => (url, true, None),
                    Err(_) => {
                        let dir = std::env::temp_dir().join(format!("ticket-audit-test-{}", std::process::id()));
                        let cluster =
                            LocalPostgres::start(&dir, LocalOptions { ephemeral: true, ..Default::default() })
                                .await
                                .expect("start a private PostgreSQL for the tests (or set DATABASE_URL)");
                        (socket_url(&cluster.connect_options("postgres")), false, Some(cluster))
                    }
                };
                let admin: PgConnectOptions = admin_url.parse().expect("database URL parses");
                let template = format!("ta_template_{}", std::process::id());
                let mut conn = admin.connect().await.expect("connect to the test server");
                sqlx::query(&format!("DROP DATABASE IF EXISTS {template}")).execute(&mut conn).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {template}")).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                ticket_audit::migrate(&admin.clone().database(&template)).await.expect("migrate the template");
                tx.send(Server { admin, admin_url, template, shared }).unwrap();
                // Keep the cluster (and its runtime) alive until the process exits.
                let _cluster = cluster;
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("test database server")
    })
}

/// How to reach the run's test server as its superuser (the `postgres` database), e.g. to copy it.
pub fn server_options() -> PgConnectOptions {
    server().admin.clone()
}

/// A URL for child processes to reach `options` over its Unix socket (the test cluster's paths
/// hold nothing that needs percent-encoding).
pub fn socket_url(options: &PgConnectOptions) -> String {
    let socket = options.get_socket().expect("a socket directory");
    format!(
        "postgres://{}@localhost/{}?host={}&port={}",
        options.get_username(),
        options.get_database().unwrap_or("postgres"),
        socket.display(),
        options.get_port()
    )
}

/// A fresh database cloned from the migrated template: milliseconds, not a migration run.
pub async fn fresh_database() -> (PgConnectOptions, String) {
    let s = server();
    let name = format!("{}_t{}", s.template, NEXT_DB.fetch_add(1, Ordering::SeqCst));
    let mut conn = s.admin.connect().await.expect("admin connection");
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {}", s.template)).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    (s.admin.clone().database(&name), name)
}

/// The URL of database `name` on the test server, for child processes.
pub fn database_url(name: &str) -> String {
    let url = &server().admin_url;
    let (path, query) = url.split_once('?').map_or((url.as_str(), None), |(p, q)| (p, Some(q)));
    let base = &path[..path.rfind('/').expect("a database URL has a path")];
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// Direct access to the test's database, to assert on rows.
    pub db: PgPool,
    pub db_name: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ticket_audit::BoxError>>>,
}

/// Every test app signs checkpoints with one key made for the run, often (10 ms), so a test
/// waits for one only as long as it takes.
pub fn settings() -> HttpSettings {
    let mut s = HttpSettings { checkpoint_interval_ms: 10, ..HttpSettings::default() };
    s.signing.checkpoint_key_file = Some(test_key_file().into());
    s
}

/// The run's checkpoint signing key file (a temporary file, written once).
pub fn test_key_file() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("ticket-audit-test-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let signer = ticket_audit::domain::checkpoint::Signer::generate("test.ticket-audit/log").unwrap();
        ticket_audit::checkpointing::write_key_file(&path, &signer).unwrap();
        path.to_str().unwrap().to_owned()
    })
}

/// The verifier key of [`test_key_file`].
pub fn test_verifier() -> ticket_audit::domain::checkpoint::Verifier {
    ticket_audit::checkpointing::read_key_file(test_key_file().as_ref()).unwrap().verifier()
}

/// Returns once a checkpoint signs at least `size` leaves; its note.
pub async fn until_checkpoint(db: &PgPool, size: i64) -> String {
    loop {
        let note: Option<String> =
            sqlx::query_scalar("SELECT note FROM checkpoints WHERE tree_size >= $1 ORDER BY id DESC LIMIT 1")
                .bind(size)
                .fetch_optional(db)
                .await
                .unwrap();
        if let Some(note) = note {
            return note;
        }
        tokio::task::yield_now().await;
    }
}

pub fn pools() -> DatabaseArgs {
    DatabaseArgs { db_max_connections: 5, db_acquire_timeout_ms: 2000, ..Default::default() }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(settings()).await
}

pub async fn spawn_with(settings: HttpSettings) -> TestApp {
    let (options, name) = fresh_database().await;
    spawn_on(options, name, settings, pools()).await
}

/// Starts the app against `options`, whatever is (or is not) there.
pub async fn spawn_on(
    options: PgConnectOptions,
    db_name: String,
    settings: HttpSettings,
    pools: DatabaseArgs,
) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let opts = options.clone();
    let task = tokio::spawn(async move {
        ticket_audit::serve(listener, opts, &pools, &settings, async {
            let _ = rx.await;
        })
        .await
    });
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options);
    TestApp { base, client: reqwest::Client::new(), db, db_name, shutdown: Some(tx), task: Some(task) }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client.post(self.url("/webhooks")).body(body).send().await.expect("POST /webhooks")
    }

    pub async fn post_with(&self, body: impl Into<reqwest::Body>, headers: &[(&str, String)]) -> reqwest::Response {
        let mut req = self.client.post(self.url("/webhooks")).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.expect("POST /webhooks")
    }

    /// Posts and expects a new delivery; returns its id.
    pub async fn deliver(&self, body: &str) -> i64 {
        let res = self.post(body.to_owned()).await;
        assert_eq!(res.status(), 202, "a new delivery is acknowledged with 202");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["duplicate"], false);
        v["delivery_id"].as_i64().unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let res = self.get(path, None).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&self.db).await.unwrap()
    }

    /// Stops the app gracefully and waits for it (the writer drains, pools close). The test's
    /// database stays until the `TestApp` is dropped.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let s = server();
        if s.shared {
            // On a server we do not own, do not leave a database per test behind.
            let admin = s.admin.clone();
            let name = self.db_name.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = admin.connect().await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

/// A Standard Webhooks signature header value for `body`.
pub fn sign(secret_b64: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&B64.decode(secret_b64).unwrap()).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn secret(s: &str) -> Option<Secret> {
    Some(Secret::from(s))
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// A SendTicketMessage body.
pub fn message(ticket: &str, user: &str, agent: &str, executed: &[(&str, &str)]) -> String {
    let executed: Vec<_> = executed.iter().map(|(c, r)| serde_json::json!({"command": c, "result": r})).collect();
    serde_json::json!({
        "Action": "POST:Ticket/SendTicketMessage",
        "Data": {
            "RequestBody": {"ticketName": ticket, "message": {"Content": user}},
            "ResponseBody": {"Content": agent, "data": {"Cmds": [], "executedCmds": executed}},
            "StatusCode": 200
        }
    })
    .to_string()
}

/// An AddTicket body.
pub fn add_ticket(name: &str, tenant: &str, agent: &str) -> String {
    serde_json::json!({
        "Action": "POST:Ticket/AddTicket",
        "Data": {
            "RequestBody": {"Ticket": {
                "Name": name, "Title": format!("title of {name}"), "CreateTime": "2025-05-25T15:30:00Z",
                "Assignee": {"AgentName": agent, "AgentId": format!("id-{agent}")},
                "TenantId": tenant, "Status": "Open"
            }},
            "StatusCode": 200
        }
    })
    .to_string()
}

/// Follows `next_cursor` to the end and returns every item.
pub async fn walk(app: &TestApp, path: &str, token: Option<&str>) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let res = app.get(&url, token).await;
        assert_eq!(res.status(), 200, "GET {url}");
        let page: serde_json::Value = res.json().await.unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

pub async fn raw_connection(options: &PgConnectOptions) -> PgConnection {
    options.connect().await.unwrap()
}

/// A delivery's chained fields and stored hash: (seq, received_at, dedup_key, action, status_code, body_sha256, hash).
pub type ChainRow = (i64, time::OffsetDateTime, String, Option<String>, Option<i32>, Vec<u8>, Vec<u8>);

/// The chain hashes of `rows` (in seq order), recomputed from their fields as an auditor would.
pub fn recompute_chain(rows: &[ChainRow]) -> Vec<[u8; 32]> {
    let mut prev = ticket_audit::domain::ledger::GENESIS;
    rows.iter()
        .map(|(seq, at, key, action, status, sha, _)| {
            let f = ticket_audit::domain::ledger::ChainedFields {
                seq: *seq,
                received_at: *at,
                key,
                action: action.as_deref(),
                status_code: *status,
                body_sha256: sha,
            };
            prev = ticket_audit::domain::ledger::chain_hash(&prev, &f);
            prev
        })
        .collect()
}

pub async fn chain_rows(db: &PgPool) -> Vec<ChainRow> {
    sqlx::query_as(
        "SELECT seq, received_at, dedup_key, action, status_code, body_sha256, hash FROM deliveries ORDER BY seq",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// Sessions of `db`'s database waiting for a lock (the tests share a cluster: other tests' waits
/// are not this one's).
pub const WAITING_HERE_SQL: &str = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE NOT l.granted AND a.datname = current_database()";

/// Returns once some session waits for a lock: the writer, stopped on a lock the test holds.
pub async fn until_a_session_waits_for_a_lock(db: &PgPool) {
    loop {
        let waiting: i64 = sqlx::query_scalar(WAITING_HERE_SQL).fetch_one(db).await.unwrap();
        if waiting > 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// The service binary, started by a test.
pub struct Binary {
    pub child: std::process::Child,
    /// `http://addr` it listens on.
    pub base: String,
    /// Its log lines up to the one that says where it listens.
    pub early_log: Vec<String>,
    /// Its log lines after that, until it exits (read on a thread, so its pipe never fills).
    pub log: std::sync::mpsc::Receiver<String>,
    pub reader: std::thread::JoinHandle<()>,
}

/// Starts `ticket-audit serve` on port 0 with JSON logs and `env`; returns once it listens.
pub fn start_binary(env: &[(&str, &str)]) -> Binary {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ticket-audit"));
    cmd.arg("serve").envs(env.iter().copied());
    start_serving(cmd)
}

/// Starts `cmd` (a `ticket-audit serve`) on port 0 with JSON logs; returns once it listens.
pub fn start_serving(mut cmd: std::process::Command) -> Binary {
    use std::io::{BufRead, BufReader};
    // The run's checkpoint key, unless the test gives one: no key is generated beside the data.
    if !cmd.get_envs().any(|(k, _)| k == "CHECKPOINT_KEY_FILE") {
        cmd.env("CHECKPOINT_KEY_FILE", test_key_file());
    }
    let mut child = cmd
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, log) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut early_log = Vec::new();
    let addr = loop {
        let line = log
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the service logs where it listens; it logged:\n{}", early_log.join("\n")));
        early_log.push(line.clone());
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if event["message"] == "listening" {
            break event["addr"].as_str().unwrap().to_owned();
        }
    };
    Binary { child, base: format!("http://{addr}"), early_log, log, reader }
}

/// What a command of the binary did.
#[derive(Debug)]
pub struct Ran {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `cmd` to its end, which must come within `bound` (else it is killed and the test fails).
pub fn run_bounded(mut cmd: std::process::Command, bound: Duration) -> Ran {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the binary");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(bound) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            panic!("{cmd:?} did not end within {bound:?}; stderr:\n{}", err.join().unwrap());
        }
    };
    Ran { status, stdout: out.join().unwrap(), stderr: err.join().unwrap(), took: started.elapsed() }
}

/// `ticket-audit ARGS` with `env`, and no DATABASE_URL unless `env` gives one.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ticket-audit"));
    cmd.args(args).env_remove("DATABASE_URL").envs(env.iter().copied()).stdin(std::process::Stdio::null());
    cmd
}

/// The sum of the Prometheus samples whose name and labels start with `prefix` (0 when absent).
pub fn sample(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// A deadlock the server broke (SQLSTATE 40P01).
pub fn deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("40P01"))
}

/// Turns the record to `recorded_at`'s month if due, once, as the writer does: as its role, in a
/// transaction on `conn` holding the ledger head, committed when the turn succeeds.
pub async fn turn_once(
    conn: &mut PgConnection,
    head_at: Option<time::OffsetDateTime>,
    recorded_at: time::OffsetDateTime,
) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET LOCAL ROLE ticket_audit_writer").execute(&mut *tx).await?;
    sqlx::query("SELECT 1 FROM ledger_head FOR UPDATE").execute(&mut *tx).await?;
    let first = ticket_audit::store::partitions::turn_if_due(&mut tx, head_at, recorded_at).await?;
    tx.commit().await?;
    Ok(first)
}

/// [`turn_once`], on a connection of `db`. Should the turn give up trying for its locks at once
/// (V18: after a second of a reader holding one) and then deadlock with the app's classifier,
/// the server breaks it, and the turn is tried again, as the writer's batch is.
pub async fn turn_as_writer(
    db: &PgPool,
    head_at: Option<time::OffsetDateTime>,
    recorded_at: time::OffsetDateTime,
) -> Option<i64> {
    for _ in 0..10 {
        let mut conn = db.acquire().await.unwrap();
        match turn_once(&mut conn, head_at, recorded_at).await {
            Err(e) if deadlock(&e) => continue,
            first => return first.unwrap(),
        }
    }
    panic!("the month turn deadlocked ten times")
}
