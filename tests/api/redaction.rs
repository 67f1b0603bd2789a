//! Redaction (issue 15, item 3): a delivery's body and projected text replaced by a tombstone,
//! its proof kept, the redaction a ledger entry of its own, and the record still append-only.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgPool};
use ticket_audit::config::HttpSettings;
use ticket_audit::store::partitions::{month_of, next_month};

use crate::helpers::*;
use crate::ledger::tamper;

/// A marker only the redacted delivery holds, in every text it projects.
const SECRET: &str = "s3cr3t-4111";

fn secret_message(ticket: &str) -> String {
    message(
        ticket,
        &format!("my card is {SECRET}"),
        &format!("noted {SECRET}"),
        &[(&format!("grep {SECRET} /var/log/app.log"), &format!("{SECRET} found"))],
    )
}

async fn post_redact(app: &TestApp, id: i64, body: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/api/v1/admin/deliveries/{id}/redact")))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn get_as(app: &TestApp, path: &str, token: &str) -> Value {
    let res = app.get(path, Some(token)).await;
    assert_eq!(res.status(), 200, "GET {path}");
    res.json().await.unwrap()
}

/// Every table of the schema (partitioned ones through their parent) where any column of any
/// row, bytea bodies included (as hex), holds `needle`.
async fn tables_holding(db: &PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ('public', 'reporting') AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "messages") && tables.iter().any(|t| t == "reporting.command_class"));
    let hex = hex::encode(needle);
    let mut holding = Vec::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {t} x WHERE strpos(x::text, $1) > 0 OR strpos(x::text, $2) > 0"
        ))
        .bind(needle)
        .bind(&hex)
        .fetch_one(db)
        .await
        .unwrap();
        if n > 0 {
            holding.push(t);
        }
    }
    holding
}

async fn tree_hashes(db: &PgPool) -> Vec<(i64, Vec<u8>)> {
    sqlx::query_as("SELECT index, hash FROM tree_hashes ORDER BY index").fetch_all(db).await.unwrap()
}

fn fingerprint(token: &str) -> String {
    format!("api-token:{}", &hex::encode(Sha256::digest(token.as_bytes()))[..12])
}

