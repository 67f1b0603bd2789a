//! The reporting layer (issue 4): every report in sql/, run with psql on a data set with known
//! answers loaded through the real ingest; the classification rules; the read-only role.
//!
//! The data set (deliveries in this order; tickets T-1..T-5, tenants acme and globex, agents aws
//! and k8s; `p:` a proposed command, `x:` an executed one and its outcome class):
//!
//!  1  AddTicket T-1 acme aws Open
//!  2  T-1 user+agent   p: aws s3 ls s3://logs (run below)    x: aws s3 ls -> denied, aws sts -> ok
//!  3  AddTicket T-2 acme k8s Resolved
//!  4  T-2 user+agent   p: kubectl delete pod web-1 (run in 9) x: kubectl get pods -> ok,
//!                                                                kubectl get secret -> not_found
//!  5  AddTicket T-3 globex aws Open
//!  6  T-3 user only    p: terraform destroy (never run)     x: curl -> timeout
//!  7  T-4 user+agent, no AddTicket ever (no tenant, no agent)  x: FOO=1 ./deploy.sh -> unknown
//!  8  T-1, answered 502: only its executed command is kept     x: aws s3 rm -> ok
//!  9  T-2 user+agent   p: kubectl rollout restart (never run), kubectl -n prod get pods (run in 4,
//!                         before, so never run after)        x: kubectl delete pod -> ok,
//!                                                                helm upgrade -> error
//! 10  AddTicket T-5 globex k8s Closed (no message ever)
//! 11  T-1 user+agent                                          x: chmod ... id_rsa -> unknown ("")
//! 12  no ticket name   p: whoami (run in the same delivery)  x: whoami -> ok
//!
//! Delivery n is moved to 2025-06-01 09:00 UTC + 5 h × (n - 1): days 06-01 (1-3), 06-02 (4-8),
//! 06-03 (9-12).

use std::path::Path;

use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;
use ticket_audit::config::HttpSettings;

use crate::helpers::*;

fn ticket(name: &str, tenant: &str, agent: &str, status: &str) -> String {
    json!({
        "Action": "POST:Ticket/AddTicket",
        "Data": {
            "RequestBody": {"Ticket": {
                "Name": name, "Title": format!("title of {name}"), "CreateTime": "2025-05-25T15:30:00Z",
                "Assignee": {"AgentName": agent, "AgentId": format!("id-{agent}")},
                "TenantId": tenant, "Status": status
            }},
            "StatusCode": 200
        }
    })
    .to_string()
}

/// A SendTicketMessage: `agent` None leaves the answer out, a `None` result leaves it out too.
fn conversation(
    ticket: Option<&str>,
    agent: Option<&str>,
    proposed: &[&str],
    executed: &[(&str, Option<&str>)],
    status: u16,
) -> String {
    let executed: Vec<Value> = executed
        .iter()
        .map(|(c, r)| match r {
            Some(r) => json!({"command": c, "result": r}),
            None => json!({"command": c}),
        })
        .collect();
    let mut request = json!({"message": {"Content": "please help"}});
    if let Some(t) = ticket {
        request["ticketName"] = json!(t);
    }
    let mut response = json!({"data": {"Cmds": proposed, "executedCmds": executed}});
    if let Some(a) = agent {
        response["Content"] = json!(a);
    }
    json!({
        "Action": "POST:Ticket/SendTicketMessage",
        "Data": {"RequestBody": request, "ResponseBody": response, "StatusCode": status}
    })
    .to_string()
}

