//! Values an attacker picks: times at the edges of what the record holds, forged cursors,
//! repeated identity headers, odd timestamp spellings, and the headers every answer carries.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::helpers::*;
use ticket_audit::config::HttpSettings;

/// `n` values drawn from `strategy`, for tests that send each over HTTP.
fn samples<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect()
}

fn is_problem(res: &reqwest::Response) -> bool {
    res.headers().get("content-type").is_some_and(|v| v == "application/problem+json")
}

// ------------------------------------------------------------------ times read back

#[tokio::test]
async fn times_postgres_holds_but_rfc_3339_cannot_write_are_read_back_not_500() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("T-edge", "tenant-a", "agent")).await;
    app.deliver(&message("T-edge", "hello", "hi", &[])).await;
    app.deliver(&add_ticket("T-later", "tenant-a", "agent")).await;
    // (PostgreSQL's spelling, the API's): from PostgreSQL's earliest through years 0 and -1 to the
    // record's own range. RFC 3339 writes years 0000 to 9999; the others come in the expanded form.
    let edges = [
        ("4713-01-01 00:00:00+00 BC", "-4712-01-01T00:00:00.000000Z"),
        ("0002-12-31 23:59:00+00 BC", "-0001-12-31T23:59:00.000000Z"),
        ("0001-12-31 23:59:00.5+00 BC", "0000-12-31T23:59:00.5Z"),
        ("0001-01-01 00:00:00+00", "0001-01-01T00:00:00Z"),
        ("9999-12-31 23:59:59.999999+00", "9999-12-31T23:59:59.999999Z"),
    ];
    for (pg, api) in edges {
        for sql in [
            "UPDATE tickets SET created_at = $1::timestamptz WHERE name = 'T-edge'",
            "UPDATE messages SET received_at = $1::timestamptz WHERE ticket_name = 'T-edge'",
            "UPDATE action_events SET received_at = $1::timestamptz WHERE ticket_name = 'T-edge'",
        ] {
            sqlx::query(sql).bind(pg).execute(&app.db).await.unwrap();
        }
        let one = app.get("/api/v1/tickets/T-edge", None).await;
        assert_eq!(one.status(), 200, "{pg}");
        let one: serde_json::Value = one.json().await.unwrap();
        assert_eq!(one["created_at"], api, "{pg}");
        // The whole list, page by page past the ticket, reads.
        let all = walk(&app, "/api/v1/tickets?limit=1", None).await;
        assert_eq!(all.len(), 2, "{pg}");
        let timeline = walk(&app, "/api/v1/tickets/T-edge/timeline?limit=1", None).await;
        assert!(timeline.iter().all(|e| e["at"] == api), "{pg}: {timeline:?}");
    }
}

// ------------------------------------------------------------------ query times

/// The record's range, stated apart from the service: 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999Z, compared as instants.
fn storable(s: &str) -> bool {
    OffsetDateTime::parse(s, &Rfc3339)
        .is_ok_and(|t| t >= datetime!(0001-01-01 0:00 UTC) && t <= datetime!(9999-12-31 23:59:59.999_999 UTC))
}

/// RFC 3339 texts over the whole grammar: years 0000 to 9999, every offset RFC 3339 can write,
/// 0 to 9 fractional digits; and a few that are not RFC 3339 at all.
fn rfc3339_texts() -> impl Strategy<Value = String> {
    let offset = proptest::prop_oneof![
        proptest::strategy::Just("Z".to_owned()),
        (proptest::bool::ANY, 0u8..=23, 0u8..=59)
            .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
    ];
    let frac = proptest::prop_oneof![proptest::strategy::Just(String::new()), "\\.[0-9]{1,9}"];
    // Years near both ends often: that is where the answer changes.
    let year = proptest::prop_oneof![0u16..=9999, 0u16..=1, 9998u16..=9999];
    let day = (1u8..=12, 1u8..=28, 0u8..=23, 0u8..=59, 0u8..=59);
    let valid = (year, day, frac, offset)
        .prop_map(|(y, (mo, d, h, mi, s), f, o)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{f}{o}"));
    proptest::prop_oneof![8 => valid, 1 => "[0-9T:Z+-]{0,25}"]
}

#[tokio::test]
async fn query_times_are_taken_only_within_the_records_range() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("T-1", "tenant-a", "agent")).await;
    let mut values = samples(rfc3339_texts(), 60);
    values.extend(
        [
            "9999-12-31T23:59:59-23:59",    // year 10000 in UTC
            "9999-12-31T23:59:59.999999Z",  // the last microsecond
            "9999-12-31T23:59:59.9999995Z", // after it
            "0000-01-01T00:00:00+00:01",    // year -1 in UTC
            "0001-01-01T00:00:00+00:01",    // year 0 in UTC
            "0001-01-01T00:00:00Z",         // the first microsecond
            "0000-12-31T23:59:59.999999-00:01",
            "2026-01-01T00:00:00.123456789+05:30",
            "",
            "yesterday",
            "2026-02-30T00:00:00Z",
        ]
        .map(String::from),
    );
    let params = [
        ("/api/v1/commands", "since"),
        ("/api/v1/commands", "until"),
        ("/api/v1/deliveries", "since"),
        ("/api/v1/deliveries", "until"),
        ("/api/v1/tickets", "created_after"),
        ("/api/v1/tickets", "created_before"),
    ];
    for v in &values {
        for (path, name) in params {
            let res = app.client.get(app.url(path)).query(&[(name, v)]).send().await.unwrap();
            let want = if storable(v) { 200 } else { 400 };
            assert_eq!(res.status(), want, "{path}?{name}={v}");
            if want == 400 {
                assert!(is_problem(&res), "{path}?{name}={v}");
            }
        }
    }
}

