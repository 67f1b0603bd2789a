//! Every read query the API runs is planned with an index on its main table, and with no
//! sequential scan of the big tables, on a store large enough for the planner's choice to mean
//! something. Both plans PostgreSQL may use for the service's prepared statements are checked:
//! the custom plan (its first executions) and the generic plan (afterwards, when it is cheaper).
//!
//! The SQL below is the text `src/store/read.rs` builds (the same `WHERE true AND ...` shape,
//! the same parameters and types), and the timeline's file itself.

use serde_json::Value;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::helpers::*;

/// Deliveries in the store: 10% AddTicket, 70% SendTicketMessage (two messages, 0-5 commands), 20% other.
const DELIVERIES: i64 = 40_000;
const TICKETS: i64 = 4_000;

/// Fills the tables the way the write path would (same shapes, realistic sizes), in SQL: seconds,
/// where 40,000 deliveries over HTTP would take minutes.
async fn load(conn: &mut PgConnection) {
    let sql = format!(
        r#"
INSERT INTO deliveries (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, hash)
SELECT g, timestamptz '2026-01-01 00:00:00+00' + g * interval '20 ms', 'msg_' || g, 'webhook-id',
       convert_to('{{"pad":"' || repeat('x', 1200) || '"}}', 'UTF8'), sha256(int8send(g::bigint)),
       CASE WHEN g % 10 = 0 THEN 'POST:Ticket/AddTicket' WHEN g % 10 < 8 THEN 'POST:Ticket/SendTicketMessage'
            ELSE 'GET:Ticket/GetTicket' END,
       200, sha256(int8send(g::bigint))
FROM generate_series(1, {DELIVERIES}) g;

INSERT INTO action_events (seq, received_at, action, status_code, success, kind, ticket_name, carried_tenant)
SELECT seq, received_at, action, 200, true,
       CASE WHEN seq % 10 = 0 THEN 'ticket_created' WHEN seq % 10 < 8 THEN 'conversation' ELSE 'action' END,
       'T-' || lpad(((seq * 7919) % {TICKETS})::text, 6, '0'), NULL
FROM deliveries;

INSERT INTO tickets (name, title, status, tenant_id, agent_name, agent_id, created_at, first_seen_at,
                     first_seen_seq, last_activity_at)
SELECT 'T-' || lpad(i::text, 6, '0'), 'title ' || i, (ARRAY['Open', 'InProgress', 'Resolved'])[1 + i % 3],
       'tenant-' || (i % 8), (ARRAY['aws', 'k8s', 'terraform', 'db', 'linux', 'gcp'])[1 + i % 6], 'agent-' || (i % 6),
       timestamptz '2025-12-01' + i * interval '1 minute', timestamptz '2026-01-01' + i * interval '20 ms', i + 1,
       timestamptz '2026-01-01' + i * interval '20 ms'
FROM generate_series(0, {TICKETS} - 1) i;

INSERT INTO messages (seq, position, ticket_name, role, content, received_at)
SELECT e.seq, p, e.ticket_name, CASE p WHEN 1 THEN 'user' ELSE 'agent' END, repeat('words ', 40), e.received_at
FROM action_events e, generate_series(1, 2) p WHERE e.kind = 'conversation';

INSERT INTO commands (seq, position, ticket_name, command, result, executed, recorded_at)
SELECT e.seq, 2 + p, e.ticket_name,
       (ARRAY['aws s3 ls s3://', 'kubectl delete pod ', 'terraform destroy -target=module.', 'rm -rf /tmp/',
              'psql -c drop table ', 'gcloud compute instances list '])[1 + (e.seq + p) % 6] || md5(e.seq::text),
       CASE WHEN p % 3 = 0 THEN NULL ELSE 'OK ' || repeat('out ', 20) END, p % 3 <> 0, e.received_at
FROM action_events e, generate_series(1, 5) p WHERE e.kind = 'conversation' AND p <= e.seq % 6;

ANALYZE;
"#
    );
    sqlx::raw_sql(&sql).execute(&mut *conn).await.expect("load the store");
}

/// A query as `read.rs` builds it: `WHERE true`, one `AND` per filter, `$n` parameters in order.
struct Query {
    sql: String,
    types: Vec<&'static str>,
    args: Vec<String>,
}

impl Query {
    fn new(select: &str) -> Self {
        Query { sql: format!("{select} WHERE true"), types: Vec::new(), args: Vec::new() }
    }

    /// The next parameter, of SQL type `ty`, with the value `literal` (an SQL literal).
    fn param(&mut self, ty: &'static str, literal: impl Into<String>) -> String {
        self.types.push(ty);
        self.args.push(literal.into());
        format!("${}", self.types.len())
    }

