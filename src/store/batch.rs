//! One batch of deliveries in one transaction: deduplicated, sequenced, chained and projected.
//! The writer task (`writer.rs`) gathers the batches; this is what each of them does.

use std::collections::HashMap;

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::text::{escape, PgStr, PgText};
use super::{partitions, tree};
use crate::domain::ledger::{chain_hash, leaf_hash, ChainedFields, Hash};
use crate::domain::merkle::RightEdge;
use crate::domain::timestamp::truncate_to_micros;
use crate::domain::{DeliveryKey, KeySource, Normalized, TicketState};

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
    /// Stored as a bare event: the database refused its projection (see `Normalized::unprojected`).
    pub unprojected: bool,
}

impl NewDelivery {
    /// Rows its projection adds: what it costs the writer, and so the batch it shares.
    pub fn rows(&self) -> usize {
        1 + self.normalized.messages.len() + self.normalized.commands.len() + self.normalized.ticket_updates.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub seq: i64,
    pub duplicate: bool,
}

/// The next chain hash after `prev`, for a delivery with these fields. Strings are hashed as
/// stored, through the text escape (`text::escape`): the writer and `verify` both come here, so
/// the two cannot drift apart, and `chain_link_is_pinned` below breaks if the escape changes.
#[allow(clippy::too_many_arguments)]
pub fn chain_link(
    prev: &Hash,
    seq: i64,
    received_at: OffsetDateTime,
    key: &str,
    action: Option<&str>,
    status_code: Option<i32>,
    body_sha256: &[u8],
) -> Hash {
    let key = escape(key);
    let action = action.map(escape);
    chain_hash(
        prev,
        &ChainedFields { seq, received_at, key: &key, action: action.as_deref(), status_code, body_sha256 },
    )
}

/// The ledger head as the writer knows it: committed, or about to be by the batch in flight.
#[derive(Debug, Clone)]
pub struct Head {
    pub seq: i64,
    pub hash: Hash,
    /// The last recorded time; none before the first delivery.
    pub at: Option<OffsetDateTime>,
    /// The verifiable log's right edge at `seq` leaves.
    pub edge: RightEdge,
}

/// What a batch stores, as the next batch must see it before it is committed: its keys, and the
/// tickets as it leaves them.
#[derive(Debug, Default)]
pub struct InFlight {
    keys: HashMap<(&'static str, String), i64>,
    tickets: HashMap<String, TicketState>,
}

/// Where a batch starts from.
pub enum Basis<'a> {
    /// Take the head under lock first (`SELECT ... FOR UPDATE`): nothing of ours is in flight. The
    /// writer's first batch, and the retry after a failure or after another process wrote.
    /// `cached` is the last head this process saw, whose tree edge is reused when still current.
    Locked { cached: Option<&'a Head> },
    /// The head as the batch in flight leaves it, and what that batch stores: this batch's rows
    /// go in while its predecessor commits, and the head moves only if it is still `head` (a
    /// compare-and-swap, which waits for the predecessor's commit).
    After { head: &'a Head, in_flight: &'a InFlight },
}

/// A batch whose rows are in and whose head update succeeded: it commits with `tx`.
pub struct Executed {
    pub tx: sqlx::Transaction<'static, sqlx::Postgres>,
    pub outcomes: Vec<Outcome>,
    /// The head once it commits.
    pub head: Head,
    pub in_flight: InFlight,
    /// Refused tenant claims it holds (counted once committed).
    pub conflicts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The head is not where the batch expected it: its predecessor failed, or another process
    /// wrote. Nothing of the batch is stored; it is to be tried again from the head under lock.
    #[error("the ledger head moved")]
    HeadMoved,
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// Writes a batch in `tx` (begun by the caller) and leaves it to be committed: answers
/// duplicates with their original seq, gives new deliveries the next sequence numbers, chain
/// hashes and a recorded time, grows the verifiable log's tree by their leaves, projects them,
/// and moves the ledger head. One outcome per input.
///
/// The head moves last, by compare-and-swap: with [`Basis::After`] the expensive part (every
/// row, every index entry) is done while the predecessor's commit is on its way to disk, and the
/// batch waits only for that commit. Whatever the basis, the head update serializes writers
/// across processes: seq stays gapless in commit order and the chain and the tree exact.
pub async fn execute_batch(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    batch: &[&NewDelivery],
    basis: Basis<'_>,
) -> Result<Executed, BatchError> {
    let empty = InFlight::default();
    let (start, before) = match basis {
        Basis::Locked { cached } => {
            let (seq, hash, at): (i64, Vec<u8>, Option<OffsetDateTime>) =
                sqlx::query_as("SELECT seq, hash, at FROM ledger_head FOR UPDATE").fetch_one(&mut *tx).await?;
            let edge = tree::edge_at_head(&mut tx, cached.map(|h| &h.edge), seq).await?;
            let hash: Hash =
                hash.try_into().map_err(|_| sqlx::Error::Protocol("ledger_head.hash is not 32 bytes".into()))?;
            (Head { seq, hash, at, edge }, &empty)
        }
        Basis::After { head, in_flight } => (head.clone(), in_flight),
    };
    let mut head_seq = start.seq;
    let mut prev = start.hash;
    let mut edge = start.edge.clone();
    // Never before the previous batch's: times along seq never go backwards, across processes
    // too (another process's head is taken under lock, or the swap fails).
    let now = truncate_to_micros(OffsetDateTime::now_utc());
    let recorded_at = start.at.map_or(now, |h| now.max(h));
    // The first batch of a month closes the last month's partitions at head + 1, before the
    // record is read or written (store/partitions.rs). With a predecessor in flight, turn_month
    // waits for its commit (it takes the head); should the predecessor fail, the turn is rolled
    // back with this batch, which the head's compare-and-swap refuses.
    partitions::turn_if_due(&mut tx, start.at, recorded_at).await?;

    let Lookup { known, tickets: stored_tickets } = lookup(&mut tx, batch).await?;

    let mut outcomes = Vec::with_capacity(batch.len());
    // An answer taken from the batch in flight holds only once that batch commits.
    let mut answered_from_flight = false;
    let mut mine = InFlight::default();
    let mut fresh: Vec<Projected<'_>> = Vec::new();
    let mut leaves = Vec::new();
    let mut rows = DeliveryColumns::default();
    // The redaction entries among the new deliveries: each is applied once its row is in.
    let mut redactions = Vec::new();
    for d in batch {
        let (scope, key) = d.key.identity();
        let id = (scope, key.to_owned());
        let stored = known.get(&(scope.to_owned(), PgText::from(key))).or_else(|| mine.keys.get(&id)).or_else(|| {
            let seq = before.keys.get(&id);
            answered_from_flight |= seq.is_some();
            seq
        });
        if let Some(&seq) = stored {
            outcomes.push(Outcome { seq, duplicate: true });
            continue;
        }
        head_seq += 1;
        let n = &d.normalized;
        prev = chain_link(&prev, head_seq, d.received_at, key, n.action.as_deref(), n.status_code, &d.body_sha256);
        rows.push(head_seq, d, recorded_at, prev);
        // The log's leaf takes the strings as they are, where the chain takes them as stored.
        leaves.push(leaf_hash(&ChainedFields {
            seq: head_seq,
            received_at: d.received_at,
            key,
            action: n.action.as_deref(),
            status_code: n.status_code,
            body_sha256: &d.body_sha256,
        }));
        mine.keys.insert(id, head_seq);
        if d.key.source() == KeySource::Redaction {
            if let Some(target) = crate::domain::redaction::target_of_key(key) {
                redactions.push((head_seq, target));
            }
        }
        fresh.push(Projected { seq: head_seq, at: recorded_at, normalized: &d.normalized });
        outcomes.push(Outcome { seq: head_seq, duplicate: false });
    }

    let mut conflicts = 0;
    if !fresh.is_empty() {
        let (projection, tickets) = Projection::derive_over(stored_tickets, &fresh, &before.tickets);
        conflicts = projection.anomalies.seq.len() as u64;
        mine.tickets = tickets;
        let hashes = tree::StoredHashes::append(&mut edge, &leaves);
        store(&mut tx, &rows, &projection, Some(&hashes)).await?;
        // A redaction is applied in the transaction that records it: whole or not at all
        // (V11's ticket_audit_redact reads the entry just stored and blanks its target).
        for &(entry, target) in &redactions {
            let texts = ticket_texts_of(&mut tx, target).await?;
            sqlx::query("SELECT ticket_audit_redact($1)").bind(entry).execute(&mut *tx).await?;
            for state in clear_ticket_texts(&mut tx, &texts).await? {
                mine.tickets.insert(state.name.clone(), state);
            }
        }
    }
    let after =
        Head { seq: head_seq, hash: prev, at: if fresh.is_empty() { start.at } else { Some(recorded_at) }, edge };
    if !fresh.is_empty() || answered_from_flight {
        // The swap, in one statement. The UPDATE waits for the predecessor's commit (its row
        // lock) and then, in READ COMMITTED, evaluates its expressions on the head that commit
        // left: the head moves only if it is still the one this batch was written from. (A
        // `WHERE seq = $expected` would judge the row by the statement's snapshot, taken before
        // that commit, and fail for nothing.) Under lock the head cannot have moved. A batch of
        // duplicates only, one of them answered from the batch in flight, swaps the head with
        // itself: it checks that its predecessor committed.
        let swapped: bool = sqlx::query_scalar(ADVANCE_HEAD_SQL)
            .bind(start.seq)
            .bind(&start.hash[..])
            .bind(after.seq)
            .bind(&after.hash[..])
            .bind(after.at)
            .fetch_one(&mut *tx)
            .await?;
        if !swapped {
            return Err(BatchError::HeadMoved);
        }
    }
    Ok(Executed { tx, outcomes, head: after, in_flight: mine, conflicts })
}

/// A batch's one statement: deliveries, projection and the tree's new hashes (see the file).
pub const STORE_SQL: &str = include_str!("sql/store_batch.sql");

/// The head's compare-and-swap (see the file).
pub const ADVANCE_HEAD_SQL: &str = include_str!("sql/advance_head.sql");

/// A batch's reads: `$1` key scopes, `$2` keys, `$3` ticket names (see the file).
pub const LOOKUP_SQL: &str = include_str!("sql/lookup_batch.sql");

/// What a batch reads before it writes (`sql/lookup_batch.sql`, one round trip).
struct Lookup {
    /// Its keys already stored, with their seq.
    known: HashMap<(String, PgText), i64>,
    /// The stored tickets its deliveries touch, locked.
    tickets: HashMap<String, TicketState>,
}

/// Reads the batch's stored keys and locks the tickets it touches (those of its duplicates too:
/// which they are is known only from this answer, and locking a few rows more costs nothing).
async fn lookup(conn: &mut PgConnection, batch: &[&NewDelivery]) -> Result<Lookup, sqlx::Error> {
    use sqlx::Row;
    let scopes: Vec<&'static str> = batch.iter().map(|d| d.key.identity().0).collect();
    let keys: Vec<PgText> = batch.iter().map(|d| PgText::from(d.key.as_str())).collect();
    let names = ticket_names(batch.iter().map(|d| &d.normalized));
    let rows = sqlx::query(LOOKUP_SQL).bind(&scopes).bind(&keys).bind(&names).fetch_all(&mut *conn).await?;
    let mut found = Lookup { known: HashMap::new(), tickets: HashMap::new() };
    for row in rows {
        match row.try_get::<Option<String>, _>("key_scope")? {
            Some(scope) => {
                if let Some(seq) = row.try_get::<Option<i64>, _>("key_seq")? {
                    found.known.insert((scope, row.try_get("dedup_key")?), seq);
                }
            }
            None => {
                let t = <TicketRecord as sqlx::FromRow<'_, sqlx::postgres::PgRow>>::from_row(&row)?;
                found.tickets.insert(t.name.0.clone(), t.into());
            }
        }
    }
    Ok(found)
}

/// The tickets some deliveries touch, sorted, each once.
fn ticket_names<'a>(items: impl Iterator<Item = &'a Normalized>) -> Vec<PgText> {
    let mut names: Vec<PgText> =
        items.flat_map(|n| n.ticket_updates.iter().map(|u| PgText::from(u.name.as_str()))).collect();
    names.sort();
    names.dedup();
    names
}

/// The free text a delivery gave its tickets (titles, a `CreateTime` that was not a time), by
/// ticket: what a redaction of it takes off the tickets, where they still hold it.
async fn ticket_texts_of(
    conn: &mut PgConnection,
    seq: i64,
) -> Result<Vec<(PgText, Vec<PgText>, Vec<PgText>)>, sqlx::Error> {
    let row: Option<(Vec<u8>, bool)> = sqlx::query_as("SELECT body, unprojected FROM deliveries WHERE seq = $1")
        .bind(seq)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(n) = row.and_then(|(body, unprojected)| crate::domain::derive(&body, unprojected)) else {
        return Ok(Vec::new());
    };
    let mut by_ticket: HashMap<String, (Vec<PgText>, Vec<PgText>)> = HashMap::new();
    for u in &n.ticket_updates {
        let e = by_ticket.entry(u.name.clone()).or_default();
        e.0.extend(u.title.as_deref().map(PgText::from));
        if let Some(crate::domain::CreateTime::Unparsed(t)) = &u.create_time {
            e.1.push(PgText::from(t.as_str()));
        }
    }
    Ok(by_ticket
        .into_iter()
        .filter(|(_, (titles, times))| !titles.is_empty() || !times.is_empty())
        .map(|(name, (titles, times))| (PgText(name), titles, times))
        .collect())
}

/// Takes a redacted delivery's text off its tickets (a title or a `CreateTime` text the ticket
/// still holds is set to null), returning the tickets as they are then: the batch after this one
/// folds into those, not into what it may have read before this commits.
async fn clear_ticket_texts(
    conn: &mut PgConnection,
    texts: &[(PgText, Vec<PgText>, Vec<PgText>)],
) -> Result<Vec<TicketState>, sqlx::Error> {
    let mut states = Vec::new();
    for (name, titles, times) in texts {
        let row: Option<TicketRecord> = sqlx::query_as(
            "UPDATE tickets SET \
                 title = CASE WHEN title = ANY($2::text[]) THEN NULL ELSE title END, \
                 create_time_text = CASE WHEN create_time_text = ANY($3::text[]) THEN NULL ELSE create_time_text END \
             WHERE name = $1 \
             RETURNING name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text, \
                       first_seen_at, first_seen_seq, last_activity_at, message_count, command_count",
        )
        .bind(name)
        .bind(titles)
        .bind(times)
        .fetch_optional(&mut *conn)
        .await?;
        states.extend(row.map(TicketState::from));
    }
    Ok(states)
}

/// A stored delivery and what it normalizes to: the input of the projection.
pub struct Projected<'a> {
    pub seq: i64,
    /// Its recorded time: what timelines and command histories show.
    pub at: OffsetDateTime,
    pub normalized: &'a Normalized,
}

/// Writes the projection of deliveries given in seq order: their action events, messages and
/// commands, and the tickets they touch folded with [`TicketState::apply`]. Live ingestion and
/// `reproject` both come through here, so both produce the same rows.
pub async fn project(conn: &mut PgConnection, items: &[Projected<'_>]) -> Result<(), sqlx::Error> {
    let names = ticket_names(items.iter().map(|p| p.normalized));
    let stored: HashMap<String, TicketState> =
        sqlx::query_as::<_, TicketRecord>(include_str!("sql/select_tickets_for_update.sql"))
            .persistent(false) // `reproject` runs it rarely, on tables of any size: planned for these names
            .bind(&names)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.name.0.clone(), r.into()))
            .collect();
    let (projection, _) = Projection::derive_over(stored, items, &HashMap::new());
    store(conn, &DeliveryColumns::default(), &projection, None).await
}