#[tokio::test]
async fn an_admin_redacts_a_delivery_and_every_proof_stays_valid() {
    let app = spawn_with(HttpSettings { api_tokens: secret("root tok-a=tenant-a"), ..settings() }).await;
    app.deliver(&add_ticket("T-1", "tenant-a", "aws")).await;
    let target = app.deliver(&secret_message("T-1")).await;
    app.deliver(&message("T-1", "plain", "answer", &[("ls", "ok")])).await;
    assert_eq!(target, 2);
    until_checkpoint(&app.db, 3).await;
    let holding = tables_holding(&app.db, SECRET).await;
    for t in ["deliveries", "messages", "commands"] {
        assert!(holding.iter().any(|h| h == t), "{t} holds the text before: {holding:?}");
    }
    // What the proof rests on, before.
    let before_rows = chain_rows(&app.db).await;
    let before_tree = tree_hashes(&app.db).await;
    let before_checkpoints: Vec<(i64, String)> =
        sqlx::query_as("SELECT tree_size, note FROM checkpoints ORDER BY id").fetch_all(&app.db).await.unwrap();
    let proof_before = get_as(&app, "/api/v1/ledger/proof/inclusion?seq=2&tree_size=3", "root").await;
    let command_id = {
        let cmds = get_as(&app, "/api/v1/tickets/T-1/commands", "root").await;
        cmds["items"].as_array().unwrap().iter().find(|c| c["seq"] == 2).unwrap()["id"].as_str().unwrap().to_owned()
    };

    // Refused, and nothing changed: no token, a tenant's token, bad bodies, an unknown delivery.
    let good = r#"{"reason": "GDPR erasure request 77"}"#;
    assert_eq!(post_redact(&app, 2, good, None).await.status(), 401);
    let tenant = post_redact(&app, 2, good, Some("tok-a")).await;
    assert_eq!(tenant.status(), 403);
    let problem: Value = tenant.json().await.unwrap();
    assert_eq!(problem["type"], "urn:ticket-audit:problem:forbidden");
    let long = serde_json::json!({"reason": "x".repeat(1001)}).to_string();
    for bad in [
        "",
        "{}",
        r#"{"reason": ""}"#,
        r#"{"reason": "   "}"#,
        r#"{"reason": "a\nb"}"#,
        "not json",
        &long,
        r#"{"reason": "ok", "extra": 1}"#,
    ] {
        let res = post_redact(&app, 2, bad, Some("root")).await;
        assert_eq!(res.status(), 400, "{bad:?}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(post_redact(&app, 99, good, Some("root")).await.status(), 404);
    assert_eq!(post_redact(&app, 0, good, Some("root")).await.status(), 404);
    assert_eq!(app.count("redactions").await, 0);
    assert_eq!(app.count("deliveries").await, 3);
    assert_eq!(app.get("/api/v1/deliveries/2/raw", Some("root")).await.status(), 200);

    // The redaction.
    let res = post_redact(&app, 2, good, Some("root")).await;
    assert_eq!(res.status(), 201);
    let made: Value = res.json().await.unwrap();
    assert_eq!(made["delivery_id"], 2);
    assert_eq!(made["duplicate"], false);
    assert_eq!(made["redaction"]["redaction_seq"], 4, "its own entry, the next seq: {made}");
    assert_eq!(made["redaction"]["reason"], "GDPR erasure request 77");
    assert_eq!(made["redaction"]["by"], fingerprint("root").as_str(), "the token's fingerprint, never the token");
    // Again, with another reason: the first redaction is the answer, nothing changes.
    let again = post_redact(&app, 2, r#"{"reason": "another"}"#, Some("root")).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!((again["duplicate"].as_bool(), &again["redaction"]), (Some(true), &made["redaction"]));
    assert_eq!(app.count("deliveries").await, 4);
    assert_eq!(app.count("redactions").await, 1);

    // The text is gone from every table; the chained fields, the tree and the checkpoints are not.
    assert_eq!(tables_holding(&app.db, SECRET).await, Vec::<String>::new());
    let after_rows = chain_rows(&app.db).await;
    assert_eq!(&after_rows[..3], &before_rows[..], "every chained field and hash as it was");
    assert_eq!(recompute_chain(&after_rows).last().unwrap().as_slice(), after_rows[3].6.as_slice());
    let after_tree = tree_hashes(&app.db).await;
    assert_eq!(&after_tree[..before_tree.len()], &before_tree[..], "the tree only grew");
    let after_checkpoints: Vec<(i64, String)> =
        sqlx::query_as("SELECT tree_size, note FROM checkpoints ORDER BY id").fetch_all(&app.db).await.unwrap();
    assert_eq!(&after_checkpoints[..before_checkpoints.len()], &before_checkpoints[..]);
    let proof_after = get_as(&app, "/api/v1/ledger/proof/inclusion?seq=2&tree_size=3", "root").await;
    assert_eq!(proof_after, proof_before, "the redacted delivery's leaf and audit path are unchanged");
    until_checkpoint(&app.db, 4).await;
    let consistency = get_as(&app, "/api/v1/ledger/proof/consistency?first=3&second=4", "root").await;
    assert_eq!(consistency["first"], 3);

    // Reads show it as redacted.
    let raw = app.get("/api/v1/deliveries/2/raw", Some("root")).await;
    assert_eq!(raw.status(), 410);
    let problem: Value = raw.json().await.unwrap();
    assert_eq!(problem["type"], "urn:ticket-audit:problem:redacted");
    assert!(problem["detail"].as_str().unwrap().contains("GDPR erasure request 77"), "{problem}");
    let d = get_as(&app, "/api/v1/deliveries/2", "root").await;
    assert_eq!(d["redacted"]["reason"], "GDPR erasure request 77");
    assert_eq!(d["redacted"]["redaction_seq"], 4);
    assert!(d.get("body").is_none(), "{d}");
    assert_eq!(d["size"], 0);
    assert_eq!(d["body_sha256"], hex::encode(&before_rows[1].5));
    assert_eq!(get_as(&app, "/api/v1/deliveries/3", "root").await["redacted"], Value::Null);
    let timeline = walk(&app, "/api/v1/tickets/T-1/timeline", Some("root")).await;
    let of_two: Vec<&Value> = timeline.iter().filter(|e| e["seq"] == 2).collect();
    assert_eq!(of_two.len(), 3, "its entries stay, as redacted: {timeline:?}");
    for e in &of_two {
        assert_eq!(e["redacted"], true);
        assert_eq!((&e["content"], &e["command"], &e["result"]), (&Value::Null, &Value::Null, &Value::Null));
    }
    assert!(timeline.iter().filter(|e| e["seq"] != 2).all(|e| e["redacted"] == false));
    let ticket = get_as(&app, "/api/v1/tickets/T-1", "root").await;
    assert_eq!(ticket["command_count"], 2, "counts stay: {ticket}");
    let cmds = get_as(&app, "/api/v1/commands?ticket=T-1", "root").await;
    let redacted_cmd = cmds["items"].as_array().unwrap().iter().find(|c| c["seq"] == 2).unwrap().clone();
    assert_eq!((redacted_cmd["redacted"].as_bool(), redacted_cmd["command"].as_str()), (Some(true), Some("")));
    let evidence = app.get(&format!("/api/v1/commands/{command_id}/evidence"), Some("root")).await;
    assert_eq!(evidence.status(), 410);
    let problem: Value = evidence.json().await.unwrap();
    assert_eq!(problem["type"], "urn:ticket-audit:problem:redacted");
    // The other commands' evidence still checks out.
    let other =
        cmds["items"].as_array().unwrap().iter().find(|c| c["seq"] == 3).unwrap()["id"].as_str().unwrap().to_owned();
    let doc: ticket_audit::domain::evidence::Evidence =
        serde_json::from_value(get_as(&app, &format!("/api/v1/commands/{other}/evidence"), "root").await).unwrap();
    ticket_audit::domain::evidence::check(&doc, &test_verifier()).expect("the evidence of an untouched command checks");

    // The tenant sees its delivery as redacted, and not the redaction entry (it carries no ticket).
    let mine = get_as(&app, "/api/v1/deliveries", "tok-a").await;
    let seqs: Vec<i64> = mine["items"].as_array().unwrap().iter().map(|d| d["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [3, 2, 1]);
    assert_eq!(app.get("/api/v1/deliveries/4", Some("tok-a")).await.status(), 404);
    assert_eq!(get_as(&app, "/api/v1/deliveries/2", "tok-a").await["redacted"]["reason"], "GDPR erasure request 77");
    let entry = get_as(&app, "/api/v1/deliveries/4", "root").await;
    assert_eq!((entry["key"].as_str(), entry["key_source"].as_str()), (Some("redaction 2"), Some("redaction")));
    assert_eq!(entry["action"], "ticket-audit:Redact");
    assert!(!entry["body"].to_string().contains(SECRET));

    // verify: whole, with the redaction reported as such.
    let report = get_as(&app, "/api/v1/ledger/verify", "root").await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["deliveries"], 4);
    assert_eq!(report["redacted"][0]["seq"], 2);
    assert_eq!(report["redacted"][0]["redaction_seq"], 4);
    assert_eq!(report["redacted"][0]["reason"], "GDPR erasure request 77");

    // A redaction entry cannot be redacted; the page shows the redaction.
    let res = post_redact(&app, 4, good, Some("root")).await;
    assert_eq!(res.status(), 409);
}

#[tokio::test]
async fn the_cli_redacts_verify_reports_it_and_reproject_keeps_it() {
    let app = spawn_app().await;
    let target = app.deliver(&secret_message("T-9")).await;
    app.deliver(&message("T-9", "later", "fine", &[("pwd", "/")])).await;
    let url = database_url(&app.db_name);
    let env = [("DATABASE_URL", url.as_str())];
    let id = target.to_string();
    let ran = run_bounded(
        cli(&["redact", "--delivery", &id, "--reason", "leaked card number", "--actor", "alice"], &env),
        std::time::Duration::from_secs(120),
    );
    assert!(ran.status.success(), "{}", ran.stderr);
    assert!(ran.stdout.contains("delivery 1 redacted: redaction entry 3"), "{}", ran.stdout);
    assert!(ran.stdout.contains("by alice: leaked card number"), "{}", ran.stdout);
    let again = run_bounded(
        cli(&["redact", "--delivery", &id, "--reason", "twice", "--json"], &env),
        std::time::Duration::from_secs(120),
    );
    assert!(again.status.success(), "{}", again.stderr);
    let again: Value = serde_json::from_str(again.stdout.trim()).unwrap();
    assert_eq!(
        (again["duplicate"].as_bool(), again["redaction"]["reason"].as_str()),
        (Some(true), Some("leaked card number"))
    );
    for (args, why) in [
        (vec!["redact", "--delivery", "3", "--reason", "x"], "redaction entry"),
        (vec!["redact", "--delivery", "99", "--reason", "x"], "no delivery 99"),
        (vec!["redact", "--delivery", "2", "--reason", " "], "reason is empty"),
    ] {
        let ran = run_bounded(cli(&args, &env), std::time::Duration::from_secs(120));
        assert!(!ran.status.success(), "{args:?}");
        assert!(ran.stderr.contains(why), "{args:?}: {}", ran.stderr);
    }
    assert_eq!(app.count("deliveries").await, 3);
    assert_eq!(tables_holding(&app.db, SECRET).await, Vec::<String>::new());

    let verified = run_bounded(cli(&["verify"], &env), std::time::Duration::from_secs(120));
    assert!(verified.status.success(), "{}{}", verified.stdout, verified.stderr);
    assert!(verified.stdout.contains("redacted: seq 1 (redaction entry 3"), "{}", verified.stdout);
    assert!(verified.stdout.contains("OK: the record is whole and unaltered"), "{}", verified.stdout);

    // reproject rebuilds the redacted delivery's rows from its entry: the same rows, text blank.
    let rows = |db: PgPool| async move {
        let m: Vec<(i64, i32, String, String)> =
            sqlx::query_as("SELECT seq, position, role, content FROM messages ORDER BY seq, position")
                .fetch_all(&db)
                .await
                .unwrap();
        let c: Vec<(i64, i32, String, Option<String>, bool)> =
            sqlx::query_as("SELECT seq, position, command, result, executed FROM commands ORDER BY seq, position")
                .fetch_all(&db)
                .await
                .unwrap();
        let t: (i64, i64) = sqlx::query_as("SELECT message_count, command_count FROM tickets WHERE name = 'T-9'")
            .fetch_one(&db)
            .await
            .unwrap();
        (m, c, t)
    };
    let before = rows(app.db.clone()).await;
    assert_eq!(before.0[0], (1, 1, "user".to_owned(), String::new()));
    let ran = run_bounded(cli(&["reproject"], &env), std::time::Duration::from_secs(120));
    assert!(ran.status.success(), "{}", ran.stderr);
    assert_eq!(rows(app.db.clone()).await, before);
    assert_eq!(tables_holding(&app.db, SECRET).await, Vec::<String>::new());
    let verified = run_bounded(cli(&["verify", "--json"], &env), std::time::Duration::from_secs(120));
    assert!(verified.status.success(), "{}", verified.stderr);
    // The JSON report, then the verdict line.
    let report: Value = serde_json::Deserializer::from_str(&verified.stdout).into_iter().next().unwrap().unwrap();
    assert_eq!((report["ok"].as_bool(), report["redacted"][0]["actor"].as_str()), (Some(true), Some("alice")));
}

#[tokio::test]
async fn a_body_changed_without_a_redaction_is_still_tampering() {
    let app = spawn_app().await;
    app.deliver(&secret_message("T-1")).await;
    app.deliver(&message("T-1", "u", "a", &[("ls", "ok")])).await;
    assert_eq!(post_redact(&app, 1, r#"{"reason": "erasure"}"#, None).await.status(), 201);
    let redacted = verify_break(&app).await;
    assert_eq!(redacted, None);

    // A redacted body changed to anything but the tombstone: tampering.
    tamper(&app, "UPDATE deliveries SET body = convert_to('{}', 'UTF8') WHERE seq = 1").await;
    let mut conn = app.db.acquire().await.unwrap();
    let report = ticket_audit::store::ledger::verify(&mut conn, None).await.unwrap();
    let b = report.first_break.expect("a break");
    assert_eq!((b.kind, b.seq), (ticket_audit::store::ledger::BreakKind::BodyEdited, 1));
    assert!(b.detail.contains("tombstone"), "{}", b.detail);
    drop(conn);
    tamper(&app, "UPDATE deliveries SET body = ''::bytea WHERE seq = 1").await;
    assert_eq!(verify_break(&app).await, None, "the tombstone back: whole again");

    // An empty body, the tombstone's, where no redaction entry names it: tampering.
    tamper(&app, "UPDATE deliveries SET body = ''::bytea WHERE seq = 2").await;
    assert_eq!(verify_break(&app).await, Some((ticket_audit::store::ledger::BreakKind::BodyEdited, 2)));
}

async fn verify_break(app: &TestApp) -> Option<(ticket_audit::store::ledger::BreakKind, i64)> {
    let mut conn = app.db.acquire().await.unwrap();
    let report = ticket_audit::store::ledger::verify(&mut conn, None).await.unwrap();
    report.first_break.map(|b| (b.kind, b.seq))
}

#[tokio::test]
async fn the_record_stays_append_only_for_everyone_but_a_recorded_redaction() {
    let app = spawn_app().await;
    app.deliver(&secret_message("T-1")).await;
    app.deliver(&message("T-1", "u", "a", &[("ls", "ok")])).await;
    assert_eq!(post_redact(&app, 1, r#"{"reason": "erasure"}"#, None).await.status(), 201);
    let refused = |sql: &'static str| {
        let db = app.db.clone();
        async move {
            let err = sqlx::query(sql).execute(&db).await.expect_err(sql);
            err.as_database_error().expect("a database error").message().to_owned()
        }
    };
    // The owner: the tombstone is refused outside the redaction's own transaction, on any row.
    for sql in [
        "UPDATE deliveries SET body = ''::bytea WHERE seq = 2",
        "UPDATE deliveries SET body = ''::bytea WHERE seq = 1",
        "UPDATE commands SET command = '', result = NULL WHERE seq = 2",
        "UPDATE deliveries SET action = 'x' WHERE seq = 1",
        "DELETE FROM deliveries WHERE seq = 1",
        "DELETE FROM redactions",
        "UPDATE redactions SET reason = 'other'",
    ] {
        assert!(refused(sql).await.contains("is append-only"), "{sql}");
    }
    // The function applies only a redaction the ledger records, once.
    assert!(refused("SELECT ticket_audit_redact(2)").await.contains("not a redaction entry"));
    assert!(refused("SELECT ticket_audit_redact(3)").await.contains("already redacted"));
    // Even inside a transaction that inserts a redactions row of its own, only the tombstone passes.
    let mut conn = app.db.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO redactions (target_seq, redaction_seq, body_sha256, reason, actor, redacted_at) \
         SELECT 2, 99, body_sha256, 'forged', 'me', now() FROM deliveries WHERE seq = 2",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let e = sqlx::query("UPDATE deliveries SET body = '\\x7b7d'::bytea WHERE seq = 2").execute(&mut *tx).await;
    assert!(e.unwrap_err().to_string().contains("is append-only"));
    drop(tx);
    // The service's role may not change the record at all.
    let mut writer = raw_connection(&app.db.connect_options()).await;
    sqlx::query("SET ROLE ticket_audit_writer").execute(&mut writer).await.unwrap();
    for sql in [
        "UPDATE deliveries SET body = ''::bytea WHERE seq = 2",
        "UPDATE messages SET content = '' WHERE seq = 2",
        "UPDATE reporting.command_class SET command = ''",
        "INSERT INTO redactions (target_seq, redaction_seq, body_sha256, reason, actor, redacted_at) \
         VALUES (2, 99, '\\x00', 'x', 'y', now())",
    ] {
        let e = sqlx::query(sql).execute(&mut writer).await.unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{sql}: {e}");
    }
    let e = sqlx::query("SELECT ticket_audit_redact(2)").execute(&mut writer).await.unwrap_err();
    assert!(e.to_string().contains("not a redaction entry"), "{e}");
    let content: String = sqlx::query_scalar("SELECT content FROM messages WHERE seq = 2 AND position = 1")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(content, "u");
}

#[tokio::test]
async fn a_redaction_across_a_month_turn_and_in_the_new_partition() {
    let app = spawn_app().await;
    app.deliver(&secret_message("T-1")).await;
    let now = time::OffsetDateTime::now_utc();
    let next = next_month(month_of(now));
    let in_next = time::PrimitiveDateTime::new(next, time::Time::MIDNIGHT).assume_utc();
    assert_eq!(turn_as_writer(&app.db, Some(now), in_next).await, Some(2));
    app.deliver(&message("T-1", &format!("again {SECRET}"), "a", &[])).await;
    let part = |seq: i64| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT tableoid::regclass::text FROM deliveries WHERE seq = $1")
                .bind(seq)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let (old, new) = (part(1).await, part(2).await);
    assert_ne!(old, new);
    // In the closed partition, from the open one: the entry lands in the new month's.
    assert_eq!(post_redact(&app, 1, r#"{"reason": "old month"}"#, None).await.status(), 201);
    assert_eq!(part(3).await, new);
    // In the partition the turn made.
    assert_eq!(post_redact(&app, 2, r#"{"reason": "new month"}"#, None).await.status(), 201);
    assert_eq!(tables_holding(&app.db, SECRET).await, Vec::<String>::new());
    // The partitions the turn made refuse every other change.
    let err = sqlx::query(&format!("UPDATE {new} SET body = ''::bytea WHERE seq = 3")).execute(&app.db).await;
    assert!(err.unwrap_err().to_string().contains("is append-only"));
    let mut conn = app.db.acquire().await.unwrap();
    let report = ticket_audit::store::ledger::verify(&mut conn, None).await.unwrap();
    assert!(report.ok, "{:?}", report.first_break);
    let seqs: Vec<(i64, i64)> = report.redacted.iter().map(|r| (r.seq, r.redaction_seq)).collect();
    assert_eq!(seqs, [(1, 3), (2, 4)]);
    // The page (open mode: no sign-in) shows the delivery and the ticket's entries as redacted.
    for path in ["/ui/deliveries/1", "/ui/tickets/T-1"] {
        let page = app.get(path, None).await;
        assert_eq!(page.status(), 200, "{path}");
        let html = page.text().await.unwrap();
        assert!(html.contains("redacted") && !html.contains(SECRET), "{path}: {html}");
    }
}

#[tokio::test]
async fn a_delivery_of_an_archived_and_dropped_month_is_refused_with_what_to_do() {
    let app = spawn_app().await;
    app.deliver(&message("T-1", "u", "a", &[])).await;
    // As `archive --drop` leaves it: the month's rows gone, its range recorded.
    sqlx::query(
        "INSERT INTO archived_partitions (partition, first_seq, last_seq, last_hash, directory, manifest_sha256) \
         VALUES ('2020_01', 100, 200, decode(repeat('00', 32), 'hex'), '/srv/archive', 'abc')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let res = post_redact(&app, 150, r#"{"reason": "erasure"}"#, None).await;
    assert_eq!(res.status(), 409);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["type"], "urn:ticket-audit:problem:conflict");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("/srv/archive") && detail.contains("2020_01"), "{detail}");
    assert_eq!(app.count("redactions").await, 0);
    assert_eq!(app.count("deliveries").await, 1);
}

#[tokio::test]
async fn an_add_tickets_title_goes_with_its_redaction_and_its_identifiers_stay() {
    let app = spawn_app().await;
    let add = serde_json::json!({"Action": "POST:Ticket/AddTicket", "Data": {"RequestBody": {"Ticket": {
        "Name": "T-7", "Title": format!("printer {SECRET}"), "CreateTime": format!("soon {SECRET}"),
        "Assignee": {"AgentName": "aws", "AgentId": "id-aws"}, "TenantId": "tenant-a", "Status": "Open"}},
        "StatusCode": 200}});
    app.deliver(&add.to_string()).await;
    app.deliver(&message("T-7", "u", "a", &[("ls", "ok")])).await;
    assert!(tables_holding(&app.db, SECRET).await.iter().any(|t| t == "tickets"));
    assert_eq!(post_redact(&app, 1, r#"{"reason": "erasure"}"#, None).await.status(), 201);
    // A batch after it, on the same ticket, folds into the ticket as the redaction left it.
    app.deliver(&message("T-7", "u2", "a2", &[])).await;
    assert_eq!(tables_holding(&app.db, SECRET).await, Vec::<String>::new());
    let t = app.get_json("/api/v1/tickets/T-7").await;
    assert_eq!((&t["title"], &t["create_time_text"]), (&Value::Null, &Value::Null), "{t}");
    assert_eq!((t["tenant_id"].as_str(), t["status"].as_str()), (Some("tenant-a"), Some("Open")), "{t}");
    assert_eq!(t["assignee"]["agent_name"], "aws");
    // reproject gives the same ticket, from the entry's projection without text.
    let url = database_url(&app.db_name);
    let ran = run_bounded(cli(&["reproject"], &[("DATABASE_URL", url.as_str())]), std::time::Duration::from_secs(120));
    assert!(ran.status.success(), "{}", ran.stderr);
    let again = app.get_json("/api/v1/tickets/T-7").await;
    assert_eq!(again, t);
    assert_eq!(tables_holding(&app.db, SECRET).await, Vec::<String>::new());
    let mut conn = app.db.acquire().await.unwrap();
    let report = ticket_audit::store::ledger::verify(&mut conn, None).await.unwrap();
    assert!(report.ok, "{:?}", report.first_break);
}
