//! A token bound to a tenant sees that tenant's tickets, commands and deliveries, and nothing else:
//! everything else is 404, exactly as if it did not exist.

use crate::helpers::*;
use ticket_audit::config::HttpSettings;

#[tokio::test]
async fn tenant_tokens_see_only_their_tenant_on_every_read_endpoint() {
    let app = spawn_with(HttpSettings { api_tokens: secret("root tok-a=tenant-a tok-b=tenant-b"), ..settings() }).await;
    app.deliver(&add_ticket("A-1", "tenant-a", "aws")).await;
    app.deliver(&message("A-1", "hi", "ok", &[("aws s3 ls", "ok")])).await;
    app.deliver(&add_ticket("B-1", "tenant-b", "k8s")).await;
    app.deliver(&message("B-1", "hi", "ok", &[("kubectl get secrets", "ok")])).await;
    app.deliver(&message("NOBODY-1", "hi", "ok", &[("rm -rf /", "ok")])).await; // no tenant known
    let config_a = app
        .deliver(
            r#"{"Action":"GET:Settings/GetSettings","Data":{"RequestBody":{"TenantId":"tenant-a"},"StatusCode":200}}"#,
        )
        .await;

    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|i| i["id"].to_string().trim_matches('"').to_owned()).collect()
    };
    let json = |res: reqwest::Response| async move {
        assert_eq!(res.status(), 200);
        res.json::<serde_json::Value>().await.unwrap()
    };

    // Lists.
    let a_tickets = json(app.get("/api/v1/tickets", Some("tok-a")).await).await;
    assert_eq!(ids(&a_tickets), ["A-1"]);
    let a_tickets_b = json(app.get("/api/v1/tickets?tenant_id=tenant-b", Some("tok-a")).await).await;
    assert!(ids(&a_tickets_b).is_empty(), "a filter cannot widen the scope");
    let a_commands = json(app.get("/api/v1/commands", Some("tok-a")).await).await;
    assert_eq!(a_commands["items"].as_array().unwrap().len(), 1);
    assert_eq!(a_commands["items"][0]["command"], "aws s3 ls");
    let a_deliveries = json(app.get("/api/v1/deliveries", Some("tok-a")).await).await;
    assert_eq!(ids(&a_deliveries), [config_a.to_string(), "2".into(), "1".into()]);
    let root = json(app.get("/api/v1/deliveries", Some("root")).await).await;
    assert_eq!(root["items"].as_array().unwrap().len(), 6);
    let root_cmds = json(app.get("/api/v1/commands", Some("root")).await).await;
    assert_eq!(root_cmds["items"].as_array().unwrap().len(), 3, "admin sees commands of tickets without a tenant");

    // One thing: the other tenant's is 404, the same answer as a name that does not exist.
    for path in [
        "/api/v1/tickets/B-1",
        "/api/v1/tickets/B-1/timeline",
        "/api/v1/tickets/B-1/commands",
        "/api/v1/tickets/NOBODY-1",
        "/api/v1/deliveries/3",
        "/api/v1/deliveries/3/raw",
        "/api/v1/deliveries/5",
    ] {
        let theirs = app.get(path, Some("tok-a")).await;
        assert_eq!(theirs.status(), 404, "{path}");
        let missing = app
            .get(
                &path.replace("B-1", "ZZZ-9").replace("/3", "/999").replace("NOBODY-1", "ZZZ-9").replace("/5", "/998"),
                Some("tok-a"),
            )
            .await;
        assert_eq!(missing.status(), 404);
        assert_eq!(theirs.text().await.unwrap(), missing.text().await.unwrap(), "{path}: nothing tells them apart");
        assert_eq!(app.get(path, Some("root")).await.status(), 200, "{path} exists for admin");
    }
    for path in [
        "/api/v1/tickets/A-1",
        "/api/v1/tickets/A-1/timeline",
        "/api/v1/tickets/A-1/commands",
        "/api/v1/deliveries/1",
        "/api/v1/deliveries/1/raw",
    ] {
        assert_eq!(app.get(path, Some("tok-a")).await.status(), 200, "{path}");
        assert_eq!(app.get(path, Some("tok-b")).await.status(), 404, "{path}");
    }
}
