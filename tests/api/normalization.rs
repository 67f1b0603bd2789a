//! Each action family, end to end: what lands in the tables and what the API shows.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn add_ticket_then_messages_build_the_ticket_and_its_timeline() {
    let app = spawn_app().await;
    app.deliver(&fixture("add_ticket.json")).await;
    app.deliver(&fixture("send_message.json")).await;
    app.deliver(&fixture("send_message_snake_case.json")).await;
    app.deliver(&fixture("send_message_no_response.json")).await;

    let t = app.get_json("/api/v1/tickets/TICKET-12345").await;
    assert_eq!(t["title"], "Need help with AWS permissions");
    assert_eq!(t["status"], "Open");
    assert_eq!(t["tenant_id"], "ea73f43c-dda3-4fb5-998d-54f262238225");
    assert_eq!(t["assignee"], json!({"agent_name": "aws", "agent_id": "agent-123456"}));
    assert_eq!(t["created_at"], "2025-05-25T15:30:00Z");
    assert_eq!(t["message_count"], 5);
    assert_eq!(t["command_count"], 6);

    let kinds: Vec<String> = walk(&app, "/api/v1/tickets/TICKET-12345/timeline?limit=3", None)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "ticket_created",
            "user_message",
            "agent_message",
            "command_proposed",
            "command_executed",
            "user_message",
            "agent_message",
            "command_proposed",
            "command_proposed",
            "command_executed",
            "command_executed",
            "user_message"
        ]
    );
    let cmds = app.get_json("/api/v1/tickets/TICKET-12345/commands").await;
    let executed: Vec<_> = cmds["items"].as_array().unwrap().iter().filter(|c| c["executed"] == true).collect();
    assert_eq!(executed.len(), 3);
    assert_eq!(executed[0]["result"], "AccessDenied: Access Denied");
    assert_eq!(executed[0]["agent_name"], "aws");
}

#[tokio::test]
async fn a_message_before_its_ticket_creates_it_and_a_later_add_ticket_fills_it_in() {
    let app = spawn_app().await;
    app.deliver(&fixture("send_message.json")).await;
    let early = app.get_json("/api/v1/tickets/TICKET-12345").await;
    assert_eq!(early["title"], serde_json::Value::Null);
    assert_eq!(early["message_count"], 2);
    assert_eq!(early["command_count"], 2);

    app.deliver(&fixture("add_ticket.json")).await;
    let late = app.get_json("/api/v1/tickets/TICKET-12345").await;
    assert_eq!(late["title"], "Need help with AWS permissions");
    assert_eq!(late["first_seen_at"], early["first_seen_at"], "first seen stays with the first delivery");
    assert_eq!(late["message_count"], 2);
    let kinds: Vec<_> = app.get_json("/api/v1/tickets/TICKET-12345/timeline").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("user_message"));
    assert_eq!(kinds.last().map(String::as_str), Some("ticket_created"));
}

#[tokio::test]
async fn a_failed_delivery_changes_no_ticket_field_but_its_executed_commands_are_recorded() {
    let app = spawn_app().await;
    app.deliver(&fixture("add_ticket.json")).await;
    let failed_update = fixture("add_ticket.json")
        .replace("\"Open\"", "\"Closed\"")
        .replace("\"StatusCode\":200", "\"StatusCode\":503");
    app.deliver(&failed_update).await;
    let failed_message = message("TICKET-12345", "rm it", "done", &[("kubectl delete ns prod", "namespace deleted")])
        .replace("\"StatusCode\":200", "\"StatusCode\":500");
    app.deliver(&failed_message).await;

    let t = app.get_json("/api/v1/tickets/TICKET-12345").await;
    assert_eq!(t["status"], "Open", "a non-2xx delivery states no field");
    assert_eq!(t["message_count"], 0, "a failed message is not recorded as said");
    assert_eq!(t["command_count"], 1);
    let cmds = app.get_json("/api/v1/commands?executed=true").await;
    assert_eq!(cmds["items"][0]["command"], "kubectl delete ns prod");
    let timeline = app.get_json("/api/v1/tickets/TICKET-12345/timeline").await;
    let items = timeline["items"].as_array().unwrap();
    let actions: Vec<_> = items.iter().filter(|e| e["kind"] == "action").collect();
    assert_eq!(actions.len(), 2);
    assert!(actions.iter().all(|a| a["success"] == false));
    assert_eq!(actions[0]["status_code"], 503);

    // A failed AddTicket for a new ticket makes the name known, and nothing more.
    app.deliver(&fixture("add_ticket_failed.json")).await;
    let stub = app.get_json("/api/v1/tickets/TICKET-12399").await;
    assert_eq!(stub["title"], serde_json::Value::Null);
    assert_eq!(stub["tenant_id"], serde_json::Value::Null);
}

