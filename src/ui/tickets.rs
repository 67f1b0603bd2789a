//! The tickets list and one ticket's conversation.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use maud::{html, Markup, PreEscaped, Render};
use serde::Deserialize;

use super::{html_response, layout, text, time, UiError, UiReader};
use crate::http::pagination::{CursorTime, Page, PageParams};
use crate::http::{AppState, Path};
use crate::store::read::{self, CommandClass, TicketFilter, TicketRecord, TimelineRecord};
use crate::store::text::PgText;
use crate::store::Scope;

/// A page's query string: empty fields (as a form sends them) are absent, unknown ones ignored,
/// so that a shared link keeps working.
pub fn query<T: for<'de> Deserialize<'de>>(uri: &Uri) -> Result<T, UiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|_| UiError::BadInput("The address's query string cannot be read.".into()))?;
    let kept: Vec<(String, String)> = pairs.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect();
    let again = serde_urlencoded::to_string(&kept).unwrap_or_default();
    serde_urlencoded::from_str(&again).map_err(|e| UiError::BadInput(format!("The filters cannot be read: {e}.")))
}

/// A time filter: RFC 3339 (`2026-12-01T09:30:00Z`) or a day (`2026-12-01`, midnight UTC).
pub fn parse_time(what: &str, s: Option<&str>) -> Result<Option<time::OffsetDateTime>, UiError> {
    let Some(s) = s.map(str::trim) else { return Ok(None) };
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok().or_else(|| {
        let day = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
        Some(day.midnight().assume_utc())
    });
    t.and_then(crate::http::filter_bound).map(Some).ok_or_else(|| {
        UiError::BadInput(format!(
            "{what}: \u{201c}{}\u{201d} is not a time. Write 2026-12-01 or 2026-12-01T09:30:00Z.",
            text::visible(s)
        ))
    })
}

/// A query string of the given pairs, the empty ones left out.
pub fn link(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let kept: Vec<(&str, &str)> = pairs.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).collect();
    if kept.is_empty() {
        return path.to_owned();
    }
    format!("{path}?{}", serde_urlencoded::to_string(kept).unwrap_or_default())
}

pub fn ticket_href(name: &str) -> String {
    format!("/ui/tickets/{}", percent(name))
}

/// A path segment, percent-encoded (everything but unreserved characters).
pub fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Default, Deserialize)]
pub struct TicketQuery {
    tenant_id: Option<String>,
    agent_name: Option<String>,
    status: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    /// A ticket's exact name: find that one.
    name: Option<String>,
    cursor: Option<String>,
}

const PAGE: i64 = 50;

