//! `GET /api/v1/stream`: the live tail, as Server-Sent Events.
//!
//! One tail task per process reads what is new from the database once per hint (the writer's
//! commits, and a poll of `ledger_head` each second for other instances' commits), one query per
//! kind of item after its cursor, in bounded pages, and broadcasts each item, its JSON made once,
//! with what connections filter on. Each connection filters the broadcast for its tenant, ticket
//! or filters; it reads the database itself only to resume (`Last-Event-ID`), after falling behind
//! the broadcast, or for an item too large to broadcast.
//!
//! Every broadcast item carries the key of the item the tail read before it (`prev`): no item
//! lies between the two. A connection that has covered everything up to `prev` can take the
//! item as it is; one that has not (it resumed from further back, lagged, or the tail skipped
//! ahead while nobody listened) reads the gap from the database first. Nothing is lost or
//! repeated however the broadcast and the connection interleave.
//!
//! ## Ticket streams: a channel per ticket
//!
//! Commands go to one broadcast that every command stream filters. Timeline entries do not: a
//! ticket's streams (`?ticket=NAME`, one per open ticket page) share a channel of that ticket
//! ([`Tickets`]). The tail makes JSON for the watched tickets' entries only and sends each
//! ticket's to its own channel, so that a commit wakes only the streams of the tickets it
//! touched (1,000 open ticket pages used to cost every read 1,000 wake-ups, each scanning every
//! entry of the read).
//!
//! Which entries it reads depends on who committed them. This process's writer says, with each
//! commit, which ticket each new seq concerns ([`Committed`]); while every seq since the tail's
//! last read is spoken for that way, the tail reads the rows of the watched tickets' seqs only
//! (`sql/stream_entries_at.sql`, by primary key), and nothing at all when no watched ticket was
//! touched. Once any seq is not (another instance's commit, seen by the poll; the writer's record
//! overflowing; a read that failed), it reads every ticket's new entries, a walk of the primary
//! keys from its cursor (`sql/stream_entries.sql`; filtering on the watched names in SQL makes
//! PostgreSQL probe an index per name, slower than the walk). Either way what is sent comes from
//! the database; the writer's word only narrows which rows are read. There, `prev` is per channel:
//! for ticket T, no entry *of T* lies between `prev` and the entry. The tail keeps, per watched
//! ticket, the key of its last entry sent (`Chain::last`); a ticket it takes in starts its chain
//! at the cursor its next read starts from (every entry of T after that is read, so none can lie
//! between), and its channel is sent a page with no entry that says so: a stream placed before
//! that reads the difference from the database at once.
//!
//! Why nothing is lost or repeated, race by race:
//! - *Registration and the tail's look at the channels* are ordered by the registry's lock. A
//!   stream subscribes under it (creating the channel if it is the first), then reads the head
//!   and places itself there, or at its `Last-Event-ID`. The tail, under the same lock, removes
//!   the channels no stream holds (so none is removed with a subscriber, and none gets one after
//!   its removal) and notes the new ones; then it reads, outside the lock.
//! - *A stream registered after the tail's look, during its read*: its ticket is not in that
//!   read, whose entries of T are never sent. The next look (before the next read, or as soon as
//!   the tail is idle: a registration wakes it) takes T in with the read's end (the next start)
//!   as its first `prev`, and sends it the empty page. If the stream placed itself before that
//!   `prev` (its head was read before the read ended), it catches up from the database up to a
//!   head read after the page was sent, thus past that `prev`; otherwise it already has
//!   everything before it. Without the empty page it would wait for T's next entry to notice.
//! - *A channel that lost its last stream and gains one before the tail looks*: it is the same
//!   channel, still watched, its chain unbroken: the new stream is placed as any other is.
//! - *A channel removed, then created again for the same ticket*: the tail sees a different
//!   channel (`same_channel`), drops the old chain, and starts a new one as for any new ticket.
//! - *Nobody watches*: the walk skips ahead to the head and forgets every chain (there are
//!   none); a ticket taken in later starts at or after that.
//! - *A read of the watched tickets' seqs only*: it holds, for each watched ticket T, every entry
//!   of T after the cursor up to the head. Every seq in that range was committed by this writer
//!   (its record speaks only for an unbroken run of its own seqs, announced after each commit, in
//!   seq order), every entry of a seq is its delivery's ticket's, and the record names that
//!   ticket: the seqs it names for T are all of T's there. So no entry of T lies between two
//!   that are sent, as with the walk, and the cursor may move to the head.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::auth::Reader;
use super::error::{ApiError, ReadProblems};
use super::tickets::{Command, TimelineEntry};
use super::{AppState, Query};
use crate::store::committed::{Committed, Touched};
use crate::store::read::{CommandFields, CommandFilter};
use crate::store::{self, Scope};

/// An item's place in the record: (seq, position), as in its id `seq.position`.
type Key = (i64, i32);

