//! Bad and hostile input: a clear 4xx that changes nothing; odd but valid JSON kept exactly.

use crate::helpers::*;
use ticket_audit::config::HttpSettings;

async fn problem(res: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["status"], status);
    assert!(p["type"].is_string() && p["title"].is_string() && p["detail"].is_string());
    p
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_get_400_and_store_nothing() {
    let app = spawn_app().await;
    for body in [
        &b""[..],
        b"not json",
        b"[1,2]",
        b"\"a string\"",
        b"42",
        b"{\"a\":",
        b"{} {}",
        b"{\"a\":\"\xff\xfe\"}",
        b"\xef\xbb\xbf{}",
    ] {
        problem(app.post(body.to_vec()).await, 400).await;
    }
    let key = app.post_with("{}", &[("webhook-id", "has space".into())]).await;
    problem(key, 400).await;
    assert_eq!(app.count("deliveries").await, 0);
}

#[tokio::test]
async fn the_body_limit_is_exact_also_for_chunked_uploads() {
    let limit = 4096;
    let app = spawn_with(HttpSettings { max_body_bytes: limit, ..settings() }).await;
    let exact = format!("{{\"a\":\"{}\"}}", "x".repeat(limit - 8));
    assert_eq!(exact.len(), limit);
    assert_eq!(app.post(exact.clone()).await.status(), 202);
    let over = format!("{{\"a\":\"{}\"}}", "x".repeat(limit - 7));
    problem(app.post(over.clone()).await, 413).await;

    // Chunked: no Content-Length, the limit still holds at the byte.
    let chunks = |s: String| {
        let parts: Vec<Result<Vec<u8>, std::io::Error>> = s.into_bytes().chunks(1000).map(|c| Ok(c.to_vec())).collect();
        reqwest::Body::wrap_stream(futures::stream::iter(parts))
    };
    let exact2 = exact.replace("\"a\"", "\"b\"");
    assert_eq!(app.post(chunks(exact2)).await.status(), 202);
    problem(app.post(chunks(over)).await, 413).await;
    assert_eq!(app.count("deliveries").await, 2);
}

#[tokio::test]
async fn a_large_declared_length_is_refused_before_the_body_is_read() {
    let app = spawn_app().await;
    // Declares 100 MB and sends a few bytes: the answer comes from the header alone.
    let res = app
        .client
        .post(app.url("/webhooks"))
        .header("content-length", "100000000")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(vec![Ok::<_, std::io::Error>(b"{".to_vec())])))
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), 413);
    }
    assert_eq!(app.count("deliveries").await, 0);
}

#[tokio::test]
async fn nesting_is_limited_to_128_levels() {
    let app = spawn_app().await;
    let nested = |d: usize| format!("{{\"a\":{}{}}}", "[".repeat(d - 1), "]".repeat(d - 1));
    assert_eq!(app.post(nested(128)).await.status(), 202);
    problem(app.post(nested(129)).await, 400).await;
    problem(app.post(nested(10_000)).await, 400).await;
    assert_eq!(app.count("deliveries").await, 1);
}

#[tokio::test]
async fn nul_characters_are_stored_and_read_back_exactly() {
    let app = spawn_app().await;
    let name = "T-\u{0}-nul";
    let body = serde_json::json!({
        "Action": "POST:Ticket/SendTicketMessage",
        "Data": {"RequestBody": {"ticketName": name, "message": {"Content": "a\u{0}b ␀0 ␀"}},
                 "ResponseBody": {"Content": "\u{0}", "data": {"executedCmds": [{"command": "echo \u{0}", "result": "\u{0}\u{0}"}]}},
                 "StatusCode": 200}
    })
    .to_string();
    assert!(body.contains("\\u0000"));
    let id = app.deliver(&body).await;
    let raw = app.get(&format!("/api/v1/deliveries/{id}/raw"), None).await.bytes().await.unwrap();
    assert_eq!(raw.as_ref(), body.as_bytes());

    let path = format!("/api/v1/tickets/{}/timeline", urlencode(name));
    let timeline = app.get_json(&path).await;
    let items = timeline["items"].as_array().unwrap();
    assert_eq!(items[0]["content"], "a\u{0}b ␀0 ␀");
    assert_eq!(items[1]["content"], "\u{0}");
    assert_eq!(items[2]["command"], "echo \u{0}");
    assert_eq!(items[2]["result"], "\u{0}\u{0}");
    let found = app.get_json(&format!("/api/v1/commands?contains={}", urlencode("echo \u{0}"))).await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    // In SQL the text holds the documented escape, and no U+0000.
    let stored: String =
        sqlx::query_scalar("SELECT content FROM messages WHERE role = 'user'").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, "a␀0b ␀␀0 ␀␀");
}