#[tokio::test]
async fn reads_configuration_and_unknown_actions_are_recorded_as_events() {
    let app = spawn_app().await;
    let bodies = [
        fixture("list_ticket.json"),
        fixture("update_agent_definition.json"),
        fixture("unknown_action.json"),
        json!({"Action": "GET:Ticket/GetTicket", "Data": {"RequestBody": {"ticketName": "TICKET-7"}, "ResponseBody": {"Name": "TICKET-7", "Status": "Resolved"}, "StatusCode": 200}}).to_string(),
        json!({"Action": "GET:VectorDb/ListVectorDb", "Data": {"RequestBody": null, "ResponseBody": [1, 2], "StatusCode": 200}}).to_string(),
        json!({"no": "action at all"}).to_string(),
        json!({"Action": ["not", "a", "string"], "Data": 5}).to_string(),
        json!({"Action": "POST:Ticket/SendTicketMessage", "Data": {"RequestBody": "??", "StatusCode": "OK"}}).to_string(),
        json!({"Action": "POST:Ticket/AddTicket", "Data": {"RequestBody": {"Ticket": {"Name": "T-odd", "CreateTime": "last tuesday", "Assignee": "nobody"}}, "StatusCode": 201}}).to_string(),
    ];
    for b in &bodies {
        app.deliver(b).await;
    }
    assert_eq!(app.count("deliveries").await, bodies.len() as i64);
    assert_eq!(app.count("action_events").await, bodies.len() as i64);
    let listed = app.get_json("/api/v1/tickets/TICKET-12345").await;
    assert_eq!(listed["status"], "Open", "a successful ListTicket tells the ticket's fields");
    let got = app.get_json("/api/v1/tickets/TICKET-7").await;
    assert_eq!(got["status"], "Resolved");
    let odd = app.get_json("/api/v1/tickets/T-odd").await;
    assert_eq!(odd["created_at"], serde_json::Value::Null);
    assert_eq!(odd["create_time_text"], "last tuesday");
    assert_eq!(odd["assignee"], serde_json::Value::Null);

    let errors: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT action, normalize_error FROM deliveries ORDER BY seq").fetch_all(&app.db).await.unwrap();
    assert_eq!(errors[1], (Some("PUT:AgentDefinition/UpdateAgentDefinition".into()), None));
    assert_eq!(errors[2].0.as_deref(), Some("POST:Workspace/ArchiveWorkspace"));
    assert_eq!(errors[5], (None, Some("no Action".into())));
    assert!(errors[7].1.as_deref().unwrap().contains("StatusCode"));
    let by_action = app.get_json("/api/v1/deliveries?action=PUT:AgentDefinition/UpdateAgentDefinition").await;
    assert_eq!(by_action["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_24_documented_actions_are_all_taken() {
    let app = spawn_app().await;
    for (i, action) in ticket_audit::domain::delivery::DOCUMENTED_ACTIONS.iter().enumerate() {
        let body = json!({"Action": action, "Data": {"RequestBody": {"ticketName": "T-all", "i": i}, "ResponseBody": {}, "StatusCode": 200}});
        app.deliver(&body.to_string()).await;
    }
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM action_events ORDER BY seq").fetch_all(&app.db).await.unwrap();
    assert_eq!(actions, ticket_audit::domain::delivery::DOCUMENTED_ACTIONS.to_vec());
}
