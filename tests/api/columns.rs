//! Every column the write path binds holds what it should: deliveries whose every field is
//! distinct, read back column by column. `store_batch.sql` takes its binds by position, so a
//! swapped pair of binds of one type (two text[] columns, say) compiles: it fails here.

#![allow(clippy::type_complexity)] // each tuple is one table's row, column for column

use crate::helpers::*;

#[tokio::test]
async fn every_bound_column_holds_its_own_value() {
    let app = spawn_app().await;
    let add = serde_json::json!({"Action": "POST:Ticket/AddTicket", "Data": {"RequestBody": {"Ticket": {
        "Name": "col-ticket", "Title": "col-title", "Status": "col-status", "TenantId": "col-tenant",
        "CreateTime": "col-create-time", "Assignee": {"AgentName": "col-agent-name", "AgentId": "col-agent-id"}}},
        "StatusCode": 201}})
    .to_string();
    let res = app.post_with(add.clone(), &[("webhook-id", "col-key".into()), ("user-agent", "col-agent".into())]).await;
    assert_eq!(res.status(), 202);
    let msg = serde_json::json!({"Action": "POST:Ticket/SendTicketMessage", "Data": {
        "RequestBody": {"ticketName": "col-ticket", "TenantId": "col-carried", "message": {"Content": "col-user"}},
        "ResponseBody": {"Content": "col-answer", "data": {"Cmds": ["col-proposed"],
            "executedCmds": [{"command": "col-command", "result": "col-result"}]}}}})
    .to_string();
    app.deliver(&msg).await;
    let claim = add.replace("\"col-tenant\"", "\"col-claimed\"");
    app.deliver(&claim).await;

    type DeliveryRow =
        (i64, String, String, Vec<u8>, Vec<u8>, Option<String>, Option<i32>, serde_json::Value, Option<String>, bool);
    let d: DeliveryRow = sqlx::query_as(
        "SELECT seq, dedup_key, key_source, body, body_sha256, action, status_code, headers, normalize_error, unprojected \
         FROM deliveries WHERE seq = 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(d.0, 1);
    assert_eq!((d.1.as_str(), d.2.as_str()), ("col-key", "webhook-id"));
    assert_eq!(d.3, add.as_bytes());
    assert_eq!(d.4, ticket_audit::domain::ledger::sha256(add.as_bytes()));
    assert_eq!((d.5.as_deref(), d.6), (Some("POST:Ticket/AddTicket"), Some(201)));
    assert_eq!(d.7["webhook-id"], "col-key");
    assert_eq!(d.7["user-agent"], "col-agent");
    assert_eq!(d.8, None);
    assert!(!d.9);
    let times: (time::OffsetDateTime, time::OffsetDateTime) =
        sqlx::query_as("SELECT received_at, recorded_at FROM deliveries WHERE seq = 1")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(times.0 <= times.1, "sequenced after received");
    // The API gives received_at with all six digits, as the leaf covers it (the contract).
    let api = app.get_json("/api/v1/deliveries/1").await;
    let given = api["received_at"].as_str().unwrap();
    assert_eq!(given.len(), "2026-01-02T03:04:05.123456Z".len(), "{given}");
    assert_eq!(ticket_audit::domain::timestamp::parse(given), Some(times.0));

    let ev: (Option<String>, Option<i32>, bool, String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT action, status_code, success, kind, ticket_name, carried_tenant FROM action_events WHERE seq = 2",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        ev,
        (
            Some("POST:Ticket/SendTicketMessage".into()),
            None,
            true,
            "conversation".into(),
            Some("col-ticket".into()),
            Some("col-carried".into())
        )
    );

    let msgs: Vec<(i32, String, String, String)> =
        sqlx::query_as("SELECT position, ticket_name, role, content FROM messages WHERE seq = 2 ORDER BY position")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        msgs,
        [
            (1, "col-ticket".into(), "user".into(), "col-user".into()),
            (2, "col-ticket".into(), "agent".into(), "col-answer".into())
        ]
    );

    let cmds: Vec<(i32, Option<String>, String, Option<String>, bool)> = sqlx::query_as(
        "SELECT position, ticket_name, command, result, executed FROM commands WHERE seq = 2 ORDER BY position",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        cmds,
        [
            (3, Some("col-ticket".into()), "col-proposed".into(), None, false),
            (4, Some("col-ticket".into()), "col-command".into(), Some("col-result".into()), true)
        ]
    );

    type TicketRow = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        i64,
        i64,
    );
    let t: TicketRow = sqlx::query_as(
        "SELECT name, title, status, tenant_id, agent_name, agent_id, create_time_text, first_seen_seq, message_count, command_count \
         FROM tickets",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        t,
        (
            "col-ticket".into(),
            Some("col-title".into()),
            Some("col-status".into()),
            Some("col-tenant".into()),
            Some("col-agent-name".into()),
            Some("col-agent-id".into()),
            Some("col-create-time".into()),
            1,
            2,
            2
        )
    );

    let a: (i64, i32, String, String, String, String) =
        sqlx::query_as("SELECT seq, position, ticket_name, kind, owner_tenant, claimed_tenant FROM ticket_anomalies")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(a, (3, 0, "col-ticket".into(), "tenant_conflict".into(), "col-tenant".into(), "col-claimed".into()));

    let head: (i64, Vec<u8>, time::OffsetDateTime) =
        sqlx::query_as("SELECT seq, hash, at FROM ledger_head").fetch_one(&app.db).await.unwrap();
    let last: (Vec<u8>, time::OffsetDateTime) =
        sqlx::query_as("SELECT hash, recorded_at FROM deliveries WHERE seq = 3").fetch_one(&app.db).await.unwrap();
    assert_eq!((head.0, &head.1, head.2), (3, &last.0, last.1));
}