pub async fn list(State(app): State<AppState>, reader: UiReader, uri: Uri) -> Result<Response, UiError> {
    let q: TicketQuery = query(&uri)?;
    let filter = TicketFilter {
        tenant_id: q.tenant_id.clone(),
        agent_name: q.agent_name.clone(),
        status: q.status.clone(),
        created_after: parse_time("Created after", q.created_after.as_deref())?,
        created_before: parse_time("Created before", q.created_before.as_deref())?,
    };
    let (items, next) = if let Some(name) = &q.name {
        (read::get_ticket(app.read_pool(), &reader.scope, name).await?.into_iter().collect(), None)
    } else {
        let after = PageParams { limit: None, cursor: q.cursor.clone() }
            .after::<(CursorTime, String)>()?
            .map(|(at, name)| (at.0, name));
        let rows = read::list_tickets(app.read_pool(), &reader.scope, &filter, after, PAGE + 1).await?;
        let page = Page::from_rows(rows, PAGE, |r| (CursorTime(r.first_seen_at), r.name.0.clone()), |r| r);
        (page.items, page.next_cursor)
    };
    let filtered = q.tenant_id.is_some()
        || q.agent_name.is_some()
        || q.status.is_some()
        || q.created_after.is_some()
        || q.created_before.is_some()
        || q.name.is_some();
    let pairs = |cursor: Option<&str>| {
        link(
            "/ui/tickets",
            &[
                ("tenant_id", q.tenant_id.as_deref()),
                ("agent_name", q.agent_name.as_deref()),
                ("status", q.status.as_deref()),
                ("created_after", q.created_after.as_deref()),
                ("created_before", q.created_before.as_deref()),
                ("cursor", cursor),
            ],
        )
    };
    let body = html! {
        h1 { "Tickets" }
        form.filters method="get" action="/ui/tickets" role="search" {
            label { "Ticket name" input type="search" name="name" value=[q.name.as_deref()] placeholder="exact name"; }
            @if reader.scope == Scope::All {
                label { "Tenant" input name="tenant_id" value=[q.tenant_id.as_deref()]; }
            }
            label { "Agent" input name="agent_name" value=[q.agent_name.as_deref()]; }
            label { "Status" input name="status" value=[q.status.as_deref()]; }
            label { "Created after" input name="created_after" value=[q.created_after.as_deref()] placeholder="2026-12-01"; }
            label { "Created before" input name="created_before" value=[q.created_before.as_deref()] placeholder="2026-12-31T00:00:00Z"; }
            button type="submit" { "Filter" }
            @if filtered { a href="/ui/tickets" { "Clear" } }
        }
        @if items.is_empty() {
            div.empty #tickets-empty {
                @if filtered {
                    p { "No ticket matches these filters. " a href="/ui/tickets" { "Clear the filters" } " to see every ticket." }
                } @else if q.cursor.is_some() {
                    p { "No more tickets. " a href="/ui/tickets" { "Back to the newest" } "." }
                } @else {
                    p { "No tickets yet. They appear here once the ServiceDesk sends its first delivery to " code { "POST /webhooks" } "." }
                }
            }
        } @else {
            div.table-wrap {
                table.responsive #tickets {
                    thead { tr {
                        th { "Ticket" } th { "Title" } th { "Status" } th { "Tenant" } th { "Agent" }
                        th { "Created" } th { "Last activity" } th.num { "Messages" } th.num { "Commands" }
                    } }
                    tbody {
                        @for t in &items { (ticket_row(t)) }
                    }
                }
            }
        }
        div.pager {
            @if q.cursor.is_some() { a href=(pairs(None)) { "← Newest" } }
            @if let Some(next) = &next { a href=(pairs(Some(next))) rel="next" { "Older tickets →" } }
        }
    };
    Ok(html_response(StatusCode::OK, layout("Tickets", &reader.frame, "tickets", None, body)))
}

pub fn opt(v: &Option<PgText>) -> String {
    v.as_ref().map(|t| text::visible(&t.0).into_owned()).unwrap_or_default()
}