/// Runs `sql/store_batch.sql`: deliveries, projection and the tree's new hashes in one statement. Each table's
/// columns are bound by the table's own `bind`, in the order its part of the statement names
/// them; `tests/api/columns.rs` stores distinct values in every column and reads each back, so
/// a swapped pair fails there.
async fn store(
    conn: &mut PgConnection,
    d: &DeliveryColumns<'_>,
    p: &Projection<'_>,
    tree: Option<&tree::StoredHashes>,
) -> Result<(), sqlx::Error> {
    // The statement's arguments, sized up front: about one copy of each body and one of its
    // projected text (messages, commands), not a buffer doubled and copied a dozen times over.
    let mut args = sqlx::postgres::PgArguments::default();
    let bodies: usize = d.body.iter().map(|b| b.len()).sum();
    sqlx::Arguments::reserve(&mut args, 56, 2 * bodies + 4096); // $1..$56
    let q = sqlx::query_with(STORE_SQL, args);
    let q = d.bind(q);
    let q = p.events.bind(q);
    let q = p.messages.bind(q);
    let q = p.commands.bind(q);
    let q = p.tickets.bind(q);
    let q = p.anomalies.bind(q);
    let no_tree = tree::StoredHashes::default();
    let q = tree.unwrap_or(&no_tree).bind(q);
    q.execute(conn).await?;
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// `$1..$13`: deliveries.
#[derive(Default)]
struct DeliveryColumns<'a> {
    seq: Vec<i64>,
    received_at: Vec<OffsetDateTime>,
    key: Vec<PgStr<'a>>,
    key_source: Vec<&'static str>,
    body: Vec<&'a [u8]>,
    body_sha256: Vec<&'a [u8]>,
    action: Vec<Option<PgStr<'a>>>,
    status_code: Vec<Option<i32>>,
    headers: Vec<String>,
    error: Vec<Option<PgText>>,
    hash: Vec<Vec<u8>>,
    recorded_at: Vec<OffsetDateTime>,
    unprojected: Vec<bool>,
}

