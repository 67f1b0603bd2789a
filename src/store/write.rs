//! The write path: a batch of deliveries in one transaction, sequenced, chained and projected.

use std::collections::HashMap;

use sqlx::{Acquire, PgConnection};
use time::OffsetDateTime;

use super::text::{escape, PgText};
use crate::domain::ledger::{chain_hash, ChainedFields, Hash};
use crate::domain::{DeliveryKey, Normalized, TicketState};

/// A delivery ready to store: checked, keyed and normalized by the caller.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub key: DeliveryKey,
    /// Microsecond precision, as PostgreSQL keeps it.
    pub received_at: OffsetDateTime,
    pub body: Vec<u8>,
    pub body_sha256: Hash,
    /// Identity headers as a JSON object.
    pub headers: serde_json::Value,
    pub normalized: Normalized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub seq: i64,
    pub duplicate: bool,
}

/// Stores a batch in one transaction: takes the ledger head (serializing writers across
/// processes), answers duplicates with their original seq, gives new deliveries the next
/// sequence numbers and chain hashes, projects them, and commits. One outcome per input.
pub async fn write_batch(conn: &mut PgConnection, batch: &[&NewDelivery]) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let (mut head_seq, head_hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM ledger_head FOR UPDATE").fetch_one(&mut *tx).await?;
    let mut prev: Hash =
        head_hash.try_into().map_err(|_| sqlx::Error::Protocol("ledger_head.hash is not 32 bytes".into()))?;

    let keys: Vec<PgText> = batch.iter().map(|d| PgText::from(d.key.as_str())).collect();
    // Not prepared (persistent(false)): planned for these keys every time. A prepared statement
    // keeps, after five runs, a generic plan made while the table was small: a sequential scan on
    // every batch, which halved ingest where statistics were missing (bench/README.md).
    let known: HashMap<PgText, i64> = sqlx::query_as("SELECT dedup_key, seq FROM deliveries WHERE dedup_key = ANY($1)")
        .persistent(false)
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut in_batch: HashMap<&str, i64> = HashMap::new();
    let mut fresh: Vec<(i64, &NewDelivery)> = Vec::new();
    let mut rows = DeliveryColumns::default();
    for d in batch {
        let key = d.key.as_str();
        if let Some(&seq) = known.get(&PgText::from(key)).or_else(|| in_batch.get(key)) {
            outcomes.push(Outcome { seq, duplicate: true });
            continue;
        }
        head_seq += 1;
        let action = d.normalized.action.as_deref().map(escape);
        let escaped_key = escape(key);
        prev = chain_hash(
            &prev,
            &ChainedFields {
                seq: head_seq,
                received_at: d.received_at,
                key: &escaped_key,
                action: action.as_deref(),
                status_code: d.normalized.status_code,
                body_sha256: &d.body_sha256,
            },
        );
        rows.push(head_seq, d, prev);
        in_batch.insert(key, head_seq);
        fresh.push((head_seq, d));
        outcomes.push(Outcome { seq: head_seq, duplicate: false });
    }

    if !fresh.is_empty() {
        let projected: Vec<Projected<'_>> = fresh
            .iter()
            .map(|(seq, d)| Projected { seq: *seq, received_at: d.received_at, normalized: &d.normalized })
            .collect();
        let projection = Projection::derive(&mut tx, &projected).await?;
        let at = fresh.last().map(|(_, d)| d.received_at);
        store(&mut tx, &rows, &projection, Some((head_seq, prev.to_vec(), at))).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

#[derive(Default)]
struct DeliveryColumns<'a> {
    seq: Vec<i64>,
    received_at: Vec<OffsetDateTime>,
    key: Vec<PgText>,
    key_source: Vec<&'static str>,
    body: Vec<&'a [u8]>,
    body_sha256: Vec<&'a [u8]>,
    action: Vec<Option<PgText>>,
    status_code: Vec<Option<i32>>,
    headers: Vec<String>,
    error: Vec<Option<PgText>>,
    hash: Vec<Vec<u8>>,
}

impl<'a> DeliveryColumns<'a> {
    fn push(&mut self, seq: i64, d: &'a NewDelivery, hash: Hash) {
        self.seq.push(seq);
        self.received_at.push(d.received_at);
        self.key.push(d.key.as_str().into());
        self.key_source.push(d.key.source().as_str());
        self.body.push(&d.body);
        self.body_sha256.push(&d.body_sha256);
        self.action.push(d.normalized.action.as_deref().map(PgText::from));
        self.status_code.push(d.normalized.status_code);
        self.headers.push(d.headers.to_string());
        self.error.push(d.normalized.error().map(PgText::from));
        self.hash.push(hash.to_vec());
    }
}

/// A stored delivery and what it normalizes to: the input of the projection.
pub struct Projected<'a> {
    pub seq: i64,
    pub received_at: OffsetDateTime,
    pub normalized: &'a Normalized,
}

