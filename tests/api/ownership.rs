//! What was recorded for a tenant stays that tenant's: a ticket belongs to the first tenant stated
//! for it, and no later delivery (an AddTicket for the same name, a ticket read's answer) moves
//! its past to another. The claim is kept as an anomaly for admins and counted in /metrics.

use crate::helpers::*;
use ticket_audit::config::HttpSettings;

fn get_ticket_answer(name: &str, tenant: &str) -> String {
    serde_json::json!({"Action": "GET:Ticket/GetTicket", "Data": {"RequestBody": {"ticketName": name},
        "ResponseBody": {"Ticket": {"Name": name, "TenantId": tenant, "Status": "Stolen"}}, "StatusCode": 200}})
    .to_string()
}

fn list_ticket_answer(name: &str, tenant: &str) -> String {
    serde_json::json!({"Action": "GET:Ticket/ListTicket", "Data": {"RequestBody": {},
        "ResponseBody": {"Tickets": [{"Name": name, "TenantId": tenant}]}, "StatusCode": 200}})
    .to_string()
}

#[tokio::test]
async fn a_later_claim_never_moves_a_ticket_to_another_tenant() {
    let app = spawn_with(HttpSettings { api_tokens: secret("root tok-a=tenant-a tok-b=tenant-b"), ..settings() }).await;
    let counted_before = conflicts_counted(&app).await;
    let created = app.deliver(&add_ticket("T-1", "tenant-a", "aws")).await;
    let secret_cmd =
        app.deliver(&message("T-1", "rotate keys", "done", &[("aws iam create-access-key", "AKIA-SECRET")])).await;
    // Every way a later delivery can name the ticket with another tenant.
    let claims = [
        app.deliver(&add_ticket("T-1", "tenant-b", "k8s")).await,
        app.deliver(&get_ticket_answer("T-1", "tenant-b")).await,
        app.deliver(&list_ticket_answer("T-1", "tenant-b")).await,
    ];

    // Tenant A still reads all of it, on every endpoint.
    let ticket = app.get("/api/v1/tickets/T-1", Some("tok-a")).await;
    assert_eq!(ticket.status(), 200);
    let ticket: serde_json::Value = ticket.json().await.unwrap();
    assert_eq!(ticket["tenant_id"], "tenant-a");
    assert_eq!(walk(&app, "/api/v1/tickets", Some("tok-a")).await.len(), 1);
    let timeline = walk(&app, "/api/v1/tickets/T-1/timeline", Some("tok-a")).await;
    assert!(timeline.iter().any(|e| e["command"] == "aws iam create-access-key"));
    assert_eq!(walk(&app, "/api/v1/tickets/T-1/commands", Some("tok-a")).await.len(), 1);
    assert_eq!(walk(&app, "/api/v1/commands", Some("tok-a")).await.len(), 1);
    for id in [created, secret_cmd] {
        assert_eq!(app.get(&format!("/api/v1/deliveries/{id}"), Some("tok-a")).await.status(), 200);
        assert_eq!(app.get(&format!("/api/v1/deliveries/{id}/raw"), Some("tok-a")).await.status(), 200);
    }

    // Tenant B reads nothing of it, whatever it sent.
    for path in ["/api/v1/tickets/T-1", "/api/v1/tickets/T-1/timeline", "/api/v1/tickets/T-1/commands"] {
        assert_eq!(app.get(path, Some("tok-b")).await.status(), 404, "{path}");
    }
    assert!(walk(&app, "/api/v1/tickets", Some("tok-b")).await.is_empty());
    assert!(walk(&app, "/api/v1/commands", Some("tok-b")).await.is_empty());
    assert!(walk(&app, "/api/v1/commands?tenant_id=tenant-b", Some("root")).await.is_empty());
    for id in [created, secret_cmd] {
        for path in [format!("/api/v1/deliveries/{id}"), format!("/api/v1/deliveries/{id}/raw")] {
            assert_eq!(app.get(&path, Some("tok-b")).await.status(), 404, "{path}");
        }
    }
    let b_deliveries = walk(&app, "/api/v1/deliveries", Some("tok-b")).await;
    assert!(
        b_deliveries.iter().all(|d| d["tenant_id"] == "tenant-b" && d["ticket"] != "T-1"),
        "B sees none of the ticket's deliveries: {b_deliveries:?}"
    );

    // The reports' views and the compliance export say tenant A too.
    let report_tenants: Vec<Option<String>> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM reporting.commands").fetch_all(&app.db).await.unwrap();
    assert_eq!(report_tenants, [Some("tenant-a".to_owned())]);
    let ticket_tenant: Option<String> =
        sqlx::query_scalar("SELECT tenant_id FROM reporting.tickets WHERE ticket = 'T-1'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(ticket_tenant.as_deref(), Some("tenant-a"));
    let mut conn = app.db.acquire().await.unwrap();
    let mut out = Vec::new();
    ticket_audit::store::export::export(&mut conn, None, None, ticket_audit::store::export::Format::Ndjson, &mut out)
        .await
        .unwrap();
    let exported: serde_json::Value = serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(exported["tenant_id"], "tenant-a");

    // The claims are anomalies an admin sees, and only an admin.
    let anomalies = walk(&app, "/api/v1/anomalies", Some("root")).await;
    let mut seqs: Vec<i64> = anomalies.iter().map(|a| a["delivery_id"].as_i64().unwrap()).collect();
    seqs.sort();
    assert_eq!(seqs, claims);
    assert!(anomalies.iter().all(|a| a["owner_tenant"] == "tenant-a" && a["claimed_tenant"] == "tenant-b"));
    assert_eq!(app.get("/api/v1/anomalies", Some("tok-a")).await.status(), 404, "admins only");
    // The counter is the process's, shared with tests running beside this one: at least ours.
    assert!(conflicts_counted(&app).await >= counted_before + 3);

    // Other fields do follow the later deliveries: only the owner is fixed.
    assert_eq!(ticket["status"], "Stolen");
}

#[tokio::test]
async fn reproject_keeps_the_owner_and_the_anomalies() {
    let app = spawn_app().await;
    app.deliver(&message("T-2", "first", "ok", &[])).await; // no tenant stated yet
    app.deliver(&list_ticket_answer("T-2", "tenant-a")).await; // the first tenant stated
    app.deliver(&add_ticket("T-2", "tenant-b", "aws")).await;
    let before: (Option<String>, i64) = sqlx::query_as(
        "SELECT (SELECT tenant_id FROM tickets WHERE name = 'T-2'), (SELECT count(*) FROM ticket_anomalies)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(before, (Some("tenant-a".to_owned()), 1));
    let mut conn = app.db.acquire().await.unwrap();
    ticket_audit::store::reproject::reproject(&mut conn).await.unwrap();
    let after: (Option<String>, i64) = sqlx::query_as(
        "SELECT (SELECT tenant_id FROM tickets WHERE name = 'T-2'), (SELECT count(*) FROM ticket_anomalies)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(after, before);
}

async fn conflicts_counted(app: &TestApp) -> u64 {
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("ticket_audit_tenant_conflicts_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}
