//! Valid deliveries that once stopped or bypassed the record: times at the edges of what the
//! record holds, lone surrogates, numbers beyond 64 bits, both spellings of a list, long identity
//! headers, client-chosen keys, huge deliveries, and a panic in the writer. Each must be stored
//! (or clearly refused) and leave the service answering.

use crate::helpers::*;
use ticket_audit::config::HttpSettings;

fn add_ticket_at(name: &str, create_time: &str) -> String {
    serde_json::json!({"Action": "POST:Ticket/AddTicket", "Data": {"RequestBody": {"Ticket": {
        "Name": name, "TenantId": "t", "CreateTime": create_time}}, "StatusCode": 200}})
    .to_string()
}

/// Every boundary of the years the record holds, at every boundary offset and time of day: each
/// is stored, and every read of it, one ticket and the list, answers 200.
#[tokio::test]
async fn create_times_at_every_edge_are_stored_and_read_back() {
    let app = spawn_app().await;
    let mut sent = Vec::new();
    for date in ["0000-01-01", "0001-01-01", "0001-01-02", "9999-12-31", "9999-12-30"] {
        for time in ["00:00:00", "23:59:59.999999999", "12:00:00"] {
            for offset in ["Z", "+00:00", "-00:01", "+00:01", "-23:59", "+23:59"] {
                let t = format!("{date}T{time}{offset}");
                let name = format!("T-{}", sent.len());
                app.deliver(&add_ticket_at(&name, &t)).await;
                sent.push((name, t));
            }
        }
    }
    for (name, t) in &sent {
        let res = app.get(&format!("/api/v1/tickets/{name}"), None).await;
        assert_eq!(res.status(), 200, "{t}");
        let v: serde_json::Value = res.json().await.unwrap();
        let parsed = ticket_audit::domain::timestamp::parse(t);
        match parsed {
            Some(p) => assert_eq!(v["created_at"], ticket_audit::domain::timestamp::format(p), "{t}"),
            None => {
                assert_eq!(v["created_at"], serde_json::Value::Null, "{t}");
                assert_eq!(v["create_time_text"], t.as_str(), "{t}: kept as text");
            }
        }
    }
    assert_eq!(walk(&app, "/api/v1/tickets?limit=7", None).await.len(), sent.len());
    // The year-10000 delivery that once killed the writer, and the writer is still there.
    app.deliver(&add_ticket_at("POISON", "9999-12-31T23:59:59-23:59")).await;
    app.deliver(&fixture("add_ticket.json")).await;
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}

/// An import goes on past lines it refuses, names them, and stores every good line around them.
#[tokio::test]
async fn import_reports_refused_lines_and_goes_on() {
    let app = spawn_app().await;
    let good = |n: u32| {
        serde_json::json!({"body": serde_json::from_str::<serde_json::Value>(&add_ticket_at(&format!("I-{n}"), "2025-01-01T00:00:00Z")).unwrap()}).to_string()
    };
    let lines = [
        good(1),
        serde_json::json!({"body": {"Action": "x"}, "received_at": "9999-12-31T23:59:59-23:59"}).to_string(),
        serde_json::json!({"body": serde_json::from_str::<serde_json::Value>(&add_ticket_at("I-P", "9999-12-31T23:59:59-23:59")).unwrap()}).to_string(),
        "{not json".to_owned(),
        good(2),
    ];
    let file = lines.join("\n");
    let pool = ticket_audit::store::pool(app_options(&app), 2, std::time::Duration::from_secs(5), None);
    let (writer, task) = ticket_audit::store::Writer::spawn(pool.clone(), 2, 2).unwrap();
    let summary = ticket_audit::ingest::import(file.as_bytes(), &writer).await.unwrap();
    drop(writer);
    task.await.unwrap();
    assert_eq!((summary.lines, summary.stored, summary.refused), (5, 3, 2));
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM tickets ORDER BY name").fetch_all(&app.db).await.unwrap();
    assert_eq!(names, ["I-1", "I-2", "I-P"]);
}

fn app_options(app: &TestApp) -> sqlx::postgres::PgConnectOptions {
    app.db.connect_options().as_ref().clone()
}

