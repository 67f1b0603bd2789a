//! Every read query the API runs is planned with an index on its main table, and with no
//! sequential scan of the big tables, on a store large enough for the planner's choice to mean
//! something. Both plans PostgreSQL may use for the service's prepared statements are checked:
//! the custom plan (its first executions) and the generic plan (afterwards, when it is cheaper).
//!
//! The statements are the ones `src/store/read.rs` builds and runs (its `*_query` functions),
//! with their own binds: a change there is checked here, with nothing to keep in step.

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

-- Classified as the service's classifier leaves it: all but the newest deliveries' commands.
INSERT INTO reporting.command_class SELECT * FROM reporting.classify_range(0, {DELIVERIES} - 500);
UPDATE reporting.classified SET seq = {DELIVERIES} - 500;

ANALYZE;
"#
    );
    sqlx::raw_sql(&sql).execute(&mut *conn).await.expect("load the store");
}

use ticket_audit::store::read::{self, Built, ClassFilter, CommandFilter, DeliveryFilter, TicketFilter};
use ticket_audit::store::{stream, Scope};

fn t(s: &str) -> time::OffsetDateTime {
    ticket_audit::domain::timestamp::parse(s).unwrap()
}

fn tenant(t: &str) -> Scope {
    Scope::Tenant(t.to_owned())
}

