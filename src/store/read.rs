//! The read queries behind the API: keyset pages over indexed orders, scoped to a tenant when asked.

use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;

use super::text::PgText;

/// What a reader may see: everything, or one tenant's tickets, commands and deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Tenant(String),
}

impl Scope {
    fn tenant(&self) -> Option<PgText> {
        match self {
            Scope::All => None,
            Scope::Tenant(t) => Some(PgText::from(t.as_str())),
        }
    }
}

/// A read as the service builds it: its SQL and binds, run by its function below, and EXPLAINed
/// as it is by `tests/api/plans.rs`.
pub type Built = QueryBuilder<'static, Postgres>;

/// Starts `WHERE true` so each filter is one `AND`.
fn select<'a>(sql: &str) -> QueryBuilder<'a, Postgres> {
    let mut q = QueryBuilder::new(sql);
    q.push(" WHERE true");
    q
}

fn and_eq<'a, T>(q: &mut QueryBuilder<'a, Postgres>, column: &str, v: Option<T>)
where
    T: 'a + sqlx::Encode<'a, Postgres> + sqlx::Type<Postgres> + Send,
{
    if let Some(v) = v {
        q.push(format_args!(" AND {column} = ")).push_bind(v);
    }
}

fn and_cmp<'a, T>(q: &mut QueryBuilder<'a, Postgres>, column: &str, op: &str, v: Option<T>)
where
    T: 'a + sqlx::Encode<'a, Postgres> + sqlx::Type<Postgres> + Send,
{
    if let Some(v) = v {
        q.push(format_args!(" AND {column} {op} ")).push_bind(v);
    }
}

/// The tenant a reader is bound to and the tenant filter asked for, each as `column = $n`, but
/// the same tenant only once: `t = $1 AND t = $2` looks twice as selective as it is to the planner
/// (it multiplies the two), and on a generic plan that estimate turns a walk down the primary key
/// into a sequential scan and a sort. Two different tenants keep both conditions: nothing matches.
fn and_tenant<'a>(q: &mut QueryBuilder<'a, Postgres>, column: &str, scope: &Scope, filter: Option<&str>) {
    let bound = scope.tenant();
    let asked = filter.map(PgText::from).filter(|f| bound.as_ref() != Some(f));
    and_eq(q, column, bound);
    and_eq(q, column, asked);
}

// ---------------------------------------------------------------- tickets

pub use super::batch::TicketRecord;

#[derive(Debug, Default, Clone)]
pub struct TicketFilter {
    pub tenant_id: Option<String>,
    pub agent_name: Option<String>,
    pub status: Option<String>,
    pub created_after: Option<OffsetDateTime>,
    pub created_before: Option<OffsetDateTime>,
}

const TICKET_COLUMNS: &str =
    "SELECT name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text, \
     first_seen_at, first_seen_seq, last_activity_at, message_count, command_count FROM tickets";