#[tokio::test]
async fn time_filters_are_exact_at_the_microsecond() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("T-1", "tenant-a", "agent")).await;
    let at: String = sqlx::query_scalar(
        "SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') FROM deliveries",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    // The stored time is a whole microsecond: half a microsecond after it is after it.
    let count = |q: String| {
        let app = &app;
        async move {
            let page: serde_json::Value = app.get_json(&format!("/api/v1/deliveries?{q}")).await;
            page["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(count(format!("since={at}Z")).await, 1, "since is inclusive");
    assert_eq!(count(format!("since={at}5Z")).await, 0, "since half a microsecond later");
    assert_eq!(count(format!("until={at}Z")).await, 0, "until is exclusive");
    assert_eq!(count(format!("until={at}5Z")).await, 1, "until half a microsecond later");
}

// ------------------------------------------------------------------ cursors and limits

fn cursor(v: serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn forged_cursors_and_limits_are_400_never_500() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("T-1", "tenant-a", "agent")).await;
    app.deliver(&message("T-1", "u", "a", &[("ls", "ok")])).await;
    let micros = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000) as i64;
    // Tickets' cursors hold a time: only one the record can hold is taken.
    let times = [
        (micros(datetime!(-9999-01-01 0:00 UTC)), 400),
        (micros(datetime!(-4713-01-01 0:00 UTC)), 400),
        (micros(datetime!(0000-12-31 23:59:59.999999 UTC)), 400),
        (micros(datetime!(0001-01-01 0:00 UTC)), 200),
        (micros(datetime!(9999-12-31 23:59:59.999999 UTC)), 200),
        (micros(datetime!(9999-12-31 23:59:59.999999 UTC)) + 1, 400),
        (i64::MIN, 400),
        (i64::MAX, 400),
    ];
    for (m, want) in times {
        let res = app.get(&format!("/api/v1/tickets?cursor={}", cursor(serde_json::json!([m, "T-1"]))), None).await;
        assert_eq!(res.status(), want, "ticket cursor at {m} µs");
    }
    for m in samples(proptest::num::i64::ANY, 50) {
        let res = app.get(&format!("/api/v1/tickets?cursor={}", cursor(serde_json::json!([m, "T-1"]))), None).await;
        assert!([200, 400].contains(&res.status().as_u16()), "ticket cursor at {m} µs: {}", res.status());
    }
    // Sequence numbers: any i64 is a place in the order; beyond i64, or of the wrong shape, 400.
    let huge = serde_json::json!(18_446_744_073_709_551_616u128 as f64);
    let shaped = [
        ("/api/v1/commands", serde_json::json!([i64::MAX, i32::MAX, false]), 200),
        ("/api/v1/commands", serde_json::json!([i64::MIN, i32::MIN, false]), 200),
        ("/api/v1/commands?order=asc", serde_json::json!([i64::MIN, i32::MIN, true]), 200),
        ("/api/v1/commands", serde_json::json!([huge, 0, false]), 400),
        ("/api/v1/commands", serde_json::json!([1, 2_147_483_648i64, false]), 400),
        ("/api/v1/tickets/T-1/timeline", serde_json::json!([i64::MAX, i32::MAX]), 200),
        ("/api/v1/tickets/T-1/timeline", serde_json::json!([-1, -1]), 200),
        ("/api/v1/tickets/T-1/timeline", serde_json::json!(["1", 0]), 400),
        ("/api/v1/tickets/T-1/commands", serde_json::json!([i64::MIN, 0]), 200),
        ("/api/v1/anomalies", serde_json::json!([i64::MIN, i32::MIN]), 200),
        ("/api/v1/anomalies", serde_json::json!([huge, 0]), 400),
        ("/api/v1/deliveries", serde_json::json!(i64::MAX), 200),
        ("/api/v1/deliveries", serde_json::json!(i64::MIN), 200),
        ("/api/v1/deliveries", huge.clone(), 400),
        ("/api/v1/deliveries", serde_json::json!(null), 400),
    ];
    for (path, c, want) in shaped {
        let sep = if path.contains('?') { '&' } else { '?' };
        let res = app.get(&format!("{path}{sep}cursor={}", cursor(c.clone())), None).await;
        assert_eq!(res.status(), want, "{path} cursor {c}");
    }
    // Limits: 1 to 500, whatever else is sent.
    let mut limits: Vec<String> = samples(proptest::num::i64::ANY, 30).iter().map(i64::to_string).collect();
    limits.extend(["0", "1", "500", "501", "-1", "1e3", "", "99999999999999999999", "+5", "5 "].map(String::from));
    for l in &limits {
        let want = if l.parse::<i64>().is_ok_and(|n| (1..=500).contains(&n)) { 200 } else { 400 };
        for path in ["/api/v1/tickets", "/api/v1/commands", "/api/v1/deliveries", "/api/v1/tickets/T-1/timeline"] {
            let res = app.client.get(app.url(path)).query(&[("limit", l)]).send().await.unwrap();
            assert_eq!(res.status(), want, "{path}?limit={l}");
        }
    }
    // The other query values and path parameters.
    for (q, want) in [
        ("/api/v1/commands?executed=yes", 400),
        ("/api/v1/commands?executed=true", 200),
        ("/api/v1/commands?order=ASC", 400),
        ("/api/v1/commands?order=asc", 200),
        ("/api/v1/commands?contains=%00", 200),
        ("/api/v1/commands?ticket=%00%E2%90%80", 200),
        ("/api/v1/tickets?tenant_id=%00", 200),
        ("/api/v1/deliveries?action=%FF", 200),
        ("/api/v1/tickets/%00", 404),
        ("/api/v1/tickets/%FF%FE", 404),
        ("/api/v1/deliveries/9223372036854775808", 404),
        ("/api/v1/deliveries/-9223372036854775808", 404),
        ("/api/v1/deliveries/-1/raw", 404),
        ("/api/v1/commands?limit=1&limit=2", 400),
    ] {
        assert_eq!(app.get(q, None).await.status(), want, "{q}");
    }
}

// ------------------------------------------------------------------ identity headers

const S1: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A Standard Webhooks signature over the timestamp exactly as spelled.
fn sign_as_spelled(id: &str, ts: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&B64.decode(S1).unwrap()).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_signed_delivery_replayed_with_a_second_webhook_id_is_refused() {
    let app = spawn_with(HttpSettings { webhook_secret: secret(&format!("whsec_{S1}")), ..settings() }).await;
    let body = add_ticket("T-replay", "tenant-a", "agent");
    let ts = now().to_string();
    let signed = vec![
        ("webhook-id", "msg_1".to_owned()),
        ("webhook-timestamp", ts.clone()),
        ("webhook-signature", sign_as_spelled("msg_1", &ts, &body)),
    ];
    assert_eq!(app.post_with(body.clone(), &signed).await.status(), 202);
    for extra in [("webhook-id", "msg_2"), ("svix-id", "msg_3"), ("idempotency-key", "k")] {
        // The captured delivery, byte for byte, with a second value after (and before) the signed one.
        let mut after = signed.clone();
        after.push((extra.0, extra.1.to_owned()));
        let mut before = vec![(extra.0, extra.1.to_owned())];
        before.extend(signed.clone());
        for replay in [after, before] {
            let res = app.post_with(body.clone(), &replay).await;
            let status = res.status();
            if extra.0 == "webhook-id" {
                assert_eq!(status, 400, "{replay:?}");
                assert!(is_problem(&res));
            } else {
                // Another header naming a key: the key is still webhook-id's, the one signed.
                assert_eq!(status, 200, "{replay:?}");
            }
        }
    }
    // The same value twice is that value: the original, a duplicate.
    let mut twice = signed.clone();
    twice.push(("webhook-id", "msg_1".to_owned()));
    twice.push(("webhook-signature", signed[2].1.clone()));
    let res = app.post_with(body.clone(), &twice).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["duplicate"], true);
    assert_eq!(app.count("deliveries").await, 1, "stored once");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM action_events").fetch_one(&app.db).await.unwrap();
    assert_eq!(events, 1, "projected once");
}

