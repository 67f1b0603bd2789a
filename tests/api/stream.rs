//! `GET /api/v1/stream`: the live tail. Each executed command (or each entry of a ticket) once,
//! in order, as the read API gives it; resumed across reconnects with nothing lost or repeated;
//! a tenant's only; alive while idle; ended by a graceful shutdown.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::Value;
use ticket_audit::config::HttpSettings;

use crate::helpers::*;

/// What a stream sends: an event, or a comment (a keep-alive).
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Event { event: String, id: String, data: Value },
    Comment,
}

/// A Server-Sent Events reader over a response body.
struct Events {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Events {
    fn new(res: reqwest::Response) -> Self {
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Events { body: Box::pin(res.bytes_stream()), buf: String::new() }
    }

    /// The next thing sent; `None` once the stream has ended. Bounded, so a test that waits for
    /// something that never comes fails rather than hangs.
    async fn next(&mut self) -> Option<Sent> {
        tokio::time::timeout(Duration::from_secs(30), self.next_unbounded())
            .await
            .expect("the stream sends within 30 s")
    }

    async fn next_unbounded(&mut self) -> Option<Sent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (None, None, Vec::new());
                let mut comment = false;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    match line.split_once(':') {
                        Some(("", _)) => comment = true,
                        Some(("event", v)) => event = Some(v.trim_start().to_owned()),
                        Some(("id", v)) => id = Some(v.trim_start().to_owned()),
                        Some(("data", v)) => data.push(v.strip_prefix(' ').unwrap_or(v).to_owned()),
                        _ => panic!("unexpected line {line:?}"),
                    }
                }
                if comment && event.is_none() {
                    return Some(Sent::Comment);
                }
                let data = serde_json::from_str(&data.join("\n")).expect("data is JSON");
                return Some(Sent::Event { event: event.expect("event:"), id: id.expect("id:"), data });
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8")),
                Some(Err(e)) => panic!("the stream broke: {e}"),
                None => {
                    assert!(self.buf.is_empty(), "the stream ended inside an event: {:?}", self.buf);
                    return None;
                }
            }
        }
    }

    /// The next `n` events, skipping keep-alives.
    async fn events(&mut self, n: usize) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next().await.expect("the stream goes on") {
                Sent::Event { event, id, data } => out.push((event, id, data)),
                Sent::Comment => {}
            }
        }
        out
    }
}

async fn open(app: &TestApp, path: &str, token: Option<&str>, last_event_id: Option<&str>) -> Events {
    Events::new(open_raw(app, path, token, last_event_id).await)
}

async fn open_raw(app: &TestApp, path: &str, token: Option<&str>, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.send().await.expect("GET the stream")
}

/// The executed commands as the read API gives them, oldest first.
async fn executed(app: &TestApp, query: &str, token: Option<&str>) -> Vec<Value> {
    walk(app, &format!("/api/v1/commands?executed=true&order=asc&limit=500{query}"), token).await
}

fn ids(events: &[(String, String, Value)]) -> Vec<String> {
    events.iter().map(|(_, id, _)| id.clone()).collect()
}

fn cmd(i: usize) -> (String, String) {
    (format!("echo {i}"), format!("{i}"))
}

async fn deliver_commands(app: &TestApp, ticket: &str, range: std::ops::Range<usize>) {
    for i in range {
        let (c, r) = cmd(i);
        app.deliver(&message(ticket, "q", "a", &[(&c, &r)])).await;
    }
}