/// Tickets, newest first by (first_seen_at, name); `after` is the last key of the previous page.
pub async fn list_tickets(
    pool: &PgPool,
    scope: &Scope,
    f: &TicketFilter,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<Vec<TicketRecord>, sqlx::Error> {
    list_tickets_query(scope, f, after, limit).build_query_as().fetch_all(pool).await
}

pub fn list_tickets_query(
    scope: &Scope,
    f: &TicketFilter,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Built {
    let mut q = select(TICKET_COLUMNS);
    and_tenant(&mut q, "tenant_id", scope, f.tenant_id.as_deref());
    and_eq(&mut q, "agent_name", f.agent_name.as_deref().map(PgText::from));
    and_eq(&mut q, "status", f.status.as_deref().map(PgText::from));
    and_cmp(&mut q, "created_at", ">=", f.created_after);
    and_cmp(&mut q, "created_at", "<", f.created_before);
    if let Some((at, name)) = after {
        q.push(" AND (first_seen_at, name) < (").push_bind(at).push(", ").push_bind(PgText(name)).push(")");
    }
    q.push(" ORDER BY first_seen_at DESC, name DESC LIMIT ").push_bind(limit);
    q
}

pub async fn get_ticket(pool: &PgPool, scope: &Scope, name: &str) -> Result<Option<TicketRecord>, sqlx::Error> {
    get_ticket_query(scope, name).build_query_as().fetch_optional(pool).await
}

pub fn get_ticket_query(scope: &Scope, name: &str) -> Built {
    let mut q = select(TICKET_COLUMNS);
    and_eq(&mut q, "name", Some(PgText::from(name)));
    and_eq(&mut q, "tenant_id", scope.tenant());
    q
}

// ---------------------------------------------------------------- timeline

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TimelineRecord {
    pub seq: i64,
    pub position: i32,
    pub at: OffsetDateTime,
    pub kind: String,
    pub content: Option<PgText>,
    pub command: Option<PgText>,
    pub result: Option<PgText>,
    pub action: Option<PgText>,
    pub status_code: Option<i32>,
    pub success: Option<bool>,
    /// Its delivery was redacted: the text is gone (filled by [`mark_redacted`], not the query).
    #[sqlx(skip)]
    pub redacted: bool,
}

/// A ticket's timeline, oldest first, after (seq, position). The caller checks the ticket is visible.
pub async fn timeline(
    pool: &PgPool,
    ticket: &str,
    after: (i64, i32),
    limit: i64,
) -> Result<Vec<TimelineRecord>, sqlx::Error> {
    let mut rows: Vec<TimelineRecord> = timeline_query(ticket, after, limit).build_query_as().fetch_all(pool).await?;
    mark_redacted(pool, &mut rows).await?;
    Ok(rows)
}

pub fn timeline_query(ticket: &str, after: (i64, i32), limit: i64) -> Built {
    QueryBuilder::with_arguments(include_str!("sql/timeline.sql"), timeline_args(ticket, after, limit))
}

/// The binds of `sql/timeline.sql`: its $1..$4 (it uses $1 and $4 more than once), in that order.
fn timeline_args(ticket: &str, after: (i64, i32), limit: i64) -> sqlx::postgres::PgArguments {
    use sqlx::Arguments;
    let mut args = sqlx::postgres::PgArguments::default();
    let bound = args
        .add(PgText::from(ticket))
        .and_then(|()| args.add(after.0))
        .and_then(|()| args.add(after.1))
        .and_then(|()| args.add(limit));
    debug_assert!(bound.is_ok(), "text and integers always encode");
    args
}

// ---------------------------------------------------------------- commands

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommandRecord {
    pub seq: i64,
    pub position: i32,
    pub ticket_name: Option<PgText>,
    pub tenant_id: Option<PgText>,
    pub agent_name: Option<PgText>,
    pub agent_id: Option<PgText>,
    pub command: PgText,
    pub result: Option<PgText>,
    pub executed: bool,
    pub recorded_at: OffsetDateTime,
    /// Its delivery was redacted: `command` is empty, `result` null (filled by [`mark_redacted`]).
    #[sqlx(skip)]
    pub redacted: bool,
}

#[derive(Debug, Default, Clone)]
pub struct CommandFilter {
    pub tenant_id: Option<String>,
    pub agent_name: Option<String>,
    pub ticket: Option<String>,
    pub contains: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub executed: Option<bool>,
}

/// Commands in (seq, position) order, ascending or descending, after the given key.
pub async fn list_commands(
    pool: &PgPool,
    scope: &Scope,
    f: &CommandFilter,
    ascending: bool,
    after: Option<(i64, i32)>,
    limit: i64,
) -> Result<Vec<CommandRecord>, sqlx::Error> {
    let mut rows: Vec<CommandRecord> =
        list_commands_query(scope, f, ascending, after, limit).build_query_as().fetch_all(pool).await?;
    mark_redacted(pool, &mut rows).await?;
    Ok(rows)
}

pub fn list_commands_query(
    scope: &Scope,
    f: &CommandFilter,
    ascending: bool,
    after: Option<(i64, i32)>,
    limit: i64,
) -> Built {
    commands_query(scope, f, None, ascending, after, limit)
}

fn commands_query(
    scope: &Scope,
    f: &CommandFilter,
    classes: Option<&ClassFilter>,
    ascending: bool,
    after: Option<(i64, i32)>,
    limit: i64,
) -> Built {
    const COLUMNS: &str = "SELECT c.seq, c.position, c.ticket_name, t.tenant_id, t.agent_name, t.agent_id, \
         c.command, c.result, c.executed, c.recorded_at";
    let mut q = match classes {
        None => select(&format!("{COLUMNS} FROM commands c LEFT JOIN tickets t ON t.name = c.ticket_name")),
        Some(_) => select(&format!(
            "{COLUMNS}, {OUTCOME} AS outcome, {RISK} AS risk, reporting.is_failure({OUTCOME}) AS failed \
             FROM commands c LEFT JOIN tickets t ON t.name = c.ticket_name {CLASS_JOIN}"
        )),
    };
    if let Some(k) = classes {
        // Each as "classified and the stored class matches, or not yet and the rule's function
        // does": the same as a condition on OUTCOME or RISK, but the planner estimates it from
        // command_class's statistics. On the CASE it assumes 0.5%, and with a tenant or agent
        // filter besides it expected so few rows that it read all of commands and
        // command_class into hash joins (346 ms at 100,000 commands) instead of walking the
        // primary key to the page's 51.
        if let Some(outcome) = k.outcome.as_deref() {
            q.push(" AND ((k.seq IS NOT NULL AND k.outcome = ").push_bind(PgText::from(outcome));
            q.push(") OR (k.seq IS NULL AND reporting.command_outcome(c.executed, c.result) = ");
            q.push_bind(PgText::from(outcome)).push("))");
        }
        match k.risk.as_deref() {
            None => {}
            Some(RISKY) => {
                q.push(
                    " AND ((k.seq IS NOT NULL AND k.risk IS NOT NULL) \
                     OR (k.seq IS NULL AND reporting.command_risk(c.command) IS NOT NULL))",
                );
            }
            Some(NOT_RISKY) => {
                q.push(
                    " AND ((k.seq IS NOT NULL AND k.risk IS NULL) \
                     OR (k.seq IS NULL AND reporting.command_risk(c.command) IS NULL))",
                );
            }
            Some(class) => {
                q.push(" AND ((k.seq IS NOT NULL AND k.risk = ").push_bind(PgText::from(class));
                q.push(") OR (k.seq IS NULL AND reporting.command_risk(c.command) = ");
                q.push_bind(PgText::from(class)).push("))");
            }
        }
    }
    and_tenant(&mut q, "t.tenant_id", scope, f.tenant_id.as_deref());
    and_eq(&mut q, "t.agent_name", f.agent_name.as_deref().map(PgText::from));
    and_eq(&mut q, "c.ticket_name", f.ticket.as_deref().map(PgText::from));
    and_eq(&mut q, "c.executed", f.executed);
    and_cmp(&mut q, "c.recorded_at", ">=", f.since);
    and_cmp(&mut q, "c.recorded_at", "<", f.until);
    if let Some(needle) = &f.contains {
        // strpos, not LIKE: the needle is matched as it is, with no wildcard to escape.
        q.push(" AND strpos(c.command, ").push_bind(PgText::from(needle.as_str())).push(") > 0");
    }
    let (cmp, dir) = if ascending { (">", "ASC") } else { ("<", "DESC") };
    if let Some((seq, pos)) = after {
        q.push(format_args!(" AND (c.seq, c.position) {cmp} (")).push_bind(seq).push(", ").push_bind(pos).push(")");
    }
    q.push(format_args!(" ORDER BY c.seq {dir}, c.position {dir} LIMIT ")).push_bind(limit);
    q
}

// ---------------------------------------------------------------- classification

// The reporting rules' values (outcome and risk, V3__reporting.sql) of a command `c`, as
// reporting.commands gives them: stored in reporting.command_class once the classifier has reached
// the command, computed by the rules' own functions before that. Every command at or below the
// classifier's watermark is in command_class and none above it, so in one snapshot a missing
// row means "not classified yet". The rules themselves live in SQL only.
const CLASS_JOIN: &str = "LEFT JOIN reporting.command_class k ON k.seq = c.seq AND k.position = c.position";
const OUTCOME: &str = "CASE WHEN k.seq IS NULL THEN reporting.command_outcome(c.executed, c.result) ELSE k.outcome END";
const RISK: &str = "CASE WHEN k.seq IS NULL THEN reporting.command_risk(c.command) ELSE k.risk END";

/// `risk` filter values beyond the rule's classes: any class, or none.
pub const RISKY: &str = "any";
pub const NOT_RISKY: &str = "none";

/// Filters on the reporting rules' values: an outcome class (`ok`, `error`, ...) and a risk class
/// (`destroy`, ..., or RISKY / NOT_RISKY).
#[derive(Debug, Default, Clone)]
pub struct ClassFilter {
    pub outcome: Option<String>,
    pub risk: Option<String>,
}

/// The rules' values of one command.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommandClass {
    /// not_executed, unknown, timeout, denied, not_found, error or ok.
    pub outcome: String,
    /// destroy, delete, terminate, permissions, secrets, or None when not risky.
    pub risk: Option<String>,
    /// The reports' "failed" (reporting.is_failure).
    pub failed: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClassifiedCommand {
    #[sqlx(flatten)]
    pub command: CommandRecord,
    #[sqlx(flatten)]
    pub class: CommandClass,
}

/// Commands as `list_commands` reads them, with their classification, and filtered on it too.
pub async fn list_classified_commands(
    pool: &PgPool,
    scope: &Scope,
    f: &CommandFilter,
    classes: &ClassFilter,
    ascending: bool,
    after: Option<(i64, i32)>,
    limit: i64,
) -> Result<Vec<ClassifiedCommand>, sqlx::Error> {
    let mut rows: Vec<ClassifiedCommand> = list_classified_commands_query(scope, f, classes, ascending, after, limit)
        .build_query_as()
        .fetch_all(pool)
        .await?;
    mark_redacted(pool, &mut rows).await?;
    Ok(rows)
}

pub fn list_classified_commands_query(
    scope: &Scope,
    f: &CommandFilter,
    classes: &ClassFilter,
    ascending: bool,
    after: Option<(i64, i32)>,
    limit: i64,
) -> Built {
    commands_query(scope, f, Some(classes), ascending, after, limit)
}

/// A ticket's timeline entry (as [`timeline`] gives it) with, for a command, the reporting
/// rules' values.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClassifiedEntry {
    #[sqlx(flatten)]
    pub entry: TimelineRecord,
    outcome: Option<String>,
    risk: Option<String>,
    failed: Option<bool>,
}

impl ClassifiedEntry {
    /// The command's classes; `None` for an entry that is not a command.
    pub fn class(&self) -> Option<CommandClass> {
        let outcome = self.outcome.clone()?;
        Some(CommandClass { outcome, risk: self.risk.clone(), failed: self.failed.unwrap_or(false) })
    }
}

/// A ticket's timeline as [`timeline`] reads it (the same query, inside this one), each command
/// with its classes, in one query: for a page that shows both. The caller checks the ticket is
/// visible.
pub async fn classified_timeline(
    pool: &PgPool,
    ticket: &str,
    after: (i64, i32),
    limit: i64,
) -> Result<Vec<ClassifiedEntry>, sqlx::Error> {
    let mut rows: Vec<ClassifiedEntry> =
        classified_timeline_query(ticket, after, limit).build_query_as().fetch_all(pool).await?;
    mark_redacted(pool, &mut rows).await?;
    Ok(rows)
}

pub fn classified_timeline_query(ticket: &str, after: (i64, i32), limit: i64) -> Built {
    // As CLASS_JOIN, OUTCOME and RISK, on the timeline's columns: a command is executed when its
    // kind says so. The class is looked up for commands only (the lateral's condition on the
    // kind gates the lookup), by one index probe each: OFFSET 0 keeps the lookup a probe per
    // entry (flattened into a join, the planner may hash all of command_class for it).
    const IS_COMMAND: &str = "t.kind IN ('command_executed', 'command_proposed')";
    const ENTRY_OUTCOME: &str = "CASE WHEN k.seq IS NOT NULL THEN k.outcome \
         WHEN t.kind IN ('command_executed', 'command_proposed') \
         THEN reporting.command_outcome(t.kind = 'command_executed', t.result) END";
    QueryBuilder::with_arguments(
        format!(
            "SELECT t.*, {ENTRY_OUTCOME} AS outcome, \
             CASE WHEN k.seq IS NOT NULL THEN k.risk WHEN {IS_COMMAND} THEN reporting.command_risk(t.command) END AS risk, \
             reporting.is_failure({ENTRY_OUTCOME}) AS failed \
             FROM ({}\n) t \
             LEFT JOIN LATERAL (SELECT k.seq, k.outcome, k.risk FROM reporting.command_class k \
                 WHERE k.seq = t.seq AND k.position = t.position AND {IS_COMMAND} OFFSET 0) k ON true \
             ORDER BY t.seq, t.position",
            include_str!("sql/timeline.sql")
        ),
        timeline_args(ticket, after, limit),
    )
}

/// One command's fields that [`CommandFilter`] looks at, for deciding in memory.
#[derive(Debug, Clone, Copy)]
pub struct CommandFields<'a> {
    pub tenant_id: Option<&'a str>,
    pub agent_name: Option<&'a str>,
    pub ticket: Option<&'a str>,
    pub executed: bool,
    pub recorded_at: OffsetDateTime,
    /// `None` when the caller does not hold the text: `contains` is then left to the database.
    pub command: Option<&'a str>,
}

