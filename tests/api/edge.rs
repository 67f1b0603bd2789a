//! Hostile input at the edge: slow senders, too many at once, huge headers and bodies,
//! injection attempts. Each gets a clear answer and changes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;

use crate::helpers::*;
use ticket_audit::config::HttpSettings;

#[tokio::test]
async fn a_sender_trickling_its_body_is_cut_off() {
    let app = spawn_with(HttpSettings { request_timeout_secs: 1, ..settings() }).await;
    // One chunk, then nothing, ever.
    let stream = futures::stream::once(async { Ok::<_, std::io::Error>(b"{\"Action\":".to_vec()) })
        .chain(futures::stream::pending());
    let res = app.post(reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(res.status(), 408);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(app.count("deliveries").await, 0);
}

#[tokio::test]
async fn requests_over_the_cap_are_shed_at_once() {
    let app = spawn_with(HttpSettings { max_concurrent_requests: 1, ..settings() }).await;
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_head FOR UPDATE").execute(&mut *tx).await.unwrap();
    let held = {
        let (client, url) = (app.client.clone(), app.url("/webhooks"));
        tokio::spawn(async move { client.post(url).body(fixture("add_ticket.json")).send().await.unwrap().status() })
    };
    until_a_session_waits_for_a_lock(&app.db).await;
    let shed = app.get("/api/v1/tickets", None).await;
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    tx.rollback().await.unwrap();
    assert_eq!(held.await.unwrap(), 202);
    assert_eq!(app.get("/api/v1/tickets", None).await.status(), 200);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let app = spawn_app().await;
    let res = app.post_with(fixture("add_ticket.json"), &[("x-padding", "a".repeat(1 << 20))]).await;
    assert_eq!(res.status(), 431);
    let many: Vec<(&str, String)> = vec![("x-h", "v".into()); 200];
    let res = app.client.post(app.url("/webhooks")).body(fixture("add_ticket.json"));
    let res = many.iter().enumerate().fold(res, |r, (i, (_, v))| r.header(format!("x-h{i}"), v)).send().await;
    assert!(res.map(|r| r.status().is_client_error()).unwrap_or(true), "too many headers: refused or closed");
    assert_eq!(app.count("deliveries").await, 0);
}

#[tokio::test]
async fn a_100_mb_body_is_refused_without_being_read() {
    let app = spawn_app().await;
    let produced = Arc::new(AtomicUsize::new(0));
    let p = produced.clone();
    let chunk = vec![b' '; 64 * 1024];
    // 100 MB, made as it is read, with no Content-Length.
    let stream = futures::stream::iter(0..1600).map(move |_| {
        p.fetch_add(chunk.len(), Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    });
    let res = app.post(reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(res.status(), 413);
    let read = produced.load(Ordering::SeqCst);
    assert!(read < 16 << 20, "the service stopped reading near the limit, not at 100 MB: {read} bytes produced");
    assert_eq!(app.count("deliveries").await, 0);
}

#[tokio::test]
async fn injection_attempts_are_just_strings() {
    let app = spawn_with(HttpSettings { api_tokens: secret("root t=tenant-a"), ..settings() }).await;
    app.deliver(&add_ticket("A-1", "tenant-a", "aws")).await;
    app.deliver(&message("A-1", "x", "y", &[("ls", "ok")])).await;
    for evil in ["' OR '1'='1", "tenant-a' --", "\"; DROP TABLE deliveries; --", "%", "_", "A-1') OR ('1'='1"] {
        let q = crate::limits::urlencode(evil);
        for path in [
            format!("/api/v1/tickets?tenant_id={q}"),
            format!("/api/v1/tickets?agent_name={q}&status={q}"),
            format!("/api/v1/commands?contains={q}&ticket={q}"),
            format!("/api/v1/deliveries?action={q}"),
        ] {
            let res = app.get(&path, Some("t")).await;
            assert_eq!(res.status(), 200, "{path}");
            let page: serde_json::Value = res.json().await.unwrap();
            assert_eq!(page["items"].as_array().unwrap().len(), 0, "{path} matched something");
        }
        assert_eq!(app.get(&format!("/api/v1/tickets/{q}"), Some("t")).await.status(), 404);
    }
    assert_eq!(app.count("deliveries").await, 2, "nothing dropped");
}