#[tokio::test]
async fn every_identity_header_must_have_one_value() {
    let app = spawn_app().await;
    let names = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "idempotency-key",
    ];
    for (i, name) in names.iter().enumerate() {
        let body = add_ticket(&format!("T-{i}"), "tenant-a", "agent");
        let two = app.post_with(body.clone(), &[(name, "one".into()), (name, "two".into())]).await;
        assert_eq!(two.status(), 400, "{name}: two values");
        assert!(is_problem(&two));
        // A timestamp's value must be one too (integer seconds), whatever the authentication.
        let value = if name.ends_with("timestamp") { (1_700_000_000 + i).to_string() } else { format!("v-{i}") };
        let same = app.post_with(body.clone(), &[(name, value.clone()), (name, value.clone())]).await;
        assert_eq!(same.status(), 202, "{name}: the same value twice is one value");
        let stored: serde_json::Value = sqlx::query_scalar("SELECT headers FROM deliveries ORDER BY seq DESC LIMIT 1")
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!(stored[name], value, "{name}: stored once, as sent");
    }
    assert_eq!(app.count("deliveries").await, names.len() as i64);
}

// ------------------------------------------------------------------ webhook-timestamp

#[tokio::test]
async fn webhook_timestamps_are_plain_integer_seconds() {
    let app = spawn_with(HttpSettings { webhook_secret: secret(&format!("whsec_{S1}")), ..settings() }).await;
    let n = now();
    let spellings = [
        (format!("000{n}"), 401),
        (format!("0{n}"), 401),
        (format!("+{n}"), 401),
        (format!("{n}.0"), 401),
        (format!("{n}e0"), 401),
        (format!("{}", n * 1000), 401), // milliseconds
        (n.to_string(), 202),
    ];
    for (i, (ts, want)) in spellings.into_iter().enumerate() {
        let body = add_ticket(&format!("T-{i}"), "tenant-a", "agent");
        let id = format!("msg_{i}");
        let sig = sign_as_spelled(&id, &ts, &body);
        let res = app
            .post_with(body, &[("webhook-id", id), ("webhook-timestamp", ts.clone()), ("webhook-signature", sig)])
            .await;
        assert_eq!(res.status(), want, "webhook-timestamp: {ts}");
    }
    assert_eq!(app.count("deliveries").await, 1);
}