#[tokio::test]
async fn the_command_stream_starts_at_the_head_and_sends_each_executed_command_as_the_read_api_gives_it() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("T-1", "tenant-a", "aws")).await;
    app.deliver(&message("T-1", "before", "a", &[("uptime", "up")])).await;
    let mut events = open(&app, "/api/v1/stream", None, None).await;
    // Proposed commands are not sent; executed ones are, each as it is committed.
    let body = serde_json::json!({
        "Action": "POST:Ticket/SendTicketMessage",
        "Data": {
            "RequestBody": {"ticketName": "T-1", "message": {"Content": "q"}},
            "ResponseBody": {"Content": "a", "data": {"Cmds": [{"command": "ls"}],
                "executedCmds": [{"command": "df -h", "result": "ok"}, {"command": "whoami", "result": "root"}]}},
            "StatusCode": 200
        }
    });
    app.deliver(&body.to_string()).await;
    let got = events.events(2).await;
    let all = executed(&app, "", None).await;
    assert_eq!(all.len(), 3);
    for ((event, id, data), want) in got.iter().zip(&all[1..]) {
        assert_eq!(event, "command");
        assert_eq!(id, want["id"].as_str().unwrap());
        assert_eq!(data, want, "the read API's command JSON, exactly");
    }
    assert_eq!(got[0].2["command"], "df -h");
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_resumes_with_nothing_lost_or_repeated() {
    let app = spawn_app().await;
    let mut first = open(&app, "/api/v1/stream", None, None).await;
    deliver_commands(&app, "T-1", 0..3).await;
    let seen = first.events(2).await;
    drop(first);
    // Committed while nobody listens, and one the first connection never read.
    deliver_commands(&app, "T-1", 3..6).await;
    let mut second = open(&app, "/api/v1/stream", None, Some(&seen[1].1)).await;
    let rest = second.events(4).await;
    let all = executed(&app, "", None).await;
    let want: Vec<String> = all.iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!([ids(&seen), ids(&rest)].concat(), want);
    for ((_, _, data), want) in rest.iter().zip(&all[2..]) {
        assert_eq!(data, want);
    }
    // And live after the catch-up, without a repeat.
    deliver_commands(&app, "T-1", 6..7).await;
    let live = second.events(1).await;
    assert_eq!(live[0].2["command"], "echo 6");

    // `after` does the same for a client that cannot set the header; the header wins.
    let mut third = open(&app, &format!("/api/v1/stream?after={}", want[4]), None, None).await;
    assert_eq!(ids(&third.events(2).await), [want[5].clone(), live[0].1.clone()]);
    let mut fourth = open(&app, "/api/v1/stream?after=0.0", None, Some(&want[5])).await;
    assert_eq!(ids(&fourth.events(1).await), [live[0].1.clone()]);
    // From the very start.
    let mut fifth = open(&app, "/api/v1/stream?after=0.0", None, None).await;
    assert_eq!(fifth.events(7).await.iter().map(|e| e.2.clone()).collect::<Vec<_>>(), executed(&app, "", None).await);
}

#[tokio::test]
async fn under_concurrent_ingest_every_executed_command_comes_exactly_once_in_order() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("A-1", "tenant-a", "aws")).await;
    let mut live = open(&app, "/api/v1/stream", None, None).await;
    let mut tenant = open(&app, "/api/v1/stream?tenant_id=tenant-a", None, None).await;
    const N: usize = 500;
    let senders: Vec<_> = (0..8)
        .map(|s| {
            let (client, url) = (app.client.clone(), app.url("/webhooks"));
            tokio::spawn(async move {
                for i in (s..N).step_by(8) {
                    let ticket = if i % 2 == 0 { "A-1" } else { "B-1" };
                    let (c, r) = cmd(i);
                    let res = client.post(&url).body(message(ticket, "q", "a", &[(&c, &r)])).send().await.unwrap();
                    assert_eq!(res.status(), 202);
                }
            })
        })
        .collect();
    // A third connection joins half-way, resuming from what the first had read by then.
    let early = live.events(N / 2).await;
    let mut joined = open(&app, "/api/v1/stream", None, Some(&early.last().unwrap().1)).await;
    for s in senders {
        s.await.unwrap();
    }
    let late = live.events(N - N / 2).await;
    let all = executed(&app, "", None).await;
    assert_eq!(all.len(), N);
    let want: Vec<String> = all.iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!([ids(&early), ids(&late)].concat(), want, "each once, in the record's order");
    assert_eq!(ids(&joined.events(N - N / 2).await), want[N / 2..]);
    let a = executed(&app, "&tenant_id=tenant-a", None).await;
    assert_eq!(a.len(), N / 2);
    assert_eq!(tenant.events(a.len()).await.iter().map(|e| e.2.clone()).collect::<Vec<_>>(), a);
    // Nothing more is pending on any of them: the next event is the next delivery's.
    app.deliver(&message("A-1", "q", "a", &[("last", "x")])).await;
    for s in [&mut live, &mut joined, &mut tenant] {
        assert_eq!(s.events(1).await[0].2["command"], "last");
    }
}