impl<'a> DeliveryColumns<'a> {
    fn push(&mut self, seq: i64, d: &'a NewDelivery, recorded_at: OffsetDateTime, hash: Hash) {
        self.seq.push(seq);
        self.received_at.push(d.received_at);
        self.key.push(PgStr(d.key.as_str()));
        self.key_source.push(d.key.source().as_str());
        self.body.push(&d.body);
        self.body_sha256.push(&d.body_sha256);
        self.action.push(d.normalized.action.as_deref().map(PgStr));
        self.status_code.push(d.normalized.status_code);
        self.headers.push(d.headers.to_string());
        self.error.push(d.normalized.error().map(PgText::from));
        self.hash.push(hash.to_vec());
        self.recorded_at.push(recorded_at);
        self.unprojected.push(d.unprojected);
    }

    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        q.bind(&self.seq)
            .bind(&self.received_at)
            .bind(&self.key)
            .bind(&self.key_source)
            .bind(&self.body)
            .bind(&self.body_sha256)
            .bind(&self.action)
            .bind(&self.status_code)
            .bind(&self.headers)
            .bind(&self.error)
            .bind(&self.hash)
            .bind(&self.recorded_at)
            .bind(&self.unprojected)
    }
}

/// The rows a batch adds to the projection.
#[derive(Default)]
struct Projection<'a> {
    events: EventColumns<'a>,
    messages: MessageColumns<'a>,
    commands: CommandColumns<'a>,
    tickets: TicketColumns,
    anomalies: AnomalyColumns,
}

