//! With the database out of reach: 503 with Retry-After, never a 2xx, and not ready.

use crate::helpers::*;
use sqlx::postgres::PgConnectOptions;

#[tokio::test]
async fn an_unreachable_database_gets_503_and_nothing_is_acknowledged() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = PgConnectOptions::new().host("127.0.0.1").port(port).username("postgres").database("none");
    let mut pools = pools();
    pools.db_acquire_timeout_ms = 300;
    let app = spawn_on(options, "none".into(), settings(), pools).await;
    let res = app.post(fixture("add_ticket.json")).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = res.json().await.unwrap();
    assert!(!p["detail"].as_str().unwrap().contains("127.0.0.1"), "no internal detail leaks: {p}");

    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let read = app.get("/api/v1/tickets", None).await;
    assert_eq!(read.status(), 503);
    assert_eq!(app.get("/healthz", None).await.status(), 200, "the process itself is up");
}

#[tokio::test]
async fn a_full_write_queue_answers_503() {
    // A queue of one, and a writer held up by a lock we take on the ledger head.
    let app =
        spawn_with(ticket_audit::config::HttpSettings { write_queue_capacity: 1, write_batch_max: 1, ..settings() })
            .await;
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_head FOR UPDATE").execute(&mut *tx).await.unwrap();
    let send = |i: usize| {
        let (client, url) = (app.client.clone(), app.url("/webhooks"));
        tokio::spawn(async move {
            client.post(url).body(message("T", &format!("m{i}"), "a", &[])).send().await.unwrap().status()
        })
    };
    let first = send(0);
    // Wait until the writer has taken the first delivery and waits on our lock.
    until_a_session_waits_for_a_lock(&app.db).await;
    // Two more: one fills the queue, the other finds it full and is refused at once.
    let mut second = send(1);
    let mut third = send(2);
    let (refused, other) = tokio::select! {
        s = &mut second => (s.unwrap(), third),
        s = &mut third => (s.unwrap(), second),
    };
    assert_eq!(refused, 503);
    tx.rollback().await.unwrap();
    assert_eq!(first.await.unwrap(), 202);
    assert_eq!(other.await.unwrap(), 202);
    assert_eq!(app.count("deliveries").await, 2);
}