/// A key a client chooses never matches another delivery's derived key: the key's source is
/// part of its identity.
#[tokio::test]
async fn a_client_key_cannot_swallow_another_delivery() {
    let app = spawn_app().await;
    let (a, b) = (fixture("add_ticket.json"), fixture("unknown_action.json"));
    let forged = format!("sha256:{}", hex::encode(ticket_audit::domain::ledger::sha256(b.as_bytes())));
    let res = app.post_with(a.clone(), &[("idempotency-key", forged.clone())]).await;
    assert_eq!(res.status(), 202);
    let res = app.post(b.clone()).await;
    assert_eq!(res.status(), 202, "B is a new delivery");
    assert_eq!(app.count("deliveries").await, 2);
    // The same forged key again is A's duplicate, and B again is B's.
    assert_eq!(app.post_with(a, &[("idempotency-key", forged)]).await.status(), 200);
    assert_eq!(app.post(b).await.status(), 200);
    // svix-id is webhook-id's alias: one identity.
    assert_eq!(app.post_with("{\"a\":1}", &[("webhook-id", "msg_9".into())]).await.status(), 202);
    assert_eq!(app.post_with("{\"a\":1}", &[("svix-id", "msg_9".into())]).await.status(), 200);
    assert_eq!(app.post_with("{\"a\":1}", &[("idempotency-key", "msg_9".into())]).await.status(), 202);
}

/// Lone surrogates (what JSON.stringify writes when it cuts a string inside a pair) and numbers
/// beyond 64 bits are valid JSON: stored byte for byte, normalized with the documented readings.
#[tokio::test]
async fn lone_surrogates_and_huge_numbers_are_stored() {
    let app = spawn_app().await;
    let big = "9".repeat(400);
    let bodies = [
        (r#"{"Action":"POST:Ticket/SendTicketMessage","Data":{"RequestBody":{"ticketName":"S-1"},"ResponseBody":{"data":{"executedCmds":[{"command":"cat x","result":"output cut \ud83d"}]}}}}"#.to_owned(), "output cut \u{FFFD}"),
        (r#"{"Action":"POST:Ticket/SendTicketMessage","Data":{"RequestBody":{"ticketName":"S-2"},"ResponseBody":{"data":{"executedCmds":[{"command":"cat y","result":"\udc00 and \ude00\ud83d"}]}}}}"#.to_owned(), "\u{FFFD} and \u{FFFD}\u{FFFD}"),
        (format!(r#"{{"Action":"POST:Ticket/SendTicketMessage","Data":{{"RequestBody":{{"ticketName":"S-3"}},"ResponseBody":{{"data":{{"executedCmds":[{{"command":"calc","result":{big}}}]}}}},"StatusCode":1e400}}}}"#), big.as_str()),
        (r#"{"Action":"POST:Ticket/SendTicketMessage","Data":{"RequestBody":{"ticketName":"S-4"},"ResponseBody":{"data":{"executedCmds":[{"command":"calc","result":-1e400},{"command":"c2","result":1E+999}]}}}}"#.to_owned(), "-1e400"),
    ];
    for (body, result) in &bodies {
        let id = app.deliver(body).await;
        let raw = app.get(&format!("/api/v1/deliveries/{id}/raw"), None).await.bytes().await.unwrap();
        assert_eq!(raw.as_ref(), body.as_bytes(), "byte for byte");
        // The JSON body is embedded as received: a strict parser refuses it as it refuses the body.
        let d = app.get(&format!("/api/v1/deliveries/{id}"), None).await.bytes().await.unwrap();
        let (d, _) = ticket_audit::domain::json::parse(&d).unwrap();
        assert!(d["normalize_error"].as_str().is_some_and(|e| e.contains("read as")), "{d}");
        let cmds = app.get_json(&format!("/api/v1/commands?order=asc&ticket=S-{id}")).await;
        assert_eq!(cmds["items"][0]["result"], *result, "{body}");
    }
    let s3 = app.get_json("/api/v1/tickets/S-3/timeline").await;
    assert_eq!(s3["items"][0]["kind"], "action", "a StatusCode of 1e400 is not a success");
    let mut conn = app.db.acquire().await.unwrap();
    assert!(ticket_audit::store::ledger::verify(&mut conn, None).await.unwrap().ok);
}

/// Both spellings of a command list in one delivery: every command recorded, in the documented order.
#[tokio::test]
async fn both_spellings_in_one_delivery_are_all_recorded() {
    let app = spawn_app().await;
    app.deliver(
        r#"{"Action":"POST:Ticket/SendTicketMessage","Data":{"RequestBody":{"ticketName":"B-1"},"ResponseBody":{"data":{
        "cmds":["p2"],"Cmds":["p1"],"executed_cmds":[{"command":"e2"}],"executedCmds":[{"command":"e1"}]}}}}"#,
    )
    .await;
    let cmds: Vec<String> = walk(&app, "/api/v1/tickets/B-1/commands", None)
        .await
        .iter()
        .map(|c| c["command"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cmds, ["p1", "p2", "e1", "e2"]);
    let mut conn = app.db.acquire().await.unwrap();
    assert!(ticket_audit::store::ledger::verify(&mut conn, None).await.unwrap().ok);
}

/// Identity headers are kept whole: a signature header of 31 entries is stored as sent.
#[tokio::test]
async fn long_identity_headers_are_kept_whole() {
    let app = spawn_app().await;
    let sig: Vec<String> = (0..31).map(|i| format!("v1,{}", base64_of(&[i as u8; 32]))).collect();
    let sig = sig.join(" ");
    assert!(sig.len() > 1400);
    let res = app
        .post_with(fixture("add_ticket.json"), &[("webhook-signature", sig.clone()), ("user-agent", "u".repeat(4000))])
        .await;
    assert_eq!(res.status(), 202);
    let d = app.get_json("/api/v1/deliveries/1").await;
    assert_eq!(d["headers"]["webhook-signature"], sig.as_str());
    assert_eq!(d["headers"]["user-agent"].as_str().unwrap().len(), 4000);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// One delivery may add at most MAX_DELIVERY_ROWS rows: more is a clear 413 and nothing stored.
#[tokio::test]
async fn a_delivery_over_the_row_cap_is_refused_whole() {
    let app = spawn_with(HttpSettings { max_delivery_rows: 100, ..settings() }).await;
    let body = |n: usize| {
        let cmds: Vec<_> = (0..n).map(|i| serde_json::json!({"command": format!("c{i}")})).collect();
        serde_json::json!({"Action": "POST:Ticket/SendTicketMessage", "Data": {"RequestBody": {"ticketName": "H"},
            "ResponseBody": {"data": {"executedCmds": cmds}}}})
        .to_string()
    };
    let res = app.post(body(101)).await;
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = res.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("101"), "{p}");
    assert_eq!(app.count("deliveries").await, 0);
    app.deliver(&body(100)).await;
    assert_eq!(app.count("commands").await, 100);
}

/// Times along seq never go backwards: 150 messages sent at once, read back oldest first.
#[tokio::test]
async fn timeline_times_never_go_backwards_along_seq() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("M-1", "t", "aws")).await;
    let sends = (0..150).map(|i| {
        let app = &app;
        async move { app.deliver(&message("M-1", &format!("u{i}"), "a", &[("ls", "ok")])).await }
    });
    futures::future::join_all(sends).await;
    let timeline = walk(&app, "/api/v1/tickets/M-1/timeline?limit=100", None).await;
    assert_eq!(timeline.len(), 1 + 150 * 3);
    let at = |e: &serde_json::Value| ticket_audit::domain::timestamp::parse(e["at"].as_str().unwrap()).unwrap();
    for w in timeline.windows(2) {
        assert!(at(&w[0]) <= at(&w[1]), "{} then {}", w[0], w[1]);
    }
    let cmds = walk(&app, "/api/v1/commands?order=asc&limit=100", None).await;
    let rec =
        |e: &serde_json::Value| ticket_audit::domain::timestamp::parse(e["recorded_at"].as_str().unwrap()).unwrap();
    for w in cmds.windows(2) {
        assert!(rec(&w[0]) <= rec(&w[1]));
    }
    let deliveries = walk(&app, "/api/v1/deliveries?limit=100", None).await;
    for w in deliveries.windows(2) {
        // Newest first: the later seq's recorded time is never earlier.
        let (newer, older) = (&w[0], &w[1]);
        let t =
            |d: &serde_json::Value| ticket_audit::domain::timestamp::parse(d["recorded_at"].as_str().unwrap()).unwrap();
        assert!(t(newer) >= t(older));
    }
}