/// Rows a connection reads per query while it catches up.
const CATCH_UP_PAGE: i64 = 200;
/// Rows the tail reads per query.
const TAIL_PAGE: i64 = 500;
/// Items the broadcast keeps for connections that are behind; past that they lag and catch up
/// from the database.
const RING: usize = 1024;
/// Pages a ticket's channel keeps for its connections that are behind (one page per read at
/// most: a ticket's few entries of 100 ms). A page read by every connection is freed at once, so
/// this bounds only what slow clients hold.
const TICKET_RING: usize = 16;
/// Largest item JSON broadcast; a larger one is announced without it and read from the database
/// by the connections that want it, so the ring holds at most `RING * INLINE_MAX` bytes of JSON.
const INLINE_MAX: usize = 16 * 1024;
/// Least time between two reads of the tail: commits in between are read together, so each
/// stream wakes (and writes) at most ten times a second however fast deliveries come.
const COALESCE: Duration = Duration::from_millis(100);
/// How often the tail looks at `ledger_head` for commits of other instances.
const POLL: Duration = Duration::from_secs(1);
/// How long a stream waits for the tail to start before it is refused (503).
const STARTING: Duration = Duration::from_secs(3);
/// Keep-alive comments while idle, at most this far apart.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One item as the tail broadcasts it.
struct Tailed<M> {
    /// The key of the item the tail read before this one, or where it started reading.
    prev: Key,
    key: Key,
    meta: M,
    /// The event as sent, made once for every stream; `None` for an item over [`INLINE_MAX`].
    sse: Option<Bytes>,
}

/// What the tail broadcasts: the items of one read, in order (one wake-up per stream per read,
/// not per item).
struct Page<M> {
    /// The first item's `prev`: where the tail started reading for this channel. A page with no
    /// item says only that (a ticket's first page, `Entries::watch`).
    prev: Key,
    items: Vec<Tailed<M>>,
    /// Every item's event, one after the other, when all are inline: a stream that wants the
    /// whole page (the unfiltered command stream) sends it as one write, the same bytes for every
    /// stream. The items' own `sse` are slices of it (no second copy).
    all: Option<Bytes>,
}

type Shared<M> = Arc<Page<M>>;

impl<M> Page<M> {
    /// The page of `items` (key, meta, event) read after `prev`.
    fn new(first_prev: Key, items: Vec<(Key, M, Option<Bytes>)>) -> Self {
        let mut prev = first_prev;
        let all = items.iter().all(|(_, _, e)| e.is_some()).then(|| {
            let len = items.iter().map(|(_, _, e)| e.as_ref().map_or(0, Bytes::len)).sum();
            let mut all = bytes::BytesMut::with_capacity(len);
            for (_, _, e) in &items {
                all.extend_from_slice(e.as_deref().unwrap_or_default());
            }
            all.freeze()
        });
        let mut at = 0;
        let items = items
            .into_iter()
            .map(|(key, meta, sse)| {
                let sse = match (&all, sse) {
                    (Some(all), Some(e)) => {
                        at += e.len();
                        Some(all.slice(at - e.len()..at))
                    }
                    (_, sse) => sse,
                };
                let item = Tailed { prev, key, meta, sse };
                prev = key;
                item
            })
            .collect();
        Page { prev: first_prev, items, all }
    }
}

/// Most bytes a stream puts in one write when it has several events ready (catching up, or a
/// page it filters): one frame, one chunk, one wake-up of the client for all of them.
const FRAME_MAX: usize = 64 * 1024;

/// One event, as Server-Sent Events writes it. The data is JSON as serde_json writes it, on one
/// line: it escapes every control character, line breaks included.
fn sse(event: &str, key: Key, json: &str) -> Bytes {
    Bytes::from(format!("event: {event}\nid: {}.{}\ndata: {json}\n\n", key.0, key.1))
}

/// A keep-alive: a comment line.
const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

/// What a command stream filters on.
struct CommandMeta {
    tenant_id: Option<String>,
    agent_name: Option<String>,
    ticket: Option<String>,
    recorded_at: OffsetDateTime,
    /// Kept only with an inline item.
    command: Option<String>,
}

/// The live tail of this process: the broadcasts, and what ends every stream at shutdown.
pub struct Hub {
    commands: broadcast::Sender<Shared<CommandMeta>>,
    /// Timeline entries: a channel per watched ticket.
    tickets: Tickets,
    stop: CancellationToken,
    keep_alive: Duration,
    /// True once the tail knows where it starts.
    ready: watch::Receiver<bool>,
}

impl Hub {
    /// Starts the tail task on `pool`, woken by `committed` (the writer's) and by a poll of the
    /// head; it runs until [`Hub::close`].
    pub fn start(pool: PgPool, committed: Committed, keep_alive: Duration) -> (Arc<Hub>, tokio::task::JoinHandle<()>) {
        let (ready_tx, ready) = watch::channel(false);
        let hub = Arc::new(Hub {
            commands: broadcast::channel(RING).0,
            tickets: Tickets::default(),
            stop: CancellationToken::new(),
            keep_alive,
            ready,
        });
        let task = tokio::spawn(tail(pool, committed, hub.clone(), ready_tx));
        (hub, task)
    }

    /// Ends the tail and every open stream (each ends cleanly, so a graceful shutdown need not
    /// wait for clients to leave).
    pub fn close(&self) {
        self.stop.cancel();
    }
}

/// The ticket streams' channels, one per ticket that a stream watches: the tail sends each
/// ticket's entries to its channel alone, so a stream wakes only for its own ticket.
#[derive(Default)]
struct Tickets {
    /// Created by a ticket's first stream, removed by the tail once no stream holds it; both
    /// under this lock, and subscribing too, so that no stream holds a removed channel.
    channels: Mutex<HashMap<String, broadcast::Sender<Shared<()>>>>,
    /// A channel was created: the tail takes it in (tells it where it starts) without waiting
    /// for a commit.
    created: Notify,
}