#[tokio::test]
async fn a_tenant_token_streams_its_tenant_only() {
    let app = spawn_with(HttpSettings { api_tokens: secret("root tok-a=tenant-a tok-b=tenant-b"), ..settings() }).await;
    app.deliver(&add_ticket("A-1", "tenant-a", "aws")).await;
    app.deliver(&add_ticket("B-1", "tenant-b", "k8s")).await;
    assert_eq!(open_raw(&app, "/api/v1/stream", None, None).await.status(), 401);
    assert_eq!(open_raw(&app, "/api/v1/stream", Some("wrong"), None).await.status(), 401);
    // Another tenant's ticket is 404, as on the read API; so is one that does not exist.
    assert_eq!(open_raw(&app, "/api/v1/stream?ticket=B-1", Some("tok-a"), None).await.status(), 404);
    assert_eq!(open_raw(&app, "/api/v1/stream?ticket=NOPE", Some("root"), None).await.status(), 404);
    let mut a = open(&app, "/api/v1/stream", Some("tok-a"), None).await;
    let mut a_asks_b = open(&app, "/api/v1/stream?tenant_id=tenant-b", Some("tok-a"), None).await;
    let mut root = open(&app, "/api/v1/stream", Some("root"), None).await;
    let mut a_resumes = open(&app, "/api/v1/stream?after=0.0", Some("tok-a"), None).await;
    app.deliver(&message("B-1", "q", "a", &[("kubectl get secrets", "s")])).await;
    app.deliver(&message("NOBODY-1", "q", "a", &[("rm -rf /", "x")])).await;
    app.deliver(&message("A-1", "q", "a", &[("aws s3 ls", "ok")])).await;
    let root_saw = root.events(3).await;
    assert_eq!(
        root_saw.iter().map(|e| e.2["command"].clone()).collect::<Vec<_>>(),
        ["kubectl get secrets", "rm -rf /", "aws s3 ls"]
    );
    assert_eq!(a.events(1).await[0].2["command"], "aws s3 ls", "the first tenant-a command, nothing before it");
    assert_eq!(a_resumes.events(1).await[0].2["command"], "aws s3 ls", "catching up is scoped too");
    app.deliver(&message("A-1", "q", "a", &[("aws s3 cp", "ok")])).await;
    assert_eq!(a.events(1).await[0].2["command"], "aws s3 cp");
    // A filter cannot widen the scope: asking for tenant-b, tenant-a's token gets nothing, live
    // or caught up, until the stream ends.
    let mut a_asks_b_from_start = open(&app, "/api/v1/stream?tenant_id=tenant-b&after=0.0", Some("tok-a"), None).await;
    app.shutdown_soon(&mut [&mut a_asks_b, &mut a_asks_b_from_start]).await;
}

impl TestApp {
    /// Stops the app (within a bound) and asserts that each of `streams` then ends, cleanly, with
    /// no further event.
    async fn shutdown_soon(mut self, streams: &mut [&mut Events]) {
        tokio::time::timeout(Duration::from_secs(20), self.stop()).await.expect("serve stops with streams open");
        for events in streams {
            while let Some(sent) = events.next().await {
                assert_eq!(sent, Sent::Comment, "nothing but keep-alives");
            }
        }
    }
}

