//! The read API: filters, orders, and pages that neither skip nor repeat while deliveries arrive.

use std::collections::HashSet;

use crate::helpers::*;

#[tokio::test]
async fn ticket_filters_and_order() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("A-1", "t1", "aws")).await;
    app.deliver(&add_ticket("A-2", "t1", "k8s")).await;
    app.deliver(&add_ticket("A-3", "t2", "aws")).await;
    app.deliver(&fixture("add_ticket.json").replace("2025-05-25T15:30:00Z", "2024-01-01T00:00:00Z")).await;

    let names = |v: serde_json::Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names(app.get_json("/api/v1/tickets").await), ["TICKET-12345", "A-3", "A-2", "A-1"]);
    assert_eq!(names(app.get_json("/api/v1/tickets?tenant_id=t1").await), ["A-2", "A-1"]);
    assert_eq!(names(app.get_json("/api/v1/tickets?agent_name=aws").await), ["TICKET-12345", "A-3", "A-1"]);
    assert_eq!(names(app.get_json("/api/v1/tickets?status=Open&tenant_id=t2").await), ["A-3"]);
    assert_eq!(names(app.get_json("/api/v1/tickets?created_before=2025-01-01T00:00:00Z").await), ["TICKET-12345"]);
    assert_eq!(names(app.get_json("/api/v1/tickets?created_after=2025-05-25T15:30:00Z").await), ["A-3", "A-2", "A-1"]);
    assert_eq!(
        names(app.get_json("/api/v1/tickets?created_after=2025-05-25T15:30:00.000001Z").await).len(),
        0,
        "inclusive bound"
    );
}

#[tokio::test]
async fn command_filters_and_both_orders() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("A-1", "t1", "aws")).await;
    app.deliver(&add_ticket("B-1", "t2", "k8s")).await;
    app.deliver(&message("A-1", "u", "a", &[("aws s3 ls", "ok"), ("aws iam list-users", "denied")])).await;
    app.deliver(&message("B-1", "u", "a", &[("kubectl get pods", "ok")])).await;
    let cut: String = sqlx::query_scalar(
        "SELECT to_char(max(received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM deliveries",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    app.deliver(&fixture("send_message.json").replace("TICKET-12345", "A-1")).await;

    let cmds = |v: serde_json::Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|c| c["command"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        cmds(app.get_json("/api/v1/commands?executed=true").await),
        ["aws s3 ls s3://my-bucket", "kubectl get pods", "aws iam list-users", "aws s3 ls"]
    );
    assert_eq!(
        cmds(app.get_json("/api/v1/commands?executed=true&order=asc").await),
        ["aws s3 ls", "aws iam list-users", "kubectl get pods", "aws s3 ls s3://my-bucket"]
    );
    assert_eq!(cmds(app.get_json("/api/v1/commands?executed=false").await), ["aws s3 ls s3://my-bucket"]);
    assert_eq!(cmds(app.get_json("/api/v1/commands?tenant_id=t2").await), ["kubectl get pods"]);
    assert_eq!(cmds(app.get_json("/api/v1/commands?agent_name=aws&contains=iam").await), ["aws iam list-users"]);
    assert_eq!(cmds(app.get_json("/api/v1/commands?ticket=B-1").await), ["kubectl get pods"]);
    assert_eq!(cmds(app.get_json("/api/v1/commands?contains=%25").await).len(), 0, "no wildcards in contains");
    assert_eq!(cmds(app.get_json(&format!("/api/v1/commands?until={cut}")).await).len(), 2, "until is exclusive");
    assert_eq!(cmds(app.get_json(&format!("/api/v1/commands?since={cut}")).await).len(), 3, "since is inclusive");
    let one = &app.get_json("/api/v1/commands?ticket=B-1").await["items"][0];
    for field in [
        "id",
        "ticket",
        "tenant_id",
        "agent_name",
        "agent_id",
        "command",
        "result",
        "executed",
        "recorded_at",
        "seq",
        "delivery_id",
    ] {
        assert!(one.get(field).is_some(), "command has {field}");
    }
}

#[tokio::test]
async fn pages_neither_skip_nor_repeat_while_deliveries_arrive() {
    let app = spawn_app().await;
    for i in 0..60 {
        app.deliver(&message(&format!("P-{i:02}"), "u", "a", &[(&format!("cmd {i}"), "ok")])).await;
    }
    let before_tickets: HashSet<String> =
        sqlx::query_scalar("SELECT name FROM tickets").fetch_all(&app.db).await.unwrap().into_iter().collect();
    let before_commands: HashSet<String> =
        sqlx::query_scalar("SELECT command FROM commands").fetch_all(&app.db).await.unwrap().into_iter().collect();

    // Keep writing while walking every list.
    let writer = {
        let (client, url) = (app.client.clone(), app.url("/webhooks"));
        tokio::spawn(async move {
            for i in 0..80 {
                let body = message(&format!("N-{i:02}"), "u", "a", &[(&format!("new {i}"), "ok")]);
                assert_eq!(client.post(&url).body(body).send().await.unwrap().status(), 202);
            }
        })
    };
    let walks = async {
        let t = walk(&app, "/api/v1/tickets?limit=7", None).await;
        let c = walk(&app, "/api/v1/commands?limit=6", None).await;
        let ca = walk(&app, "/api/v1/commands?limit=9&order=asc", None).await;
        let d = walk(&app, "/api/v1/deliveries?limit=11", None).await;
        (t, c, ca, d)
    };
    let (tickets, commands, commands_asc, deliveries) = walks.await;
    writer.await.unwrap();

    let check = |items: &[serde_json::Value], field: &str, before: &HashSet<String>, what: &str| {
        let seen: Vec<String> = items.iter().map(|i| i[field].as_str().unwrap().to_owned()).collect();
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{what}: an item repeated");
        for b in before {
            assert!(unique.contains(b), "{what}: {b} skipped");
        }
    };
    check(&tickets, "name", &before_tickets, "tickets");
    check(&commands, "command", &before_commands, "commands");
    check(&commands_asc, "command", &before_commands, "commands asc");
    let ids: Vec<i64> = deliveries.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "deliveries newest first, no repeats");
    assert!((1..=60).all(|i| ids.contains(&i)), "no stored delivery skipped");
    // Timeline and a ticket's commands page too.
    let tl = walk(&app, "/api/v1/tickets/P-01/timeline?limit=1", None).await;
    assert_eq!(tl.len(), 3);
}

#[tokio::test]
async fn deliveries_list_and_detail() {
    let app = spawn_app().await;
    let id = app.deliver(&fixture("add_ticket.json")).await;
    app.deliver(&fixture("update_agent_definition.json")).await;
    let d = app.get_json(&format!("/api/v1/deliveries/{id}")).await;
    assert_eq!(d["id"], id);
    assert_eq!(d["action"], "POST:Ticket/AddTicket");
    assert_eq!(d["status_code"], 200);
    assert_eq!(d["ticket"], "TICKET-12345");
    assert_eq!(d["body"]["Data"]["RequestBody"]["Ticket"]["Name"], "TICKET-12345");
    assert_eq!(d["hash"].as_str().unwrap().len(), 64);
    let list = app.get_json("/api/v1/deliveries").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["items"][0].get("body").is_none(), "lists carry metadata only");
    let future = app.get_json("/api/v1/deliveries?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["items"].as_array().unwrap().len(), 0);
    assert_eq!(app.get("/api/v1/deliveries/999", None).await.status(), 404);
    assert_eq!(app.get("/api/v1/deliveries/999/raw", None).await.status(), 404);
}