impl Tickets {
    fn subscribe(&self, ticket: &str) -> broadcast::Receiver<Shared<()>> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = channels.get(ticket) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(TICKET_RING);
        channels.insert(ticket.to_owned(), tx);
        drop(channels);
        self.created.notify_one();
        rx
    }

    /// Whether some ticket has a channel (perhaps with no stream left, until the next read).
    fn any(&self) -> bool {
        !self.channels.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }
}

// ---------------------------------------------------------------- the tail

/// A kind of item the tail reads and broadcasts.
struct Walk<M> {
    tx: broadcast::Sender<Shared<M>>,
    /// Where the walk is: the last key read, or where it skipped to.
    cursor: Key,
    /// Every item up to this seq has been read (or skipped while nobody listened).
    seen: i64,
}

impl<M> Walk<M> {
    /// A walk that starts after `head`, a seq known committed.
    fn new(tx: broadcast::Sender<Shared<M>>, head: i64) -> Self {
        Walk { tx, cursor: (head, i32::MAX), seen: head }
    }

    /// Reads and broadcasts everything up to `head` (a seq known committed), in pages.
    async fn advance<R, F>(&mut self, head: i64, read: impl Fn(Key) -> F, item: impl Fn(R) -> (Key, M, Option<Bytes>))
    where
        F: Future<Output = Result<Vec<R>, sqlx::Error>>,
    {
        if head <= self.seen {
            return;
        }
        if self.tx.receiver_count() == 0 {
            // Nobody listens: skip ahead. `head` was committed before this count, so a connection
            // that subscribes from now on places itself at or after it; one that resumes from
            // further back sees from `prev` that it must read the gap itself.
            self.cursor = self.cursor.max((head, i32::MAX));
            self.seen = head;
            return;
        }
        let mut cursor = self.cursor;
        loop {
            let rows = match read(cursor).await {
                Ok(rows) => rows,
                Err(e) => {
                    // Tried again on the next hint or poll; connections are not told, they wait.
                    tracing::warn!(error = %e, "the live tail cannot read the database");
                    return;
                }
            };
            let full = rows.len() as i64 == TAIL_PAGE;
            let items: Vec<_> = rows.into_iter().map(&item).collect();
            if let Some((last, _, _)) = items.last() {
                let last = *last;
                let _ = self.tx.send(Arc::new(Page::new(cursor, items)));
                cursor = last;
            }
            self.cursor = cursor;
            if !full {
                break;
            }
        }
        self.seen = head;
    }
}

/// The tickets the entries walk sends to, as of its last look at [`Tickets`]: each with its
/// channel `C` and where its chain of `prev`s is.
struct Watched<C> {
    tickets: HashMap<String, Chain<C>>,
}

struct Chain<C> {
    channel: C,
    /// The key of the ticket's last item sent, or, before its first, where the first read that
    /// saw the ticket started: no item of the ticket lies between it and the next one read.
    last: Key,
}

impl<C: Clone> Watched<C> {
    fn new() -> Self {
        Watched { tickets: HashMap::new() }
    }

    /// Takes the channels as they are now: keeps the tickets whose channel is still the same,
    /// forgets the others, and takes in the new ones, their chain starting at `start` (where the
    /// next read starts). Returns the new ones' channels.
    fn update(&mut self, now: &HashMap<String, C>, same: impl Fn(&C, &C) -> bool, start: Key) -> Vec<C> {
        self.tickets.retain(|t, c| now.get(t).is_some_and(|n| same(n, &c.channel)));
        let mut new = Vec::new();
        if self.tickets.len() < now.len() {
            for (t, c) in now {
                if !self.tickets.contains_key(t) {
                    self.tickets.insert(t.clone(), Chain { channel: c.clone(), last: start });
                    new.push(c.clone());
                }
            }
        }
        new
    }

    /// One read's rows (ticket, key, row), in key order, by ticket: for each watched ticket
    /// with rows, its channel, its first row's `prev` and its rows in order; its `last` moves to
    /// its last row. Rows of other tickets are dropped.
    fn split<R>(&mut self, rows: impl IntoIterator<Item = (String, Key, R)>) -> Vec<Split<C, R>> {
        let mut at: HashMap<String, usize> = HashMap::new();
        let mut out: Vec<Split<C, R>> = Vec::new();
        for (ticket, key, row) in rows {
            let Some(chain) = self.tickets.get_mut(&ticket) else { continue };
            let prev = std::mem::replace(&mut chain.last, key);
            let i = *at.entry(ticket).or_insert_with(|| {
                out.push(Split { channel: chain.channel.clone(), prev, rows: Vec::new() });
                out.len() - 1
            });
            out[i].rows.push((key, row));
        }
        out
    }
}

/// One ticket's rows of a read ([`Watched::split`]).
struct Split<C, R> {
    channel: C,
    /// The first row's `prev`.
    prev: Key,
    rows: Vec<(Key, R)>,
}

/// Which entries the tail reads up to a head.
#[derive(Debug, PartialEq)]
enum Read {
    /// None: no watched ticket has a new entry.
    Nothing,
    /// Those of these seqs (ascending), the watched tickets'.
    Seqs(Vec<i64>),
    /// Every ticket's, after the cursor.
    All,
}

impl Read {
    /// What to read after `cursor` (every entry up to seq `seen` has been read) up to `head`,
    /// told `told` by this process's writer. While it speaks for every seq in `(seen, head]`,
    /// the watched tickets' seqs among them hold all their entries there (module doc).
    fn of(told: &Touched, seen: i64, head: i64, cursor: Key, watched: impl Fn(&str) -> bool) -> Read {
        if !told.covers(seen, head) {
            return Read::All;
        }
        let seqs: Vec<i64> = told
            .tickets
            .iter()
            .filter(|(seq, ticket)| (*seq, i32::MAX) > cursor && *seq <= head && watched(ticket))
            .map(|(seq, _)| *seq)
            .collect();
        if seqs.is_empty() {
            Read::Nothing
        } else {
            Read::Seqs(seqs)
        }
    }
}

