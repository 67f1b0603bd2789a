//! The command history across tickets, with the read API's filters and the reporting rules'
//! outcome and risk, and downloads of exactly the filtered set (CSV, NDJSON), streamed.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};

use super::tickets::{link, opt, outcome_badge, parse_time, query, ticket_href};
use super::{html_response, layout, text, time, UiError, UiReader};
use crate::http::auth::Reader;
use crate::http::pagination::{Page, PageParams};
use crate::http::tickets::Command;
use crate::http::AppState;
use crate::store::read::{self, ClassFilter, ClassifiedCommand, CommandFilter};
use crate::store::Scope;

/// The rules' classes (V3__reporting.sql), for the filters' choices and to refuse others.
const OUTCOMES: [&str; 7] = ["ok", "error", "denied", "not_found", "timeout", "unknown", "not_executed"];
const RISKS: [&str; 5] = ["destroy", "delete", "terminate", "permissions", "secrets"];

#[derive(Debug, Default, Deserialize, Clone)]
pub struct CommandQuery {
    tenant_id: Option<String>,
    agent_name: Option<String>,
    ticket: Option<String>,
    contains: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// `true` or `false`.
    executed: Option<String>,
    outcome: Option<String>,
    /// A class, `any` (risky at all) or `none`.
    risk: Option<String>,
    /// `asc` for oldest first.
    order: Option<String>,
    cursor: Option<String>,
}

struct Parsed {
    filter: CommandFilter,
    classes: ClassFilter,
    ascending: bool,
    after: Option<(i64, i32)>,
}

impl CommandQuery {
    fn parse(&self) -> Result<Parsed, UiError> {
        let executed = match self.executed.as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(UiError::BadInput("Executed must be yes, no or either.".into())),
        };
        if let Some(o) = self.outcome.as_deref().filter(|o| !OUTCOMES.contains(o)) {
            return Err(UiError::BadInput(format!(
                "\u{201c}{}\u{201d} is not an outcome; choose one of {}.",
                text::visible(o),
                OUTCOMES.join(", ")
            )));
        }
        if let Some(r) =
            self.risk.as_deref().filter(|r| !RISKS.contains(r) && *r != read::RISKY && *r != read::NOT_RISKY)
        {
            return Err(UiError::BadInput(format!(
                "\u{201c}{}\u{201d} is not a risk class; choose one of {}, any or none.",
                text::visible(r),
                RISKS.join(", ")
            )));
        }
        let ascending = match self.order.as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => return Err(UiError::BadInput("The order is newest first (desc) or oldest first (asc).".into())),
        };
        // The API's cursor, order included, so a page's cursor works on both.
        let after = PageParams { limit: None, cursor: self.cursor.clone() }.after::<(i64, i32, bool)>()?;
        if after.is_some_and(|(_, _, asc)| asc != ascending) {
            return Err(UiError::BadInput(
                "This page's cursor belongs to the other order: start from the first page.".into(),
            ));
        }
        Ok(Parsed {
            filter: CommandFilter {
                tenant_id: self.tenant_id.clone(),
                agent_name: self.agent_name.clone(),
                ticket: self.ticket.clone(),
                contains: self.contains.clone(),
                since: parse_time("Since", self.since.as_deref())?,
                until: parse_time("Until", self.until.as_deref())?,
                executed,
            },
            classes: ClassFilter { outcome: self.outcome.clone(), risk: self.risk.clone() },
            ascending,
            after: after.map(|(s, p, _)| (s, p)),
        })
    }

    /// This query's link to `path`, with another cursor.
    fn href(&self, path: &str, cursor: Option<&str>) -> String {
        link(
            path,
            &[
                ("tenant_id", self.tenant_id.as_deref()),
                ("agent_name", self.agent_name.as_deref()),
                ("ticket", self.ticket.as_deref()),
                ("contains", self.contains.as_deref()),
                ("since", self.since.as_deref()),
                ("until", self.until.as_deref()),
                ("executed", self.executed.as_deref()),
                ("outcome", self.outcome.as_deref()),
                ("risk", self.risk.as_deref()),
                ("order", self.order.as_deref()),
                ("cursor", cursor),
            ],
        )
    }

    fn filtered(&self) -> bool {
        !self.href("", None).is_empty()
    }

    /// Live updates can follow the filters the stream's command JSON carries; the others
    /// (times, classification, oldest first, a later page) turn them off.
    fn can_follow_live(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.outcome.is_none()
            && self.risk.is_none()
            && self.order.as_deref() != Some("asc")
            && self.cursor.is_none()
    }
}

const PAGE: i64 = 50;