#[tokio::test]
async fn a_ticket_stream_sends_every_entry_kind_as_the_timeline_gives_it() {
    let app = spawn_app().await;
    app.deliver(&message("OTHER-1", "not this", "ticket", &[("uptime", "up")])).await;
    let id = app.deliver(&add_ticket("T-1", "tenant-a", "aws")).await;
    let mut entries = open(&app, "/api/v1/stream?ticket=T-1", None, None).await;
    let mut from_start = open(&app, &format!("/api/v1/stream?ticket=T-1&after={}.0", id - 1), None, None).await;
    let conversation = serde_json::json!({
        "Action": "POST:Ticket/SendTicketMessage",
        "Data": {
            "RequestBody": {"ticketName": "T-1", "message": {"Content": "help"}},
            "ResponseBody": {"Content": "on it", "data": {"Cmds": [{"command": "ls"}],
                "executedCmds": [{"command": "df -h", "result": "ok"}]}},
            "StatusCode": 200
        }
    });
    app.deliver(&conversation.to_string()).await;
    app.deliver(&message("OTHER-1", "still not", "this one", &[])).await;
    app.deliver(r#"{"Action":"GET:Ticket/GetTicket","Data":{"RequestBody":{"ticketName":"T-1"},"StatusCode":500}}"#)
        .await;
    let timeline = walk(&app, "/api/v1/tickets/T-1/timeline", None).await;
    let kinds: Vec<&str> = timeline.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ticket_created", "user_message", "agent_message", "command_proposed", "command_executed", "action"]
    );
    let got = entries.events(5).await;
    assert!(got.iter().all(|(event, ..)| event == "entry"));
    assert_eq!(
        got.iter().map(|e| e.2.clone()).collect::<Vec<_>>(),
        timeline[1..],
        "from the head: after ticket_created"
    );
    assert_eq!(ids(&got), timeline[1..].iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>());
    assert_eq!(from_start.events(6).await.iter().map(|e| e.2.clone()).collect::<Vec<_>>(), timeline);
    // A ticket's stream takes no command filter.
    assert_eq!(open_raw(&app, "/api/v1/stream?ticket=T-1&contains=x", None, None).await.status(), 400);
}

#[tokio::test]
async fn command_filters_select_what_the_read_api_selects() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("A-1", "tenant-a", "aws")).await;
    app.deliver(&add_ticket("B-1", "tenant-b", "k8s")).await;
    let queries = [
        "?agent_name=aws",
        "?tenant_id=tenant-b",
        "?contains=get",
        "?contains=%E2%90%80",
        "?agent_name=k8s&contains=kubectl",
    ];
    let mut streams = Vec::new();
    for q in queries {
        streams.push(open(&app, &format!("/api/v1/stream{q}"), None, None).await);
    }
    for (ticket, c) in [
        ("A-1", "aws s3 get"),
        ("B-1", "kubectl get pods"),
        ("NONE-1", "get"),
        ("B-1", "kubectl \u{2400} x"),
        ("A-1", "echo \u{0}"),
    ] {
        app.deliver(&message(ticket, "q", "a", &[(c, "r")])).await;
    }
    app.deliver(&message("B-1", "q", "a", &[("end", "r")])).await;
    for (i, (q, s)) in queries.iter().zip(&mut streams).enumerate() {
        let want = executed(&app, &q.replacen('?', "&", 1), None).await;
        let mut got = s.events(want.len()).await.into_iter().map(|e| e.2).collect::<Vec<_>>();
        assert_eq!(got, want, "{q}");
        // Nothing else was sent before the next matching command.
        let (q_a, q_b) = (format!("again {i}"), format!("and again {i}"));
        app.deliver(&message("A-1", &q_a, "a", &[("aws get kubectl \u{2400}", "r")])).await;
        app.deliver(&message("B-1", &q_b, "a", &[("aws get kubectl \u{2400}", "r")])).await;
        let next = executed(&app, &q.replacen('?', "&", 1), None).await;
        got.extend(s.events(next.len() - want.len()).await.into_iter().map(|e| e.2));
        assert_eq!(got, next, "{q}");
    }
}