type TicketTx = broadcast::Sender<Shared<()>>;

/// The timeline entries' walk: every ticket's entries are read, the watched tickets' made into
/// events (the others' dropped before their JSON), each ticket's sent to its own channel.
struct Entries {
    /// Where the walk is: the last key read, or where it skipped to.
    cursor: Key,
    /// Every entry up to this seq has been read (or skipped while nobody listened).
    seen: i64,
    watched: Watched<TicketTx>,
}

impl Entries {
    fn new(head: i64) -> Self {
        Entries { cursor: (head, i32::MAX), seen: head, watched: Watched::new() }
    }

    /// Looks at the channels: removes those no stream holds any more, and tells each new one
    /// where its chain starts (a page with no item), so that a stream that placed itself before
    /// that reads what it lacks from the database now, not at its ticket's next entry.
    fn watch(&mut self, tickets: &Tickets) {
        let new = {
            let mut channels = tickets.channels.lock().unwrap_or_else(PoisonError::into_inner);
            channels.retain(|_, tx| tx.receiver_count() > 0);
            self.watched.update(&channels, TicketTx::same_channel, self.cursor)
        };
        for tx in new {
            let _ = tx.send(Arc::new(Page::new(self.cursor, Vec::new())));
        }
    }

    /// Reads and sends the watched tickets' entries up to `head` (a seq known committed), in
    /// pages. `told`: what this process's writer committed since the last call, and whose.
    async fn advance(&mut self, pool: &PgPool, tickets: &Tickets, head: i64, told: Touched) {
        self.watch(tickets);
        // Every seq `told` holds was committed before it was announced.
        let head = head.max(told.to);
        if head <= self.seen {
            return;
        }
        if self.watched.tickets.is_empty() {
            // Nobody listens: skip ahead (as `Walk::advance` does). A channel created from now
            // on starts its chain here or later, and its stream places itself at or after it.
            self.cursor = self.cursor.max((head, i32::MAX));
            self.seen = head;
            return;
        }
        match Read::of(&told, self.seen, head, self.cursor, |t| self.watched.tickets.contains_key(t)) {
            Read::Nothing => {
                metrics::counter!("ticket_audit_stream_entry_reads_total", "read" => "none").increment(1);
            }
            Read::Seqs(mut seqs) => {
                // An error leaves `seen` behind `told`, which is spent: the next read walks.
                while !seqs.is_empty() {
                    metrics::counter!("ticket_audit_stream_entry_reads_total", "read" => "touched").increment(1);
                    let read = store::stream::entries_at(pool, &seqs, self.cursor, TAIL_PAGE);
                    let Some((full, read_to)) = self.read(read).await else { return };
                    if !full {
                        break;
                    }
                    let done = seqs.partition_point(|s| *s < read_to.0);
                    seqs.drain(..done);
                }
            }
            Read::All => return self.walk(pool, head).await,
        }
        self.cursor = self.cursor.max((head, i32::MAX));
        self.seen = head;
    }

    /// Reads every ticket's entries up to `head`, in pages.
    async fn walk(&mut self, pool: &PgPool, head: i64) {
        loop {
            // Every ticket's entries: a filter on the watched names makes PostgreSQL probe the
            // ticket index once per name (1,000 names: 159 ms a read at 20,000 tickets, against
            // 4 ms for this walk of the primary keys), docs/performance.md.
            metrics::counter!("ticket_audit_stream_entry_reads_total", "read" => "all").increment(1);
            let Some((full, _)) = self.read(store::stream::entries(pool, self.cursor, TAIL_PAGE)).await else {
                return;
            };
            if !full {
                break;
            }
        }
        self.seen = head;
    }

    /// One page of entries after the cursor, sent to the watched tickets' channels; the cursor
    /// moves to its last. Whether it was full, and where it ended; none after an error.
    async fn read(
        &mut self,
        rows: impl Future<Output = Result<Vec<store::stream::TicketEntry>, sqlx::Error>>,
    ) -> Option<(bool, Key)> {
        let rows = match rows.await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "the live tail cannot read the database");
                return None;
            }
        };
        let full = rows.len() as i64 == TAIL_PAGE;
        let read_to = rows.last().map(|r| (r.entry.seq, r.entry.position));
        let rows = rows.into_iter().map(|r| (String::from(r.ticket_name), (r.entry.seq, r.entry.position), r.entry));
        for Split { channel: tx, prev, rows: items } in self.watched.split(rows) {
            let items = items
                .into_iter()
                .map(|(key, entry)| (key, (), inline(sse(Ticket::EVENT, key, &json(&TimelineEntry::from(entry))))))
                .collect();
            let _ = tx.send(Arc::new(Page::new(prev, items)));
        }
        if let Some(key) = read_to {
            self.cursor = key;
        }
        Some((full, self.cursor))
    }
}

fn inline(event: Bytes) -> Option<Bytes> {
    (event.len() <= INLINE_MAX).then_some(event)
}