pub async fn list(State(app): State<AppState>, reader: UiReader, uri: Uri) -> Result<Response, UiError> {
    let q: CommandQuery = query(&uri)?;
    let p = q.parse()?;
    let rows = read::list_classified_commands(
        app.read_pool(),
        &reader.scope,
        &p.filter,
        &p.classes,
        p.ascending,
        p.after,
        PAGE + 1,
    )
    .await?;
    let ascending = p.ascending;
    let page = Page::from_rows(rows, PAGE, |r| (r.command.seq, r.command.position, ascending), |r| r);
    // The stream takes the tenant, agent and contains filters itself, and resumes after the
    // newest command shown; the script filters on ticket and executed.
    let newest = page.items.first().map(|r| format!("{}.{}", r.command.seq, r.command.position));
    let live = q.can_follow_live().then(|| {
        link(
            "/api/v1/stream",
            &[
                ("tenant_id", q.tenant_id.as_deref()),
                ("agent_name", q.agent_name.as_deref()),
                ("contains", q.contains.as_deref()),
                ("after", newest.as_deref()),
            ],
        )
    });
    let choose = |name: &'static str, current: Option<&str>, options: &[(&str, &str)]| {
        html! {
            select name=(name) {
                @for (value, label) in options {
                    option value=(value) selected[current.unwrap_or("") == *value] { (label) }
                }
            }
        }
    };
    let mut outcomes = vec![("", "any")];
    outcomes.extend(OUTCOMES.iter().map(|o| (*o, *o)));
    let mut risks = vec![("", "any or none"), (read::RISKY, "risky (any class)"), (read::NOT_RISKY, "not risky")];
    risks.extend(RISKS.iter().map(|r| (*r, *r)));
    let body = html! {
        h1 { "Commands" }
        form.filters method="get" action="/ui/commands" role="search" {
            @if reader.scope == Scope::All {
                label { "Tenant" input name="tenant_id" value=[q.tenant_id.as_deref()]; }
            }
            label { "Agent" input name="agent_name" value=[q.agent_name.as_deref()]; }
            label { "Ticket" input name="ticket" value=[q.ticket.as_deref()]; }
            label { "Command contains" input type="search" name="contains" value=[q.contains.as_deref()]; }
            label { "Since" input name="since" value=[q.since.as_deref()] placeholder="2026-12-01"; }
            label { "Until" input name="until" value=[q.until.as_deref()] placeholder="2026-12-01T12:00:00Z"; }
            label { "Executed" (choose("executed", q.executed.as_deref(), &[("", "either"), ("true", "executed"), ("false", "proposed only")])) }
            label { "Outcome" (choose("outcome", q.outcome.as_deref(), &outcomes)) }
            label { "Risk" (choose("risk", q.risk.as_deref(), &risks)) }
            label { "Order" (choose("order", q.order.as_deref(), &[("", "newest first"), ("asc", "oldest first")])) }
            button type="submit" { "Filter" }
            @if q.filtered() { a href="/ui/commands" { "Clear" } }
        }
        div.actions {
            span { "Download these commands (every page): " }
            a href=(q.href("/ui/commands.csv", None)) download { "CSV" }
            a href=(q.href("/ui/commands.ndjson", None)) download { "NDJSON" }
            @if live.is_some() {
                span.live #live data-state="connecting" { "Live updates: connecting…" }
            } @else {
                span.hint { "Live updates are off for time, outcome and risk filters, oldest-first order, and later pages." }
            }
        }
        @if page.items.is_empty() {
            div.empty #commands-empty {
                @if q.filtered() {
                    p { "No command matches these filters. " a href="/ui/commands" { "Clear the filters" } "." }
                } @else {
                    p { "No commands yet. They appear here as the agents propose and run them." }
                }
            }
        }
        div.table-wrap {
            table.responsive #commands
                data-tenant=[q.tenant_id.as_deref()] data-agent=[q.agent_name.as_deref()]
                data-ticket=[q.ticket.as_deref()] data-contains=[q.contains.as_deref()]
                data-executed=[q.executed.as_deref()] {
                thead { tr {
                    th { "Recorded" } th { "Ticket" } th { "Tenant" } th { "Agent" } th { "Command" }
                    th { "Executed" } th { "Outcome" } th { "Risk" } th { "Result" }
                } }
                tbody { @for r in &page.items { (row(r)) } }
            }
        }
        div.pager {
            @if q.cursor.is_some() { a href=(q.href("/ui/commands", None)) { "← First page" } }
            @if let Some(next) = &page.next_cursor { a href=(q.href("/ui/commands", Some(next))) rel="next" { "Next page →" } }
        }
    };
    Ok(html_response(StatusCode::OK, layout("Commands", &reader.frame, "commands", live.as_deref(), body)))
}

