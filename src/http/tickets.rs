//! Tickets, their timelines and commands, and the command history across tickets.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Reader;
use super::error::{ApiError, ReadProblems};
use super::pagination::{CursorTime, Page, PageParams};
use super::{query_time, rfc3339, AppState, Path, Query};
use crate::store::read::{self, CommandFilter, CommandRecord, TicketFilter, TicketRecord, TimelineRecord};
use crate::store::Scope;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ticket {
    pub id: String,
    pub name: String,
    pub title: Option<String>,
    pub status: Option<String>,
    pub tenant_id: Option<String>,
    pub assignee: Option<Assignee>,
    /// `CreateTime`, RFC 3339 in UTC, like every time in answers. A time RFC 3339 cannot write
    /// (a year outside 0000 to 9999 in UTC) comes in ISO 8601's expanded form, the year signed:
    /// `-0001-12-31T23:59:00.000000Z`.
    pub created_at: Option<String>,
    /// `CreateTime` as sent, when it was not RFC 3339.
    pub create_time_text: Option<String>,
    pub first_seen_at: String,
    pub last_activity_at: String,
    pub message_count: i64,
    pub command_count: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Assignee {
    pub agent_name: Option<String>,
    pub agent_id: Option<String>,
}

impl From<TicketRecord> for Ticket {
    fn from(r: TicketRecord) -> Self {
        let s = |v: Option<_>| v.map(String::from);
        let (agent_name, agent_id) = (s(r.agent_name), s(r.agent_id));
        let assignee = (agent_name.is_some() || agent_id.is_some()).then_some(Assignee { agent_name, agent_id });
        Ticket {
            id: r.name.0.clone(),
            name: r.name.0,
            title: s(r.title),
            status: s(r.status),
            tenant_id: s(r.tenant_id),
            assignee,
            created_at: r.created_at.map(rfc3339),
            create_time_text: s(r.create_time_text),
            first_seen_at: rfc3339(r.first_seen_at),
            last_activity_at: rfc3339(r.last_activity_at),
            message_count: r.message_count,
            command_count: r.command_count,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TicketParams {
    tenant_id: Option<String>,
    agent_name: Option<String>,
    status: Option<String>,
    /// RFC 3339, inclusive, on `created_at`.
    #[serde(default, deserialize_with = "query_time::deserialize")]
    #[param(value_type = Option<String>, format = DateTime)]
    created_after: Option<time::OffsetDateTime>,
    /// RFC 3339, exclusive, on `created_at`.
    #[serde(default, deserialize_with = "query_time::deserialize")]
    #[param(value_type = Option<String>, format = DateTime)]
    created_before: Option<time::OffsetDateTime>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Tickets, newest first seen first.
#[utoipa::path(get, path = "/tickets", tag = "tickets", params(TicketParams),
    responses((status = 200, body = Page<Ticket>), ReadProblems),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Query(p): Query<TicketParams>,
) -> Result<Json<Page<Ticket>>, ApiError> {
    let page = PageParams { limit: p.limit, cursor: p.cursor };
    let limit = page.limit()?;
    let after = page.after::<(CursorTime, String)>()?.map(|(at, name)| (at.0, name));
    let filter = TicketFilter {
        tenant_id: p.tenant_id,
        agent_name: p.agent_name,
        status: p.status,
        created_after: p.created_after,
        created_before: p.created_before,
    };
    let rows = read::list_tickets(app.read_pool(), &scope, &filter, after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |r| (CursorTime(r.first_seen_at), r.name.0.clone()), Ticket::from)))
}

/// One ticket, with its message and command counts.
#[utoipa::path(get, path = "/tickets/{name}", tag = "tickets", params(("name" = String, Path, description = "the ticket's name")),
    responses((status = 200, body = Ticket), ReadProblems),
    security(("bearer" = [])))]
pub async fn one(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Path(name): Path<String>,
) -> Result<Json<Ticket>, ApiError> {
    visible_ticket(&app, &scope, &name).await.map(|t| Json(t.into()))
}

async fn visible_ticket(app: &AppState, scope: &Scope, name: &str) -> Result<TicketRecord, ApiError> {
    read::get_ticket(app.read_pool(), scope, name).await?.ok_or(ApiError::NotFound)
}

/// Something that happened to a ticket. Every entry has every field; those its kind does not
/// carry are null (`content` for messages; `command`, `result` for commands; `action`,
/// `status_code`, `success` for `ticket_created` and `action`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    /// `{seq}.{position}`.
    pub id: String,
    pub seq: i64,
    pub position: i32,
    pub at: String,
    pub delivery_id: i64,
    pub kind: Kind,
    pub content: Option<String>,
    pub command: Option<String>,
    pub result: Option<String>,
    pub action: Option<String>,
    pub status_code: Option<i32>,
    pub success: Option<bool>,
    /// Its delivery was redacted (`POST /admin/deliveries/{id}/redact`): `content`, `command` and
    /// `result` are null, the text is gone; the entry, its time and its kind stay.
    pub redacted: bool,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    TicketCreated,
    UserMessage,
    AgentMessage,
    CommandProposed,
    CommandExecuted,
    Action,
}