#[tokio::test]
async fn one_mebibyte_strings_are_kept_whole() {
    let app = spawn_with(HttpSettings { max_body_bytes: 8 << 20, ..settings() }).await;
    let big = "é".repeat(1 << 19); // 1 MiB of UTF-8
    let id = app.deliver(&message("T-big", &big, &big, &[(&big, &big)])).await;
    let ticket = app.get_json("/api/v1/tickets/T-big/timeline").await;
    assert_eq!(ticket["items"][0]["content"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(ticket["items"][2]["result"].as_str().unwrap().len(), 1 << 20);
    // A 1 MiB ticket name cannot be an indexed key: the delivery is stored, with the reason.
    let long_name = message(&"n".repeat(1 << 20), "hi", "there", &[("ls", "x")]);
    let id2 = app.deliver(&long_name).await;
    let d = app.get_json(&format!("/api/v1/deliveries/{id2}")).await;
    assert!(d["normalize_error"].as_str().unwrap().contains("ticket name longer than"));
    assert_eq!(app.count("commands").await, 2, "its executed command is recorded without a ticket");
    assert!(id2 > id);
}

#[tokio::test]
async fn big_numbers_and_duplicate_keys_are_kept_as_received() {
    let app = spawn_app().await;
    let body = r#"{"Action":"GET:Settings/GetSettings","Data":{"RequestBody":{"n":123456789012345678901234567890,"f":1.000000000000000000001,"k":1,"k":2},"StatusCode":200}}"#;
    let id = app.deliver(body).await;
    let raw = app.get(&format!("/api/v1/deliveries/{id}/raw"), None).await.text().await.unwrap();
    assert_eq!(raw, body);
    let one = app.get(&format!("/api/v1/deliveries/{id}"), None).await.text().await.unwrap();
    assert!(one.contains(r#""body":{"Action":"GET:Settings/GetSettings","Data":{"RequestBody":{"n":123456789012345678901234567890,"f":1.000000000000000000001,"k":1,"k":2}"#), "{one}");
}

#[tokio::test]
async fn errors_are_problem_documents_everywhere() {
    let app = spawn_app().await;
    problem(app.get("/nope", None).await, 404).await;
    problem(app.get("/api/v1/tickets/none", None).await, 404).await;
    problem(app.get("/api/v1/deliveries/abc", None).await, 404).await;
    problem(app.get("/api/v1/tickets?limit=0", None).await, 400).await;
    problem(app.get("/api/v1/tickets?limit=501", None).await, 400).await;
    problem(app.get("/api/v1/tickets?cursor=garbage", None).await, 400).await;
    problem(app.get("/api/v1/commands?since=yesterday", None).await, 400).await;
    problem(app.get("/api/v1/commands?unknown=1", None).await, 400).await;
    problem(app.client.get(app.url("/webhooks")).send().await.unwrap(), 405).await;
    let res = app.get("/healthz", None).await;
    assert!(res.headers().contains_key("x-request-id"));
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_openapi_document_describes_the_real_routes() {
    let app = spawn_app().await;
    let doc = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut routes: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase())))
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            "GET /api/v1/anomalies",
            "GET /api/v1/commands",
            "GET /api/v1/commands/{id}/evidence",
            "GET /api/v1/deliveries",
            "GET /api/v1/deliveries/{id}",
            "GET /api/v1/deliveries/{id}/raw",
            "GET /api/v1/ledger/checkpoint",
            "GET /api/v1/ledger/checkpoints",
            "GET /api/v1/ledger/head",
            "GET /api/v1/ledger/key",
            "GET /api/v1/ledger/proof/consistency",
            "GET /api/v1/ledger/proof/inclusion",
            "GET /api/v1/ledger/verify",
            "GET /api/v1/stream",
            "GET /api/v1/tickets",
            "GET /api/v1/tickets/{name}",
            "GET /api/v1/tickets/{name}/commands",
            "GET /api/v1/tickets/{name}/timeline",
            "GET /healthz",
            "GET /metrics",
            "GET /readyz",
            "POST /api/v1/admin/deliveries/{id}/redact",
            "POST /webhooks",
        ]
    );
    // Each documented route is served.
    app.deliver(&fixture("add_ticket.json")).await;
    app.deliver(&message("TICKET-12345", "q", "a", &[("uptime", "up")])).await;
    until_checkpoint(&app.db, 2).await;
    for route in &routes {
        let (method, path) = route.split_once(' ').unwrap();
        let path = match path {
            "/api/v1/commands/{id}/evidence" => "/api/v1/commands/2.3/evidence".to_owned(),
            "/api/v1/ledger/proof/inclusion" => format!("{path}?seq=1&tree_size=2"),
            "/api/v1/ledger/proof/consistency" => format!("{path}?first=1&second=2"),
            _ => path.replace("{id}", "1").replace("{name}", "TICKET-12345"),
        };
        let body = if path.ends_with("/redact") { r#"{"reason": "the route is served"}"# } else { "{}" };
        let res = app.client.request(method.parse().unwrap(), app.url(&path)).body(body).send().await.unwrap();
        assert!(res.status().is_success(), "{route}: {}", res.status());
    }
}