/// Every read the API makes, built by the functions the service runs, with the table that read is about.
fn cases() -> Vec<(&'static str, &'static str, Built)> {
    let mid = DELIVERIES / 2;
    let ticket = "T-000042";
    let all = Scope::All;
    let tickets = |f: TicketFilter| f;
    let cmds = |f: CommandFilter| f;
    vec![
        // GET /api/v1/tickets
        ("tickets", "tickets", read::list_tickets_query(&all, &TicketFilter::default(), None, 51)),
        (
            "tickets after a cursor",
            "tickets",
            read::list_tickets_query(
                &all,
                &TicketFilter::default(),
                Some((t("2026-01-01T00:00:30Z"), "T-001500".into())),
                51,
            ),
        ),
        (
            "tickets by tenant",
            "tickets",
            read::list_tickets_query(
                &all,
                &tickets(TicketFilter { tenant_id: Some("tenant-3".into()), ..Default::default() }),
                None,
                51,
            ),
        ),
        (
            "tickets of a tenant token, by agent",
            "tickets",
            read::list_tickets_query(
                &tenant("tenant-3"),
                &TicketFilter { agent_name: Some("aws".into()), ..Default::default() },
                None,
                51,
            ),
        ),
        (
            "tickets by agent",
            "tickets",
            read::list_tickets_query(
                &all,
                &TicketFilter { agent_name: Some("k8s".into()), ..Default::default() },
                None,
                51,
            ),
        ),
        (
            "tickets by status",
            "tickets",
            read::list_tickets_query(
                &all,
                &TicketFilter { status: Some("Resolved".into()), ..Default::default() },
                None,
                51,
            ),
        ),
        (
            "tickets created in a range",
            "tickets",
            read::list_tickets_query(
                &all,
                &TicketFilter {
                    created_after: Some(t("2025-12-02T00:00:00Z")),
                    created_before: Some(t("2025-12-02T06:00:00Z")),
                    ..Default::default()
                },
                None,
                51,
            ),
        ),
        // GET /api/v1/tickets/{name} (and the visibility check of its timeline and commands)
        ("one ticket", "tickets", read::get_ticket_query(&all, ticket)),
        ("one ticket, tenant token", "tickets", read::get_ticket_query(&tenant("tenant-2"), ticket)),
        // GET /api/v1/tickets/{name}/timeline
        ("timeline, first page", "commands", read::timeline_query(ticket, (0, -1), 51)),
        ("timeline, next page", "commands", read::timeline_query(ticket, (mid, 3), 51)),
        // GET /api/v1/tickets/{name}/commands
        (
            "a ticket's commands",
            "commands",
            read::list_commands_query(
                &all,
                &cmds(CommandFilter { ticket: Some(ticket.into()), ..Default::default() }),
                true,
                None,
                51,
            ),
        ),
        (
            "a ticket's commands, next page",
            "commands",
            read::list_commands_query(
                &all,
                &CommandFilter { ticket: Some(ticket.into()), ..Default::default() },
                true,
                Some((mid, 3)),
                51,
            ),
        ),
        (
            "a ticket's commands, tenant token",
            "commands",
            read::list_commands_query(
                &tenant("tenant-2"),
                &CommandFilter { ticket: Some(ticket.into()), ..Default::default() },
                true,
                None,
                51,
            ),
        ),
        // GET /api/v1/commands
        ("commands", "commands", read::list_commands_query(&all, &CommandFilter::default(), false, None, 51)),
        (
            "commands, oldest first",
            "commands",
            read::list_commands_query(&all, &CommandFilter::default(), true, None, 51),
        ),
        (
            "commands deep into the cursor",
            "commands",
            read::list_commands_query(&all, &CommandFilter::default(), false, Some((mid, 3)), 51),
        ),
        (
            "commands by agent",
            "commands",
            read::list_commands_query(
                &all,
                &CommandFilter { agent_name: Some("aws".into()), ..Default::default() },
                false,
                None,
                51,
            ),
        ),
        (
            "commands by agent, deep",
            "commands",
            read::list_commands_query(
                &all,
                &CommandFilter { agent_name: Some("aws".into()), ..Default::default() },
                false,
                Some((mid, 3)),
                51,
            ),
        ),
        (
            "commands by tenant",
            "commands",
            read::list_commands_query(
                &all,
                &CommandFilter { tenant_id: Some("tenant-5".into()), ..Default::default() },
                false,
                None,
                51,
            ),
        ),
        (
            "commands of a tenant token, by tenant and agent",
            "commands",
            read::list_commands_query(
                &tenant("tenant-5"),
                &CommandFilter {
                    tenant_id: Some("tenant-5".into()),
                    agent_name: Some("db".into()),
                    ..Default::default()
                },
                false,
                None,
                51,
            ),
        ),
        (
            "commands of a tenant token, asking for another tenant",
            "commands",
            read::list_commands_query(
                &tenant("tenant-5"),
                &CommandFilter { tenant_id: Some("tenant-6".into()), ..Default::default() },
                false,
                None,
                51,
            ),
        ),
        (
            "commands by ticket",
            "commands",
            read::list_commands_query(
                &all,
                &CommandFilter { ticket: Some(ticket.into()), ..Default::default() },
                false,
                None,
                51,
            ),
        ),
        (
            "commands executed",
            "commands",
            read::list_commands_query(
                &all,
                &CommandFilter { executed: Some(true), ..Default::default() },
                false,
                None,
                51,
            ),
        ),
        (
            "commands in a time range",
            "commands",
            read::list_commands_query(
                &all,
                &CommandFilter {
                    since: Some(t("2026-01-01T00:05:00Z")),
                    until: Some(t("2026-01-01T00:06:00Z")),
                    ..Default::default()
                },
                false,
                None,
                51,
            ),
        ),
        (
            "commands containing a substring",
            "commands",
            read::list_commands_query(
                &all,
                &CommandFilter { contains: Some("rm -rf".into()), ..Default::default() },
                false,
                None,
                51,
            ),
        ),
        // The web page (/ui/commands, /ui/tickets/{name}): the same reads with the reporting
        // rules' classes, the commands filtered on them too.
        (
            "commands with their classes",
            "commands",
            read::list_classified_commands_query(
                &all,
                &CommandFilter::default(),
                &ClassFilter::default(),
                false,
                None,
                51,
            ),
        ),
        (
            "commands by outcome",
            "commands",
            read::list_classified_commands_query(
                &all,
                &CommandFilter::default(),
                // A class the store has (its results are all "OK ..." or none).
                &ClassFilter { outcome: Some("ok".into()), risk: None },
                false,
                None,
                51,
            ),
        ),
        (
            "commands by risk class, by agent",
            "commands",
            read::list_classified_commands_query(
                &all,
                &CommandFilter { agent_name: Some("k8s".into()), ..Default::default() },
                &ClassFilter { outcome: None, risk: Some("delete".into()) },
                false,
                None,
                51,
            ),
        ),
        (
            "risky commands of a tenant token",
            "commands",
            read::list_classified_commands_query(
                &tenant("tenant-5"),
                &CommandFilter::default(),
                &ClassFilter { outcome: None, risk: Some(read::RISKY.into()) },
                false,
                None,
                51,
            ),
        ),
        (
            "a ticket page's timeline with its classes",
            "commands",
            read::classified_timeline_query(ticket, (0, -1), 2001),
        ),
        ("a ticket page's later entries", "commands", read::classified_timeline_query(ticket, (mid, 3), 2001)),
        // The live tail (GET /api/v1/stream): what is new after a cursor, every ticket's entries
        // and the executed commands.
        ("the live tail's entries", "commands", stream::entries_query((mid, 3), 500)),
        (
            "the live tail's entries of the watched tickets' seqs",
            "commands",
            stream::entries_at_query(&(mid..mid + 400).step_by(2).collect::<Vec<_>>(), (mid, 3), 500),
        ),
        (
            "the live tail's commands",
            "commands",
            read::list_commands_query(
                &all,
                &CommandFilter { executed: Some(true), ..Default::default() },
                true,
                Some((mid, 3)),
                500,
            ),
        ),
        // GET /api/v1/deliveries, /deliveries/{id}, /deliveries/{id}/raw
        ("deliveries", "deliveries", read::list_deliveries_query(&all, &DeliveryFilter::default(), None, 51)),
        (
            "deliveries by action",
            "deliveries",
            read::list_deliveries_query(
                &all,
                &DeliveryFilter { action: Some("GET:Ticket/GetTicket".into()), ..Default::default() },
                None,
                51,
            ),
        ),
        (
            "deliveries since",
            "deliveries",
            read::list_deliveries_query(
                &all,
                &DeliveryFilter { since: Some(t("2026-01-01T00:10:00Z")), ..Default::default() },
                None,
                51,
            ),
        ),
        (
            "deliveries before a cursor",
            "deliveries",
            read::list_deliveries_query(&all, &DeliveryFilter::default(), Some(mid), 51),
        ),
        (
            "deliveries of a tenant token",
            "deliveries",
            read::list_deliveries_query(&tenant("tenant-3"), &DeliveryFilter::default(), None, 51),
        ),
        (
            "deliveries of a tenant token, by action",
            "deliveries",
            read::list_deliveries_query(
                &tenant("tenant-3"),
                &DeliveryFilter { action: Some("POST:Ticket/SendTicketMessage".into()), ..Default::default() },
                None,
                51,
            ),
        ),
        ("one delivery", "deliveries", read::get_delivery_query(&all, mid)),
        ("one delivery, tenant token", "deliveries", read::get_delivery_query(&tenant("tenant-3"), mid)),
        ("a delivery's body", "deliveries", read::delivery_body_query(&all, mid)),
        ("a delivery's body, tenant token", "deliveries", read::delivery_body_query(&tenant("tenant-3"), mid)),
    ]
}