/// Writes the projection of deliveries given in seq order: their action events, messages and
/// commands, and the tickets they touch folded with [`TicketState::apply`]. Live ingestion and
/// `reproject` both come through here, so both produce the same rows.
pub async fn project(conn: &mut PgConnection, items: &[Projected<'_>]) -> Result<(), sqlx::Error> {
    let projection = Projection::derive(conn, items).await?;
    store(conn, &DeliveryColumns::default(), &projection, None).await
}

/// The rows a batch adds to the projection.
#[derive(Default)]
struct Projection {
    ev: EventColumns,
    msg: MessageColumns,
    cmd: CommandColumns,
    tickets: TicketColumns,
}

impl Projection {
    /// Derives the rows; reads the tickets the batch touches, to fold it into them.
    async fn derive(conn: &mut PgConnection, items: &[Projected<'_>]) -> Result<Self, sqlx::Error> {
        let mut p = Projection::default();
        for item in items {
            p.push(item);
        }
        p.tickets = fold_tickets(conn, items).await?;
        Ok(p)
    }

    fn push(&mut self, p: &Projected<'_>) {
        let n = p.normalized;
        let ev = &mut self.ev;
        ev.seq.push(p.seq);
        ev.received_at.push(p.received_at);
        ev.action.push(n.action.as_deref().map(PgText::from));
        ev.status_code.push(n.status_code);
        ev.success.push(n.success);
        ev.kind.push(n.kind.as_str());
        ev.ticket.push(n.ticket.as_deref().map(PgText::from));
        ev.tenant.push(n.carried_tenant.as_deref().map(PgText::from));
        if let Some(ticket) = &n.ticket {
            for m in &n.messages {
                let msg = &mut self.msg;
                msg.seq.push(p.seq);
                msg.position.push(m.position);
                msg.ticket.push(ticket.as_str().into());
                msg.role.push(m.role.as_str());
                msg.content.push(m.content.as_str().into());
                msg.received_at.push(p.received_at);
            }
        }
        for c in &n.commands {
            let cmd = &mut self.cmd;
            cmd.seq.push(p.seq);
            cmd.position.push(c.position);
            cmd.ticket.push(n.ticket.as_deref().map(PgText::from));
            cmd.command.push(c.command.as_str().into());
            cmd.result.push(c.result.as_deref().map(PgText::from));
            cmd.executed.push(c.executed);
            cmd.recorded_at.push(p.received_at);
        }
    }
}

/// Runs `sql/store_batch.sql`: deliveries, projection and head in one statement.
async fn store(
    conn: &mut PgConnection,
    d: &DeliveryColumns<'_>,
    p: &Projection,
    head: Option<(i64, Vec<u8>, Option<OffsetDateTime>)>,
) -> Result<(), sqlx::Error> {
    let (ev, msg, cmd, t) = (&p.ev, &p.msg, &p.cmd, &p.tickets);
    let (head_seq, head_hash, head_at) = match head {
        Some((seq, hash, at)) => (Some(seq), Some(hash), at),
        None => (None, None, None),
    };
    sqlx::query(include_str!("sql/store_batch.sql"))
        .bind(&d.seq)
        .bind(&d.received_at)
        .bind(&d.key)
        .bind(&d.key_source)
        .bind(&d.body)
        .bind(&d.body_sha256)
        .bind(&d.action)
        .bind(&d.status_code)
        .bind(&d.headers)
        .bind(&d.error)
        .bind(&d.hash)
        .bind(&ev.seq)
        .bind(&ev.received_at)
        .bind(&ev.action)
        .bind(&ev.status_code)
        .bind(&ev.success)
        .bind(&ev.kind)
        .bind(&ev.ticket)
        .bind(&ev.tenant)
        .bind(&msg.seq)
        .bind(&msg.position)
        .bind(&msg.ticket)
        .bind(&msg.role)
        .bind(&msg.content)
        .bind(&msg.received_at)
        .bind(&cmd.seq)
        .bind(&cmd.position)
        .bind(&cmd.ticket)
        .bind(&cmd.command)
        .bind(&cmd.result)
        .bind(&cmd.executed)
        .bind(&cmd.recorded_at)
        .bind(&t.name)
        .bind(&t.title)
        .bind(&t.status)
        .bind(&t.tenant_id)
        .bind(&t.agent_name)
        .bind(&t.agent_id)
        .bind(&t.created_at)
        .bind(&t.create_time_text)
        .bind(&t.first_seen_at)
        .bind(&t.first_seen_seq)
        .bind(&t.last_activity_at)
        .bind(&t.message_count)
        .bind(&t.command_count)
        .bind(head_seq)
        .bind(head_hash)
        .bind(head_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// The tickets a batch touches, as stored, with the batch's updates folded in, in seq order.
async fn fold_tickets(conn: &mut PgConnection, items: &[Projected<'_>]) -> Result<TicketColumns, sqlx::Error> {
    let mut names: Vec<PgText> =
        items.iter().flat_map(|p| p.normalized.ticket_updates.iter().map(|u| PgText::from(u.name.as_str()))).collect();
    let mut t = TicketColumns::default();
    if names.is_empty() {
        return Ok(t);
    }
    names.sort();
    names.dedup();
    let mut states: HashMap<String, TicketState> =
        sqlx::query_as::<_, TicketRow>(include_str!("sql/select_tickets_for_update.sql"))
            .persistent(false) // planned for these names, as the key lookup is
            .bind(&names)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.name.0.clone(), r.into()))
            .collect();
    for p in items {
        for u in &p.normalized.ticket_updates {
            states
                .entry(u.name.clone())
                .or_insert_with(|| TicketState::new(u.name.clone(), p.seq, p.received_at))
                .apply(u, p.received_at);
        }
    }
    for s in states.into_values() {
        t.push(s);
    }
    Ok(t)
}

#[derive(Default)]
struct EventColumns {
    seq: Vec<i64>,
    received_at: Vec<OffsetDateTime>,
    action: Vec<Option<PgText>>,
    status_code: Vec<Option<i32>>,
    success: Vec<bool>,
    kind: Vec<&'static str>,
    ticket: Vec<Option<PgText>>,
    tenant: Vec<Option<PgText>>,
}

#[derive(Default)]
struct MessageColumns {
    seq: Vec<i64>,
    position: Vec<i32>,
    ticket: Vec<PgText>,
    role: Vec<&'static str>,
    content: Vec<PgText>,
    received_at: Vec<OffsetDateTime>,
}

#[derive(Default)]
struct CommandColumns {
    seq: Vec<i64>,
    position: Vec<i32>,
    ticket: Vec<Option<PgText>>,
    command: Vec<PgText>,
    result: Vec<Option<PgText>>,
    executed: Vec<bool>,
    recorded_at: Vec<OffsetDateTime>,
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    name: PgText,
    title: Option<PgText>,
    status: Option<PgText>,
    tenant_id: Option<PgText>,
    agent_name: Option<PgText>,
    agent_id: Option<PgText>,
    created_at: Option<OffsetDateTime>,
    create_time_text: Option<PgText>,
    first_seen_at: OffsetDateTime,
    first_seen_seq: i64,
    last_activity_at: OffsetDateTime,
    message_count: i64,
    command_count: i64,
}

impl From<TicketRow> for TicketState {
    fn from(r: TicketRow) -> Self {
        let s = |v: Option<PgText>| v.map(|t| t.0);
        TicketState {
            name: r.name.0,
            title: s(r.title),
            status: s(r.status),
            tenant_id: s(r.tenant_id),
            agent_name: s(r.agent_name),
            agent_id: s(r.agent_id),
            created_at: r.created_at,
            create_time_text: s(r.create_time_text),
            first_seen_at: r.first_seen_at,
            first_seen_seq: r.first_seen_seq,
            last_activity_at: r.last_activity_at,
            message_count: r.message_count,
            command_count: r.command_count,
        }
    }
}

#[derive(Default)]
struct TicketColumns {
    name: Vec<PgText>,
    title: Vec<Option<PgText>>,
    status: Vec<Option<PgText>>,
    tenant_id: Vec<Option<PgText>>,
    agent_name: Vec<Option<PgText>>,
    agent_id: Vec<Option<PgText>>,
    created_at: Vec<Option<OffsetDateTime>>,
    create_time_text: Vec<Option<PgText>>,
    first_seen_at: Vec<OffsetDateTime>,
    first_seen_seq: Vec<i64>,
    last_activity_at: Vec<OffsetDateTime>,
    message_count: Vec<i64>,
    command_count: Vec<i64>,
}

impl TicketColumns {
    fn push(&mut self, s: TicketState) {
        let t = |v: Option<String>| v.map(PgText);
        self.name.push(PgText(s.name));
        self.title.push(t(s.title));
        self.status.push(t(s.status));
        self.tenant_id.push(t(s.tenant_id));
        self.agent_name.push(t(s.agent_name));
        self.agent_id.push(t(s.agent_id));
        self.created_at.push(s.created_at);
        self.create_time_text.push(t(s.create_time_text));
        self.first_seen_at.push(s.first_seen_at);
        self.first_seen_seq.push(s.first_seen_seq);
        self.last_activity_at.push(s.last_activity_at);
        self.message_count.push(s.message_count);
        self.command_count.push(s.command_count);
    }
}