/// A panic while storing one delivery (a value the database driver cannot encode, here a time
/// no RFC 3339 sender could have made it send) fails that delivery alone: the writer goes on.
#[tokio::test]
async fn a_panic_in_the_write_path_fails_one_delivery_not_the_writer() {
    let app = spawn_app().await;
    let pool = ticket_audit::store::pool(app_options(&app), 2, std::time::Duration::from_secs(5), None);
    let (writer, task) = ticket_audit::store::Writer::spawn(pool, 8, 8).unwrap();
    let good = |name: &str| {
        ticket_audit::ingest::prepare(
            add_ticket(name, "t", "a").into_bytes(),
            Default::default(),
            time::OffsetDateTime::now_utc(),
            100,
        )
        .unwrap()
    };
    let mut poison = good("P");
    poison.received_at = time::macros::datetime!(9999-12-31 23:59:59 -23:59);
    poison.key = ticket_audit::domain::DeliveryKey::choose(Some(b"poison"), None, None, &[0; 32]).unwrap();
    let (a, p, b) = tokio::join!(writer.submit(good("A")), writer.submit(poison), writer.submit(good("B")));
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert!(p.is_err());
    assert!(writer.is_alive());
    assert!(writer.submit(good("C")).await.is_ok(), "the writer still writes");
    drop(writer);
    task.await.unwrap();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM tickets ORDER BY name").fetch_all(&app.db).await.unwrap();
    assert_eq!(names, ["A", "B", "C"]);
}