impl From<TimelineRecord> for TimelineEntry {
    fn from(r: TimelineRecord) -> Self {
        let s = |v: Option<_>| v.map(String::from);
        let kind = match r.kind.as_str() {
            "ticket_created" => Kind::TicketCreated,
            "user_message" => Kind::UserMessage,
            "agent_message" => Kind::AgentMessage,
            "command_proposed" => Kind::CommandProposed,
            "command_executed" => Kind::CommandExecuted,
            _ => Kind::Action,
        };
        let is_event = matches!(kind, Kind::TicketCreated | Kind::Action);
        let text = |v: Option<_>| if r.redacted { None } else { s(v) };
        TimelineEntry {
            id: format!("{}.{}", r.seq, r.position),
            seq: r.seq,
            position: r.position,
            at: rfc3339(r.at),
            delivery_id: r.seq,
            kind,
            content: text(r.content),
            command: text(r.command),
            result: text(r.result),
            action: s(r.action),
            status_code: r.status_code,
            success: if is_event { Some(r.success.unwrap_or(false)) } else { None },
            redacted: r.redacted,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OnlyPage {
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Everything that happened to the ticket, oldest first.
#[utoipa::path(get, path = "/tickets/{name}/timeline", tag = "tickets",
    params(("name" = String, Path, description = "the ticket's name"), OnlyPage),
    responses((status = 200, body = Page<TimelineEntry>), ReadProblems),
    security(("bearer" = [])))]
pub async fn timeline(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Path(name): Path<String>,
    Query(p): Query<OnlyPage>,
) -> Result<Json<Page<TimelineEntry>>, ApiError> {
    let page = PageParams { limit: p.limit, cursor: p.cursor };
    let limit = page.limit()?;
    let after = page.after::<(i64, i32)>()?.unwrap_or((0, -1));
    visible_ticket(&app, &scope, &name).await?;
    let rows = read::timeline(app.read_pool(), &name, after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |r| (r.seq, r.position), TimelineEntry::from)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Command {
    pub id: String,
    pub ticket: Option<String>,
    pub tenant_id: Option<String>,
    pub agent_name: Option<String>,
    pub agent_id: Option<String>,
    pub command: String,
    pub result: Option<String>,
    pub executed: bool,
    pub recorded_at: String,
    pub seq: i64,
    pub position: i32,
    pub delivery_id: i64,
    /// Its delivery was redacted: `command` is empty and `result` null; its evidence is a 410.
    pub redacted: bool,
}

impl From<CommandRecord> for Command {
    fn from(r: CommandRecord) -> Self {
        let s = |v: Option<_>| v.map(String::from);
        Command {
            id: format!("{}.{}", r.seq, r.position),
            ticket: s(r.ticket_name),
            tenant_id: s(r.tenant_id),
            agent_name: s(r.agent_name),
            agent_id: s(r.agent_id),
            command: r.command.0,
            result: s(r.result),
            executed: r.executed,
            recorded_at: rfc3339(r.recorded_at),
            seq: r.seq,
            position: r.position,
            delivery_id: r.seq,
            redacted: r.redacted,
        }
    }
}

/// The ticket's commands, proposed and executed, oldest first.
#[utoipa::path(get, path = "/tickets/{name}/commands", tag = "tickets",
    params(("name" = String, Path, description = "the ticket's name"), OnlyPage),
    responses((status = 200, body = Page<Command>), ReadProblems),
    security(("bearer" = [])))]
pub async fn commands(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Path(name): Path<String>,
    Query(p): Query<OnlyPage>,
) -> Result<Json<Page<Command>>, ApiError> {
    let page = PageParams { limit: p.limit, cursor: p.cursor };
    let limit = page.limit()?;
    let after = page.after::<(i64, i32)>()?;
    visible_ticket(&app, &scope, &name).await?;
    let filter = CommandFilter { ticket: Some(name), ..Default::default() };
    let rows = read::list_commands(app.read_pool(), &scope, &filter, true, after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |r| (r.seq, r.position), Command::from)))
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CommandParams {
    tenant_id: Option<String>,
    agent_name: Option<String>,
    /// A ticket's name.
    ticket: Option<String>,
    /// A substring of the command, matched as it is.
    contains: Option<String>,
    /// RFC 3339, inclusive, on `recorded_at`.
    #[serde(default, deserialize_with = "query_time::deserialize")]
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<time::OffsetDateTime>,
    /// RFC 3339, exclusive, on `recorded_at`.
    #[serde(default, deserialize_with = "query_time::deserialize")]
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<time::OffsetDateTime>,
    executed: Option<bool>,
    /// `desc` (newest first, the default) or `asc`.
    #[param(inline)]
    order: Option<Order>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Command history across tickets, newest first (`order=asc` for oldest first).
#[utoipa::path(get, path = "/commands", tag = "commands", params(CommandParams),
    responses((status = 200, body = Page<Command>), ReadProblems),
    security(("bearer" = [])))]
pub async fn all_commands(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Query(p): Query<CommandParams>,
) -> Result<Json<Page<Command>>, ApiError> {
    let page = PageParams { limit: p.limit, cursor: p.cursor };
    let limit = page.limit()?;
    let ascending = p.order == Some(Order::Asc);
    // The order is part of the cursor, so a cursor cannot be replayed against the other order.
    let after = page.after::<(i64, i32, bool)>()?;
    if after.is_some_and(|(_, _, asc)| asc != ascending) {
        return Err(ApiError::BadRequest("cursor belongs to the other order".into()));
    }
    let filter = CommandFilter {
        tenant_id: p.tenant_id,
        agent_name: p.agent_name,
        ticket: p.ticket,
        contains: p.contains.filter(|c| !c.is_empty()),
        since: p.since,
        until: p.until,
        executed: p.executed,
    };
    let rows =
        read::list_commands(app.read_pool(), &scope, &filter, ascending, after.map(|(s, p, _)| (s, p)), limit + 1)
            .await?;
    Ok(Json(Page::from_rows(rows, limit, |r| (r.seq, r.position, ascending), Command::from)))
}