async fn tail(pool: PgPool, mut committed: Committed, hub: Arc<Hub>, ready: watch::Sender<bool>) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Where to start: the head, before any stream may start (they wait for `ready`), so that no
    // stream places itself before where the walks begin.
    let start = loop {
        tokio::select! {
            biased;
            () = hub.stop.cancelled() => return,
            _ = poll.tick() => match store::stream::head(&pool).await {
                Ok(h) => break h,
                Err(e) => tracing::debug!(error = %e, "the live tail cannot read the head yet"),
            },
        }
    };
    let mut commands = Walk::new(hub.commands.clone(), start);
    let mut entries = Entries::new(start);
    let _ = ready.send(true);
    let mut writer_alive = true;
    let everything = CommandFilter::default();
    loop {
        let head = tokio::select! {
            biased;
            () = hub.stop.cancelled() => return,
            changed = committed.head.changed(), if writer_alive => match changed {
                Ok(()) => *committed.head.borrow_and_update(),
                Err(_) => {
                    writer_alive = false;
                    continue;
                }
            },
            () = hub.tickets.created.notified() => {
                entries.watch(&hub.tickets);
                continue;
            }
            _ = poll.tick() => {
                if hub.commands.receiver_count() == 0 && !hub.tickets.any() {
                    continue;
                }
                match store::stream::head(&pool).await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::debug!(error = %e, "the live tail cannot read the head");
                        continue;
                    }
                }
            }
        };
        let read_commands = |after| store::stream::executed_commands(&pool, &Scope::All, &everything, after, TAIL_PAGE);
        commands
            .advance(head, read_commands, |r| {
                let meta = CommandMeta {
                    tenant_id: r.tenant_id.clone().map(String::from),
                    agent_name: r.agent_name.clone().map(String::from),
                    ticket: r.ticket_name.clone().map(String::from),
                    recorded_at: r.recorded_at,
                    command: None,
                };
                let key = (r.seq, r.position);
                let command = r.command.0.clone();
                let event = inline(sse(Commands::EVENT, key, &json(&Command::from(r))));
                (key, CommandMeta { command: event.as_ref().map(|_| command), ..meta }, event)
            })
            .await;
        entries.advance(&pool, &hub.tickets, head, committed.take()).await;
        tokio::select! {
            () = hub.stop.cancelled() => return,
            () = tokio::time::sleep(COALESCE) => {}
        }
    }
}

fn json(v: &impl serde::Serialize) -> String {
    // Structs of strings, numbers and booleans: serializing cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

// ---------------------------------------------------------------- one connection

/// What one stream sends, and how it reads what it missed.
trait Source: Send + Sync + 'static {
    type Meta: Send + Sync + 'static;
    const EVENT: &'static str;
    /// Whether the item may be for this stream (with no command text, `contains` is left to
    /// the database).
    fn wants(&self, meta: &Self::Meta) -> bool;
    /// This stream's items after `after`, oldest first, as the read API gives them.
    fn page(
        &self,
        pool: &PgPool,
        after: Key,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(Key, Bytes)>, sqlx::Error>> + Send;
}

struct Commands {
    scope: Scope,
    filter: CommandFilter,
}

impl Source for Commands {
    type Meta = CommandMeta;
    const EVENT: &'static str = "command";

    fn wants(&self, m: &CommandMeta) -> bool {
        let fields = CommandFields {
            tenant_id: m.tenant_id.as_deref(),
            agent_name: m.agent_name.as_deref(),
            ticket: m.ticket.as_deref(),
            executed: true,
            recorded_at: m.recorded_at,
            command: m.command.as_deref(),
        };
        self.filter.admits(&self.scope, &fields)
    }

    async fn page(&self, pool: &PgPool, after: Key, limit: i64) -> Result<Vec<(Key, Bytes)>, sqlx::Error> {
        let rows = store::stream::executed_commands(pool, &self.scope, &self.filter, after, limit).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let key = (r.seq, r.position);
                (key, sse(Self::EVENT, key, &json(&Command::from(r))))
            })
            .collect())
    }
}

struct Ticket {
    name: String,
}

impl Source for Ticket {
    /// Nothing: the ticket's channel carries its entries only.
    type Meta = ();
    const EVENT: &'static str = "entry";

    fn wants(&self, (): &()) -> bool {
        true
    }

    async fn page(&self, pool: &PgPool, after: Key, limit: i64) -> Result<Vec<(Key, Bytes)>, sqlx::Error> {
        let rows = store::read::timeline(pool, &self.name, after, limit).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let key = (r.seq, r.position);
                (key, sse(Self::EVENT, key, &json(&TimelineEntry::from(r))))
            })
            .collect())
    }
}

struct Connection<S: Source> {
    source: S,
    pool: PgPool,
    rx: broadcast::Receiver<Shared<S::Meta>>,
    /// Every item of this stream up to here has been sent, or is in `ready`.
    covered: Key,
    /// The database holds items after `covered` that the broadcast will not bring.
    behind: bool,
    ready: VecDeque<Bytes>,
    stop: CancellationToken,
    keep_alive: Duration,
    /// When the last thing was sent (a keep-alive is due `keep_alive` after it).
    sent_at: tokio::time::Instant,
}