async fn load(app: &TestApp) {
    let deliveries = [
        ticket("T-1", "acme", "aws", "Open"),
        conversation(
            Some("T-1"),
            Some("looking"),
            &["aws s3 ls s3://logs"],
            &[
                ("aws s3 ls s3://logs", Some("AccessDenied: Access Denied")),
                ("aws sts get-caller-identity", Some(r#"{"Arn": "arn:aws:iam::1:user/ops"}"#)),
            ],
            200,
        ),
        ticket("T-2", "acme", "k8s", "Resolved"),
        conversation(
            Some("T-2"),
            Some("on it"),
            // Trailing white space: still the same command as the one run in delivery 9.
            &["kubectl delete pod web-1  "],
            &[
                ("kubectl -n prod get pods", Some("NAME    READY\nweb-1   1/1")),
                ("kubectl get secret db -o yaml", Some(r#"Error from server (NotFound): secrets "db" not found"#)),
            ],
            200,
        ),
        ticket("T-3", "globex", "aws", "Open"),
        conversation(
            Some("T-3"),
            None,
            &["terraform destroy -auto-approve"],
            &[("curl -s https://api.internal/health", Some("curl: (28) Connection timed out after 5001 milliseconds"))],
            200,
        ),
        conversation(Some("T-4"), Some("deploying"), &[], &[("FOO=1 ./deploy.sh --dry-run", None)], 200),
        conversation(
            Some("T-1"),
            Some("lost"),
            &["aws s3 rb s3://old"],
            &[("aws s3 rm s3://logs/tmp --recursive", Some("delete: s3://logs/tmp/a.log"))],
            502,
        ),
        conversation(
            Some("T-2"),
            Some("restarting"),
            &["kubectl rollout restart deploy/web", "kubectl -n prod get pods"],
            &[
                ("kubectl delete pod web-1", Some(r#"pod "web-1" deleted"#)),
                ("helm upgrade web ./chart", Some("Error: UPGRADE FAILED: another operation is in progress")),
            ],
            200,
        ),
        ticket("T-5", "globex", "k8s", "Closed"),
        conversation(Some("T-1"), Some("fixed the key"), &[], &[("chmod 600 /home/ops/.ssh/id_rsa", Some(""))], 200),
        conversation(None, Some("me"), &["whoami"], &[("whoami", Some("ops"))], 200),
    ];
    for (i, body) in deliveries.iter().enumerate() {
        assert_eq!(app.deliver(body).await, i as i64 + 1, "deliveries are numbered in the order sent");
    }
    // The record's clock is the time of receipt: move each delivery to a known instant, as if
    // it had been received then, so that days and windows have known answers.
    // The record refuses updates; as a superuser the test lifts its triggers for this set-up only.
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *tx).await.unwrap();
    for sql in [
        "UPDATE deliveries SET received_at = $1 + (seq - 1) * interval '5 hours'",
        "UPDATE action_events SET received_at = $1 + (seq - 1) * interval '5 hours'",
        "UPDATE messages SET received_at = $1 + (seq - 1) * interval '5 hours'",
        "UPDATE commands SET recorded_at = $1 + (seq - 1) * interval '5 hours'",
        "UPDATE tickets t SET first_seen_at = $1 + (first_seen_seq - 1) * interval '5 hours',
             last_activity_at = $1 + ((SELECT max(seq) FROM action_events e WHERE e.ticket_name = t.name) - 1)
                                     * interval '5 hours'",
    ] {
        sqlx::query(sql).bind(time::macros::datetime!(2025-06-01 09:00 UTC)).execute(&mut *tx).await.unwrap();
    }
    // The service's classifier may already have copied the old times: drop its work, as
    // `reproject` does, holding its watermark so that no step is half seen.
    unclassify(&mut tx).await;
    tx.commit().await.unwrap();
}

/// Empties the classification (reports then compute every command's rules): locks the
/// watermark (waiting for a step in progress), then resets it and the table.
async fn unclassify(tx: &mut sqlx::PgConnection) {
    for sql in [
        "SELECT seq FROM reporting.classified FOR UPDATE",
        "DELETE FROM reporting.command_class",
        "DELETE FROM reporting.proposal_runs",
        "DELETE FROM reporting.command_days",
        "DELETE FROM reporting.message_days",
        "DELETE FROM reporting.agent_days",
        "DELETE FROM reporting.ticket_days",
        "DELETE FROM reporting.delivery_days",
        "DELETE FROM reporting.counted_pairs",
        "UPDATE reporting.classified SET seq = 0",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
}

/// Every row of the reporting views, as JSON text in a fixed order.
async fn view_rows(conn: &mut sqlx::PgConnection) -> Vec<String> {
    let mut rows = Vec::new();
    for sql in [
        "SELECT json_agg(v ORDER BY delivery_id, position)::text FROM reporting.commands v",
        "SELECT json_agg(v ORDER BY delivery_id, position)::text FROM reporting.proposals v",
        "SELECT json_agg(v ORDER BY ticket)::text FROM reporting.tickets v",
    ] {
        rows.push(sqlx::query_scalar::<_, String>(sql).fetch_one(&mut *conn).await.unwrap());
    }
    rows
}

async fn classified_state(conn: &mut sqlx::PgConnection) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM reporting.command_class), (SELECT count(*) FROM commands),
                (SELECT seq FROM ledger_head) - (SELECT seq FROM reporting.classified)",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// Runs `sql/NAME.sql` with psql against the test's database; the rows, fields joined by `|`.
async fn report(app: &TestApp, name: &str, vars: &[(&str, &str)]) -> Vec<String> {
    let out = psql_command(app, name, &["-q", "-A", "-t", "-F", "|"], vars.iter().map(|(k, v)| (*k, *v)))
        .output()
        .await
        .expect("run psql (it must be on PATH)");
    assert!(out.status.success(), "psql -f {name}.sql failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "psql -f {name}.sql warned: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// `psql -X -v ON_ERROR_STOP=1 FLAGS -f sql/NAME.sql` with `vars`, on the test's database.
fn psql_command<'a>(
    app: &TestApp,
    name: &str,
    flags: &[&str],
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> tokio::process::Command {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql").join(format!("{name}.sql"));
    psql_file(app, &file, flags, vars)
}

/// `psql -X -v ON_ERROR_STOP=1 FLAGS -f FILE` with `vars`, on the test's database.
fn psql_file<'a>(
    app: &TestApp,
    file: &Path,
    flags: &[&str],
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> tokio::process::Command {
    let opts = app.db.connect_options();
    let host = match opts.get_socket() {
        Some(dir) => dir.display().to_string(),
        None => opts.get_host().to_owned(),
    };
    let mut cmd = tokio::process::Command::new("psql");
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(flags)
        .args(["-h", &host, "-p", &opts.get_port().to_string(), "-U", opts.get_username()])
        .args(["-d", opts.get_database().expect("a test database name")])
        .arg("-f")
        .arg(file);
    for (k, v) in vars {
        cmd.arg("-v").arg(format!("{k}={v}"));
    }
    if let Some(password) = std::env::var("DATABASE_URL")
        .ok()
        .and_then(|u| reqwest::Url::parse(&u).ok())
        .and_then(|u| u.password().map(str::to_owned))
    {
        cmd.env("PGPASSWORD", password);
    }
    cmd
}

async fn loaded() -> TestApp {
    let app = spawn_app().await;
    load(&app).await;
    app
}

#[tokio::test]
async fn agent_usage_counts_executed_commands_tickets_and_errors_or_denials() {
    let app = loaded().await;
    assert_eq!(
        report(&app, "agent_usage", &[]).await,
        ["aws|5|2|0|1|20.0", "k8s|4|1|1|0|25.0", "(none)|2|1|0|0|0.0"],
        "T-4's command and the one without a ticket go to (none); a command without a ticket counts no ticket"
    );
    assert_eq!(report(&app, "agent_usage", &[("tenant", "acme")]).await, ["aws|4|1|0|1|25.0", "k8s|4|1|1|0|25.0"]);
    assert_eq!(
        report(&app, "agent_usage", &[("since", "2025-06-02"), ("until", "2025-06-03")]).await,
        ["aws|2|2|0|0|0.0", "k8s|2|1|0|0|0.0", "(none)|1|1|0|0|0.0"],
        "since is inclusive, until exclusive; delivery 9 at 06-03 01:00 is out"
    );
}

#[tokio::test]
async fn top_tools_ranks_tools_and_sub_commands_per_agent() {
    let app = loaded().await;
    assert_eq!(
        report(&app, "top_tools", &[]).await,
        [
            "(none)|tool|1|deploy.sh|1|50.0",
            "(none)|tool|2|whoami|1|50.0",
            "(none)|sub-command|1|deploy.sh|1|50.0",
            "(none)|sub-command|2|whoami|1|50.0",
            "aws|tool|1|aws|3|60.0",
            "aws|tool|2|chmod|1|20.0",
            "aws|tool|3|curl|1|20.0",
            "aws|sub-command|1|aws s3|2|40.0",
            "aws|sub-command|2|aws sts|1|20.0",
            "aws|sub-command|3|chmod|1|20.0",
            "aws|sub-command|4|curl|1|20.0",
            "k8s|tool|1|kubectl|3|75.0",
            "k8s|tool|2|helm|1|25.0",
            "k8s|sub-command|1|kubectl get|2|50.0",
            "k8s|sub-command|2|helm upgrade|1|25.0",
            "k8s|sub-command|3|kubectl delete|1|25.0",
        ]
    );
    assert_eq!(
        report(&app, "top_tools", &[("top", "1"), ("tenant", "acme")]).await,
        [
            "aws|tool|1|aws|3|75.0",
            "aws|sub-command|1|aws s3|2|50.0",
            "k8s|tool|1|kubectl|3|75.0",
            "k8s|sub-command|1|kubectl get|2|50.0",
        ]
    );
}

#[tokio::test]
async fn daily_activity_counts_tickets_messages_and_commands_per_day_and_tenant() {
    let app = loaded().await;
    assert_eq!(
        report(&app, "daily_activity", &[]).await,
        [
            "2025-06-01|acme|2|1|1|1|2",
            "2025-06-02|(none)|1|1|1|0|1",
            "2025-06-02|acme|0|1|1|1|3",
            "2025-06-02|globex|1|1|0|1|1",
            "2025-06-03|(none)|0|0|0|1|1",
            "2025-06-03|acme|0|2|2|2|3",
            "2025-06-03|globex|1|0|0|0|0",
        ],
        "the failed delivery 8 adds its executed command to acme on 06-02, and no message"
    );
    assert_eq!(
        report(&app, "daily_activity", &[("tenant", "globex")]).await,
        ["2025-06-02|globex|1|1|0|1|1", "2025-06-03|globex|1|0|0|0|0"]
    );
    assert_eq!(
        report(&app, "daily_activity", &[("since", "2025-06-02 10:00"), ("until", "2025-06-02 20:00")]).await,
        ["2025-06-02|(none)|1|1|1|0|1", "2025-06-02|globex|0|1|0|1|1"],
        "a window inside a day: deliveries 6 and 7"
    );
}

#[tokio::test]
async fn failed_commands_groups_failures_by_outcome_and_agent() {
    let app = loaded().await;
    assert_eq!(
        report(&app, "failed_commands", &[]).await,
        [
            "denied|aws|1|1|aws s3|2025-06-01 14:00:00+00",
            "error|k8s|1|1|helm upgrade|2025-06-03 01:00:00+00",
            "not_found|k8s|1|1|kubectl get|2025-06-02 00:00:00+00",
            "timeout|aws|1|1|curl|2025-06-02 10:00:00+00",
        ],
        "unknown (no result, or a blank one) is not a failure"
    );
    assert_eq!(
        report(&app, "failed_commands", &[("tenant", "globex")]).await,
        ["timeout|aws|1|1|curl|2025-06-02 10:00:00+00"]
    );
}

#[tokio::test]
async fn proposed_not_executed_lists_proposals_never_run_on_their_ticket_afterwards() {
    let app = loaded().await;
    assert_eq!(
        report(&app, "proposed_not_executed", &[]).await,
        [
            "k8s|3|2|66.7",
            "aws|2|1|50.0",
            "(none)|1|0|0.0",
            "2025-06-03 01:00:00+00|T-2|acme|k8s|kubectl rollout restart deploy/web",
            "2025-06-03 01:00:00+00|T-2|acme|k8s|kubectl -n prod get pods",
            "2025-06-02 10:00:00+00|T-3|globex|aws|terraform destroy -auto-approve",
        ],
        "run in the same delivery or later counts as executed, run only before does not; the \
         failed delivery's proposal was never recorded"
    );
    assert_eq!(
        report(&app, "proposed_not_executed", &[("limit", "1"), ("until", "2025-06-03")]).await,
        ["aws|2|1|50.0", "k8s|1|0|0.0", "2025-06-02 10:00:00+00|T-3|globex|aws|terraform destroy -auto-approve"],
        "the proposal of delivery 4 was executed in delivery 9, after the window: still executed"
    );
}

#[tokio::test]
async fn risky_commands_counts_and_lists_by_risk_class() {
    let app = loaded().await;
    assert_eq!(
        report(&app, "risky_commands", &[]).await,
        [
            "delete|k8s|1|1|0|1",
            "delete|aws|1|0|0|1",
            "destroy|aws|0|1|0|1",
            "permissions|aws|1|0|0|1",
            "secrets|k8s|1|0|1|1",
            "2025-06-03 11:00:00+00|T-1|acme|aws|permissions|unknown|chmod 600 /home/ops/.ssh/id_rsa",
            "2025-06-03 01:00:00+00|T-2|acme|k8s|delete|ok|kubectl delete pod web-1",
            "2025-06-02 20:00:00+00|T-1|acme|aws|delete|ok|aws s3 rm s3://logs/tmp --recursive",
            "2025-06-02 10:00:00+00|T-3|globex|aws|destroy|not_executed|terraform destroy -auto-approve",
            "2025-06-02 00:00:00+00|T-2|acme|k8s|delete|not_executed|kubectl delete pod web-1  ",
            "2025-06-02 00:00:00+00|T-2|acme|k8s|secrets|not_found|kubectl get secret db -o yaml",
        ]
    );
    assert_eq!(
        report(&app, "risky_commands", &[("since", "2025-06-03"), ("limit", "1")]).await,
        [
            "delete|k8s|1|0|0|1",
            "permissions|aws|1|0|0|1",
            "2025-06-03 11:00:00+00|T-1|acme|aws|permissions|unknown|chmod 600 /home/ops/.ssh/id_rsa",
        ]
    );
}

#[tokio::test]
async fn tickets_by_status_and_the_tickets_no_agent_has_answered() {
    let app = loaded().await;
    assert_eq!(
        report(&app, "tickets_by_status", &[]).await,
        [
            "(none)|(none)|1|1|0",
            "Closed|k8s|1|0|1",
            "Open|aws|2|1|1",
            "Resolved|k8s|1|1|0",
            "T-3|globex|aws|Open|2025-06-02 05:00:00+00|2025-06-02 10:00:00+00|1",
            "T-5|globex|k8s|Closed|2025-06-03 06:00:00+00|2025-06-03 06:00:00+00|0",
        ],
        "T-4 came by message only (no status, tenant or agent); T-1's answer in the failed delivery 8 was not recorded, its others were"
    );
    assert_eq!(
        report(&app, "tickets_by_status", &[("since", "2025-06-03")]).await,
        ["Closed|k8s|1|0|1", "T-5|globex|k8s|Closed|2025-06-03 06:00:00+00|2025-06-03 06:00:00+00|0"]
    );
}

#[tokio::test]
async fn the_ticket_view_counts_messages_commands_and_activity() {
    let app = loaded().await;
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws('|', ticket, messages, user_messages, agent_messages, commands_proposed,
                          commands_executed, commands_failed, answered, first_activity_at, last_activity_at)
         FROM reporting.tickets ORDER BY ticket",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            "T-1|4|2|2|1|4|1|t|2025-06-01 09:00:00+00|2025-06-03 11:00:00+00",
            "T-2|4|2|2|3|4|2|t|2025-06-01 19:00:00+00|2025-06-03 01:00:00+00",
            "T-3|1|1|0|1|1|1|f|2025-06-02 05:00:00+00|2025-06-02 10:00:00+00",
            "T-4|2|1|1|0|1|0|t|2025-06-02 15:00:00+00|2025-06-02 15:00:00+00",
            "T-5|0|0|0|0|0|0|f|2025-06-03 06:00:00+00|2025-06-03 06:00:00+00",
        ]
    );
}

#[tokio::test]
async fn reports_read_the_same_rows_whether_commands_are_classified_or_not() {
    let app = loaded().await;
    let opts: PgConnectOptions = (*app.db.connect_options()).clone();
    let mut conn = raw_connection(&opts).await;

    // Classified: everything up to the head (the service's own classifier takes turns with us).
    ticket_audit::store::classify::catch_up(&mut conn).await.unwrap();
    let (class_rows, commands, behind) = classified_state(&mut conn).await;
    assert_eq!((class_rows, behind), (commands, 0), "caught up: one row per command, watermark at the head");
    assert_eq!(commands, 17);
    let classified = view_rows(&mut conn).await;

    // Not classified at all, then classified part of the way (a step of 1 takes whole
    // deliveries): the views compute what is missing, in the same snapshot.
    let mut tx = conn.begin().await.unwrap();
    unclassify(&mut tx).await;
    let computed = view_rows(&mut tx).await;
    let n = ticket_audit::store::classify::step(&mut tx, 1).await.unwrap();
    assert_eq!(n, 3, "delivery 2 holds three commands, all taken by a step of one");
    let (class_rows, _, behind) = classified_state(&mut tx).await;
    assert_eq!((class_rows, behind), (3, 10), "the watermark is on delivery 2");
    let partly = view_rows(&mut tx).await;
    // Every other watermark too: rule 4's answers kept by the classifier (V12) for proposals at
    // or below it, proposals run by commands above it (4 run in 9), and unclassified proposals.
    let mut watermarks = Vec::new();
    while ticket_audit::store::classify::step(&mut tx, 1).await.unwrap() > 0 {
        let mark: i64 = sqlx::query_scalar("SELECT seq FROM reporting.classified").fetch_one(&mut *tx).await.unwrap();
        assert_eq!(view_rows(&mut tx).await, classified, "views with the watermark on delivery {mark}");
        watermarks.push(mark);
    }
    assert_eq!(watermarks, [4, 6, 7, 8, 9, 11, 12], "one delivery with commands per step");
    let kept: Vec<(i64, Option<i64>)> =
        sqlx::query_as("SELECT seq, run_seq FROM reporting.proposal_runs ORDER BY seq, position")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(
        kept,
        [(2, Some(2)), (4, Some(9)), (6, None), (9, None), (9, None), (12, Some(12))],
        "each proposal's first execution on its ticket, filled in when it was classified"
    );
    tx.rollback().await.unwrap();

    assert!(classified.iter().all(|rows| rows.len() > 100), "{classified:?}");
    assert_eq!(computed, classified, "views with nothing classified");
    assert_eq!(partly, classified, "views with two deliveries classified");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn the_service_classifies_what_it_stores_in_the_background() {
    let app = spawn_app().await;
    for i in 0..20 {
        let cmds: Vec<(String, &str)> =
            (0..i % 4).map(|k| (format!("kubectl delete pod p-{i}-{k}"), "deleted")).collect();
        let cmds: Vec<(&str, &str)> = cmds.iter().map(|(c, r)| (c.as_str(), *r)).collect();
        app.deliver(&message(&format!("T-{i}"), "hi", "ok", &cmds)).await;
    }
    let opts: PgConnectOptions = (*app.db.connect_options()).clone();
    let mut conn = raw_connection(&opts).await;
    // The classifier is woken by each commit; wait (without a timer) until it is at the head.
    let state = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let state = classified_state(&mut conn).await;
            if state.2 == 0 {
                return state;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the classifier catches up with the head");
    assert_eq!((state.0, state.1), (30, 30), "every command classified once");
    let risky: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reporting.command_class WHERE risk = 'delete' AND tool = 'kubectl'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(risky, 30);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ticket_audit_commands_classified_total"), "{metrics}");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn classification_rules() {
    let app = spawn_app().await;
    // One line per command: tool|sub-command|risk, with null shown as "-".
    let words: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws('|', coalesce(reporting.command_tool(c), '-'),
                          coalesce(reporting.command_sub_command(c), '-'), coalesce(reporting.command_risk(c), '-'))
         FROM unnest($1::text[]) WITH ORDINALITY AS u (c, i) ORDER BY i",
    )
    .bind(vec![
        "aws s3 ls s3://bucket",
        "sudo -u root kubectl -n prod get pods",
        "FOO=1 AWS_PROFILE=x terraform apply -auto-approve",
        "env -u HOME /usr/local/bin/helm --kube-context c uninstall web",
        "ls -la /tmp",
        "git -C /srv/app status",
        "cd /srv && terraform destroy",
        "docker run --rm alpine true",
        "rm -rf /tmp/x",
        "aws ec2 terminate-instances --instance-ids i-1",
        "aws iam attach-role-policy --role-name r --policy-arn p",
        "vault read secret/db",
        "   ",
    ])
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        words,
        [
            "aws|aws s3|-",
            "kubectl|kubectl get|-",
            "terraform|terraform apply|-",
            "helm|helm uninstall|delete",
            "ls|ls|-",
            "git|git status|-",
            "cd|cd|destroy",
            "docker|docker run|-",
            "rm|rm|delete",
            "aws|aws ec2|terminate",
            "aws|aws iam|permissions",
            "vault|vault read|secrets",
            "-|-|-",
        ]
    );

    let outcomes: Vec<String> = sqlx::query_scalar(
        "SELECT reporting.command_outcome(x, r)
         FROM unnest($1::text[], $2::bool[]) WITH ORDINALITY AS u (r, x, i) ORDER BY i",
    )
    .bind(vec![
        None,
        None,
        Some(" \n"),
        Some("An error occurred (AccessDenied) when calling the ListBuckets operation: Access Denied"),
        Some("Error from server (NotFound): pods \"x\" not found"),
        Some("Error from server (Forbidden): pods is forbidden"),
        Some("Unable to connect to the server: dial tcp 10.0.0.1:443: i/o timeout"),
        Some("bash: tf: command not found"),
        Some("fatal: not a git repository"),
        Some("Job for nginx.service failed because the control process exited with error code."),
        Some(r#"{"Timeout": 30, "failed": 0, "Effect": "Deny"}"#),
    ])
    .bind(vec![false, true, true, true, true, true, true, true, true, true, true])
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [
            "not_executed",
            "unknown",
            "unknown",
            "denied",
            "not_found",
            "denied",
            "timeout",
            "not_found",
            "error",
            "error",
            "ok"
        ]
    );
}

#[tokio::test]
async fn the_reporting_role_reads_and_changes_nothing() {
    let app = loaded().await;
    let opts: PgConnectOptions = (*app.db.connect_options()).clone();
    let mut conn = raw_connection(&opts).await;
    sqlx::query("SET ROLE ticket_audit_reporting").execute(&mut conn).await.unwrap();

    let reads = [
        "SELECT count(*) FROM reporting.commands",
        "SELECT count(*) FROM reporting.tickets",
        "SELECT count(*) FROM reporting.proposals",
        "SELECT count(*) FROM deliveries",
        "SELECT count(*) FROM commands",
    ];
    for sql in reads {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(n > 0, "{sql}");
    }
    let writes = [
        "INSERT INTO tickets (name, first_seen_at, first_seen_seq, last_activity_at) VALUES ('X', now(), 1, now())",
        "UPDATE tickets SET status = 'Closed'",
        "DELETE FROM commands",
        "UPDATE deliveries SET action = 'x'",
        "DELETE FROM deliveries",
        "TRUNCATE messages",
        "UPDATE ledger_head SET seq = 0",
        "SELECT reporting.classify(10)",
        "DELETE FROM reporting.command_class",
        "UPDATE reporting.proposal_runs SET run_seq = NULL",
        "UPDATE reporting.classified SET seq = 0",
        "CREATE TABLE public.mine (x int)",
        "CREATE VIEW reporting.mine AS SELECT 1",
        "CREATE OR REPLACE FUNCTION reporting.command_risk(command text) RETURNS text LANGUAGE sql RETURN NULL",
    ];
    for sql in writes {
        let err = sqlx::query(sql).execute(&mut conn).await.expect_err(sql);
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql} must be refused for lack of privilege: {err}");
    }
    sqlx::query("RESET ROLE").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(app.count("tickets").await, 5, "nothing changed");
}

/// `psql [--csv] -f sql/NAME.sql` with `vars`, as an analyst would run it.
async fn psql_output(app: &TestApp, name: &str, csv: bool, vars: &[(String, String)]) -> String {
    let flags: &[&str] = if csv { &["--csv"] } else { &[] };
    let out = psql_command(app, name, flags, vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .expect("run psql (it must be on PATH)");
    assert!(out.status.success(), "psql -f {name}.sql failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_report_command_prints_what_psql_prints_for_every_report_parameter_and_format() {
    let app = loaded().await;
    let url = database_url(&app.db_name);
    let choices =
        [("since", "2025-06-02"), ("until", "2025-06-03 12:00"), ("tenant", "acme"), ("limit", "2"), ("top", "1")];
    for report in ticket_audit::reports::REPORTS {
        let takes: Vec<String> = report.parameters().into_iter().map(|(k, _)| k).collect();
        let all: Vec<(String, String)> = choices
            .iter()
            .filter(|(k, _)| takes.iter().any(|t| t == k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(!all.is_empty(), "{} takes parameters", report.name);
        for (vars, format) in [(vec![], "csv"), (all.clone(), "csv"), (vec![], "table"), (all, "table")] {
            let expected = psql_output(&app, report.name, format == "csv", &vars).await;
            let mut args = vec!["report".to_owned(), report.name.to_owned(), "--format".into(), format.into()];
            for (k, v) in &vars {
                args.extend(["--param".to_owned(), format!("{k}={v}")]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let ran = tokio::task::spawn_blocking({
                let cmd = cli(&args, &[("DATABASE_URL", &url)]);
                move || run_bounded(cmd, std::time::Duration::from_secs(60))
            })
            .await
            .unwrap();
            assert!(ran.status.success(), "report {} {vars:?}: {}", report.name, ran.stderr);
            if vars.is_empty() {
                let least = if format == "csv" { 2 } else { 4 }; // a header (and a rule and a count) and a row
                assert!(expected.lines().count() >= least, "{} has rows on this data set:\n{expected}", report.name);
            }
            assert_eq!(ran.stdout, expected, "report {} {vars:?} --format {format}", report.name);
        }
    }
}

/// Runs the report file `file` with psql against the test's database; the rows, fields joined
/// by `|`.
async fn report_file(app: &TestApp, file: &Path, vars: &[(&str, &str)]) -> Vec<String> {
    let out = psql_file(app, file, &["-q", "-A", "-t", "-F", "|"], vars.iter().map(|(k, v)| (*k, *v)))
        .output()
        .await
        .expect("run psql (it must be on PATH)");
    assert!(out.status.success(), "psql -f {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn reports_read_from_the_summaries_answer_as_the_reports_before_them_on_a_seeded_record() {
    // bench/seed_reporting.sql's record (20,000 commands over 90 days, classified), then every
    // report that V12 or V14 changed (the summaries, reporting.proposals) against its text before
    // V12 (tests/data; deliveries_by_action and tickets_by_status were the same then), over windows
    // with whole and partial days, with and without a tenant, and with the classifier's
    // watermark in the middle of the record (summaries for part, rows for the rest).
    let app = spawn_app().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = psql_file(&app, &root.join("bench/seed_reporting.sql"), &["-q"], [("commands", "20000")])
        .output()
        .await
        .unwrap();
    assert!(seed.status.success(), "seed: {}", String::from_utf8_lossy(&seed.stderr));
    let days: i64 = sqlx::query_scalar("SELECT count(*) FROM reporting.command_days").fetch_one(&app.db).await.unwrap();
    assert!(days > 1000, "the classifier counted the seeded days: {days}");

    let windows: [&[(&str, &str)]; 6] = [
        &[],
        &[("since", "2025-01-10 06:30"), ("until", "2025-02-03 13:00")],
        &[("since", "2025-01-15"), ("until", "2025-01-15 12:00")],
        &[("since", "2025-01-15 08:00"), ("until", "2025-01-16 08:00"), ("tenant", "acme")],
        &[("since", "2025-02-01"), ("until", "2025-03-01"), ("tenant", "globex")],
        &[("until", "2025-01-20 00:00:01")],
    ];
    let compare = |label: &'static str| {
        let app = &app;
        async move {
            for name in REPORTS_BEFORE {
                for vars in windows {
                    let now = report_file(app, &root.join(format!("sql/{name}.sql")), vars).await;
                    let before =
                        report_file(app, &root.join(format!("tests/data/reports_before_v12/{name}.sql")), vars).await;
                    // Tickets are first seen in blocks: a half day may have none.
                    assert!(!before.is_empty() || name == "tickets_by_status", "{name} {vars:?}: no rows");
                    assert_eq!(now, before, "{name} {vars:?}, {label}");
                }
            }
        }
    };
    compare("classified").await;

    // Classified up to the middle (about 7,000 commands), the watermark held so that the
    // service's classifier does not move it while the reports run.
    let opts: PgConnectOptions = (*app.db.connect_options()).clone();
    let mut conn = raw_connection(&opts).await;
    let mut tx = conn.begin().await.unwrap();
    unclassify(&mut tx).await;
    ticket_audit::store::classify::step(&mut tx, 7000).await.unwrap();
    tx.commit().await.unwrap();
    let mut hold = conn.begin().await.unwrap();
    let mark: i64 =
        sqlx::query_scalar("SELECT seq FROM reporting.classified FOR UPDATE").fetch_one(&mut *hold).await.unwrap();
    assert!(mark > 1000 && mark < 3000, "watermark at {mark}");
    compare("classified in part").await;
    hold.rollback().await.unwrap();
    conn.close().await.unwrap();
}

/// Every report in sql/ against its text before V12 (tests/data), on the loaded data set, with
/// and without a window and a tenant. `redacted`: proposed_not_executed against its text before
/// V14 instead, which reads reporting.proposals: a redaction blanks a proposal and the executions
/// of its delivery alike, and rule 4 over the blanked lines (as before V12) finds the blank
/// proposal run by a blank execution, where V12's kept answer (run_seq) stays "never run".
async fn reports_answer_as_before(app: &TestApp, label: &str, redacted: bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let windows: [&[(&str, &str)]; 5] = [
        &[],
        &[("since", "2025-06-01 12:00"), ("until", "2025-06-03 10:00")],
        &[("since", "2025-06-02"), ("until", "2025-06-03")],
        &[("tenant", "globex")],
        &[("tenant", "acme"), ("until", "2025-06-02 20:00")],
    ];
    for name in REPORTS_BEFORE {
        for vars in windows {
            let now = report_file(app, &root.join(format!("sql/{name}.sql")), vars).await;
            let dir =
                if redacted && name == "proposed_not_executed" { "reports_before_v14" } else { "reports_before_v12" };
            let before = report_file(app, &root.join(format!("tests/data/{dir}/{name}.sql")), vars).await;
            assert_eq!(now, before, "{name} {vars:?}, {label}");
        }
    }
}

/// The reports that read the summaries (V12, V14), kept in tests/data as they were before.
const REPORTS_BEFORE: [&str; 8] = [
    "agent_usage",
    "daily_activity",
    "deliveries_by_action",
    "failed_commands",
    "proposed_not_executed",
    "risky_commands",
    "tickets_by_status",
    "top_tools",
];

/// How many of `agent`'s executed commands the summary of agents and tenants (V14) counts.
async fn agent_days_executed(conn: &mut sqlx::PgConnection, agent: Option<&str>, tenant: Option<&str>) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(executed), 0)::bigint FROM reporting.agent_days
         WHERE agent_name IS NOT DISTINCT FROM $1 AND tenant_id IS NOT DISTINCT FROM $2",
    )
    .bind(agent)
    .bind(tenant)
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_summaries_follow_a_reassignment_and_a_redaction() {
    // The data set classified; then T-1 (acme, aws) is given to k8s and T-4 (no AddTicket, no
    // tenant or agent) gets one, after their commands were counted per agent and tenant (V14);
    // then delivery 6 (T-3: a timeout, the only one, and a destroy proposed) is redacted. Every
    // report answers as the rows do at each stage. (Not delivery 9: its execution runs
    // delivery 4's proposal, which reporting.proposals keeps as run (V12's run_seq) after the
    // line is blanked, where the rule over the blanked rows, as before V12, no longer finds it.)
    let app = spawn_with(HttpSettings { api_tokens: secret("root"), ..settings() }).await;
    load(&app).await;
    let opts: PgConnectOptions = (*app.db.connect_options()).clone();
    let mut conn = raw_connection(&opts).await;
    // Classified one delivery at a time, as the service does when it keeps up: delivery 9 runs
    // delivery 4's proposal in a later step (ticket_days' never_run goes down then).
    let mut tx = conn.begin().await.unwrap();
    unclassify(&mut tx).await;
    while ticket_audit::store::classify::step(&mut tx, 1).await.unwrap() > 0 {}
    tx.commit().await.unwrap();
    let never_run: i64 = sqlx::query_scalar("SELECT sum(never_run)::bigint FROM reporting.ticket_days")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(never_run, 3, "delivery 6's and 9's proposals");
    assert_eq!(agent_days_executed(&mut conn, Some("aws"), Some("acme")).await, 4, "T-1's executed commands");
    assert_eq!(agent_days_executed(&mut conn, None, None).await, 2, "T-4's and the one without a ticket");
    reports_answer_as_before(&app, "classified", false).await;

    // The classifier held off (its watermark row locked, as a step in progress holds it): the
    // reassignments are stored without waiting for it (V15), noted, and not moved yet; the
    // reports move the noted tickets as the next step will.
    let mut hold = raw_connection(&opts).await;
    let mut held = hold.begin().await.unwrap();
    sqlx::query("SELECT seq FROM reporting.classified FOR UPDATE").execute(&mut *held).await.unwrap();
    for (name, tenant, agent) in [("T-1", "acme", "k8s"), ("T-4", "globex", "aws")] {
        let body = ticket(name, tenant, agent, "Open");
        let stored = tokio::time::timeout(std::time::Duration::from_secs(10), app.deliver(&body));
        stored.await.expect("a reassignment waits for no classify step");
    }
    let agents: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT name, agent_name, tenant_id FROM tickets WHERE name IN ('T-1', 'T-4') ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        agents,
        [
            ("T-1".to_owned(), Some("k8s".to_owned()), Some("acme".to_owned())),
            ("T-4".to_owned(), Some("aws".to_owned()), Some("globex".to_owned()))
        ],
        "the tickets as they are now"
    );
    assert_eq!(agent_days_executed(&mut conn, Some("aws"), Some("acme")).await, 4, "T-1's counts not moved yet");
    let noted: Vec<String> = sqlx::query_scalar("SELECT DISTINCT ticket_name FROM reporting.pair_changes ORDER BY 1")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(noted, ["T-1", "T-4"], "the reassigned tickets noted for the classifier");
    reports_answer_as_before(&app, "reassigned, not moved yet", false).await;
    held.rollback().await.unwrap();
    hold.close().await.unwrap();

    ticket_audit::store::classify::catch_up(&mut conn).await.unwrap();
    let noted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reporting.pair_changes").fetch_one(&mut conn).await.unwrap();
    assert_eq!(noted, 0, "the notes taken");
    assert_eq!(agent_days_executed(&mut conn, Some("aws"), Some("acme")).await, 0, "T-1's counts moved");
    assert_eq!(agent_days_executed(&mut conn, Some("k8s"), Some("acme")).await, 4 + 4, "to k8s, beside T-2's");
    assert_eq!(agent_days_executed(&mut conn, Some("aws"), Some("globex")).await, 1 + 1, "T-4's beside T-3's");
    reports_answer_as_before(&app, "after the reassignment", false).await;

    let redacted = app
        .client
        .post(app.url("/api/v1/admin/deliveries/6/redact"))
        .header("content-type", "application/json")
        .bearer_auth("root")
        .body(r#"{"reason": "test"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(redacted.status(), 201, "{}", redacted.text().await.unwrap());
    ticket_audit::store::classify::catch_up(&mut conn).await.unwrap();
    let words: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reporting.agent_days WHERE tool IN ('curl', 'terraform') AND tenant_id = 'globex'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(words, 0, "no group holds the redacted command's words");
    reports_answer_as_before(&app, "after the redaction", true).await;
    conn.close().await.unwrap();
}

/// Commands counted per agent, tenant and tool by `agent_counts` and by the rows of
/// `reporting.commands`, in one snapshot.
async fn counts_by_agent_both_ways(conn: &mut sqlx::PgConnection) -> (Vec<String>, Vec<String>) {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await.unwrap();
    let summary: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws('|', agent_name, tenant_id, tool, sum(executed), sum(proposed))
         FROM reporting.agent_counts('-infinity', 'infinity')
         GROUP BY agent_name, tenant_id, tool HAVING sum(executed) <> 0 OR sum(proposed) <> 0",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws('|', agent_name, tenant_id, tool, count(*) FILTER (WHERE executed),
                          count(*) FILTER (WHERE NOT executed))
         FROM reporting.commands GROUP BY agent_name, tenant_id, tool",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (mut summary, mut rows) = (summary, rows);
    summary.sort();
    rows.sort();
    (summary, rows)
}

#[tokio::test]
async fn reassignments_racing_the_classifier_leave_the_counts_per_agent_exact() {
    // Four senders, three tickets each: a ticket's first message comes before its AddTicket,
    // then its agent changes every other delivery, between messages with commands, while the
    // service's classifier runs its steps as commits wake it. Meanwhile and after, the counts per
    // agent (the summary, moved by the classifier, and what the reports add for the tickets it
    // has not moved yet) are those of the rows, in one snapshot each time.
    let app = std::sync::Arc::new(spawn_app().await);
    let opts: PgConnectOptions = (*app.db.connect_options()).clone();
    let agents = ["aws", "k8s", "db"];
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let app = app.clone();
            tokio::spawn(async move {
                for round in 0..12usize {
                    for t in 0..3usize {
                        let name = format!("R-{s}-{t}");
                        if round % 2 == 1 {
                            let agent = agents[(round / 2 + t + s) % 3];
                            // Another title each time: the same body twice would be a duplicate.
                            let mut body: Value =
                                serde_json::from_str(&ticket(&name, &format!("tenant-{s}"), agent, "Open")).unwrap();
                            body["Data"]["RequestBody"]["Ticket"]["Title"] = json!(format!("round {round}"));
                            app.deliver(&body.to_string()).await;
                        } else {
                            let line = format!("{} get thing-{round}", ["aws", "kubectl", "psql"][(round / 2) % 3]);
                            let body = conversation(
                                Some(&name),
                                Some("done"),
                                &["terraform plan"],
                                &[(line.as_str(), Some("ok"))],
                                200,
                            );
                            app.deliver(&body).await;
                        }
                    }
                }
            })
        })
        .collect();
    let mut conn = raw_connection(&opts).await;
    let mut checks = 0;
    while !senders.iter().all(|s| s.is_finished()) {
        let (summary, rows) = counts_by_agent_both_ways(&mut conn).await;
        assert_eq!(summary, rows, "check {checks} while sending");
        checks += 1;
    }
    for s in senders {
        s.await.unwrap();
    }
    ticket_audit::store::classify::catch_up(&mut conn).await.unwrap();
    let (summary, rows) = counts_by_agent_both_ways(&mut conn).await;
    assert_eq!(summary, rows, "after the classifier caught up");
    // Each ticket ends with agent (5 + t + s) % 3: its two commands of each tool and its six
    // proposals are counted there, the first ones (sent before it had an agent) too.
    let mut expected: Vec<String> = (0..4)
        .flat_map(|s| {
            (0..3).flat_map(move |t| {
                let agent = agents[(5 + t + s) % 3];
                [("aws", 2, 0), ("kubectl", 2, 0), ("psql", 2, 0), ("terraform", 0, 6)]
                    .map(|(tool, executed, proposed)| format!("{agent}|tenant-{s}|{tool}|{executed}|{proposed}"))
            })
        })
        .collect();
    expected.sort();
    assert_eq!(rows, expected, "the rows themselves");
    let stale: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reporting.counted_pairs p JOIN tickets t ON t.name = p.ticket_name
         WHERE p.agent_name IS DISTINCT FROM t.agent_name OR p.tenant_id IS DISTINCT FROM t.tenant_id",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(stale, 0, "every ticket counted under its pair now");
    conn.close().await.unwrap();
}