    fn push(mut self, s: &str) -> Self {
        self.sql.push_str(s);
        self
    }

    fn bind(mut self, ty: &'static str, literal: impl Into<String>) -> Self {
        let p = self.param(ty, literal);
        self.sql.push_str(&p);
        self
    }

    fn and_eq(self, column: &str, ty: &'static str, literal: impl Into<String>) -> Self {
        self.push(&format!(" AND {column} = ")).bind(ty, literal)
    }

    fn and_cmp(self, column: &str, op: &str, ty: &'static str, literal: impl Into<String>) -> Self {
        self.push(&format!(" AND {column} {op} ")).bind(ty, literal)
    }
}

fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

const TICKET_COLUMNS: &str =
    "SELECT name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text, \
     first_seen_at, last_activity_at, message_count, command_count FROM tickets";

const COMMAND_SELECT: &str =
    "SELECT c.seq, c.position, c.ticket_name, t.tenant_id, t.agent_name, t.agent_id, c.command, c.result, \
     c.executed, c.recorded_at FROM commands c LEFT JOIN tickets t ON t.name = c.ticket_name";

const DELIVERY_COLUMNS: &str = "SELECT d.seq, d.received_at, d.dedup_key, d.key_source, d.action, d.status_code, \
     d.headers, d.normalize_error, length(d.body) AS size, d.body_sha256, d.hash, e.ticket_name, \
     coalesce(t.tenant_id, e.carried_tenant) AS tenant_id \
     FROM deliveries d LEFT JOIN action_events e ON e.seq = d.seq LEFT JOIN tickets t ON t.name = e.ticket_name";

const DELIVERY_BODY: &str = "SELECT d.body FROM deliveries d LEFT JOIN action_events e ON e.seq = d.seq \
     LEFT JOIN tickets t ON t.name = e.ticket_name";

/// The tenant filter of deliveries, as `read.rs` writes it (see `and_delivery_tenant` there).
fn and_delivery_tenant(q: Query, tenant: &str) -> Query {
    q.push(" AND (t.tenant_id = ")
        .bind("text", text(tenant))
        .push(" OR (t.tenant_id IS NULL AND e.carried_tenant = ")
        .bind("text", text(tenant))
        .push("))")
}

fn list_tickets(filters: impl FnOnce(Query) -> Query, after: Option<(&str, &str)>) -> Query {
    let mut q = filters(Query::new(TICKET_COLUMNS));
    if let Some((at, name)) = after {
        q = q.push(" AND (first_seen_at, name) < (").bind("timestamptz", text(at)).push(", ").bind("text", text(name));
        q = q.push(")");
    }
    q.push(" ORDER BY first_seen_at DESC, name DESC LIMIT ").bind("int8", "51")
}

fn list_commands(filters: impl FnOnce(Query) -> Query, ascending: bool, after: Option<(i64, i32)>) -> Query {
    let mut q = filters(Query::new(COMMAND_SELECT));
    let (cmp, dir) = if ascending { (">", "ASC") } else { ("<", "DESC") };
    if let Some((seq, pos)) = after {
        q = q.push(&format!(" AND (c.seq, c.position) {cmp} (")).bind("int8", seq.to_string());
        q = q.push(", ").bind("int4", pos.to_string()).push(")");
    }
    q.push(&format!(" ORDER BY c.seq {dir}, c.position {dir} LIMIT ")).bind("int8", "51")
}

fn list_deliveries(filters: impl FnOnce(Query) -> Query) -> Query {
    filters(Query::new(DELIVERY_COLUMNS)).push(" ORDER BY d.seq DESC LIMIT ").bind("int8", "51")
}

fn timeline(ticket: &str, after: (i64, i32)) -> Query {
    Query {
        sql: include_str!("../../src/store/sql/timeline.sql").to_owned(),
        types: vec!["text", "int8", "int4", "int8"],
        args: vec![text(ticket), after.0.to_string(), after.1.to_string(), "51".into()],
    }
}

