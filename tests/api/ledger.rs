//! The compliance record: append-only, hash-chained, verified, rebuilt, imported and exported.

use std::process::Command;

use crate::helpers::*;
use serde_json::json;
use sqlx::Connection;
use ticket_audit::store::ledger::{verify, BreakKind};

/// A varied record: tickets in two tenants, messages, proposed and executed commands, a failure,
/// a configuration change, an unknown action, and a delivery the normalizer cannot fully read.
async fn varied(app: &TestApp) {
    app.deliver(&add_ticket("A-1", "tenant-a", "aws")).await;
    app.deliver(&message(
        "A-1",
        "list buckets",
        "on it",
        &[("aws s3 ls", "bucket-1"), ("aws iam list-users", "AccessDenied")],
    ))
    .await;
    app.deliver(&fixture("send_message_snake_case.json")).await;
    app.deliver(&add_ticket("B-1", "tenant-b", "k8s")).await;
    app.deliver(&message("B-1", "pods?", "here", &[("kubectl get pods", "3 running")])).await;
    let failed = message("B-1", "delete it", "done", &[("kubectl delete ns x", "deleted")])
        .replace("\"StatusCode\":200", "\"StatusCode\":500");
    app.deliver(&failed).await;
    app.deliver(&fixture("add_ticket.json")).await;
    app.deliver(&fixture("update_agent_definition.json")).await;
    app.deliver(&fixture("unknown_action.json")).await;
    app.deliver(r#"{"Action":"POST:Ticket/SendTicketMessage","Data":{"ResponseBody":{"data":{"executedCmds":[{"command":"ls /"}]}}}}"#).await;
    app.deliver(&fixture("list_ticket.json")).await;
}

async fn check(app: &TestApp, expect: Option<(i64, [u8; 32])>) -> Option<(BreakKind, i64)> {
    let mut conn = app.db.acquire().await.unwrap();
    let report = verify(&mut conn, expect).await.unwrap();
    assert_eq!(report.ok, report.first_break.is_none());
    report.first_break.map(|b| (b.kind, b.seq))
}

/// Runs SQL as a superuser with triggers (and foreign keys) off: what an attacker with direct access can do.
pub async fn tamper(app: &TestApp, sql: &str) {
    let mut conn = app.db.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *tx).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn an_untouched_record_verifies() {
    let app = spawn_app().await;
    varied(&app).await;
    let mut conn = app.db.acquire().await.unwrap();
    let report = verify(&mut conn, None).await.unwrap();
    assert!(report.ok, "{:?}", report.first_break);
    assert_eq!(report.deliveries, 11);
    assert_eq!(report.commands, app.count("commands").await as u64);
    assert_eq!(report.head.seq, 11);
}

#[tokio::test]
async fn each_kind_of_tampering_is_detected_and_named() {
    let cases: &[(&str, BreakKind, i64)] = &[
        ("UPDATE deliveries SET body = convert_to(replace(convert_from(body, 'UTF8'), 'bucket-1', 'bucket-2'), 'UTF8') WHERE seq = 2", BreakKind::BodyEdited, 2),
        ("UPDATE deliveries SET action = 'GET:Ticket/GetTicket' WHERE seq = 4", BreakKind::RowEdited, 4),
        ("UPDATE deliveries SET body = '{}', body_sha256 = sha256('{}') WHERE seq = 5", BreakKind::RowEdited, 5),
        ("UPDATE deliveries SET received_at = received_at + interval '1 second' WHERE seq = 7", BreakKind::RowEdited, 7),
        ("DELETE FROM deliveries WHERE seq = 6", BreakKind::RowDeleted, 6),
        ("DELETE FROM deliveries WHERE seq = 11", BreakKind::RowDeleted, 11),
        ("UPDATE deliveries SET seq = seq + 1000 WHERE seq >= 3; UPDATE deliveries SET seq = seq - 999 WHERE seq > 1000;
          INSERT INTO deliveries (seq, received_at, dedup_key, key_source, body, body_sha256, hash)
          VALUES (3, now(), 'forged', 'webhook-id', '{}', sha256('{}'), sha256('x'));
          UPDATE ledger_head SET seq = 12", BreakKind::RowInserted, 3),
        ("INSERT INTO deliveries (seq, received_at, dedup_key, key_source, body, body_sha256, hash)
          VALUES (12, now(), 'forged', 'webhook-id', '{}', sha256('{}'), sha256('x'))", BreakKind::RowInserted, 12),
        ("UPDATE deliveries SET seq = 1000 WHERE seq = 4; UPDATE deliveries SET seq = 4 WHERE seq = 5; UPDATE deliveries SET seq = 5 WHERE seq = 1000", BreakKind::RowsReordered, 4),
        ("UPDATE commands SET result = 'nothing to see' WHERE command = 'aws iam list-users' AND executed", BreakKind::CommandEdited, 2),
        ("UPDATE commands SET ticket_name = 'B-1' WHERE seq = 2", BreakKind::CommandEdited, 2),
        ("DELETE FROM commands WHERE command = 'kubectl delete ns x'", BreakKind::CommandMissing, 6),
        ("INSERT INTO commands (seq, position, ticket_name, command, result, executed, recorded_at)
          SELECT 8, 9, 'A-1', 'rm -rf /', 'ok', true, received_at FROM deliveries WHERE seq = 8", BreakKind::CommandInserted, 8),
        ("UPDATE ledger_head SET hash = sha256('x')", BreakKind::HeadMismatch, 11),
    ];
    for (sql, kind, seq) in cases {
        let app = spawn_app().await;
        varied(&app).await;
        assert_eq!(check(&app, None).await, None);
        tamper(&app, sql).await;
        assert_eq!(check(&app, None).await, Some((*kind, *seq)), "after: {sql}");
    }
}

#[tokio::test]
async fn a_rewrite_with_every_hash_recomputed_is_caught_by_an_earlier_head() {
    let app = spawn_app().await;
    varied(&app).await;
    let head = app.get_json("/api/v1/ledger/head").await;
    let seq = head["seq"].as_i64().unwrap();
    let hash: [u8; 32] = hex::decode(head["hash"].as_str().unwrap()).unwrap().try_into().unwrap();
    assert_eq!(seq, 11);

    // Change history at seq 2 and recompute every hash after it, as a superuser could.
    tamper(&app, "UPDATE deliveries SET action = 'GET:Settings/GetSettings' WHERE seq = 2").await;
    let rows = chain_rows(&app.db).await;
    let chain = recompute_chain(&rows);
    let mut sql = String::new();
    for ((s, ..), h) in rows.iter().zip(&chain) {
        sql.push_str(&format!("UPDATE deliveries SET hash = '\\x{}' WHERE seq = {s};", hex::encode(h)));
    }
    let prev = *chain.last().unwrap();
    sql.push_str(&format!("UPDATE ledger_head SET hash = '\\x{}';", hex::encode(prev)));
    tamper(&app, &sql).await;

    assert_eq!(check(&app, None).await, None, "a consistent rewrite passes the chain alone");
    assert_eq!(check(&app, Some((seq, hash))).await, Some((BreakKind::HistoryRewritten, 11)));
    // An earlier head that the rewrite did not reach still verifies.
    let first: Vec<u8> =
        sqlx::query_scalar("SELECT hash FROM deliveries WHERE seq = 1").fetch_one(&app.db).await.unwrap();
    assert_eq!(check(&app, Some((1, first.try_into().unwrap()))).await, None);
}

#[tokio::test]
async fn the_record_refuses_update_delete_and_truncate() {
    let app = spawn_app().await;
    varied(&app).await;
    for sql in [
        "UPDATE deliveries SET action = 'x' WHERE seq = 1",
        "DELETE FROM deliveries WHERE seq = 1",
        "TRUNCATE deliveries CASCADE",
        "UPDATE commands SET result = 'x'",
        "DELETE FROM commands",
        "TRUNCATE commands",
    ] {
        let err = sqlx::raw_sql(sql).execute(&app.db).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // The role the service serves with cannot even try.
    let mut conn = app.db.acquire().await.unwrap();
    sqlx::query("SET ROLE ticket_audit_writer").execute(&mut *conn).await.unwrap();
    for sql in [
        "UPDATE deliveries SET action = 'x'",
        "DELETE FROM deliveries",
        "UPDATE commands SET result = 'x'",
        "DELETE FROM commands",
        "TRUNCATE messages",
    ] {
        let err = sqlx::raw_sql(sql).execute(&mut *conn).await.expect_err(sql);
        assert!(err.to_string().contains("permission denied"), "{sql}: {err}");
    }
    sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
    assert_eq!(check(&app, None).await, None);
}

#[tokio::test]
async fn the_service_serves_as_the_writer_role_which_cannot_change_the_record() {
    let app = spawn_app().await;
    app.deliver(&fixture("add_ticket.json")).await;
    let options: sqlx::postgres::PgConnectOptions = database_url(&app.db_name).parse().unwrap();
    // What `serve` checks and does at start-up, for every connection of its pools.
    assert!(ticket_audit::store::can_use_writer_role(&options, std::time::Duration::from_secs(5)).await.unwrap());
    let pool = ticket_audit::store::pool(
        options,
        1,
        std::time::Duration::from_secs(2),
        Some(ticket_audit::store::WRITER_ROLE),
    );
    let who: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&pool).await.unwrap();
    assert_eq!(who, "ticket_audit_writer");
    for sql in [
        "UPDATE deliveries SET action = 'x'",
        "DELETE FROM deliveries",
        "DELETE FROM commands",
        "UPDATE ledger_head SET seq = 0 WHERE false",
    ] {
        let result = sqlx::raw_sql(sql).execute(&pool).await;
        if sql.contains("ledger_head") {
            assert!(result.is_ok(), "the writer advances the head: {result:?}");
        } else {
            assert!(result.unwrap_err().to_string().contains("permission denied"), "{sql}");
        }
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 1, "it reads");
}

#[tokio::test]
async fn two_service_processes_on_one_database_keep_one_gapless_chain() {
    let a = spawn_app().await;
    let options: sqlx::postgres::PgConnectOptions = database_url(&a.db_name).parse().unwrap();
    let b = spawn_on(options, a.db_name.clone(), settings(), pools()).await;
    let sends = (0..300).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.post(message(&format!("T-{}", i % 5), &format!("m{i}"), "ok", &[("uptime", "up")]))
    });
    for res in futures::future::join_all(sends).await {
        assert_eq!(res.status(), 202);
    }
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM deliveries ORDER BY seq").fetch_all(&a.db).await.unwrap();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    assert_eq!(check(&a, None).await, None);
    let counts: i64 =
        sqlx::query_scalar("SELECT sum(message_count)::bigint FROM tickets").fetch_one(&a.db).await.unwrap();
    assert_eq!(counts, 600);
}

/// Every projection table, row by row, as text.
async fn projection(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in
        [("action_events", "seq"), ("tickets", "name"), ("messages", "seq, position"), ("commands", "seq, position")]
    {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t ORDER BY {order}"))
            .fetch_all(&app.db)
            .await
            .unwrap();
        out.extend(rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    out
}

#[tokio::test]
async fn reproject_rebuilds_exactly_what_live_ingestion_produced() {
    let app = spawn_app().await;
    varied(&app).await;
    // Out of order and interleaved, to exercise the fold.
    app.deliver(&message("LATE-1", "first", "x", &[("date", "now")])).await;
    app.deliver(&add_ticket("LATE-1", "tenant-a", "aws")).await;
    let concurrent = (0..40).map(|i| app.post(message(&format!("C-{}", i % 3), &format!("c{i}"), "y", &[("id", "0")])));
    futures::future::join_all(concurrent).await;
    let live = projection(&app).await;
    assert!(live.len() > 100);

    let out = Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
        .arg("reproject")
        .env("DATABASE_URL", database_url(&app.db_name))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("reprojected 53 deliveries"));
    assert_eq!(projection(&app).await, live);
    assert_eq!(check(&app, None).await, None);
}

#[tokio::test]
async fn the_verify_command_exits_non_zero_naming_the_break() {
    let app = spawn_app().await;
    varied(&app).await;
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
            .arg("verify")
            .args(extra)
            .env("DATABASE_URL", database_url(&app.db_name))
            .output()
            .unwrap()
    };
    let ok = run(&[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK"));
    tamper(&app, "DELETE FROM deliveries WHERE seq = 4").await;
    let broken = run(&["--json"]);
    assert!(!broken.status.success());
    let report: serde_json::Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!(report["break"]["kind"], "row_deleted");
    assert_eq!(report["break"]["seq"], 4);
    assert!(String::from_utf8_lossy(&broken.stderr).contains("BROKEN at seq 4: row_deleted"));
    let bad_head = run(&["--expect-head", "nonsense"]);
    assert!(!bad_head.status.success());
}

#[tokio::test]
async fn import_ingests_as_if_received_and_is_idempotent() {
    let app = spawn_app().await;
    let file = std::env::temp_dir().join(format!("import-{}.ndjson", app.db_name));
    let lines = [
        json!({"body": serde_json::from_str::<serde_json::Value>(&fixture("add_ticket.json")).unwrap(), "headers": {"webhook-id": "msg_a"}, "received_at": "2026-01-02T03:04:05.123456Z"}).to_string(),
        // Exact bytes, big number and duplicate key included.
        r#"{"body": {"Action":"GET:Settings/GetSettings","Data":{"n":123456789012345678901234567890,"k":1,"k":2}}}"#.to_string(),
        fixture("send_message.json").trim_end().to_string(),
        json!({"body_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, fixture("send_message_snake_case.json"))}).to_string(),
        "not json at all".to_string(),
        String::new(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let import = || {
        Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
            .arg("import")
            .arg(&file)
            .env("DATABASE_URL", database_url(&app.db_name))
            .output()
            .unwrap()
    };
    let first = import();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(summary, json!({"lines": 5, "stored": 4, "duplicates": 0, "refused": 1}));
    assert!(String::from_utf8_lossy(&first.stderr).contains("line 5: refused"));

    // Imported deliveries are in the verifiable log like received ones.
    let hashes: i64 = sqlx::query_scalar("SELECT count(*) FROM tree_hashes").fetch_one(&app.db).await.unwrap();
    assert_eq!(hashes as u64, ticket_audit::domain::merkle::stored_hash_count(4));
    let (key, at): (String, time::OffsetDateTime) =
        sqlx::query_as("SELECT dedup_key, received_at FROM deliveries WHERE seq = 1").fetch_one(&app.db).await.unwrap();
    assert_eq!(key, "msg_a");
    assert_eq!(at, time::macros::datetime!(2026-01-02 03:04:05.123456 UTC));
    let raw = app.get("/api/v1/deliveries/2/raw", None).await.text().await.unwrap();
    assert_eq!(raw, r#"{"Action":"GET:Settings/GetSettings","Data":{"n":123456789012345678901234567890,"k":1,"k":2}}"#);
    let t = app.get_json("/api/v1/tickets/TICKET-12345").await;
    assert_eq!(t["command_count"], 6);
    assert_eq!(check(&app, None).await, None);

    let again = import();
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary, json!({"lines": 5, "stored": 0, "duplicates": 4, "refused": 1}));
    assert_eq!(app.count("deliveries").await, 4);
    std::fs::remove_file(&file).ok();
}

#[tokio::test]
async fn export_writes_the_executed_commands_as_ndjson_and_csv() {
    let app = spawn_app().await;
    varied(&app).await;
    let export = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
            .arg("export")
            .args(args)
            .env("DATABASE_URL", database_url(&app.db_name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let nd = export(&["--format", "ndjson"]);
    let rows: Vec<serde_json::Value> = nd.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let executed = app.count("commands WHERE executed").await;
    assert_eq!(rows.len() as i64, executed);
    assert_eq!(rows[0]["command"], "aws s3 ls");
    assert_eq!(rows[0]["ticket"], "A-1");
    assert_eq!(rows[0]["tenant_id"], "tenant-a");
    assert_eq!(rows[0]["agent_name"], "aws");
    let hash: Vec<u8> =
        sqlx::query_scalar("SELECT hash FROM deliveries WHERE seq = 2").fetch_one(&app.db).await.unwrap();
    assert_eq!(rows[0]["delivery_hash"], hex::encode(hash));
    assert!(
        rows.iter().any(|r| r["command"] == "kubectl delete ns x"),
        "executed under a failed status, still exported"
    );

    let csv = export(&["--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id,seq,position,recorded_at,ticket,tenant_id,agent_name,agent_id,command,result,delivery_hash"
    );
    assert_eq!(csv.lines().count() as i64, executed + 1);
    assert!(csv.contains(r#""{""Arn"":""arn:aws:sts::123456789012:assumed-role/dev/alice""}""#), "CSV quoting");

    let none = export(&["--since", "2999-01-01T00:00:00Z"]);
    assert!(none.is_empty());
    let until: String = sqlx::query_scalar(
        "SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM deliveries WHERE seq = 3",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(export(&["--until", &until]).lines().count(), 2, "until is exclusive");
}

#[tokio::test]
async fn ledger_endpoints_are_for_admins() {
    let app =
        spawn_with(ticket_audit::config::HttpSettings { api_tokens: secret("root t=tenant-a"), ..settings() }).await;
    varied(&app).await;
    let head = app.get("/api/v1/ledger/head", Some("root")).await;
    assert_eq!(head.status(), 200);
    let head: serde_json::Value = head.json().await.unwrap();
    assert_eq!(head["seq"], 11);
    assert_eq!(head["hash"].as_str().unwrap().len(), 64);
    assert!(head["at"].is_string());
    assert_eq!(app.get("/api/v1/ledger/head", Some("t")).await.status(), 404);
    assert_eq!(app.get("/api/v1/ledger/verify", Some("t")).await.status(), 404);
    let ok: serde_json::Value = app.get("/api/v1/ledger/verify", Some("root")).await.json().await.unwrap();
    assert_eq!(ok["ok"], true);
    tamper(&app, "UPDATE commands SET command = 'ls' WHERE seq = 5").await;
    let broken: serde_json::Value = app.get("/api/v1/ledger/verify", Some("root")).await.json().await.unwrap();
    assert_eq!(broken["ok"], false);
    assert_eq!(broken["break"]["kind"], "command_edited");
}

/// A superuser's rewrite of history with every hash recomputed: the chain and the tree, from
/// the (already edited) deliveries up.
pub async fn rehash_everything(app: &TestApp) {
    let rows = chain_rows(&app.db).await;
    let chain = recompute_chain(&rows);
    let mut sql = String::from("DELETE FROM tree_hashes;");
    for ((s, ..), h) in rows.iter().zip(&chain) {
        sql.push_str(&format!("UPDATE deliveries SET hash = '\\x{}' WHERE seq = {s};", hex::encode(h)));
    }
    sql.push_str(&format!(
        "UPDATE ledger_head SET seq = {}, hash = '\\x{}';",
        rows.len(),
        hex::encode(chain.last().unwrap())
    ));
    tamper(app, &sql).await;
    let mut conn = app.db.acquire().await.unwrap();
    ticket_audit::store::tree::catch_up(&mut conn).await.unwrap();
}

/// `verify --checkpoint` and `check-evidence` with the key of before, after each kind of tampering.
#[tokio::test]
async fn the_verifiable_log_catches_edits_deletions_insertions_and_rewrites_with_the_old_key() {
    use ticket_audit::domain::checkpoint::{Checkpoint, Signer};
    let scratch = crate::interop::Scratch::new();
    let old_key = test_verifier().to_string();
    // (what the superuser does; whether it then rehashes everything and re-signs with a new key;
    // what verify names; what check-evidence may name for command 2.3, none: its delivery is gone)
    let cases: &[(&str, &str, bool, &str, &[&str])] = &[
        (
            "edits a body",
            "UPDATE deliveries SET body = convert_to(replace(convert_from(body, 'UTF8'), 'bucket-1', 'bucket-2'), 'UTF8') WHERE seq = 2",
            false,
            "body_edited",
            &["FAILED body"],
        ),
        (
            "edits a body and its hash, rehashing everything",
            "UPDATE deliveries SET body = convert_to(replace(convert_from(body, 'UTF8'), 'bucket-1', 'bucket-2'), 'UTF8'),
             body_sha256 = sha256(convert_to(replace(convert_from(body, 'UTF8'), 'bucket-1', 'bucket-2'), 'UTF8')) WHERE seq = 2;
             UPDATE commands SET result = 'bucket-2' WHERE seq = 2 AND result = 'bucket-1'",
            true,
            "history_rewritten",
            &["FAILED key_id", "FAILED audit_path"],
        ),
        ("deletes a delivery", "DELETE FROM deliveries WHERE seq = 2", false, "row_deleted", &[]),
        (
            "deletes a delivery, renumbering and rehashing everything",
            "DELETE FROM deliveries WHERE seq = 1; DELETE FROM action_events WHERE seq = 1;
             UPDATE deliveries SET seq = seq - 1; UPDATE action_events SET seq = seq - 1;
             UPDATE commands SET seq = seq - 1, position = position; UPDATE messages SET seq = seq - 1",
            true,
            "history_truncated",
            &["FAILED key_id", "FAILED audit_path"],
        ),
        (
            "inserts a delivery before the others, renumbering and rehashing everything",
            "UPDATE deliveries SET seq = seq + 1000; UPDATE deliveries SET seq = seq - 999;
             UPDATE commands SET seq = seq + 1000; UPDATE commands SET seq = seq - 999;
             UPDATE action_events SET seq = seq + 1000; UPDATE action_events SET seq = seq - 999;
             UPDATE messages SET seq = seq + 1000; UPDATE messages SET seq = seq - 999;
             INSERT INTO deliveries (seq, received_at, dedup_key, key_source, body, body_sha256, hash)
             VALUES (1, now(), 'forged', 'webhook-id', '{}', sha256('{}'), sha256('x'))",
            true,
            "history_rewritten",
            &["FAILED key_id", "FAILED audit_path"],
        ),
    ];
    for (what, sql, resign, verify_names, evidence_names) in cases {
        let app = spawn_app().await;
        varied(&app).await;
        let saved = scratch.write("saved.checkpoint", &until_checkpoint(&app.db, 11).await);
        let commands = walk(&app, "/api/v1/tickets/A-1/commands", None).await;
        let id = commands[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(id, "2.3");
        let before = app.get_json(&format!("/api/v1/commands/{id}/evidence")).await;
        let verify = || {
            Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
                .args(["verify", "--checkpoint", &saved, "--key", &old_key])
                .env("DATABASE_URL", database_url(&app.db_name))
                .output()
                .unwrap()
        };
        let ok = verify();
        assert!(ok.status.success(), "{what}, before: {}", String::from_utf8_lossy(&ok.stderr));
        assert!(String::from_utf8_lossy(&ok.stdout).contains("extends the checkpoint of 11"));

        tamper(&app, sql).await;
        if *resign {
            rehash_everything(&app).await;
            // The service itself refuses to sign a tree that does not extend what it signed.
            let real = ticket_audit::checkpointing::read_key_file(test_key_file().as_ref()).unwrap();
            let cp = Checkpoint::open(&std::fs::read_to_string(&saved).unwrap(), &real.verifier()).unwrap();
            let mut last = Some(ticket_audit::checkpointing::Signed { size: cp.size, root: cp.root });
            let refused = ticket_audit::checkpointing::sign_if_grown(&app.db, &real, None, &mut last).await;
            assert!(refused.unwrap_err().to_string().contains("NOT SIGNING"), "{what}");
            // A checkpoint of the rewritten tree, signed with a key of the superuser's making.
            let forger = Signer::generate("test.ticket-audit/log").unwrap();
            let mut conn = app.db.acquire().await.unwrap();
            let (size, root) = ticket_audit::store::tree::current(&mut conn).await.unwrap();
            let note = Checkpoint { origin: forger.name().into(), size, root }.sign(&forger).unwrap();
            ticket_audit::store::tree::insert_checkpoint(&mut conn, size, &root, forger.verifier().key_id(), &note)
                .await
                .unwrap();
            // The rewrite passes every check that has no memory of before.
            assert_eq!(check(&app, None).await, None, "{what}: the chain alone is fooled");
        }
        let broken = verify();
        assert!(!broken.status.success(), "{what}: verify --checkpoint passed");
        let stderr = String::from_utf8_lossy(&broken.stderr);
        assert!(stderr.contains(verify_names), "{what}: {stderr}");

        // The evidence served now, checked with the key of before.
        let now = app.get(&format!("/api/v1/commands/{id}/evidence"), None).await;
        if evidence_names.is_empty() {
            assert_eq!(now.status(), 404, "{what}: no evidence for a command whose delivery is gone");
        } else {
            let doc: serde_json::Value = if now.status() == 200 {
                now.json().await.unwrap()
            } else {
                // The command was renumbered away: the auditor's saved copy, with today's audit path.
                let mut doc = before.clone();
                let p = app.get_json("/api/v1/ledger/proof/inclusion?seq=2&tree_size=11").await;
                doc["inclusion"] = p["hashes"].clone();
                doc
            };
            let file = scratch.write("evidence.json", &doc.to_string());
            let out = Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
                .args(["check-evidence", "--key", &old_key, &file])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what}: check-evidence passed");
            assert!(evidence_names.iter().any(|n| stderr.contains(n)), "{what}: {stderr}");
            // And the Python checker agrees it is broken.
            assert!(crate::interop::python_check(&["evidence", &old_key, &file]).is_err(), "{what}");
        }
        // What the auditor saved before still checks: the truth, signed.
        let file = scratch.write("before.json", &before.to_string());
        assert!(crate::interop::python_check(&["evidence", &old_key, &file]).is_ok(), "{what}");
    }
}