impl<S: Source> Connection<S> {
    async fn next(mut self) -> Option<(Bytes, Self)> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.sent_at = tokio::time::Instant::now();
                return Some((self.coalesce(event), self));
            }
            if self.behind {
                let catch_up = async {
                    // Read first: the page's query then sees every seq up to `head`.
                    let head = store::stream::head(&self.pool).await?;
                    let rows = self.source.page(&self.pool, self.covered, CATCH_UP_PAGE).await?;
                    Ok::<_, sqlx::Error>((head, rows))
                };
                let (head, rows) = tokio::select! {
                    biased;
                    () = self.stop.cancelled() => return None,
                    page = catch_up => match page {
                        Ok(page) => page,
                        Err(e) => {
                            // Ended: the client reconnects with Last-Event-ID and loses nothing.
                            tracing::warn!(error = %e, "a live tail stream cannot read the database: ending it");
                            return None;
                        }
                    },
                };
                let full = rows.len() as i64 == CATCH_UP_PAGE;
                for (key, event) in rows {
                    self.covered = key;
                    self.ready.push_back(event);
                }
                if !full {
                    self.covered = self.covered.max((head, i32::MAX));
                    self.behind = false;
                }
                continue;
            }
            let received = tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                received = self.rx.recv() => received,
                () = tokio::time::sleep_until(self.sent_at + self.keep_alive) => {
                    self.sent_at = tokio::time::Instant::now();
                    return Some((Bytes::from_static(KEEP_ALIVE_COMMENT), self));
                }
            };
            match received {
                Ok(page) => self.take(&page),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    metrics::counter!("ticket_audit_stream_lagged_total").increment(1);
                    tracing::debug!(missed, "a live tail stream fell behind: catching up from the database");
                    self.behind = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// `first` and the events ready after it, as one write of at most [`FRAME_MAX`] bytes (or
    /// `first` alone, however large).
    fn coalesce(&mut self, first: Bytes) -> Bytes {
        let mut len = first.len();
        let more = self.ready.iter().take_while(|e| {
            len += e.len();
            len <= FRAME_MAX
        });
        let n = more.count();
        if n == 0 {
            return first;
        }
        let mut frame =
            bytes::BytesMut::with_capacity(first.len() + self.ready.iter().take(n).map(Bytes::len).sum::<usize>());
        frame.extend_from_slice(&first);
        for e in self.ready.drain(..n) {
            frame.extend_from_slice(&e);
        }
        frame.freeze()
    }

    /// Takes what this stream wants from a page, in order, until a gap: what follows it comes
    /// from the database.
    fn take(&mut self, page: &Page<S::Meta>) {
        // A ticket's first page, with no item: where its chain starts. Before it, the database.
        if page.items.is_empty() {
            self.behind |= page.prev > self.covered;
            return;
        }
        // The whole page, with no gap before it and every item wanted: its bytes as they are.
        if let (Some(all), Some(first), Some(last)) = (&page.all, page.items.first(), page.items.last()) {
            if first.key > self.covered
                && first.prev <= self.covered
                && page.items.iter().all(|i| self.source.wants(&i.meta))
            {
                self.covered = last.key;
                self.ready.push_back(all.clone());
                return;
            }
        }
        for item in &page.items {
            if item.key <= self.covered {
                continue;
            }
            let wanted = self.source.wants(&item.meta);
            if item.prev > self.covered || (wanted && item.sse.is_none()) {
                self.behind = true;
                return;
            }
            self.covered = item.key;
            if let (true, Some(event)) = (wanted, &item.sse) {
                self.ready.push_back(event.clone());
            }
        }
    }
}

// ---------------------------------------------------------------- the route

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// A ticket's name: stream its timeline entries (`event: entry`) instead of commands. It
    /// takes no other filter.
    ticket: Option<String>,
    /// Commands of tickets of this tenant.
    tenant_id: Option<String>,
    /// Commands of tickets assigned to this agent.
    agent_name: Option<String>,
    /// Commands containing this substring, matched as it is.
    contains: Option<String>,
    /// Start after this id (`seq.position`), as `Last-Event-ID` does (the header wins when both
    /// are sent): a page that has shown items up to an id streams from there.
    #[param(pattern = r"^[0-9]+\.[0-9]+$")]
    after: Option<String>,
}

/// An item's id, `seq.position`, as the read API writes it: digits only.
fn parse_id(s: &str) -> Option<Key> {
    let (seq, pos) = s.split_once('.')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(seq) || !digits(pos) {
        return None;
    }
    Some((seq.parse().ok()?, pos.parse().ok()?))
}

/// Where the stream starts after: `Last-Event-ID`, else `after`, else nowhere (the head).
fn resume_from(headers: &HeaderMap, after: Option<&str>) -> Result<Option<Key>, ApiError> {
    let bad = |what: &str| ApiError::BadRequest(format!("{what} must be an item id, seq.position (e.g. 12.3)"));
    // An empty Last-Event-ID is the EventSource's "no event seen yet": the head.
    if let Some(v) = headers.get("last-event-id").filter(|v| !v.is_empty()) {
        return v.to_str().ok().and_then(parse_id).map(Some).ok_or_else(|| bad("Last-Event-ID"));
    }
    after.map(|a| parse_id(a).ok_or_else(|| bad("after"))).transpose()
}

/// The live tail, as Server-Sent Events: by default `event: command`, one per executed command
/// as it is committed, its data the command as `GET /api/v1/commands` gives it; with `ticket`,
/// `event: entry`, one per timeline entry of that ticket, as its timeline gives it. Each event's
/// `id` is the item's id: reconnecting with `Last-Event-ID` resumes with nothing lost or repeated;
/// without it the stream starts at the head. Keep-alive comments while idle.
#[utoipa::path(get, path = "/stream", tag = "stream",
    params(StreamParams, ("Last-Event-ID" = Option<String>, Header, description = "resume after this id (seq.position)")),
    responses(
        (status = 200, description = "an endless stream of events", content_type = "text/event-stream", body = String),
        ReadProblems
    ),
    security(("bearer" = [])))]