fn ticket_row(t: &TicketRecord) -> Markup {
    html! {
        tr {
            td data-label="Ticket" { a href=(ticket_href(&t.name.0)) { (text::visible(&t.name.0)) } }
            td data-label="Title" { (opt(&t.title)) }
            td data-label="Status" { (opt(&t.status)) }
            td data-label="Tenant" { (opt(&t.tenant_id)) }
            td data-label="Agent" { (opt(&t.agent_name)) }
            td data-label="Created" {
                @if let Some(c) = t.created_at { (time(c)) } @else { (opt(&t.create_time_text)) }
            }
            td data-label="Last activity" { (time(t.last_activity_at)) }
            td.num data-label="Messages" { (t.message_count) }
            td.num data-label="Commands" { (t.command_count) }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TicketPageQuery {
    /// The timeline's cursor (as the API's), for a ticket longer than one page.
    cursor: Option<String>,
}

/// Most timeline entries on one page: a longer ticket continues on the next.
pub const MAX_ENTRIES: i64 = 2_000;

pub async fn one(
    State(app): State<AppState>,
    reader: UiReader,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, UiError> {
    let q: TicketPageQuery = query(&uri)?;
    let ticket =
        read::get_ticket(app.read_pool(), &reader.scope, &name).await?.ok_or(crate::http::error::ApiError::NotFound)?;
    let start = PageParams { limit: None, cursor: q.cursor.clone() }.after::<(i64, i32)>()?.unwrap_or((0, -1));
    // Up to MAX_ENTRIES and one more (which only says there is more), with the commands'
    // classes, in one query.
    let rows = read::classified_timeline(app.read_pool(), &name, start, MAX_ENTRIES + 1).await?;
    let page = Page::from_rows(rows, MAX_ENTRIES, |r| (r.entry.seq, r.entry.position), |r| r);
    let href = ticket_href(&ticket.name.0);
    // The stream resumes after the last entry shown: nothing recorded since the page was read is lost.
    let last = page.items.last().map(|r| format!("{}.{}", r.entry.seq, r.entry.position));
    let live = page
        .next_cursor
        .is_none()
        .then(|| link("/api/v1/stream", &[("ticket", Some(&ticket.name.0)), ("after", last.as_deref())]));
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/ui/tickets" { "Tickets" } " / " }
        h1 { (text::visible(&ticket.name.0)) @if let Some(t) = &ticket.title { " · " (text::visible(&t.0)) } }
        dl.fields {
            dt { "Status" } dd { (opt(&ticket.status)) }
            dt { "Tenant" } dd { (opt(&ticket.tenant_id)) }
            dt { "Agent" } dd { (opt(&ticket.agent_name)) @if let Some(id) = &ticket.agent_id { " (" (text::visible(&id.0)) ")" } }
            dt { "Created" } dd { @if let Some(c) = ticket.created_at { (time(c)) } @else { (opt(&ticket.create_time_text)) } }
            dt { "First seen" } dd { (time(ticket.first_seen_at)) " in " a href={"/ui/deliveries/" (ticket.first_seen_seq)} { "delivery " (ticket.first_seen_seq) } }
            dt { "Last activity" } dd { (time(ticket.last_activity_at)) }
            dt { "Messages" } dd { (ticket.message_count) }
            dt { "Commands" } dd { (ticket.command_count) " · " a href=(link("/ui/commands", &[("ticket", Some(&ticket.name.0))])) { "in the command list" } }
        }
        h2 { "Conversation" }
        @if live.is_some() { p.live #live data-state="connecting" { "Live updates: connecting…" } }
        @if q.cursor.is_some() { p { a href=(href) { "← From the beginning" } } }
        @if page.items.is_empty() {
            p.empty #timeline-empty { "Nothing has happened on this ticket yet. New entries appear here as they are recorded." }
        }
        ol.timeline #timeline { (timeline(&page.items)) }
        @if let Some(next) = &page.next_cursor {
            div.pager { a href=(link(&href, &[("cursor", Some(next))])) rel="next" { "Later entries →" } }
        }
    };
    Ok(html_response(StatusCode::OK, layout(&ticket.name.0, &reader.frame, "tickets", live.as_deref(), body)))
}

/// The entries, written into one buffer sized for them (the page's bulk: a thousand entries are
/// about 500 KB).
fn timeline(rows: &[read::ClassifiedEntry]) -> PreEscaped<String> {
    let mut out = String::with_capacity(rows.len() * 512);
    for r in rows {
        entry(&r.entry, r.class().as_ref()).render_to(&mut out);
    }
    PreEscaped(out)
}

fn entry(r: &TimelineRecord, class: Option<&CommandClass>) -> Markup {
    let (css, label) = match r.kind.as_str() {
        "user_message" => ("user_message", "User"),
        "agent_message" => ("agent_message", "Agent"),
        "command_proposed" => ("command", "Command proposed"),
        "command_executed" => ("command", "Command executed"),
        "ticket_created" => ("event", "Ticket created"),
        _ => ("event", "Action"),
    };
    let failed_action = matches!(css, "event") && r.success == Some(false);
    let non_2xx = r.status_code.is_some_and(|s| !(200..300).contains(&s));
    let risky = class.and_then(|c| c.risk.as_deref());
    let failed = class.is_some_and(|c| c.failed) || failed_action;
    html! {
        li.entry.(css).risky[risky.is_some()].failed[failed || non_2xx]
            id={"e" (r.seq) "." (r.position)} data-id={(r.seq) "." (r.position)} {
            header {
                span.who-said { (label) }
                (time(r.at))
                a href={"/ui/deliveries/" (r.seq)} { "delivery " (r.seq) }
                @if let Some(risk) = risky { span.badge.warn title="risky, by the reporting rules" { "risk: " (risk) } }
                @if let Some(c) = class { (outcome_badge(c)) }
            }
            @if r.redacted {
                p.redacted { span.badge title="the delivery was redacted: its text is gone, its proof stays" { "redacted" } }
            } @else {
                @if let Some(content) = &r.content { p.message { (text::visible(&content.0)) } }
                @if let Some(command) = &r.command { (text::output(&command.0, r.seq)) }
                @if let Some(result) = &r.result { (text::output(&result.0, r.seq)) }
            }
            @if let Some(action) = &r.action {
                p {
                    (text::visible(&action.0))
                    @if let Some(s) = r.status_code { " · status " (s) }
                    @if failed_action { " " span.badge.bad { "failed" } }
                    @if non_2xx { " " span.badge.bad { "non-2xx" } }
                }
            }
        }
    }
}

pub fn outcome_badge(c: &CommandClass) -> Markup {
    let css = if c.failed {
        "badge bad"
    } else if c.outcome == "ok" {
        "badge ok"
    } else {
        "badge"
    };
    html! { span class=(css) title="outcome, by the reporting rules" { (c.outcome) } }
}
