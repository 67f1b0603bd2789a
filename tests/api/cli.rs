//! The binary's commands and process operations: reports on the private cluster, stop signals,
//! one service per data directory, a database that never answers, and serving without DDL rights.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::helpers::*;

/// A data directory of the test's own, removed when dropped (the cluster in it is stopped by then).
struct DataDir(PathBuf);

impl DataDir {
    fn new(tag: &str) -> DataDir {
        let dir = std::env::temp_dir().join(format!("ta-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }

    fn env(&self) -> (&'static str, &str) {
        ("DATA_DIR", self.0.to_str().unwrap())
    }

    /// The service's database in the private cluster, over its socket.
    fn options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(self.0.join("postgres").join("run"))
            .port(5432)
            .username("postgres")
            .database("ticket_audit")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(self.0.join("postgres.lock"));
    }
}

/// `serve` on the private cluster in `dir`, as a user would start it: no DATABASE_URL.
fn serve_on(dir: &DataDir) -> Binary {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ticket-audit"));
    cmd.arg("serve").env_remove("DATABASE_URL").env("RUST_LOG", "info").env(dir.env().0, dir.env().1);
    start_serving(cmd)
}

fn signal(b: &Binary, sig: Signal) {
    kill(Pid::from_raw(b.child.id() as i32), sig).unwrap();
}

/// Waits (bounded) for the service to exit; returns whether it exited 0 and all it logged.
fn wait_for_exit(b: Binary) -> (bool, String) {
    let Binary { mut child, early_log, log, reader, .. } = b;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait().unwrap());
    });
    let status = rx.recv_timeout(Duration::from_secs(30)).expect("the service stops within 30 s");
    reader.join().unwrap();
    let mut lines = early_log;
    lines.extend(log.try_iter());
    (status.success(), lines.join("\n"))
}

async fn post(client: &reqwest::Client, base: &str, body: String) -> reqwest::StatusCode {
    client.post(format!("{base}/webhooks")).body(body).send().await.unwrap().status()
}