#[tokio::test]
async fn a_malformed_last_event_id_or_after_is_a_400_problem() {
    let app = spawn_app().await;
    for bad in ["abc", "12", "1.x", "-1.2", "1.2.3", "1 .2", "99999999999999999999.1"] {
        let res = open_raw(&app, "/api/v1/stream", None, Some(bad)).await;
        assert_eq!(res.status(), 400, "Last-Event-ID {bad:?}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let res = app.get(&format!("/api/v1/stream?after={}", bad.replace(' ', "%20")), None).await;
        assert_eq!(res.status(), 400, "after={bad:?}");
    }
    assert_eq!(app.get("/api/v1/stream?since=2026-01-01T00:00:00Z", None).await.status(), 400, "an unknown filter");
    // An empty Last-Event-ID is the browser's "nothing seen yet": the head.
    let mut events = open(&app, "/api/v1/stream", None, Some("")).await;
    app.deliver(&message("T-1", "q", "a", &[("uptime", "up")])).await;
    assert_eq!(events.events(1).await[0].2["command"], "uptime");
}

#[tokio::test]
async fn an_idle_stream_sends_keep_alives_and_outlives_the_idle_timeout() {
    // Idle timeout 2 s: keep-alives every second, and the connection must not be closed as idle.
    let app = spawn_with(HttpSettings { keepalive_idle_timeout_secs: 2, ..settings() }).await;
    let mut events = open(&app, "/api/v1/stream", None, None).await;
    let started = std::time::Instant::now();
    let mut comments = 0;
    while started.elapsed() < Duration::from_secs(4) {
        assert_eq!(events.next().await, Some(Sent::Comment));
        comments += 1;
    }
    assert!(comments >= 3, "{comments} keep-alives in 4 s");
    app.deliver(&message("T-1", "q", "a", &[("uptime", "up")])).await;
    assert_eq!(events.events(1).await[0].2["command"], "uptime");
}

#[tokio::test]
async fn a_graceful_shutdown_ends_open_streams_instead_of_waiting_for_them() {
    // A grace of 2 x 600 s: were the streams waited for, the stop would not come within the bound.
    let app = spawn_with(HttpSettings { request_timeout_secs: 600, ..settings() }).await;
    app.deliver(&add_ticket("T-1", "tenant-a", "aws")).await;
    let mut commands = open(&app, "/api/v1/stream", None, None).await;
    let mut entries = open(&app, "/api/v1/stream?ticket=T-1", None, None).await;
    app.deliver(&message("T-1", "q", "a", &[("uptime", "up")])).await;
    assert_eq!(commands.events(1).await[0].2["command"], "uptime");
    assert_eq!(entries.events(3).await.len(), 3);
    app.shutdown_soon(&mut [&mut commands, &mut entries]).await;
}

#[tokio::test]
async fn an_item_too_large_to_broadcast_comes_from_the_database_whole_and_in_its_place() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("T-1", "tenant-a", "aws")).await;
    let mut commands = open(&app, "/api/v1/stream", None, None).await;
    let mut entries = open(&app, "/api/v1/stream?ticket=T-1", None, None).await;
    let big = "x".repeat(100 * 1024);
    app.deliver(&message("T-1", "q", "a", &[("before", "small"), ("cat big", &big), ("after", "small")])).await;
    let got = commands.events(3).await;
    assert_eq!(got.iter().map(|e| e.2.clone()).collect::<Vec<_>>(), executed(&app, "", None).await);
    assert_eq!(got[1].2["result"].as_str().unwrap().len(), big.len());
    let timeline = walk(&app, "/api/v1/tickets/T-1/timeline", None).await;
    assert_eq!(entries.events(5).await.iter().map(|e| e.2.clone()).collect::<Vec<_>>(), timeline[1..]);
}

/// A ticket's timeline, as the read API gives it, oldest first.
async fn timeline(app: &TestApp, ticket: &str) -> Vec<Value> {
    walk(app, &format!("/api/v1/tickets/{ticket}/timeline"), None).await
}

fn datas(events: &[(String, String, Value)]) -> Vec<Value> {
    events.iter().map(|e| e.2.clone()).collect()
}

/// `senders` tasks that deliver the messages of `range` between them, message `i` to
/// `tickets[i % len]`.
fn deliver_concurrently(
    app: &TestApp,
    tickets: &[String],
    range: std::ops::Range<usize>,
    senders: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..senders)
        .map(|s| {
            let (client, url, tickets) = (app.client.clone(), app.url("/webhooks"), tickets.to_vec());
            let range = range.clone();
            tokio::spawn(async move {
                for i in (range.start + s..range.end).step_by(senders) {
                    let (c, r) = cmd(i);
                    let body = message(&tickets[i % tickets.len()], &format!("q{i}"), &format!("a{i}"), &[(&c, &r)]);
                    let res = client.post(&url).body(body).send().await.unwrap();
                    assert_eq!(res.status(), 202);
                }
            })
        })
        .collect()
}