impl<'a> Projection<'a> {
    /// Derives the rows; reads the tickets the batch touches, to fold it into them, taking
    /// those in `in_flight` as the batch before it leaves them. Returns the tickets as folded.
    fn derive_over(
        stored: HashMap<String, TicketState>,
        items: &[Projected<'a>],
        in_flight: &HashMap<String, TicketState>,
    ) -> (Self, HashMap<String, TicketState>) {
        let mut p = Projection::default();
        for item in items {
            p.push(item);
        }
        let tickets = fold_tickets(stored, items, in_flight, &mut p);
        (p, tickets)
    }

    fn push(&mut self, p: &Projected<'a>) {
        let n = p.normalized;
        let ev = &mut self.events;
        ev.seq.push(p.seq);
        ev.received_at.push(p.at);
        ev.action.push(n.action.as_deref().map(PgStr));
        ev.status_code.push(n.status_code);
        ev.success.push(n.success);
        ev.kind.push(n.kind.as_str());
        ev.ticket.push(n.ticket.as_deref().map(PgStr));
        ev.tenant.push(n.carried_tenant.as_deref().map(PgStr));
        if let Some(ticket) = &n.ticket {
            for m in &n.messages {
                let msg = &mut self.messages;
                msg.seq.push(p.seq);
                msg.position.push(m.position);
                msg.ticket.push(PgStr(ticket));
                msg.role.push(m.role.as_str());
                msg.content.push(PgStr(&m.content));
                msg.received_at.push(p.at);
            }
        }
        for c in &n.commands {
            let cmd = &mut self.commands;
            cmd.seq.push(p.seq);
            cmd.position.push(c.position);
            cmd.ticket.push(n.ticket.as_deref().map(PgStr));
            cmd.command.push(PgStr(&c.command));
            cmd.result.push(c.result.as_deref().map(PgStr));
            cmd.executed.push(c.executed);
            cmd.recorded_at.push(p.at);
        }
    }
}

/// The tickets a batch touches, as stored (`stored`, read and locked by the caller), with the
/// batch's updates folded in, in seq order; and the tenant claims the fold refused.
fn fold_tickets(
    mut states: HashMap<String, TicketState>,
    items: &[Projected<'_>],
    in_flight: &HashMap<String, TicketState>,
    p: &mut Projection<'_>,
) -> HashMap<String, TicketState> {
    let names = ticket_names(items.iter().map(|p| p.normalized));
    if names.is_empty() {
        return HashMap::new();
    }
    // Only what these deliveries touch is written back (the caller may have read more).
    states.retain(|name, _| names.binary_search(&PgText::from(name.as_str())).is_ok());
    // The batch in flight has folded these already; its rows are not committed yet.
    for (name, state) in in_flight {
        if let Some(stored) = states.get_mut(name) {
            *stored = state.clone();
        } else if names.binary_search(&PgText::from(name.as_str())).is_ok() {
            states.insert(name.clone(), state.clone());
        }
    }
    for item in items {
        for (position, u) in item.normalized.ticket_updates.iter().enumerate() {
            let state =
                states.entry(u.name.clone()).or_insert_with(|| TicketState::new(u.name.clone(), item.seq, item.at));
            if let Some(conflict) = state.apply(u, item.at) {
                let a = &mut p.anomalies;
                a.seq.push(item.seq);
                a.position.push(position as i32);
                a.ticket.push(u.name.as_str().into());
                a.kind.push("tenant_conflict");
                a.owner.push(conflict.owner.into());
                a.claimed.push(conflict.claimed.into());
                a.recorded_at.push(item.at);
            }
        }
    }
    // In name order: concurrent writers lock ticket rows in one order.
    let mut folded: Vec<&TicketState> = states.values().collect();
    folded.sort_by(|a, b| a.name.cmp(&b.name));
    for s in folded {
        p.tickets.push(s.clone());
    }
    states
}

/// `$14..$21`: action events.
#[derive(Default)]
struct EventColumns<'a> {
    seq: Vec<i64>,
    received_at: Vec<OffsetDateTime>,
    action: Vec<Option<PgStr<'a>>>,
    status_code: Vec<Option<i32>>,
    success: Vec<bool>,
    kind: Vec<&'static str>,
    ticket: Vec<Option<PgStr<'a>>>,
    tenant: Vec<Option<PgStr<'a>>>,
}

impl EventColumns<'_> {
    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        q.bind(&self.seq)
            .bind(&self.received_at)
            .bind(&self.action)
            .bind(&self.status_code)
            .bind(&self.success)
            .bind(&self.kind)
            .bind(&self.ticket)
            .bind(&self.tenant)
    }
}