/// Every read the API makes, with the table that read is about.
fn cases() -> Vec<(&'static str, &'static str, Query)> {
    let mid = DELIVERIES / 2;
    let ticket = "T-000042";
    vec![
        // GET /api/v1/tickets
        ("tickets", "tickets", list_tickets(|q| q, None)),
        ("tickets after a cursor", "tickets", list_tickets(|q| q, Some(("2026-01-01T00:00:30Z", "T-001500")))),
        ("tickets by tenant", "tickets", list_tickets(|q| q.and_eq("tenant_id", "text", text("tenant-3")), None)),
        (
            "tickets of a tenant token, by agent",
            "tickets",
            list_tickets(
                |q| q.and_eq("tenant_id", "text", text("tenant-3")).and_eq("agent_name", "text", text("aws")),
                None,
            ),
        ),
        ("tickets by agent", "tickets", list_tickets(|q| q.and_eq("agent_name", "text", text("k8s")), None)),
        ("tickets by status", "tickets", list_tickets(|q| q.and_eq("status", "text", text("Resolved")), None)),
        (
            "tickets created in a range",
            "tickets",
            list_tickets(
                |q| {
                    q.and_cmp("created_at", ">=", "timestamptz", text("2025-12-02T00:00:00Z")).and_cmp(
                        "created_at",
                        "<",
                        "timestamptz",
                        text("2025-12-02T06:00:00Z"),
                    )
                },
                None,
            ),
        ),
        // GET /api/v1/tickets/{name} (and the visibility check of its timeline and commands)
        ("one ticket", "tickets", Query::new(TICKET_COLUMNS).and_eq("name", "text", text(ticket))),
        (
            "one ticket, tenant token",
            "tickets",
            Query::new(TICKET_COLUMNS).and_eq("name", "text", text(ticket)).and_eq(
                "tenant_id",
                "text",
                text("tenant-2"),
            ),
        ),
        // GET /api/v1/tickets/{name}/timeline
        ("timeline, first page", "commands", timeline(ticket, (0, -1))),
        ("timeline, next page", "commands", timeline(ticket, (mid, 3))),
        // GET /api/v1/tickets/{name}/commands
        (
            "a ticket's commands",
            "commands",
            list_commands(|q| q.and_eq("c.ticket_name", "text", text(ticket)), true, None),
        ),
        (
            "a ticket's commands, next page",
            "commands",
            list_commands(|q| q.and_eq("c.ticket_name", "text", text(ticket)), true, Some((mid, 3))),
        ),
        (
            "a ticket's commands, tenant token",
            "commands",
            list_commands(
                |q| q.and_eq("t.tenant_id", "text", text("tenant-2")).and_eq("c.ticket_name", "text", text(ticket)),
                true,
                None,
            ),
        ),
        // GET /api/v1/commands
        ("commands", "commands", list_commands(|q| q, false, None)),
        ("commands, oldest first", "commands", list_commands(|q| q, true, None)),
        ("commands deep into the cursor", "commands", list_commands(|q| q, false, Some((mid, 3)))),
        (
            "commands by agent",
            "commands",
            list_commands(|q| q.and_eq("t.agent_name", "text", text("aws")), false, None),
        ),
        (
            "commands by agent, deep",
            "commands",
            list_commands(|q| q.and_eq("t.agent_name", "text", text("aws")), false, Some((mid, 3))),
        ),
        (
            "commands by tenant",
            "commands",
            list_commands(|q| q.and_eq("t.tenant_id", "text", text("tenant-5")), false, None),
        ),
        (
            "commands of a tenant token, by tenant and agent",
            "commands",
            list_commands(
                |q| {
                    // The bound tenant and the same tenant asked for: one condition (read.rs, and_tenant).
                    q.and_eq("t.tenant_id", "text", text("tenant-5")).and_eq("t.agent_name", "text", text("db"))
                },
                false,
                None,
            ),
        ),
        (
            "commands of a tenant token, asking for another tenant",
            "commands",
            list_commands(
                |q| q.and_eq("t.tenant_id", "text", text("tenant-5")).and_eq("t.tenant_id", "text", text("tenant-6")),
                false,
                None,
            ),
        ),
        (
            "commands by ticket",
            "commands",
            list_commands(|q| q.and_eq("c.ticket_name", "text", text(ticket)), false, None),
        ),
        ("commands executed", "commands", list_commands(|q| q.and_eq("c.executed", "bool", "true"), false, None)),
        (
            "commands in a time range",
            "commands",
            list_commands(
                |q| {
                    q.and_cmp("c.recorded_at", ">=", "timestamptz", text("2026-01-01T00:05:00Z")).and_cmp(
                        "c.recorded_at",
                        "<",
                        "timestamptz",
                        text("2026-01-01T00:06:00Z"),
                    )
                },
                false,
                None,
            ),
        ),
        (
            "commands containing a substring",
            "commands",
            list_commands(
                |q| q.push(" AND strpos(c.command, ").bind("text", text("rm -rf")).push(") > 0"),
                false,
                None,
            ),
        ),
        // GET /api/v1/deliveries, /deliveries/{id}, /deliveries/{id}/raw
        ("deliveries", "deliveries", list_deliveries(|q| q)),
        (
            "deliveries by action",
            "deliveries",
            list_deliveries(|q| q.and_eq("d.action", "text", text("GET:Ticket/GetTicket"))),
        ),
        (
            "deliveries since",
            "deliveries",
            list_deliveries(|q| q.and_cmp("d.received_at", ">=", "timestamptz", text("2026-01-01T00:10:00Z"))),
        ),
        (
            "deliveries before a cursor",
            "deliveries",
            list_deliveries(|q| q.and_cmp("d.seq", "<", "int8", mid.to_string())),
        ),
        ("deliveries of a tenant token", "deliveries", list_deliveries(|q| and_delivery_tenant(q, "tenant-3"))),
        (
            "deliveries of a tenant token, by action",
            "deliveries",
            list_deliveries(|q| {
                and_delivery_tenant(q, "tenant-3").and_eq("d.action", "text", text("POST:Ticket/SendTicketMessage"))
            }),
        ),
        ("one delivery", "deliveries", Query::new(DELIVERY_COLUMNS).and_eq("d.seq", "int8", mid.to_string())),
        (
            "one delivery, tenant token",
            "deliveries",
            and_delivery_tenant(Query::new(DELIVERY_COLUMNS).and_eq("d.seq", "int8", mid.to_string()), "tenant-3"),
        ),
        ("a delivery's body", "deliveries", Query::new(DELIVERY_BODY).and_eq("d.seq", "int8", mid.to_string())),
        (
            "a delivery's body, tenant token",
            "deliveries",
            and_delivery_tenant(Query::new(DELIVERY_BODY).and_eq("d.seq", "int8", mid.to_string()), "tenant-3"),
        ),
    ]
}