#[tokio::test]
async fn many_ticket_streams_at_once_each_get_exactly_their_tickets_entries_in_order() {
    let app = spawn_app().await;
    let tickets: Vec<String> = (0..12).map(|i| format!("M-{i}")).collect();
    for t in &tickets {
        app.deliver(&add_ticket(t, "tenant-a", "aws")).await;
    }
    // Two streams on each ticket but the last, which nobody watches; a command stream beside.
    let mut streams = Vec::new();
    for t in &tickets[..tickets.len() - 1] {
        for _ in 0..2 {
            streams.push((t.clone(), open(&app, &format!("/api/v1/stream?ticket={t}"), None, None).await));
        }
    }
    let mut commands = open(&app, "/api/v1/stream", None, None).await;
    const N: usize = 240;
    for s in deliver_concurrently(&app, &tickets, 0..N, 8) {
        s.await.unwrap();
    }
    assert_eq!(commands.events(N).await.len(), N);
    for (t, s) in &mut streams {
        let want = timeline(&app, t).await;
        let got = s.events(want.len() - 1).await;
        assert!(got.iter().all(|(event, ..)| event == "entry"));
        assert_eq!(datas(&got), want[1..], "{t}: its entries after ticket_created, each once, in order");
    }
    // Nothing else was pending on any of them: the next event is its ticket's next entry.
    for t in &tickets {
        app.deliver(&message(t, &format!("last of {t}"), "a", &[])).await;
    }
    for (t, s) in &mut streams {
        assert_eq!(s.events(1).await[0].2["content"], format!("last of {t}"), "{t}");
    }
}

#[tokio::test]
async fn ticket_streams_opened_while_their_entries_are_committed_miss_and_repeat_nothing() {
    let app = spawn_app().await;
    let tickets: Vec<String> = (0..24).map(|i| format!("W-{i}")).collect();
    let mut created = Vec::new();
    for t in &tickets {
        app.deliver(&add_ticket(t, "tenant-a", "aws")).await;
        created.push(timeline(&app, t).await[0]["id"].as_str().unwrap().to_owned());
    }
    // Paces the joins below: one each ten commands.
    let mut commands = open(&app, "/api/v1/stream", None, None).await;
    const N: usize = 720;
    let senders = deliver_concurrently(&app, &tickets, 0..N, 8);
    // While every ticket's entries are committed, each ticket gets its first stream (its channel
    // is created while the tail reads), from the head: it must go on from wherever it placed
    // itself. Then a second one beside it, from the ticket's first entry: all of it.
    let (mut from_head, mut from_start) = (Vec::new(), Vec::new());
    for (t, created) in tickets.iter().zip(&created) {
        commands.events(10).await;
        from_head.push(open(&app, &format!("/api/v1/stream?ticket={t}"), None, None).await);
        from_start.push(open(&app, &format!("/api/v1/stream?ticket={t}"), None, Some(created)).await);
    }
    for s in senders {
        s.await.unwrap();
    }
    for t in &tickets {
        app.deliver(&message(t, "the end", "the end", &[])).await;
    }
    for ((t, head), start) in tickets.iter().zip(&mut from_head).zip(&mut from_start) {
        let want = timeline(&app, t).await;
        assert_eq!(datas(&start.events(want.len() - 1).await), want[1..], "{t} from Last-Event-ID: every entry, once");
        // Whatever its first entry, the rest follow it, each once, up to the last.
        let mut got = head.events(1).await;
        let at = want.iter().position(|e| e["id"].as_str().unwrap() == got[0].1).expect("an entry of the ticket");
        got.extend(head.events(want.len() - at - 1).await);
        assert_eq!(datas(&got), want[at..], "{t} from the head");
        assert_eq!(got.last().unwrap().2["content"], "the end");
    }
}