/// `$22..$27`: messages.
#[derive(Default)]
struct MessageColumns<'a> {
    seq: Vec<i64>,
    position: Vec<i32>,
    ticket: Vec<PgStr<'a>>,
    role: Vec<&'static str>,
    content: Vec<PgStr<'a>>,
    received_at: Vec<OffsetDateTime>,
}

impl MessageColumns<'_> {
    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        q.bind(&self.seq)
            .bind(&self.position)
            .bind(&self.ticket)
            .bind(&self.role)
            .bind(&self.content)
            .bind(&self.received_at)
    }
}

/// `$28..$34`: commands.
#[derive(Default)]
struct CommandColumns<'a> {
    seq: Vec<i64>,
    position: Vec<i32>,
    ticket: Vec<Option<PgStr<'a>>>,
    command: Vec<PgStr<'a>>,
    result: Vec<Option<PgStr<'a>>>,
    executed: Vec<bool>,
    recorded_at: Vec<OffsetDateTime>,
}

impl CommandColumns<'_> {
    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        q.bind(&self.seq)
            .bind(&self.position)
            .bind(&self.ticket)
            .bind(&self.command)
            .bind(&self.result)
            .bind(&self.executed)
            .bind(&self.recorded_at)
    }
}

/// A stored ticket row: what the write path folds into and what the read API answers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketRecord {
    pub name: PgText,
    pub title: Option<PgText>,
    pub status: Option<PgText>,
    pub tenant_id: Option<PgText>,
    pub agent_name: Option<PgText>,
    pub agent_id: Option<PgText>,
    pub created_at: Option<OffsetDateTime>,
    pub create_time_text: Option<PgText>,
    pub first_seen_at: OffsetDateTime,
    pub first_seen_seq: i64,
    pub last_activity_at: OffsetDateTime,
    pub message_count: i64,
    pub command_count: i64,
}