pub async fn stream(
    State(app): State<AppState>,
    Reader(scope): Reader,
    headers: HeaderMap,
    Query(p): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let from = resume_from(&headers, p.after.as_deref())?;
    let hub = &app.stream;
    // Only just started, the tail reads where it begins; it cannot while the database is away.
    let mut ready = hub.ready.clone();
    match tokio::time::timeout(STARTING, ready.wait_for(|r| *r)).await {
        Ok(Ok(_)) => {}
        _ => return Err(ApiError::Unavailable("the live tail cannot start: the database is unavailable", None)),
    }
    let response = match p.ticket {
        Some(name) => {
            if p.tenant_id.is_some() || p.agent_name.is_some() || p.contains.is_some() {
                return Err(ApiError::BadRequest(
                    "a ticket's stream takes no filter (tenant_id, agent_name, contains are for commands)".into(),
                ));
            }
            store::read::get_ticket(&app.pool, &scope, &name).await?.ok_or(ApiError::NotFound)?;
            let rx = hub.tickets.subscribe(&name);
            respond(&app, Ticket { name }, rx, from).await?
        }
        None => {
            let filter = CommandFilter {
                tenant_id: p.tenant_id,
                agent_name: p.agent_name,
                contains: p.contains.filter(|c| !c.is_empty()),
                ..CommandFilter::default()
            };
            let rx = hub.commands.subscribe();
            respond(&app, Commands { scope, filter }, rx, from).await?
        }
    };
    Ok(response)
}