impl CommandFilter {
    /// Whether [`list_commands_query`] would select this command for `scope`: its conditions,
    /// one for one, decided in memory (the live tail filters what it broadcasts with it; a test
    /// holds the two to the same answers). Strings compare as stored: the escape of
    /// [`super::text`] is one-to-one, and `contains` matches the stored forms as `strpos` does.
    pub fn admits(&self, scope: &Scope, c: &CommandFields<'_>) -> bool {
        let eq = |want: Option<&str>, have: Option<&str>| want.is_none_or(|w| have == Some(w));
        let scoped = match scope {
            Scope::All => true,
            Scope::Tenant(t) => c.tenant_id == Some(t.as_str()),
        };
        scoped
            && eq(self.tenant_id.as_deref(), c.tenant_id)
            && eq(self.agent_name.as_deref(), c.agent_name)
            && eq(self.ticket.as_deref(), c.ticket)
            && self.executed.is_none_or(|e| e == c.executed)
            && self.since.is_none_or(|t| c.recorded_at >= t)
            && self.until.is_none_or(|t| c.recorded_at < t)
            && match (&self.contains, c.command) {
                (Some(needle), Some(command)) => {
                    super::text::escape(command).contains(super::text::escape(needle).as_ref())
                }
                _ => true,
            }
    }
}