fn row(r: &ClassifiedCommand) -> Markup {
    let c = &r.command;
    let id = format!("{}.{}", c.seq, c.position);
    let mut css = String::new();
    if r.class.risk.is_some() {
        css.push_str("risky ");
    }
    if r.class.failed {
        css.push_str("failed");
    }
    let result_preview = c.result.as_ref().map(|r| r.0.chars().take(300).collect::<String>());
    html! {
        tr class=(css.trim()) data-id=(id) {
            td data-label="Recorded" { (time(c.recorded_at)) }
            td data-label="Ticket" {
                @if let Some(t) = &c.ticket_name { a href={(ticket_href(&t.0)) "#e" (id)} { (text::visible(&t.0)) } }
            }
            td data-label="Tenant" { (opt(&c.tenant_id)) }
            td data-label="Agent" { (opt(&c.agent_name)) }
            td data-label="Command" { pre { (text::visible(&c.command.0)) } }
            td data-label="Executed" { @if c.executed { "yes" } @else { "proposed" } }
            td data-label="Outcome" { (outcome_badge(&r.class)) }
            td data-label="Risk" { @if let Some(risk) = &r.class.risk { span.badge.warn { (risk) } } }
            td data-label="Result" {
                @if let Some(p) = &result_preview { pre { (text::visible(p)) } }
            }
        }
    }
}

/// One line of the NDJSON download: the read API's command JSON with the rules' values.
#[derive(Serialize)]
struct Exported {
    #[serde(flatten)]
    command: Command,
    outcome: String,
    risk: Option<String>,
    failed: bool,
}

impl From<ClassifiedCommand> for Exported {
    fn from(r: ClassifiedCommand) -> Self {
        Exported { command: r.command.into(), outcome: r.class.outcome, risk: r.class.risk, failed: r.class.failed }
    }
}

#[derive(Clone, Copy)]
enum Format {
    Csv,
    Ndjson,
}

pub async fn csv(State(app): State<AppState>, Reader(scope): Reader, uri: Uri) -> Result<Response, UiError> {
    download(app, scope, uri, Format::Csv).await
}

pub async fn ndjson(State(app): State<AppState>, Reader(scope): Reader, uri: Uri) -> Result<Response, UiError> {
    download(app, scope, uri, Format::Ndjson).await
}

/// Rows per query of a download: the API's largest page.
const CHUNK: i64 = 500;

/// Every command the filters select, page after page in the page's order, each page written
/// as it is read: memory stays at one page whatever the size of the set.
async fn download(app: AppState, scope: Scope, uri: Uri, format: Format) -> Result<Response, UiError> {
    let q: CommandQuery = query(&uri)?;
    let mut p = q.parse()?;
    p.after = None;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tokio::spawn(async move {
        if let Format::Csv = format {
            let header = "id,ticket,tenant_id,agent_name,agent_id,command,result,executed,recorded_at,seq,position,delivery_id,outcome,risk,failed\n";
            if tx.send(Ok(header.as_bytes().to_vec())).await.is_err() {
                return;
            }
        }
        let mut after = None;
        loop {
            let rows = match read::list_classified_commands(
                app.read_pool(),
                &scope,
                &p.filter,
                &p.classes,
                p.ascending,
                after,
                CHUNK,
            )
            .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "a command download stopped: the database failed");
                    let _ = tx.send(Err(std::io::Error::other("the database failed"))).await;
                    return;
                }
            };
            let last = rows.len() < CHUNK as usize;
            after = rows.last().map(|r| (r.command.seq, r.command.position));
            let chunk = match format {
                Format::Csv => csv_rows(rows),
                Format::Ndjson => ndjson_rows(rows),
            };
            if tx.send(Ok(chunk)).await.is_err() || last {
                return;
            }
        }
    });
    let (content_type, name) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "commands.csv"),
        Format::Ndjson => ("application/x-ndjson", "commands.ndjson"),
    };
    let stream = tokio_stream_from(rx);
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn csv_rows(rows: Vec<ClassifiedCommand>) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    for r in rows {
        let e = Exported::from(r);
        let c = &e.command;
        let record = [
            c.id.clone(),
            c.ticket.clone().unwrap_or_default(),
            c.tenant_id.clone().unwrap_or_default(),
            c.agent_name.clone().unwrap_or_default(),
            c.agent_id.clone().unwrap_or_default(),
            c.command.clone(),
            c.result.clone().unwrap_or_default(),
            c.executed.to_string(),
            c.recorded_at.clone(),
            c.seq.to_string(),
            c.position.to_string(),
            c.delivery_id.to_string(),
            e.outcome.clone(),
            e.risk.clone().unwrap_or_default(),
            e.failed.to_string(),
        ];
        // Writing to a Vec cannot fail.
        let _ = w.write_record(&record);
    }
    w.into_inner().unwrap_or_default()
}

fn ndjson_rows(rows: Vec<ClassifiedCommand>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        if serde_json::to_writer(&mut out, &Exported::from(r)).is_ok() {
            out.push(b'\n');
        }
    }
    out
}