impl From<TicketRecord> for TicketState {
    fn from(r: TicketRecord) -> Self {
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

/// `$35..$47`: tickets.
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

    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        q.bind(&self.name)
            .bind(&self.title)
            .bind(&self.status)
            .bind(&self.tenant_id)
            .bind(&self.agent_name)
            .bind(&self.agent_id)
            .bind(&self.created_at)
            .bind(&self.create_time_text)
            .bind(&self.first_seen_at)
            .bind(&self.first_seen_seq)
            .bind(&self.last_activity_at)
            .bind(&self.message_count)
            .bind(&self.command_count)
    }
}

/// `$48..$54`: ticket anomalies.
#[derive(Default)]
struct AnomalyColumns {
    seq: Vec<i64>,
    position: Vec<i32>,
    ticket: Vec<PgText>,
    kind: Vec<&'static str>,
    owner: Vec<PgText>,
    claimed: Vec<PgText>,
    recorded_at: Vec<OffsetDateTime>,
}

impl AnomalyColumns {
    fn bind<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        q.bind(&self.seq)
            .bind(&self.position)
            .bind(&self.ticket)
            .bind(&self.kind)
            .bind(&self.owner)
            .bind(&self.claimed)
            .bind(&self.recorded_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// The chain over strings holding U+0000 and the escape character: recomputed by hand with
    /// the escape of docs/API.md's "Text and U+0000" (`\0` as `␀0`, `␀` as `␀␀`). If the escape
    /// changes, stored chains no longer verify: this must fail first.
    #[test]
    fn chain_link_is_pinned() {
        let body = crate::domain::ledger::sha256(b"{}");
        let t = datetime!(2026-01-02 03:04:05.123456 UTC);
        let h = chain_link(&crate::domain::ledger::GENESIS, 1, t, "k\0␀", Some("A\0"), Some(200), &body);
        let by_hand = chain_hash(
            &crate::domain::ledger::GENESIS,
            &ChainedFields {
                seq: 1,
                received_at: t,
                key: "k␀0␀␀",
                action: Some("A␀0"),
                status_code: Some(200),
                body_sha256: &body,
            },
        );
        assert_eq!(h, by_hand);
        assert_eq!(hex::encode(h), PINNED);
    }

    const PINNED: &str = "7726f837aceb0285c01d656f3a083c6579f52a34793cfcdcd8fa9f321a1d187c";
    // Python: hashlib and struct, by hand
}