/// (node type, relation or index name) of every node of a plan.
fn nodes(plan: &Value, out: &mut Vec<(String, String)>) {
    let name = plan["Relation Name"].as_str().or(plan["Index Name"].as_str()).unwrap_or("").to_owned();
    out.push((plan["Node Type"].as_str().unwrap_or("?").to_owned(), name));
    for child in plan["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

/// On a server given by DATABASE_URL, removes the test's database at the end, as `TestApp` does
/// for the tests that start the app (this one only needs the database).
struct DropOnSharedServer(String);

impl Drop for DropOnSharedServer {
    fn drop(&mut self) {
        let Ok(url) = std::env::var("DATABASE_URL") else { return };
        let name = self.0.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut c) = url.parse::<sqlx::postgres::PgConnectOptions>().unwrap().connect().await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                }
            });
        })
        .join()
        .ok();
    }
}

const BIG_TABLES: [&str; 5] = ["deliveries", "action_events", "tickets", "messages", "commands"];

#[tokio::test]
async fn every_read_query_is_planned_with_an_index() {
    let (options, name) = fresh_database().await;
    let mut conn = options.connect().await.expect("connect");
    load(&mut conn).await;
    let _drop = DropOnSharedServer(name);

    let mut failures = Vec::new();
    for (i, (what, main, q)) in cases().into_iter().enumerate() {
        let statement = format!("q{i}");
        sqlx::raw_sql(&format!("PREPARE {statement} ({}) AS {}", q.types.join(", "), q.sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{what}: PREPARE: {e}\n{}", q.sql));
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}")).execute(&mut conn).await.unwrap();
            let explain = format!("EXPLAIN (FORMAT JSON) EXECUTE {statement} ({})", q.args.join(", "));
            let plan: Value = sqlx::query_scalar(&explain).fetch_one(&mut conn).await.expect("EXPLAIN");
            let mut all = Vec::new();
            nodes(&plan[0]["Plan"], &mut all);
            let seq_scans: Vec<&str> = all
                .iter()
                .filter(|(node, rel)| node == "Seq Scan" && BIG_TABLES.contains(&rel.as_str()))
                .map(|(_, rel)| rel.as_str())
                .collect();
            let indexed = all.iter().any(|(node, name)| {
                matches!(node.as_str(), "Index Scan" | "Index Only Scan" | "Bitmap Heap Scan") && name == main
                    || node == "Bitmap Index Scan" && name.starts_with(main)
            });
            // A contradiction (two different tenants) is answered without reading anything.
            let reads_nothing = all.iter().all(|(_, name)| name.is_empty());
            if !seq_scans.is_empty() || !(indexed || reads_nothing) {
                failures.push(format!(
                    "{what} ({mode}): seq scans on {seq_scans:?}, index on {main}: {indexed}\n{}\n{}",
                    q.sql,
                    serde_json::to_string_pretty(&plan).unwrap()
                ));
            }
        }
        sqlx::raw_sql(&format!("DEALLOCATE {statement}")).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    assert!(failures.is_empty(), "{} plans without an index:\n\n{}", failures.len(), failures.join("\n\n"));
}