#[tokio::test]
async fn ticket_streams_that_close_and_reopen_get_their_ticket_afresh_each_time() {
    let app = spawn_app().await;
    for t in ["R-1", "R-2"] {
        app.deliver(&add_ticket(t, "tenant-a", "aws")).await;
    }
    // R-2 stays watched, so that the tail goes on reading (and drops R-1's channel) while R-1
    // has no stream.
    let mut r2 = open(&app, "/api/v1/stream?ticket=R-2", None, None).await;
    const ROUNDS: usize = 8;
    let mut seen: Vec<(String, String, Value)> = Vec::new();
    for round in 0..ROUNDS {
        // Reopened at the head (even rounds), or resumed from the last entry seen (odd: as a
        // browser reconnects), when no stream of R-1 is left.
        let resume = (round % 2 == 1).then(|| seen.last().unwrap().1.clone());
        let mut r1 = open(&app, "/api/v1/stream?ticket=R-1", None, resume.as_deref()).await;
        app.deliver(&message("R-1", &format!("open {round}"), &format!("open {round} reply"), &[])).await;
        let got = r1.events(if resume.is_some() { 4 } else { 2 }).await;
        let contents: Vec<&str> = got.iter().map(|e| e.2["content"].as_str().unwrap()).collect();
        let mut want = vec![format!("open {round}"), format!("open {round} reply")];
        if resume.is_some() {
            want.splice(0..0, [format!("closed {}", round - 1), format!("closed {} reply", round - 1)]);
        }
        assert_eq!(contents, want, "round {round}");
        seen.extend(got);
        // A second stream of the same ticket beside it, closed first.
        let mut beside = open(&app, "/api/v1/stream?ticket=R-1", None, None).await;
        app.deliver(&message("R-1", &format!("both {round}"), &format!("both {round} reply"), &[])).await;
        let both = r1.events(2).await;
        assert_eq!(datas(&beside.events(2).await), datas(&both), "round {round}");
        seen.extend(both);
        drop(beside);
        drop(r1);
        // Committed while R-1 has no stream, and then R-2's: once R-2's arrives, the tail has
        // read past R-1's (without it) and has dropped R-1's channel.
        app.deliver(&message("R-1", &format!("closed {round}"), &format!("closed {round} reply"), &[])).await;
        app.deliver(&message("R-2", &format!("r2 {round}"), "a", &[])).await;
        assert_eq!(r2.events(2).await[0].2["content"], format!("r2 {round}"));
    }
    // Altogether, R-1's timeline but for ticket_created and what came while no stream was open
    // before a reopen at the head (or after the last round): each entry once, in order.
    let missed =
        |c: &str| (0..ROUNDS).filter(|r| r % 2 == 1 || *r == ROUNDS - 1).any(|r| c.starts_with(&format!("closed {r}")));
    let want: Vec<Value> = timeline(&app, "R-1")
        .await
        .into_iter()
        .filter(|e| e["kind"] != "ticket_created" && !missed(e["content"].as_str().unwrap()))
        .collect();
    assert_eq!(datas(&seen), want);
}

#[tokio::test]
async fn a_ticket_stream_resumed_from_an_old_last_event_id_reads_the_gap_then_goes_on_live() {
    let app = spawn_app().await;
    for t in ["O-1", "O-2"] {
        app.deliver(&add_ticket(t, "tenant-a", "aws")).await;
    }
    let mut o2 = open(&app, "/api/v1/stream?ticket=O-2", None, None).await;
    // More than a page of catch-up (200 rows) behind, and more coming while it catches up.
    let tickets = ["O-1".to_owned(), "O-2".to_owned()];
    for s in deliver_concurrently(&app, &tickets, 0..200, 4) {
        s.await.unwrap();
    }
    let old = timeline(&app, "O-1").await;
    assert!(old.len() > 300);
    let from = old[5]["id"].as_str().unwrap().to_owned();
    let more = deliver_concurrently(&app, &tickets, 200..300, 4);
    let mut resumed = open(&app, "/api/v1/stream?ticket=O-1", None, Some(&from)).await;
    let mut by_after = open(&app, &format!("/api/v1/stream?ticket=O-1&after={from}"), None, None).await;
    for s in more {
        s.await.unwrap();
    }
    app.deliver(&message("O-1", "live", "a", &[])).await;
    let want = timeline(&app, "O-1").await;
    assert_eq!(datas(&resumed.events(want.len() - 6).await), want[6..]);
    assert_eq!(datas(&by_after.events(want.len() - 6).await), want[6..]);
    // And live after it, without a repeat.
    app.deliver(&message("O-1", "live again", "a", &[])).await;
    for s in [&mut resumed, &mut by_after] {
        assert_eq!(s.events(1).await[0].2["content"], "live again");
    }
    let o2_all = timeline(&app, "O-2").await;
    assert_eq!(datas(&o2.events(o2_all.len() - 1).await), o2_all[1..]);
}