/// (agent, executed) per agent, as the report's view has them.
async fn executed_per_agent(options: &PgConnectOptions) -> Vec<(String, i64)> {
    let mut conn = options.connect().await.unwrap();
    let rows = sqlx::query_as(
        "SELECT coalesce(agent_name, '(none)'), count(*) FROM reporting.commands WHERE executed GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows
}

fn report_rows(ran: &Ran) -> Vec<(String, i64)> {
    assert!(ran.status.success(), "report failed: {}", ran.stderr);
    let sets: Vec<serde_json::Value> = ran.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(sets.len(), 1, "agent_usage prints one result set: {}", ran.stdout);
    let mut rows: Vec<(String, i64)> = sets[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["agent"].as_str().unwrap().to_owned(), r["executed"].as_i64().unwrap()))
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn report_runs_on_the_private_cluster_beside_the_service_and_without_it_and_sighup_stops_gracefully() {
    let dir = DataDir::new("report");
    let service = serve_on(&dir);
    let client = reqwest::Client::new();
    // The quickstart's first delivery.
    assert_eq!(post(&client, &service.base, fixture("add_ticket.json")).await, 202);
    assert_eq!(post(&client, &service.base, fixture("send_message.json")).await, 202);
    let expected = executed_per_agent(&dir.options()).await;
    assert!(!expected.is_empty() && expected.iter().all(|(_, n)| *n > 0), "{expected:?}");

    // While the service runs, the report uses its cluster.
    let beside =
        run_bounded(cli(&["report", "agent_usage", "--format", "json"], &[dir.env()]), Duration::from_secs(60));
    assert_eq!(report_rows(&beside), expected);
    assert!(beside.stderr.contains("using the private PostgreSQL that pid"), "{}", beside.stderr);
    let table = run_bounded(cli(&["report", "agent_usage"], &[dir.env()]), Duration::from_secs(60));
    assert!(table.status.success(), "{}", table.stderr);
    let header = table.stdout.lines().next().unwrap();
    assert!(header.contains("agent") && header.contains("error_or_denial_pct"), "{}", table.stdout);
    assert!(table.stdout.contains(&format!("({} row", expected.len())), "{}", table.stdout);

    // `ticket-audit psql` opens a shell on the same database.
    let psql = run_bounded(
        cli(&["psql", "--", "-X", "-At", "-c", "SELECT count(*) FROM deliveries"], &[dir.env()]),
        Duration::from_secs(60),
    );
    assert!(psql.status.success(), "{}", psql.stderr);
    assert_eq!(psql.stdout, "2\n");

    // SIGHUP (a closed terminal) is a graceful stop with a log line, not a sudden death.
    signal(&service, Signal::SIGHUP);
    let (ok, log) = wait_for_exit(service);
    assert!(ok, "SIGHUP ends the service with exit 0:\n{log}");
    assert!(log.contains(r#""signal":"SIGHUP""#), "the stop is logged with its signal:\n{log}");
    assert!(log.contains("stopping private PostgreSQL cluster"), "{log}");

    // With no service, the report starts the cluster for itself, and stops it after.
    let alone = run_bounded(cli(&["report", "agent_usage", "--format", "json"], &[dir.env()]), Duration::from_secs(60));
    assert_eq!(report_rows(&alone), expected);
    assert!(alone.stderr.contains("stopping private PostgreSQL cluster"), "{}", alone.stderr);
    let csv = run_bounded(
        cli(&["report", "agent_usage", "--format", "csv", "--param", "tenant=no-such-tenant"], &[dir.env()]),
        Duration::from_secs(60),
    );
    assert!(csv.status.success(), "{}", csv.stderr);
    assert_eq!(csv.stdout, "agent,executed,tickets,errors,denials,error_or_denial_pct\n");

    let unknown = run_bounded(
        cli(&["report", "agent_usage", "--param", "snce=2025-01-01"], &[dir.env()]),
        Duration::from_secs(10),
    );
    assert!(!unknown.status.success());
    assert!(unknown.stderr.contains("snce") && unknown.stderr.contains("since"), "{}", unknown.stderr);
}

#[tokio::test]
async fn a_second_service_on_one_data_directory_refuses_and_the_first_keeps_serving() {
    let dir = DataDir::new("twice");
    let first = serve_on(&dir);
    let pid = first.child.id();
    let second = run_bounded(cli(&["serve", "--listen-addr", "127.0.0.1:0"], &[dir.env()]), Duration::from_secs(60));
    assert!(!second.status.success(), "the second service refuses to start");
    assert!(
        second.stderr.contains(&format!("another ticket-audit process (pid {pid}) runs the private PostgreSQL")),
        "{}",
        second.stderr
    );
    // The first one was not disturbed: it stores and is ready.
    let client = reqwest::Client::new();
    assert_eq!(post(&client, &first.base, fixture("add_ticket.json")).await, 202);
    assert_eq!(client.get(format!("{}/readyz", first.base)).send().await.unwrap().status(), 200);
    signal(&first, Signal::SIGTERM);
    let (ok, log) = wait_for_exit(first);
    assert!(ok, "{log}");
    // Once the first has stopped (and its cluster with it), a service may start there again.
    let again = serve_on(&dir);
    assert_eq!(client.get(format!("{}/readyz", again.base)).send().await.unwrap().status(), 200);
    // Killed outright, its guardian still stops its server: a service started at once waits for
    // that (it is not refused, as the owner is gone) and finds the record as it was.
    signal(&again, Signal::SIGKILL);
    let _ = wait_for_exit(again);
    let restarted = serve_on(&dir);
    assert_eq!(client.get(format!("{}/readyz", restarted.base)).send().await.unwrap().status(), 200);
    let stored = client.get(format!("{}/api/v1/deliveries", restarted.base)).send().await.unwrap();
    let stored: serde_json::Value = stored.json().await.unwrap();
    assert_eq!(stored["items"].as_array().unwrap().len(), 1, "{stored}");
    signal(&restarted, Signal::SIGTERM);
    let (ok, log) = wait_for_exit(restarted);
    assert!(ok, "{log}");
}

#[tokio::test]
async fn a_database_that_accepts_but_never_answers_stops_each_command_with_a_message_naming_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            open.push(socket); // accepted, never read, never answered
        }
    });
    let url = format!("postgres://postgres@{addr}/ticket_audit");
    let env = [("DATABASE_URL", url.as_str()), ("DB_CONNECT_TIMEOUT_MS", "500")];
    let commands: [&[&str]; 7] = [
        &["verify"],
        &["serve", "--listen-addr", "127.0.0.1:0"],
        &["report", "agent_usage"],
        &["migrate"],
        &["export"],
        &["import", "/dev/null"],
        &["reproject"],
    ];
    for args in commands {
        let ran = tokio::task::spawn_blocking({
            let cmd = cli(args, &env);
            move || run_bounded(cmd, Duration::from_secs(20))
        })
        .await
        .unwrap();
        assert!(!ran.status.success(), "{args:?} fails");
        assert!(ran.took < Duration::from_secs(15), "{args:?} took {:?}", ran.took);
        assert!(
            ran.stderr.contains(&format!("no answer from the database at {addr}")) && ran.stderr.contains("500 ms"),
            "{args:?}: {}",
            ran.stderr
        );
        assert!(!ran.stderr.contains('\x1b'), "no colour codes in logs written to a pipe: {:?}", ran.stderr);
    }
    // psql gets the same bound (whole seconds, at least 2).
    let ran = tokio::task::spawn_blocking({
        let cmd = cli(&["psql", "--", "-X", "-c", "SELECT 1"], &env);
        move || run_bounded(cmd, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(!ran.status.success() && ran.took < Duration::from_secs(15), "{ran:?}");
    assert!(ran.stderr.contains("timeout"), "{}", ran.stderr);
    held.abort();
}

/// `url` with another user and password.
fn as_user(url: &str, user: &str, password: &str) -> String {
    let mut url = reqwest::Url::parse(url).unwrap();
    url.set_username(user).unwrap();
    url.set_password(Some(password)).unwrap();
    url.to_string()
}

#[tokio::test]
async fn serve_runs_as_a_login_that_is_only_a_member_of_the_writer_role() {
    let (owner, name) = fresh_database().await; // migrated by its owner
    let login = format!("ta_writer_login_{}", std::process::id());
    let mut conn = owner.connect().await.unwrap();
    // Roles are cluster-wide: a rerun on a kept server finds it.
    sqlx::query(&format!("DROP ROLE IF EXISTS {login}")).execute(&mut conn).await.ok();
    sqlx::query(&format!("CREATE ROLE {login} LOGIN PASSWORD 'writer-pw' IN ROLE ticket_audit_writer"))
        .execute(&mut conn)
        .await
        .unwrap();
    let rights: (bool, bool) = sqlx::query_as(&format!(
        "SELECT has_schema_privilege('{login}', 'public', 'CREATE'), has_table_privilege('{login}', 'deliveries', 'DELETE')"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(rights, (false, false), "the login may not change the schema nor remove rows");
    let url = as_user(&database_url(&name), &login, "writer-pw");

    let service = start_binary(&[("DATABASE_URL", &url), ("RUST_LOG", "info")]);
    assert!(!service.early_log.iter().any(|l| l.contains("migrations applied")), "{:?}", service.early_log);
    let client = reqwest::Client::new();
    let res = client.post(format!("{}/webhooks", service.base)).body(fixture("add_ticket.json")).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<serde_json::Value>().await.unwrap()["delivery_id"].as_i64().unwrap();
    let read = client.get(format!("{}/api/v1/deliveries/{id}/raw", service.base)).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.unwrap(), fixture("add_ticket.json").as_bytes());
    signal(&service, Signal::SIGTERM);
    let (ok, log) = wait_for_exit(service);
    assert!(ok, "{log}");
    // psql on DATABASE_URL: the password travels in PGPASSWORD, the rest of the URL as it is.
    let psql = run_bounded(
        cli(&["psql", "--", "-X", "-At", "-c", "SELECT current_user"], &[("DATABASE_URL", &url)]),
        Duration::from_secs(30),
    );
    assert!(psql.status.success(), "{}", psql.stderr);
    assert_eq!(psql.stdout.trim(), login);

    // A schema that is behind, with migrations forbidden: a clear refusal, nothing created.
    let empty = format!("{name}_empty");
    sqlx::query(&format!("CREATE DATABASE {empty}")).execute(&mut conn).await.unwrap();
    let ran = run_bounded(
        cli(&["serve", "--no-migrate", "--listen-addr", "127.0.0.1:0"], &[("DATABASE_URL", &database_url(&empty))]),
        Duration::from_secs(30),
    );
    assert!(!ran.status.success());
    assert!(ran.stderr.contains("the database schema is at version 0, this build needs version"), "{}", ran.stderr);
    assert!(ran.stderr.contains("ticket-audit migrate"), "{}", ran.stderr);
    let mut e = owner.clone().database(&empty).connect().await.unwrap();
    let history: bool = sqlx::query_scalar("SELECT to_regclass('refinery_schema_history') IS NOT NULL")
        .fetch_one(&mut e)
        .await
        .unwrap();
    assert!(!history, "--no-migrate created nothing");
    e.close().await.unwrap();
    sqlx::query(&format!("DROP DATABASE {empty}")).execute(&mut conn).await.unwrap();
    sqlx::query(&format!("DROP ROLE IF EXISTS {login}")).execute(&mut conn).await.ok();
}

#[test]
fn import_names_the_file_it_cannot_read() {
    let ran = run_bounded(cli(&["import", "/nonexistent/deliveries.ndjson"], &[]), Duration::from_secs(10));
    assert!(!ran.status.success());
    assert!(ran.stderr.contains("opening /nonexistent/deliveries.ndjson: "), "{}", ran.stderr);
}

#[tokio::test]
async fn statements_are_bounded_by_db_statement_timeout_ms_with_a_default_for_serve() {
    let (_, name) = fresh_database().await;
    let url = ticket_audit::config::Secret::from(database_url(&name));
    let args = |ms: Option<u64>| ticket_audit::config::DatabaseArgs {
        database_url: Some(url.clone()),
        db_statement_timeout_ms: ms,
        ..Default::default()
    };
    let shown = |db: ticket_audit::store::Database| async move {
        let mut conn = db.connect().await.unwrap();
        let v: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(&mut conn).await.unwrap();
        v
    };
    let serve_default = ticket_audit::config::DEFAULT_STATEMENT_TIMEOUT_MS_SERVE;
    let db = ticket_audit::store::Database::resolve(&args(None), false, serve_default).await.unwrap();
    assert_eq!(shown(db).await, "1min", "serve's default");
    let db = ticket_audit::store::Database::resolve(&args(None), false, 0).await.unwrap();
    assert_eq!(shown(db).await, "0", "the batch commands stream the whole record: no limit");

    let db = ticket_audit::store::Database::resolve(&args(Some(200)), false, serve_default).await.unwrap();
    let mut conn = db.connect().await.unwrap();
    let err = sqlx::query("SELECT pg_sleep(5)").execute(&mut conn).await.unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
}

/// Root in a private home folder (mode 0700, like /root): the server's user cannot reach ./data,
/// so the default data directory is /var/lib/ticket-audit, and the log says so. Runs as root only
/// (CI is root), and only where /var/lib/ticket-audit does not exist yet, which it removes after.
#[test]
fn as_root_in_a_private_folder_the_default_data_directory_is_var_lib_ticket_audit() {
    use std::os::unix::fs::PermissionsExt;
    let fallback = std::path::Path::new(ticket_audit::store::database::ROOT_DATA_DIR);
    if !nix::unistd::geteuid().is_root() || fallback.exists() {
        eprintln!("skipped: needs root and no {} yet", fallback.display());
        return;
    }
    let home = DataDir::new("private-home");
    std::fs::create_dir_all(&home.0).unwrap();
    std::fs::set_permissions(&home.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = cli(&["migrate"], &[]);
    cmd.env_remove("DATA_DIR").current_dir(&home.0);
    let ran = run_bounded(cmd, Duration::from_secs(120));
    let cleanup = std::fs::remove_dir_all(fallback);
    assert!(ran.status.success(), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("cannot reach ./data") && ran.stderr.contains("using /var/lib/ticket-audit instead"),
        "{}",
        ran.stderr
    );
    assert!(!home.0.join("data").exists(), "nothing is left in the folder it could not use");
    cleanup.unwrap();
}