/// The table a partition belongs to (V9: `<table>_YYYY_MM`, `<table>_legacy`), else the name.
fn partitioned_table(relation: &str) -> &str {
    let Some((table, suffix)) = relation.rsplit_once('_') else { return relation };
    let table = if suffix == "legacy" {
        table
    } else if suffix.len() == 2 && suffix.bytes().all(|b| b.is_ascii_digit()) {
        match table.rsplit_once('_') {
            Some((table, year)) if year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit()) => table,
            _ => return relation,
        }
    } else {
        return relation;
    };
    if BIG_TABLES.contains(&table) {
        table
    } else {
        relation
    }
}

/// (node type, relation or index name) of every node of a plan; a partition's relation is named
/// by its table.
fn nodes(plan: &Value, out: &mut Vec<(String, String)>) {
    let name =
        plan["Relation Name"].as_str().map(partitioned_table).or(plan["Index Name"].as_str()).unwrap_or("").to_owned();
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
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}")).execute(&mut conn).await.unwrap();
        for (what, main, mut built) in cases() {
            use sqlx::Execute;
            // The service's own statement and binds, prepared as it prepares them, under EXPLAIN.
            let mut query = built.build();
            let sql = query.sql().to_owned();
            let args = query.take_arguments().unwrap().unwrap_or_default();
            let explain = format!("EXPLAIN (FORMAT JSON) {sql}");
            let plan: Value = sqlx::query_scalar_with(&explain, args)
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{what}: EXPLAIN: {e}\n{sql}"));
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
                    "{what} ({mode}): seq scans on {seq_scans:?}, index on {main}: {indexed}\n{sql}\n{}",
                    serde_json::to_string_pretty(&plan).unwrap()
                ));
            }
        }
    }
    conn.close().await.unwrap();
    assert!(failures.is_empty(), "{} plans without an index:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// The writer's reads before each batch (its stored keys, its tickets) are prepared once per
/// connection and run with a generic plan. Planned on empty tables, as on a new database, such a
/// plan would scan them whole on every batch once they are large; the write pool's settings
/// (`store::WRITE_SESSION`) make every read an index probe however empty the tables were.
#[tokio::test]
async fn the_writers_lookup_probes_indexes_even_when_planned_on_empty_tables() {
    let (options, name) = fresh_database().await;
    let _drop = DropOnSharedServer(name);
    let mut conn = options.options(ticket_audit::store::WRITE_SESSION).connect().await.expect("connect");
    sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
    let prepare = format!("PREPARE lookup (text[], text[], text[]) AS {}", ticket_audit::store::batch::LOOKUP_SQL);
    sqlx::raw_sql(&prepare).execute(&mut conn).await.expect("prepare the lookup");
    // EXPLAIN EXECUTE of a prepared statement shows the plan it runs: generic, as the writer's are.
    let plan: Value =
        sqlx::query_scalar("EXPLAIN (FORMAT JSON) EXECUTE lookup ('{webhook,webhook}', '{msg_1,msg_2}', '{T-1,T-2}')")
            .fetch_one(&mut conn)
            .await
            .expect("EXPLAIN the lookup");
    let pretty = serde_json::to_string_pretty(&plan).unwrap();
    assert!(pretty.contains("$3"), "not the generic plan:\n{pretty}");
    assert!(!pretty.contains("Seq Scan"), "a sequential scan in\n{pretty}");
    for index in ["delivery_keys_pkey", "tickets_pkey"] {
        assert!(pretty.contains(&format!("\"Index Name\": \"{index}\"")), "no probe of {index} in\n{pretty}");
    }
    // Priced out, a scan it cannot avoid must not make the statement look worth compiling (JIT).
    let mut tx = conn.begin().await.unwrap();
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", ticket_audit::store::batch::ADVANCE_HEAD_SQL);
    let head: Value = sqlx::query_scalar(&explain)
        .bind(0i64)
        .bind(vec![0u8; 32])
        .bind(1i64)
        .bind(vec![1u8; 32])
        .bind(time::OffsetDateTime::now_utc())
        .fetch_one(&mut *tx)
        .await
        .expect("EXPLAIN the head's swap");
    tx.rollback().await.unwrap();
    assert!(head[0].get("JIT").is_none(), "the head's swap is compiled:\n{head:#}");
    conn.close().await.unwrap();
}

/// The batch's statement calls none of the schema's SQL functions as a function: each is
/// inlined into the plan. One PostgreSQL cannot inline (V17: `key_scope` declared STRICT around a
/// CASE) is parsed, planned and called as a query of its own for every delivery stored.
#[tokio::test]
async fn the_batch_statement_runs_no_sql_function_it_could_inline() {
    let (options, name) = fresh_database().await;
    let _drop = DropOnSharedServer(name);
    let mut conn = options.options(ticket_audit::store::WRITE_SESSION).connect().await.expect("connect");
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         JOIN pg_language l ON l.oid = p.prolang WHERE l.lanname = 'sql' AND n.nspname IN ('public', 'reporting')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(functions.iter().any(|f| f == "key_scope"), "no SQL functions found: {functions:?}");
    let sql = ticket_audit::store::batch::STORE_SQL;
    assert!(sql.contains("key_scope("), "the statement no longer calls key_scope: this test checks nothing");
    sqlx::raw_sql(&format!("PREPARE store AS {sql}")).execute(&mut conn).await.expect("prepare the batch statement");
    let params: i32 =
        sqlx::query_scalar("SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = 'store'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let nulls = vec!["NULL"; params as usize].join(", ");
    let plan: Value = sqlx::query_scalar(&format!("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE store ({nulls})"))
        .fetch_one(&mut conn)
        .await
        .expect("EXPLAIN the batch statement");
    let text = plan.to_string();
    let called: Vec<&String> = functions.iter().filter(|f| text.contains(&format!("{f}("))).collect();
    assert!(called.is_empty(), "called, not inlined: {called:?} in\n{plan:#}");
    conn.close().await.unwrap();
}

/// Rows a plan takes from the heap of `tables` (their partitions): every row an index or
/// sequential scan returned or dropped by its filter, and an index-only scan's heap fetches.
fn heap_rows(plan: &Value, tables: &[&str], out: &mut Vec<(String, String, f64)>) {
    let relation = plan["Relation Name"].as_str().map(partitioned_table).unwrap_or("");
    let node = plan["Node Type"].as_str().unwrap_or("?");
    if tables.contains(&relation) {
        let loops = plan["Actual Loops"].as_f64().unwrap_or(0.0);
        let rows = match node {
            "Index Only Scan" => plan["Heap Fetches"].as_f64().unwrap_or(0.0),
            _ => {
                (plan["Actual Rows"].as_f64().unwrap_or(0.0) + plan["Rows Removed by Filter"].as_f64().unwrap_or(0.0))
                    * loops
            }
        };
        if rows > 0.0 {
            out.push((node.to_owned(), relation.to_owned(), rows));
        }
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        heap_rows(child, tables, out);
    }
}

/// A ticket's timeline takes its action events from their covering index alone (V16), without a
/// visit to the heap, which is what a page costs at 10^7 commands, where a ticket's rows are one
/// heap page each outside shared_buffers (bench/README.md, "The timeline at 10^7"). Before V16 the
/// events part read the heap row of every event of the ticket, 70% of them conversation events
/// it then dropped (they are shown through their messages and commands).
#[tokio::test]
async fn a_timelines_action_events_come_from_the_index_alone() {
    let (options, name) = fresh_database().await;
    let mut conn = options.connect().await.expect("connect");
    load(&mut conn).await;
    let _drop = DropOnSharedServer(name);
    // The visibility map, as vacuum (autovacuum's insert threshold, on an append-only record) leaves it.
    sqlx::raw_sql("VACUUM (ANALYZE) action_events, messages, commands").execute(&mut conn).await.unwrap();

    // The loaded store's tickets each have one kind of delivery: T-000042 only AddTicket (its
    // events are the timeline), the other only SendTicketMessage (conversation events, shown
    // through about 20 messages and 25 commands).
    let talk: String =
        sqlx::query_scalar("SELECT ticket_name FROM action_events WHERE kind = 'conversation' ORDER BY seq LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let mut failures = Vec::new();
    for ticket in ["T-000042", talk.as_str()] {
        let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM action_events WHERE ticket_name = $1 ORDER BY seq")
            .bind(ticket)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert!(seqs.len() >= 8, "{ticket} has {} deliveries", seqs.len());
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}")).execute(&mut conn).await.unwrap();
            // The first page and one from the middle of a delivery's commands, of 11 entries.
            for after in [(0, -1), (seqs[1], 3)] {
                use sqlx::Execute;
                let mut built = read::timeline_query(ticket, after, 11);
                let mut query = built.build();
                let sql = query.sql().to_owned();
                let args = query.take_arguments().unwrap().unwrap_or_default();
                let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}");
                let plan: Value = sqlx::query_scalar_with(&explain, args).fetch_one(&mut conn).await.unwrap();
                let entries = plan[0]["Plan"]["Actual Rows"].as_f64().unwrap();
                let mut visits = Vec::new();
                heap_rows(&plan[0]["Plan"], &["action_events", "messages", "commands"], &mut visits);
                let events = visits.iter().any(|(_, table, _)| table == "action_events");
                if entries < 8.0 || events {
                    failures.push(format!(
                        "{ticket}, {mode}, after {after:?}: {entries} entries, rows from the heap: {visits:?}\n{}",
                        serde_json::to_string_pretty(&plan).unwrap()
                    ));
                }
            }
        }
    }
    conn.close().await.unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