#[tokio::test]
async fn ticket_streams_get_entries_another_instance_commits_between_this_ones_commits() {
    // Two service processes on one database, taking turns to write. A's tail is told by A's
    // writer which ticket each of its seqs concerns; B's seqs it learns of only from the head,
    // and must read them all the same.
    let a = spawn_app().await;
    let options: sqlx::postgres::PgConnectOptions = database_url(&a.db_name).parse().unwrap();
    let b = spawn_on(options, a.db_name.clone(), settings(), pools()).await;
    // X gets entries from both instances; Y, watched too, from B only; Z (unwatched) from A
    // only, so that A's writer keeps committing seqs around B's whose tickets are not Y's.
    for t in ["X", "Y", "Z"] {
        a.deliver(&add_ticket(t, "tenant-a", "aws")).await;
    }
    let mut x = open(&a, "/api/v1/stream?ticket=X", None, None).await;
    let mut y = open(&a, "/api/v1/stream?ticket=Y", None, None).await;
    const N: usize = 120;
    let sends = (0..N).map(|i| {
        let (app, ticket) = match i % 4 {
            0 => (&a, "X"),
            1 => (&b, "X"),
            2 => (&b, "Y"),
            _ => (&a, "Z"),
        };
        let (c, r) = cmd(i);
        app.post(message(ticket, &format!("q{i}"), &format!("a{i}"), &[(&c, &r)]))
    });
    for res in futures::future::join_all(sends).await {
        assert_eq!(res.status(), 202);
    }
    // A mark from A: once X's stream has it, A's tail has read all that A's writer committed.
    let (mut got_x, mut got_y) = (Vec::new(), Vec::new());
    a.deliver(&message("X", "a's mark", "a's mark", &[])).await;
    caught_up(&a, "X", &mut x, &mut got_x, "a's mark").await;
    // Then Y's last entries, from B's commit alone: A's tail learns of it only from its poll of
    // the head, its writer having nothing to say. X's last from B and then from A.
    b.deliver(&message("Y", "the end", "the end", &[])).await;
    caught_up(&a, "Y", &mut y, &mut got_y, "the end").await;
    b.deliver(&message("X", "b's end", "b's end", &[])).await;
    a.deliver(&message("X", "the end", "the end", &[])).await;
    caught_up(&a, "X", &mut x, &mut got_x, "the end").await;

    /// Reads `s` up to the end of `t`'s timeline now, into `got`: every entry after
    /// ticket_created, whoever committed it, once, in order, the last `last`.
    async fn caught_up(a: &TestApp, t: &str, s: &mut Events, got: &mut Vec<(String, String, Value)>, last: &str) {
        let want = timeline(a, t).await;
        assert!(want.len() > N / 4 * 3, "{t}: {} entries", want.len());
        // A bound against waiting for ever (keep-alives keep an idle stream going), not a timing.
        let more = tokio::time::timeout(Duration::from_secs(120), s.events(want.len() - 1 - got.len()))
            .await
            .unwrap_or_else(|_| panic!("{t}: entries missing after 120 s"));
        got.extend(more);
        assert_eq!(datas(got), want[1..], "{t}: every entry after ticket_created, once, in order");
        assert_eq!(got.last().unwrap().2["content"], last);
    }
}
