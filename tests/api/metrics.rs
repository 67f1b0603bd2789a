//! `GET /metrics`: Prometheus text with the ingest outcomes, latencies, batches, queue and pools.

use crate::helpers::*;

#[tokio::test]
async fn metrics_count_outcomes_and_time_requests() {
    let app = spawn_app().await;
    // The recorder is process-wide and other tests run at the same time: compare before and after.
    let before = app.get("/metrics", None).await.text().await.unwrap();
    app.deliver(&fixture("add_ticket.json")).await;
    app.deliver(&fixture("send_message.json")).await;
    assert_eq!(app.post(fixture("add_ticket.json")).await.status(), 200);
    assert_eq!(app.post("not json").await.status(), 400);
    app.get_json("/api/v1/tickets").await;

    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let after = res.text().await.unwrap();
    let delta = |p: &str| sample(&after, p) - sample(&before, p);
    assert!(delta(r#"ticket_audit_deliveries_total{outcome="stored""#) >= 2.0, "{after}");
    assert!(delta(r#"ticket_audit_deliveries_total{outcome="duplicate""#) >= 1.0);
    assert!(delta(r#"ticket_audit_deliveries_total{outcome="rejected",reason="invalid"}"#) >= 1.0);
    assert!(delta("ticket_audit_ingest_seconds_count") >= 4.0);
    assert!(delta("ticket_audit_write_batch_size_count") >= 1.0);
    assert!(after.contains("ticket_audit_ingest_seconds_bucket{"));
    assert!(
        after.contains(r#"ticket_audit_http_request_seconds_count{route="/api/v1/tickets",method="GET",status="200"}"#)
    );
    assert!(after.contains("ticket_audit_write_queue_depth"));
    assert!(after.contains(r#"ticket_audit_db_pool_connections{pool="write",state="idle"}"#));
}
