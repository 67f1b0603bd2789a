//! Who may write: Standard Webhooks signatures (with rotation and a time window), or a bearer token.

use crate::helpers::*;
use ticket_audit::config::HttpSettings;

const S1: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const S2: &str = "C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

async fn signed_app() -> TestApp {
    spawn_with(HttpSettings { webhook_secret: secret(&format!("whsec_{S1} whsec_{S2}")), ..settings() }).await
}

fn headers(id: &str, ts: i64, sig: String) -> Vec<(&'static str, String)> {
    vec![("webhook-id", id.to_owned()), ("webhook-timestamp", ts.to_string()), ("webhook-signature", sig)]
}

#[tokio::test]
async fn signatures_are_checked_and_failures_store_nothing() {
    let app = signed_app().await;
    let body = fixture("add_ticket.json");
    let ts = now();
    let good = sign(S1, "msg_1", ts, body.as_bytes());

    let cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("no headers", vec![]),
        ("bare v1,", headers("msg_1", ts, "v1,".into())),
        ("truncated", headers("msg_1", ts, good[..good.len() - 6].to_owned())),
        ("wrong scheme", headers("msg_1", ts, good.replace("v1,", "v2,"))),
        ("other id", headers("msg_2", ts, good.clone())),
        // Well outside the 300 s window, so a second ticking during the test cannot move it inside.
        ("stale", headers("msg_1", ts - 330, sign(S1, "msg_1", ts - 330, body.as_bytes()))),
        ("future", headers("msg_1", ts + 330, sign(S1, "msg_1", ts + 330, body.as_bytes()))),
        (
            "unknown secret",
            headers("msg_1", ts, sign("c2VjcmV0IG5vdCBpbiB0aGUgbGlzdA==", "msg_1", ts, body.as_bytes())),
        ),
        (
            "not a number",
            headers("msg_1", ts, good.clone())
                .into_iter()
                .map(|(k, v)| if k == "webhook-timestamp" { (k, "soon".into()) } else { (k, v) })
                .collect(),
        ),
    ];
    for (what, h) in cases {
        let res = app.post_with(body.clone(), &h).await;
        assert_eq!(res.status(), 401, "{what}");
        assert_eq!(res.headers()["content-type"], "application/problem+json", "{what}");
        let p: serde_json::Value = res.json().await.unwrap();
        assert_eq!(p["status"], 401);
    }
    assert_eq!(app.count("deliveries").await, 0, "a refused delivery stores nothing");

    // Inside the window, with one good signature among several, and with the rotated-in secret.
    let ok = app
        .post_with(
            body.clone(),
            &headers("msg_1", ts - 290, format!("v1,AAAA {}", sign(S1, "msg_1", ts - 290, body.as_bytes()))),
        )
        .await;
    assert_eq!(ok.status(), 202);
    let rotated = app.post_with(body.clone(), &headers("msg_2", ts, sign(S2, "msg_2", ts, body.as_bytes()))).await;
    assert_eq!(rotated.status(), 202);
    // svix-* headers are aliases.
    let svix = vec![
        ("svix-id", "msg_3".to_string()),
        ("svix-timestamp", ts.to_string()),
        ("svix-signature", sign(S1, "msg_3", ts, body.as_bytes())),
    ];
    assert_eq!(app.post_with(body.clone(), &svix).await.status(), 202);
    assert_eq!(app.count("deliveries").await, 3);
}

#[tokio::test]
async fn the_specification_vectors_pass_through_http_when_time_allows() {
    // The vectors' timestamps are years old: with a window that reaches them, they verify end to end.
    let app = spawn_with(HttpSettings {
        webhook_secret: secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        webhook_tolerance_secs: 100 * 365 * 86400,
        ..settings()
    })
    .await;
    let res = app
        .post_with(
            r#"{"test": 2432232314}"#,
            &headers(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
            ),
        )
        .await;
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn bearer_token_mode() {
    let app = spawn_with(HttpSettings { ingest_token: secret("s3cret-token"), ..settings() }).await;
    let body = fixture("add_ticket.json");
    assert_eq!(app.post(body.clone()).await.status(), 401);
    assert_eq!(app.post_with(body.clone(), &[("authorization", "Bearer nope".into())]).await.status(), 401);
    assert_eq!(
        app.post_with(body.clone(), &[("authorization", "Bearer s3cret-token-longer".into())]).await.status(),
        401
    );
    assert_eq!(app.count("deliveries").await, 0);
    assert_eq!(app.post_with(body, &[("authorization", "Bearer s3cret-token".into())]).await.status(), 202);
}

#[tokio::test]
async fn read_api_needs_a_token_when_tokens_are_set() {
    let app = spawn_with(HttpSettings { api_tokens: secret("admin-token"), ..settings() }).await;
    app.deliver(&fixture("add_ticket.json")).await;
    for path in [
        "/api/v1/tickets",
        "/api/v1/commands",
        "/api/v1/deliveries",
        "/api/v1/deliveries/1",
        "/api/v1/tickets/TICKET-12345",
    ] {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), 401, "{path}");
        assert_eq!(app.get(path, Some("wrong")).await.status(), 401, "{path}");
        assert_eq!(app.get(path, Some("admin-token")).await.status(), 200, "{path}");
    }
    // Health needs none.
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}