/// Without signatures, a webhook-timestamp that is there must still have the documented form.
#[tokio::test]
async fn unsigned_deliveries_with_a_malformed_timestamp_are_400() {
    let app = spawn_app().await;
    for ts in ["", "+1", "0001", "1e9", "1 2", "abc", "1234567890123"] {
        let res = app.post_with("{}", &[("webhook-timestamp", ts.to_owned())]).await;
        assert_eq!(res.status(), 400, "webhook-timestamp: {ts:?}");
        let res = app.post_with("{}", &[("svix-timestamp", ts.to_owned())]).await;
        assert_eq!(res.status(), 400, "svix-timestamp: {ts:?}");
    }
    assert_eq!(app.count("deliveries").await, 0);
    assert_eq!(app.post_with("{}", &[("webhook-timestamp", "1700000000".into())]).await.status(), 202);
}

// ------------------------------------------------------------------ answer headers

#[tokio::test]
async fn answers_are_not_sniffed_and_tenant_data_is_not_cached() {
    let app = spawn_with(HttpSettings { api_tokens: secret("root t=tenant-a"), ..settings() }).await;
    let id = app.deliver(&add_ticket("T-1", "tenant-a", "agent")).await;
    app.deliver(&message("T-1", "u", "a", &[("ls", "ok")])).await;
    let tenant_data = [
        "/api/v1/tickets".to_owned(),
        "/api/v1/tickets/T-1".to_owned(),
        "/api/v1/tickets/T-1/timeline".to_owned(),
        "/api/v1/tickets/T-1/commands".to_owned(),
        "/api/v1/commands".to_owned(),
        "/api/v1/deliveries".to_owned(),
        format!("/api/v1/deliveries/{id}"),
        format!("/api/v1/deliveries/{id}/raw"),
        "/api/v1/tickets/T-unknown".to_owned(),
        "/api/v1/tickets?limit=0".to_owned(),
        "/api/v1/ledger/head".to_owned(),
        "/api/v1/anomalies".to_owned(),
    ];
    for path in &tenant_data {
        for token in [Some("root"), Some("t"), None] {
            let res = app.get(path, token).await;
            assert_eq!(
                res.headers().get("cache-control").map(|v| v.to_str().unwrap()),
                Some("no-store"),
                "{path} {token:?}: {}",
                res.status()
            );
            assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
        }
    }
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/nowhere"] {
        let res = app.get(path, None).await;
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    let res = app.post("not json").await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
}