// ---------------------------------------------------------------- deliveries

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub seq: i64,
    pub received_at: OffsetDateTime,
    pub dedup_key: PgText,
    pub key_source: String,
    pub action: Option<PgText>,
    pub status_code: Option<i32>,
    pub headers: sqlx::types::Json<serde_json::Value>,
    pub normalize_error: Option<PgText>,
    pub size: i32,
    pub body_sha256: Vec<u8>,
    pub hash: Vec<u8>,
    pub ticket_name: Option<PgText>,
    pub tenant_id: Option<PgText>,
    pub recorded_at: OffsetDateTime,
    pub unprojected: bool,
    /// Set when the delivery was redacted (filled by the read functions, not the query).
    #[sqlx(skip)]
    pub redaction: Option<super::redaction::Redaction>,
}

#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub action: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

const DELIVERY_COLUMNS: &str = "SELECT d.seq, d.received_at, d.dedup_key, d.key_source, d.action, d.status_code, \
     d.headers, d.normalize_error, length(d.body) AS size, d.body_sha256, d.hash, e.ticket_name, \
     coalesce(t.tenant_id, e.carried_tenant) AS tenant_id, coalesce(d.recorded_at, d.received_at) AS recorded_at, \
     d.unprojected \
     FROM deliveries d LEFT JOIN action_events e ON e.seq = d.seq LEFT JOIN tickets t ON t.name = e.ticket_name";