/// Subscribed first, then placed: from the head, or behind with `from` to catch up from.
async fn respond<S: Source>(
    app: &AppState,
    source: S,
    rx: broadcast::Receiver<Shared<S::Meta>>,
    from: Option<Key>,
) -> Result<Response, ApiError> {
    let (covered, behind) = match from {
        Some(key) => (key, true),
        None => ((store::stream::head(&app.pool).await?, i32::MAX), false),
    };
    let connection = Connection {
        source,
        pool: app.pool.clone(),
        rx,
        covered,
        behind,
        ready: VecDeque::new(),
        stop: app.stream.stop.clone(),
        keep_alive: app.stream.keep_alive,
        sent_at: tokio::time::Instant::now(),
    };
    // Each stream sends the bytes the tail made once (axum's Sse would format every event again
    // for every stream), and its own keep-alives.
    let events = futures_util::stream::unfold(connection, Connection::next).map(Ok::<_, Infallible>);
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        // Proxies that buffer answers (nginx) would hold the events back.
        (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
    ];
    Ok((headers, axum::body::Body::from_stream(events)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(now: &[(&str, u32)]) -> HashMap<String, u32> {
        now.iter().map(|(t, c)| ((*t).to_owned(), *c)).collect()
    }

    fn rows(rows: &[(&str, Key)]) -> Vec<(String, Key, ())> {
        rows.iter().map(|(t, k)| ((*t).to_owned(), *k, ())).collect()
    }

    /// (channel, prev, keys) of each ticket's page, by channel.
    fn pages(split: Vec<Split<u32, ()>>) -> Vec<(u32, Key, Vec<Key>)> {
        let mut pages: Vec<_> =
            split.into_iter().map(|s| (s.channel, s.prev, s.rows.into_iter().map(|(k, ())| k).collect())).collect();
        pages.sort();
        pages
    }

    #[test]
    fn each_tickets_chain_goes_from_where_it_was_taken_in_to_its_last_entry_sent() {
        let mut w = Watched::new();
        let same = |a: &u32, b: &u32| a == b;
        let mut new = w.update(&channels(&[("A", 1), ("B", 2)]), same, (10, i32::MAX));
        new.sort();
        assert_eq!(new, [1, 2]);
        // One read: each ticket's entries, in order, the first after where its chain started,
        // each after the one before it of the same ticket; another ticket's are dropped.
        let read = rows(&[("A", (11, 0)), ("C", (11, 1)), ("B", (11, 2)), ("A", (12, 1)), ("A", (12, 2))]);
        assert_eq!(
            pages(w.split(read)),
            [(1, (10, i32::MAX), vec![(11, 0), (12, 1), (12, 2)]), (2, (10, i32::MAX), vec![(11, 2)])]
        );
        // A ticket with nothing in a read keeps its chain.
        assert_eq!(pages(w.split(rows(&[("B", (13, 0))]))), [(2, (11, 2), vec![(13, 0)])]);
        // C is taken in: its chain starts where the next read starts, not at its earlier entry.
        assert_eq!(w.update(&channels(&[("A", 1), ("B", 2), ("C", 3)]), same, (13, i32::MAX)), [3]);
        assert_eq!(
            w.update(&channels(&[("A", 1), ("B", 2), ("C", 3)]), same, (14, i32::MAX)),
            Vec::<u32>::new(),
            "taken in once"
        );
        let read = rows(&[("C", (14, 0)), ("A", (14, 1))]);
        assert_eq!(pages(w.split(read)), [(1, (12, 2), vec![(14, 1)]), (3, (13, i32::MAX), vec![(14, 0)])]);
        // B's channel removed (no stream), then created again: a new chain, from the next start.
        assert_eq!(w.update(&channels(&[("A", 1), ("C", 3)]), same, (14, 1)), Vec::<u32>::new());
        assert_eq!(pages(w.split(rows(&[("B", (15, 0))]))), []);
        assert_eq!(w.update(&channels(&[("A", 1), ("B", 4), ("C", 3)]), same, (15, 0)), [4]);
        assert_eq!(pages(w.split(rows(&[("B", (16, 0))]))), [(4, (15, 0), vec![(16, 0)])]);
        // A channel replaced between two looks is a new chain too.
        assert_eq!(w.update(&channels(&[("A", 5), ("B", 4), ("C", 3)]), same, (16, 0)), [5]);
        assert_eq!(pages(w.split(rows(&[("A", (17, 0))]))), [(5, (16, 0), vec![(17, 0)])]);
    }

    #[test]
    fn no_entry_of_a_ticket_lies_between_an_entry_sent_and_its_prev_however_channels_come_and_go() {
        // A small generator (no dependency): tickets A..E, reads of 0-5 entries, channels that
        // appear, disappear and are replaced between reads.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let tickets = ["A", "B", "C", "D", "E"];
        let mut w = Watched::new();
        let mut now: HashMap<String, u32> = HashMap::new();
        // Each channel's ticket.
        let mut names: HashMap<u32, String> = HashMap::new();
        let (mut next_channel, mut seq) = (0, 0i64);
        let mut record: Vec<(String, Key)> = Vec::new();
        let mut sent: Vec<(String, Key, Key)> = Vec::new();
        let mut cursor = (0, i32::MAX);
        for _ in 0..2000 {
            let t = tickets[rand(5) as usize].to_owned();
            match rand(4) {
                0 => {
                    now.remove(&t);
                }
                1 => {
                    next_channel += 1;
                    names.insert(next_channel, t.clone());
                    now.insert(t, next_channel);
                }
                _ => {}
            }
            for _ in 0..rand(3) {
                let t = tickets[rand(5) as usize].to_owned();
                if let std::collections::hash_map::Entry::Vacant(e) = now.entry(t) {
                    next_channel += 1;
                    names.insert(next_channel, e.key().clone());
                    e.insert(next_channel);
                }
            }
            w.update(&now, |a, b| a == b, cursor);
            let mut read = Vec::new();
            seq += 1;
            for position in 0..rand(6) as i32 {
                read.push((tickets[rand(5) as usize].to_owned(), (seq, position)));
            }
            record.extend(read.iter().cloned());
            for Split { channel, prev, rows } in w.split(read.into_iter().map(|(t, k)| (t, k, ()))) {
                let ticket = names[&channel].clone();
                let mut prev = prev;
                for (key, ()) in rows {
                    sent.push((ticket.clone(), prev, key));
                    prev = key;
                }
            }
            cursor = (seq, i32::MAX);
        }
        assert!(sent.len() > 1000, "{} entries sent", sent.len());
        for (ticket, prev, key) in &sent {
            assert!(prev < key);
            let between = record.iter().filter(|(t, k)| t == ticket && prev < k && k < key).count();
            assert_eq!(between, 0, "{ticket}: an entry between {prev:?} and {key:?}");
        }
    }

    #[test]
    fn the_writers_word_narrows_the_read_only_where_it_speaks_for_every_seq() {
        let told = |from, to, tickets: &[(i64, &str)]| Touched {
            from,
            to,
            tickets: tickets.iter().map(|(s, t)| (*s, (*t).to_owned())).collect(),
        };
        let watched = |t: &str| t == "A" || t == "B";
        let t = told(10, 14, &[(11, "A"), (12, "C"), (13, "B"), (14, "A")]);
        // Every seq since the last read spoken for: the watched tickets' seqs, in order.
        assert_eq!(Read::of(&t, 10, 14, (10, i32::MAX), watched), Read::Seqs(vec![11, 13, 14]));
        // Past the cursor only; a seq read in part (a full page ended in it) is read again for
        // its rest.
        assert_eq!(Read::of(&t, 10, 14, (13, 2), watched), Read::Seqs(vec![13, 14]));
        assert_eq!(Read::of(&t, 10, 14, (13, i32::MAX), watched), Read::Seqs(vec![14]));
        // Only unwatched tickets touched: nothing to read.
        let t = told(10, 13, &[(11, "C"), (13, "D")]);
        assert_eq!(Read::of(&t, 10, 13, (10, i32::MAX), watched), Read::Nothing);
        assert_eq!(Read::of(&told(10, 10, &[]), 10, 10, (10, i32::MAX), watched), Read::Nothing);
        // A seq it does not speak for (another instance's, or before the writer's record
        // starts, or after its end): everything.
        assert_eq!(Read::of(&told(12, 14, &[(13, "A")]), 10, 14, (10, i32::MAX), watched), Read::All);
        assert_eq!(Read::of(&told(10, 13, &[(11, "C")]), 10, 14, (10, i32::MAX), watched), Read::All);
        // Its record may start before the last read: what it holds up to there is not read again.
        let t = told(8, 14, &[(9, "A"), (12, "A")]);
        assert_eq!(Read::of(&t, 10, 14, (10, i32::MAX), watched), Read::Seqs(vec![12]));
    }

    #[test]
    fn ids_are_digits_dot_digits() {
        assert_eq!(parse_id("12.3"), Some((12, 3)));
        assert_eq!(parse_id("0.0"), Some((0, 0)));
        for bad in [
            "",
            "12",
            "12.",
            ".3",
            "-1.2",
            "1.-2",
            "+1.2",
            "1.2.3",
            "a.b",
            " 1.2",
            "1.2 ",
            "99999999999999999999.1",
            "1.2147483648",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
