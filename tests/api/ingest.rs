//! Idempotency and acknowledgement: what the sender is told, and what is stored.

use crate::helpers::*;

#[tokio::test]
async fn a_delivery_is_stored_byte_for_byte_and_acknowledged_with_its_id() {
    let app = spawn_app().await;
    let body = fixture("add_ticket.json");
    let id = app.deliver(&body).await;

    let raw = app.get(&format!("/api/v1/deliveries/{id}/raw"), None).await;
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.bytes().await.unwrap().as_ref(), body.as_bytes());

    let (stored, sha): (Vec<u8>, Vec<u8>) = sqlx::query_as("SELECT body, body_sha256 FROM deliveries WHERE seq = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, body.as_bytes());
    assert_eq!(sha, ticket_audit::domain::ledger::sha256(body.as_bytes()).to_vec());
    assert_eq!(app.count("action_events").await, 1);
}

#[tokio::test]
async fn a_repeated_delivery_is_answered_200_with_the_original_id_and_changes_nothing() {
    let app = spawn_app().await;
    let body = message("T-1", "hello", "hi", &[("ls", "ok")]);
    let headers = [("webhook-id", "msg_1".to_string())];
    let first = app.post_with(body.clone(), &headers).await;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let counts = (app.count("deliveries").await, app.count("messages").await, app.count("commands").await);

    let again = app.post_with(body.clone(), &headers).await;
    assert_eq!(again.status(), 200);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["delivery_id"], first["delivery_id"]);
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(counts, (app.count("deliveries").await, app.count("messages").await, app.count("commands").await));
    let ticket = app.get_json("/api/v1/tickets/T-1").await;
    assert_eq!(ticket["message_count"], 2);
    assert_eq!(ticket["command_count"], 1);

    // Without an id header, the body's hash is the key.
    let a = app.post(body.clone()).await;
    assert_eq!(a.status(), 202, "a different key is a different delivery");
    let b = app.post(body.clone()).await;
    assert_eq!(b.status(), 200);
    // svix-id and Idempotency-Key are keys too.
    for h in ["svix-id", "idempotency-key"] {
        let x = app.post_with(body.clone(), &[(h, format!("{h}-1"))]).await;
        assert_eq!(x.status(), 202);
        let y = app.post_with(body.clone(), &[(h, format!("{h}-1"))]).await;
        assert_eq!(y.status(), 200);
    }
}

#[tokio::test]
async fn the_same_delivery_raced_from_20_requests_is_stored_once() {
    let app = spawn_app().await;
    let body = fixture("send_message.json");
    let headers = [("webhook-id", "msg_race".to_string())];
    let requests = (0..20).map(|_| app.post_with(body.clone(), &headers));
    let answers = futures::future::join_all(requests).await;
    let mut ids = Vec::new();
    let mut new = 0;
    for res in answers {
        let status = res.status();
        assert!(status == 202 || status == 200, "every answer is 2xx, got {status}");
        let v: serde_json::Value = res.json().await.unwrap();
        new += usize::from(v["duplicate"] == false);
        ids.push(v["delivery_id"].as_i64().unwrap());
    }
    assert_eq!(new, 1, "exactly one answer reports a new delivery");
    ids.dedup();
    assert_eq!(ids.len(), 1, "every answer carries the same id");
    assert_eq!(app.count("deliveries").await, 1);
    assert_eq!(app.count("commands").await, 2);
}

#[tokio::test]
async fn concurrent_deliveries_get_gapless_sequence_numbers_and_a_valid_chain() {
    let app = spawn_app().await;
    let requests = (0..200).map(|i| app.post(message(&format!("T-{}", i % 7), &format!("m{i}"), "a", &[("ls", "x")])));
    for res in futures::future::join_all(requests).await {
        assert_eq!(res.status(), 202);
    }
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM deliveries ORDER BY seq").fetch_all(&app.db).await.unwrap();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let tickets: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, message_count FROM tickets ORDER BY name").fetch_all(&app.db).await.unwrap();
    assert_eq!(tickets.iter().map(|t| t.1).sum::<i64>(), 400, "batched ticket folds lose no count");
    // Recompute the chain from the rows, as an auditor would.
    let rows = chain_rows(&app.db).await;
    let chain = recompute_chain(&rows);
    for ((seq, .., stored), computed) in rows.iter().zip(&chain) {
        assert_eq!(stored, &computed.to_vec(), "chain breaks at seq {seq}");
    }
    let prev = *chain.last().unwrap();
    let head: (i64, Vec<u8>) = sqlx::query_as("SELECT seq, hash FROM ledger_head").fetch_one(&app.db).await.unwrap();
    assert_eq!(head, (200, prev.to_vec()));
}

#[tokio::test]
async fn one_transaction_per_delivery_is_a_setting_and_behaves_the_same() {
    let app = spawn_with(ticket_audit::config::HttpSettings { write_batch_max: 1, ..settings() }).await;
    let requests = (0..30).map(|i| app.post(message("T-1", &format!("m{i}"), "a", &[])));
    for res in futures::future::join_all(requests).await {
        assert_eq!(res.status(), 202);
    }
    let ticket = app.get_json("/api/v1/tickets/T-1").await;
    assert_eq!(ticket["message_count"], 60);
}

#[tokio::test]
async fn graceful_stop_answers_what_is_in_flight() {
    let mut app = spawn_app().await;
    let requests: Vec<_> = (0..50).map(|i| app.post(message("T-9", &format!("m{i}"), "a", &[]))).collect();
    let answers = futures::future::join_all(requests).await;
    assert!(answers.iter().all(|r| r.status() == 202));
    let db = app.db.clone();
    app.stop().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&db).await.unwrap();
    assert_eq!(n, 50);
}