/// A delivery belongs to the tenant of the ticket it concerns, else to the tenant it carries:
/// `coalesce(t.tenant_id, e.carried_tenant) = $n`, written out so the planner can estimate it. It
/// gives an equality on a coalesce of two tables' columns a default selectivity of 0.5%, and for
/// a page of the newest deliveries then prefers reading all of action_events and tickets into a
/// hash join to walking down the primary key; the columns' own statistics say one in a few.
fn and_delivery_tenant(q: &mut QueryBuilder<'_, Postgres>, scope: &Scope) {
    if let Some(tenant) = scope.tenant() {
        q.push(" AND (t.tenant_id = ").push_bind(tenant.clone());
        q.push(" OR (t.tenant_id IS NULL AND e.carried_tenant = ").push_bind(tenant).push("))");
    }
}

pub async fn list_deliveries(
    pool: &PgPool,
    scope: &Scope,
    f: &DeliveryFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, sqlx::Error> {
    let mut rows: Vec<DeliveryRecord> =
        list_deliveries_query(scope, f, before, limit).build_query_as().fetch_all(pool).await?;
    mark_redacted(pool, &mut rows).await?;
    Ok(rows)
}

pub fn list_deliveries_query(scope: &Scope, f: &DeliveryFilter, before: Option<i64>, limit: i64) -> Built {
    let mut q = select(DELIVERY_COLUMNS);
    and_delivery_tenant(&mut q, scope);
    and_eq(&mut q, "d.action", f.action.as_deref().map(PgText::from));
    and_cmp(&mut q, "d.received_at", ">=", f.since);
    and_cmp(&mut q, "d.received_at", "<", f.until);
    and_cmp(&mut q, "d.seq", "<", before);
    q.push(" ORDER BY d.seq DESC LIMIT ").push_bind(limit);
    q
}

pub async fn get_delivery(pool: &PgPool, scope: &Scope, seq: i64) -> Result<Option<DeliveryRecord>, sqlx::Error> {
    let mut row: Option<DeliveryRecord> = get_delivery_query(scope, seq).build_query_as().fetch_optional(pool).await?;
    mark_redacted(pool, row.as_mut_slice()).await?;
    Ok(row)
}

pub fn get_delivery_query(scope: &Scope, seq: i64) -> Built {
    let mut q = select(DELIVERY_COLUMNS);
    and_eq(&mut q, "d.seq", Some(seq));
    and_delivery_tenant(&mut q, scope);
    q
}

/// The exact bytes of a visible delivery.
pub async fn delivery_body(pool: &PgPool, scope: &Scope, seq: i64) -> Result<Option<Vec<u8>>, sqlx::Error> {
    delivery_body_query(scope, seq).build_query_scalar().fetch_optional(pool).await
}

pub fn delivery_body_query(scope: &Scope, seq: i64) -> Built {
    let mut q = select(
        "SELECT d.body FROM deliveries d LEFT JOIN action_events e ON e.seq = d.seq \
         LEFT JOIN tickets t ON t.name = e.ticket_name",
    );
    and_eq(&mut q, "d.seq", Some(seq));
    and_delivery_tenant(&mut q, scope);
    q
}

// ---------------------------------------------------------------- redactions

/// A row a redaction may have blanked. Only a row that looks like a tombstone (its text, or its
/// delivery's body, empty) is asked about, so a page without one costs no query more.
pub trait MaybeRedacted {
    fn seq(&self) -> i64;
    fn looks_redacted(&self) -> bool;
    fn mark(&mut self, r: &super::redaction::Redaction);
}

impl MaybeRedacted for TimelineRecord {
    fn seq(&self) -> i64 {
        self.seq
    }
    /// A message or command with no text (an action event holds none either way).
    fn looks_redacted(&self) -> bool {
        let blank = |t: &Option<PgText>| !matches!(t, Some(v) if !v.0.is_empty());
        self.position > 0 && blank(&self.content) && blank(&self.command) && self.result.is_none()
    }
    fn mark(&mut self, _: &super::redaction::Redaction) {
        self.redacted = true;
    }
}

impl MaybeRedacted for CommandRecord {
    fn seq(&self) -> i64 {
        self.seq
    }
    fn looks_redacted(&self) -> bool {
        self.command.0.is_empty() && self.result.is_none()
    }
    fn mark(&mut self, _: &super::redaction::Redaction) {
        self.redacted = true;
    }
}

impl MaybeRedacted for ClassifiedCommand {
    fn seq(&self) -> i64 {
        self.command.seq
    }
    fn looks_redacted(&self) -> bool {
        self.command.looks_redacted()
    }
    fn mark(&mut self, r: &super::redaction::Redaction) {
        self.command.mark(r);
    }
}

impl MaybeRedacted for DeliveryRecord {
    fn seq(&self) -> i64 {
        self.seq
    }
    /// Every stored body is a JSON object but the tombstone.
    fn looks_redacted(&self) -> bool {
        self.size == 0
    }
    fn mark(&mut self, r: &super::redaction::Redaction) {
        self.redaction = Some(r.clone());
    }
}

impl MaybeRedacted for ClassifiedEntry {
    fn seq(&self) -> i64 {
        self.entry.seq
    }
    fn looks_redacted(&self) -> bool {
        self.entry.looks_redacted()
    }
    fn mark(&mut self, r: &super::redaction::Redaction) {
        self.entry.mark(r);
    }
}

/// Marks the rows of a page whose delivery was redacted: one query for the page's
/// tombstone-looking rows, none when it has none.
pub async fn mark_redacted<T: MaybeRedacted>(pool: &PgPool, rows: &mut [T]) -> Result<(), sqlx::Error> {
    let mut seqs: Vec<i64> = rows.iter().filter(|r| r.looks_redacted()).map(MaybeRedacted::seq).collect();
    if seqs.is_empty() {
        return Ok(());
    }
    seqs.dedup();
    let found: std::collections::HashMap<i64, super::redaction::Redaction> =
        super::redaction::among(pool, &seqs).await?.into_iter().map(|r| (r.target_seq, r)).collect();
    for row in rows.iter_mut().filter(|r| r.looks_redacted()) {
        if let Some(r) = found.get(&row.seq()) {
            row.mark(r);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- health

#[derive(Debug, Serialize)]
pub struct Readiness {
    pub database: bool,
    pub schema_version: Option<i64>,
    pub expected_version: i64,
}

pub async fn readiness(pool: &PgPool) -> Readiness {
    let expected_version = super::migrate::latest_version();
    let version: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT max(version)::bigint FROM refinery_schema_history").fetch_one(pool).await;
    match version {
        Ok(v) => Readiness { database: true, schema_version: v, expected_version },
        Err(sqlx::Error::Database(_)) => Readiness { database: true, schema_version: None, expected_version },
        Err(_) => Readiness { database: false, schema_version: None, expected_version },
    }
}

// ---------------------------------------------------------------- anomalies

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AnomalyRecord {
    pub seq: i64,
    pub position: i32,
    pub ticket_name: PgText,
    pub kind: String,
    pub owner_tenant: PgText,
    pub claimed_tenant: PgText,
    pub recorded_at: OffsetDateTime,
}

/// Refused tenant claims, newest first, before the given (seq, position); for admins only.
pub async fn list_anomalies(
    pool: &PgPool,
    ticket: Option<&str>,
    before: Option<(i64, i32)>,
    limit: i64,
) -> Result<Vec<AnomalyRecord>, sqlx::Error> {
    let mut q = select(
        "SELECT seq, position, ticket_name, kind, owner_tenant, claimed_tenant, recorded_at FROM ticket_anomalies",
    );
    and_eq(&mut q, "ticket_name", ticket.map(PgText::from));
    if let Some((seq, pos)) = before {
        q.push(" AND (seq, position) < (").push_bind(seq).push(", ").push_bind(pos).push(")");
    }
    q.push(" ORDER BY seq DESC, position DESC LIMIT ").push_bind(limit);
    q.build_query_as().fetch_all(pool).await
}
