//! The writer: one task per process gathers the deliveries waiting and commits them together
//! (group commit), pipelined, under a supervisor.
//!
//! Handlers hand a checked delivery to the bounded queue and wait for their own outcome, which
//! is sent only after the transaction holding it has committed. While one batch commits, the
//! next gathers and goes in: its rows are written from the head the committing batch leaves, and
//! its head update, a compare-and-swap, waits for that commit ([`Pipeline`]). Batches grow with
//! load and cost nothing when it is quiet; both cores stay busy. With several instances on one
//! database, one writes at a time, each in turn for a slice of time ([`super::lease`]), so that
//! their batches do not undo each other's.
//!
//! Nothing a sender sends may stop it: a batch whose write fails on what a delivery holds (the
//! database refuses a value, or a panic in encoding it) is split and its deliveries stored one by
//! one, and a delivery that still fails is stored unprojected, as a bare event. Should the task
//! itself end by a panic, the supervisor starts it again on the same queue; past
//! [`MAX_RESTARTS`] in [`RESTART_WINDOW`] it gives up and reports itself dead (`/readyz` then
//! says so and `serve` exits non-zero).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::batch::{execute_batch, Basis, BatchError, Executed, Head, InFlight, NewDelivery, Outcome};
use super::classify::WriterActivity;
use super::committed::{self, Announcer, Committed};
use super::lease::{self, Lease, Taken};

/// Restarts the supervisor allows within [`RESTART_WINDOW`] before it gives up.
pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Most projected rows one transaction takes (deliveries, messages, commands, ticket updates):
/// a batch of large deliveries is cut into transactions of about this size, so the deliveries
/// behind them wait for one of those, not for all.
pub const BATCH_ROWS: usize = 20_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the write queue is full")]
    QueueFull,
    #[error("the database is unavailable")]
    Unavailable(#[source] Arc<sqlx::Error>),
    #[error("the writer has stopped")]
    Stopped,
}

struct Job {
    delivery: NewDelivery,
    reply: oneshot::Sender<Reply>,
}

/// A delivery's outcome, with the delivery itself handed back: its memory (body, projection) was
/// allocated by the handler's thread and is freed there, not on the writer's, where freeing other
/// threads' allocations took a fifth of its time (glibc's `_int_free`, bench/README.md).
type Reply = (Result<Outcome, WriteError>, NewDelivery);

impl Job {
    fn answer(self, result: Result<Outcome, WriteError>) {
        let _ = self.reply.send((result, self.delivery));
    }
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    pool: PgPool,
    activity: Arc<WriterActivity>,
    alive: Arc<AtomicBool>,
    committed: Committed,
}

impl Writer {
    /// Starts the writer. It ends once every `Writer` clone is dropped and the queue is drained;
    /// the returned future resolves then, or earlier, with [`WriteError::Stopped`], when the
    /// supervisor gave up on it.
    ///
    /// The writer runs on a thread of its own, with a single-threaded runtime: a batch is a chain
    /// of round trips to PostgreSQL, and on the shared runtime each step of the chain waited for a
    /// thread busy with request handlers (bench/README.md). Its connections are opened, and
    /// their I/O driven, on that thread.
    pub fn spawn(
        pool: PgPool,
        queue_capacity: usize,
        max_batch: usize,
    ) -> std::io::Result<(Writer, impl std::future::Future<Output = Result<(), WriteError>>)> {
        Self::start(pool, queue_capacity, max_batch, false)
    }

    /// A writer that stores deliveries strictly in the order queued, large ones included
    /// (`import`: a file's lines in file order). See [`Lanes`].
    pub fn spawn_in_order(
        pool: PgPool,
        queue_capacity: usize,
        max_batch: usize,
    ) -> std::io::Result<(Writer, impl std::future::Future<Output = Result<(), WriteError>>)> {
        Self::start(pool, queue_capacity, max_batch, true)
    }

    fn start(
        pool: PgPool,
        queue_capacity: usize,
        max_batch: usize,
        ordered: bool,
    ) -> std::io::Result<(Writer, impl std::future::Future<Output = Result<(), WriteError>>)> {
        let (tx, mut rx) = mpsc::channel(queue_capacity.max(1));
        let activity = Arc::new(WriterActivity::default());
        let alive = Arc::new(AtomicBool::new(true));
        let (commits, committed) = committed::channel();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (done, finished) = oneshot::channel::<bool>();
        let (writer_pool, writer_activity, writer_alive) = (pool.clone(), activity.clone(), alive.clone());
        std::thread::Builder::new().name("ticket-audit-writer".into()).spawn(move || {
            let mut budget = RestartBudget::default();
            let drained = loop {
                let run =
                    AssertUnwindSafe(run(&writer_pool, &mut rx, max_batch.max(1), &writer_activity, ordered, &commits));
                match runtime.block_on(run.catch_unwind()) {
                    Ok(()) => break true,
                    Err(panic) => {
                        tracing::error!(panic = panic_text(&panic), "the writer panicked");
                        if !budget.allow(Instant::now()) {
                            tracing::error!(
                                "the writer panicked {MAX_RESTARTS} times within {RESTART_WINDOW:?}: giving up"
                            );
                            break false;
                        }
                        metrics::counter!("ticket_audit_writer_restarts_total").increment(1);
                    }
                }
            };
            writer_alive.store(false, Ordering::SeqCst);
            // Refuse what is still queued at once, rather than leave senders waiting.
            rx.close();
            // Its connections' I/O belongs to this runtime: close them before it goes.
            runtime.block_on(writer_pool.close());
            let _ = done.send(drained);
        })?;
        let writer = Writer { queue: tx, pool, activity, alive, committed };
        Ok((writer, async move {
            match finished.await {
                Ok(true) => Ok(()),
                _ => Err(WriteError::Stopped),
            }
        }))
    }

    /// Stores one delivery; returns once it is committed (or known not to be).
    pub async fn submit(&self, delivery: NewDelivery) -> Result<Outcome, WriteError> {
        self.enqueue(delivery).map_err(|refused| refused.0)?.await
    }

    /// Queues a delivery without waiting; deliveries queued by one caller are stored in the
    /// order queued (with [`Writer::spawn_in_order`]; otherwise a delivery of more than
    /// [`LARGE_ROWS`] rows may be stored after ordinary ones queued behind it). A full queue
    /// hands the delivery back.
    pub fn enqueue(
        &self,
        delivery: NewDelivery,
    ) -> Result<impl std::future::Future<Output = Result<Outcome, WriteError>>, Box<(WriteError, NewDelivery)>> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Job { delivery, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) => Box::new((WriteError::QueueFull, job.delivery)),
            mpsc::error::TrySendError::Closed(job) => Box::new((WriteError::Stopped, job.delivery)),
        })?;
        Ok(async move {
            let (result, delivery) = answer.await.map_err(|_| WriteError::Stopped)?;
            drop(delivery);
            result
        })
    }

    /// The writer's own connections.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How busy the writer is, for work that should yield to it (the classifier).
    pub fn activity(&self) -> Arc<WriterActivity> {
        self.activity.clone()
    }

    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// The highest seq this writer has committed (0 before its first commit), updated after each
    /// commit, and the ticket of each seq: a hint for the live tail of what is new there. Other
    /// instances' commits do not show here; readers take what is new from the database, not
    /// from this.
    pub fn committed(&self) -> Committed {
        self.committed.clone()
    }

    /// False once the supervisor has given up on the writer (or it has drained and ended).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

/// The supervisor's rule: a restart is allowed while fewer than [`MAX_RESTARTS`] happened in the
/// last [`RESTART_WINDOW`]. A writer that panics on every batch is given up on within seconds;
/// one that panics once a day runs for ever.
#[derive(Debug, Default)]
struct RestartBudget {
    recent: Vec<Instant>,
}

impl RestartBudget {
    fn allow(&mut self, now: Instant) -> bool {
        self.recent.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if self.recent.len() >= MAX_RESTARTS {
            return false;
        }
        self.recent.push(now);
        true
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

async fn run(
    pool: &PgPool,
    rx: &mut mpsc::Receiver<Job>,
    max_batch: usize,
    activity: &Arc<WriterActivity>,
    ordered: bool,
    commits: &Announcer,
) {
    let mut incoming = Vec::with_capacity(max_batch);
    let mut lanes = Lanes::new(ordered);
    let mut open = true;
    let mut pipeline = Pipeline::new(pool, activity, commits);
    loop {
        if lanes.is_empty() {
            // The batch committing now (if any) answers its senders itself: wait for the next,
            // handing the writers' lease over meanwhile if another instance waits for it.
            if !open {
                break;
            }
            let received = loop {
                // Deliveries already waiting: not idle, no look before taking them.
                if pipeline.lease.is_held() && rx.is_empty() {
                    pipeline.hand_over_if_wanted(true).await;
                }
                if !pipeline.lease.is_held() {
                    break rx.recv_many(&mut incoming, max_batch).await;
                }
                tokio::select! {
                    n = rx.recv_many(&mut incoming, max_batch) => break n,
                    () = tokio::time::sleep(lease::SLICE) => {}
                }
            };
            if received == 0 {
                break;
            }
        } else if open {
            // Whatever else is waiting, without waiting for more.
            while incoming.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => incoming.push(job),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
        }
        for job in incoming.drain(..) {
            lanes.add(job);
        }
        match lanes.next(Instant::now(), !open) {
            Next::Commit { jobs, large } => {
                let start = Instant::now();
                for batch in by_rows(jobs, BATCH_ROWS) {
                    metrics::histogram!("ticket_audit_write_batch_size").record(batch.len() as f64);
                    pipeline.write(batch).await;
                }
                // Nothing more to write now, or the slice is over: the lease goes to an instance
                // that waits for it.
                pipeline.hand_over_if_wanted(rx.is_empty() && lanes.is_empty()).await;
                if large {
                    // A large delivery's time includes its commit: its successor waits for it.
                    pipeline.settle().await;
                    lanes.repay(Instant::now(), start.elapsed());
                }
            }
            Next::WaitUntil(at) => {
                // Only large deliveries wait, and their lane has used its share: serve any
                // ordinary delivery that comes meanwhile, else take the next large one then.
                tokio::select! {
                    n = rx.recv_many(&mut incoming, max_batch) => open = n > 0,
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
        }
    }
    pipeline.settle().await;
    pipeline.lease.release().await;
}

/// Deliveries of more than this many rows wait in a lane of their own (in `serve`).
pub const LARGE_ROWS: usize = 1_000;

/// The writer's queue, split in two lanes so that very large deliveries (up to
/// `MAX_DELIVERY_ROWS`, 10,000 rows: a quarter of a second of the writer each) cannot starve
/// everyone else's. Ordinary deliveries go first; a large one is stored alone, and after it took
/// T the next large one waits T while ordinary ones are served: the large lane has at most half
/// of the writer's time whenever anything else is waiting, and all of it otherwise. `import`
/// keeps one lane (`ordered`): it stores a file's lines in file order.
struct Lanes {
    ordered: bool,
    normal: Vec<Job>,
    large: std::collections::VecDeque<Job>,
    large_not_before: Option<Instant>,
}

enum Next {
    Commit { jobs: Vec<Job>, large: bool },
    WaitUntil(Instant),
}

impl Lanes {
    fn new(ordered: bool) -> Self {
        Lanes { ordered, normal: Vec::new(), large: Default::default(), large_not_before: None }
    }

    fn is_empty(&self) -> bool {
        self.normal.is_empty() && self.large.is_empty()
    }

    fn add(&mut self, job: Job) {
        if !self.ordered && job.delivery.rows() > LARGE_ROWS {
            self.large.push_back(job);
        } else {
            self.normal.push(job);
        }
    }

    /// What to commit now (the lanes are not empty). `draining`: the queue is closed, so no
    /// ordinary delivery can come to be served first.
    fn next(&mut self, now: Instant, draining: bool) -> Next {
        if !self.normal.is_empty() {
            return Next::Commit { jobs: std::mem::take(&mut self.normal), large: false };
        }
        match self.large_not_before {
            Some(at) if at > now && !draining => Next::WaitUntil(at),
            _ => Next::Commit { jobs: self.large.pop_front().into_iter().collect(), large: true },
        }
    }

    /// A large delivery took `spent`, ending at `end`.
    fn repay(&mut self, end: Instant, spent: Duration) {
        self.large_not_before = Some(end + spent);
    }
}

/// Cuts jobs, in order, into batches of at most about `budget` rows (a delivery larger than the
/// budget is a batch of its own).
fn by_rows(jobs: Vec<Job>, budget: usize) -> Vec<Vec<Job>> {
    let mut batches = Vec::new();
    let (mut cur, mut rows) = (Vec::new(), 0);
    for job in jobs {
        let r = job.delivery.rows();
        if !cur.is_empty() && rows + r > budget {
            batches.push(std::mem::take(&mut cur));
            rows = 0;
        }
        rows += r;
        cur.push(job);
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

/// After losing a race, batches start from the head under lock for this long: another process is
/// writing, and written from a head in flight, two writers would undo each other's batches.
const LOCKED_AFTER_CONTENTION: Duration = Duration::from_secs(10);

/// Times a batch is tried again from the head under lock after losing a race (another process
/// wrote, or a deadlock between two writers), before its deliveries are stored one by one.
const CONTENTION_RETRIES: usize = 8;

/// Why a batch was not stored.
enum Failure {
    /// Something a delivery holds: the database refused a value, or encoding it panicked.
    Item(String),
    /// The database (unreachable, restarting...): every delivery in the batch shares it.
    Database(sqlx::Error),
}

/// A batch whose commit is on its way, answering its senders when it lands.
struct Pending {
    in_flight: InFlight,
    done: tokio::task::JoinHandle<()>,
}

/// The pipelined write path. Batch N+1's rows go in while batch N commits: the next batch is
/// written from the head N leaves (`Basis::After`), and its head update, a compare-and-swap,
/// waits for N's commit. N+1 starts only once N's statement is done, so N never waits for N+1
/// (no deadlock between them), and senders are answered only after their own batch commits.
/// When the swap fails (N failed, or another process wrote), the batch is tried again from the
/// head under lock, with nothing in flight.
struct Pipeline<'a> {
    pool: &'a PgPool,
    commits: &'a Announcer,
    busy: Busy,
    /// The head as the last batch leaves it; none: take it under lock.
    head: Option<Head>,
    /// Only for its tree edge, reused by a locked start when still current.
    last_seen: Option<Head>,
    pending: Option<Pending>,
    /// Until when batches start under lock (another writer was seen).
    locked_until: Option<Instant>,
    /// One writer at a time among the instances on the database.
    lease: Lease,
}

impl<'a> Pipeline<'a> {
    fn new(pool: &'a PgPool, activity: &Arc<WriterActivity>, commits: &'a Announcer) -> Self {
        Pipeline {
            pool,
            commits,
            busy: Busy::new(activity),
            head: None,
            last_seen: None,
            pending: None,
            locked_until: None,
            lease: Lease::new(pool),
        }
    }

    /// Lets the batch in flight commit and hands the writers' lease to the instance waiting for
    /// it, if one does. `idle`: this writer has nothing else to write now.
    async fn hand_over_if_wanted(&mut self, idle: bool) {
        if self.lease.wanted(idle).await {
            self.settle().await;
            self.lease.release().await;
            self.head = None;
        }
    }

    /// Waits for the batch committing now, if any.
    async fn settle(&mut self) {
        if let Some(p) = self.pending.take() {
            let _ = p.done.await;
        }
    }

    /// Writes one batch; its senders are answered once it commits (or fails).
    async fn write(&mut self, jobs: Vec<Job>) {
        // Waiting for the lease counts as busy: the instance that waits has a backlog, and its
        // classifier must yield to the writing as if its own writer were at it.
        let taken = if self.lease.is_held() {
            Taken::Kept
        } else {
            self.busy.start();
            let taken = self.lease.take().await;
            self.busy.stop();
            taken
        };
        if taken == Taken::New {
            // Another instance may have written since this one last held the lease.
            self.settle().await;
            self.head = None;
        }
        let mut contention = 0;
        loop {
            let deliveries: Vec<&NewDelivery> = jobs.iter().map(|j| &j.delivery).collect();
            let started = Instant::now();
            self.busy.start();
            let attempt = self.execute(&deliveries).await;
            drop(deliveries);
            match attempt {
                Ok(mut done) => {
                    // Its swap succeeded, so the batch before it has committed.
                    self.settle().await;
                    self.head = Some(done.head.clone());
                    self.last_seen = self.head.clone();
                    let in_flight = std::mem::take(&mut done.in_flight);
                    let task = commit_and_answer(done, jobs, self.commits.clone(), self.busy.clone(), started);
                    self.pending = Some(Pending { in_flight, done: tokio::spawn(task) });
                    return;
                }
                Err(attempt) => {
                    self.busy.stop();
                    self.settle().await;
                    self.head = None;
                    match attempt {
                        Attempt::Contended(why) if contention < CONTENTION_RETRIES => {
                            contention += 1;
                            self.locked_until = Some(Instant::now() + LOCKED_AFTER_CONTENTION);
                            metrics::counter!("ticket_audit_write_retries_total").increment(1);
                            tracing::debug!(reason = %why, attempt = contention, "batch lost a race; again from the head under lock");
                        }
                        Attempt::Contended(why) | Attempt::Failed(Failure::Item(why)) => {
                            return self.one_by_one(jobs, why).await;
                        }
                        Attempt::Failed(Failure::Database(e)) => {
                            tracing::warn!(error = %e, size = jobs.len(), "batch not committed");
                            let shared = Arc::new(e);
                            for job in jobs {
                                job.answer(Err(WriteError::Unavailable(shared.clone())));
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Executes a batch from the head as known, or under lock.
    async fn execute(&mut self, batch: &[&NewDelivery]) -> Result<Executed, Attempt> {
        let tx = begin(self.pool).await.map_err(|e| Attempt::Failed(Failure::Database(e)))?;
        let empty = InFlight::default();
        let under_lock = self.locked_until.is_some_and(|t| Instant::now() < t);
        let basis = match &self.head {
            // Under lock, the predecessor has committed (or failed) before this batch reads.
            Some(_) if under_lock => Basis::Locked { cached: self.last_seen.as_ref() },
            Some(head) => Basis::After { head, in_flight: self.pending.as_ref().map_or(&empty, |p| &p.in_flight) },
            None => Basis::Locked { cached: self.last_seen.as_ref() },
        };
        // A panic while encoding a value is a fault of ours, but one a delivery's content set off:
        // it is that delivery's failure, not the writer's end. The transaction, dropped, rolls back.
        match AssertUnwindSafe(execute_batch(tx, batch, basis)).catch_unwind().await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(BatchError::HeadMoved)) => Err(Attempt::Contended("the head moved".into())),
            Ok(Err(BatchError::Sql(e))) if contended(&e) => Err(Attempt::Contended(e.to_string())),
            Ok(Err(BatchError::Sql(e))) if refused_item(&e) => {
                Err(Attempt::Failed(Failure::Item(format!("SQLSTATE {}: {e}", db_code(&e)))))
            }
            Ok(Err(BatchError::Sql(e))) => Err(Attempt::Failed(Failure::Database(e))),
            Err(panic) => {
                metrics::counter!("ticket_audit_write_panics_total").increment(1);
                Err(Attempt::Failed(Failure::Item(format!("panic: {}", panic_text(&panic)))))
            }
        }
    }

    /// One delivery the database refuses must not hold back the others: store them one by one,
    /// each committed before the next, and one that still fails unprojected.
    async fn one_by_one(&mut self, jobs: Vec<Job>, why: String) {
        if jobs.len() > 1 {
            tracing::warn!(error = %why, size = jobs.len(), "batch refused; storing its deliveries one by one");
            for job in jobs {
                Box::pin(self.write(vec![job])).await;
                self.settle().await;
            }
            return;
        }
        let job = jobs.into_iter().next().expect("one job");
        tracing::error!(error = %why, "a delivery's projection could not be stored; storing it unprojected");
        let mut raw = job.delivery.clone();
        raw.normalized = raw.normalized.unprojected(Some(format!("its projection could not be stored ({why})")));
        raw.unprojected = true;
        let result = self.store_alone(&raw).await;
        job.answer(result);
    }

    /// Stores one delivery from the head under lock and waits for its commit.
    async fn store_alone(&mut self, d: &NewDelivery) -> Result<Outcome, WriteError> {
        let mut last = String::new();
        for _ in 0..=CONTENTION_RETRIES {
            self.head = None;
            self.busy.start();
            let attempt = self.execute(&[d]).await;
            self.busy.stop();
            match attempt {
                Ok(done) => {
                    done.tx.commit().await.map_err(|e| WriteError::Unavailable(Arc::new(e)))?;
                    announce(self.commits, &done.outcomes, [d]);
                    self.head = Some(done.head.clone());
                    self.last_seen = self.head.clone();
                    return Ok(done.outcomes[0]);
                }
                Err(Attempt::Contended(why)) => last = why,
                Err(Attempt::Failed(Failure::Database(e))) => return Err(WriteError::Unavailable(Arc::new(e))),
                Err(Attempt::Failed(Failure::Item(why))) => {
                    tracing::error!(error = %why, "even unprojected, a delivery could not be stored");
                    return Err(WriteError::Unavailable(Arc::new(sqlx::Error::Protocol(why))));
                }
            }
        }
        Err(WriteError::Unavailable(Arc::new(sqlx::Error::Protocol(format!("lost every race: {last}")))))
    }
}

/// Begins a batch's transaction. The write pool does not ping a connection before handing it out
/// ([`super::write_pool`]): one that died idle (the server restarted, a proxy cut it) fails here,
/// before anything of the batch was sent, and is dropped; then another is tried, up to the
/// pool's size and one new.
async fn begin(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tries = pool.options().get_max_connections() as usize + 1;
    loop {
        match pool.begin().await {
            Err(e) if tries > 1 && broken(&e) => {
                tries -= 1;
                tracing::debug!(error = %e, "a write connection was dead; beginning on another");
            }
            result => return result,
        }
    }
}

/// A connection that is gone: its stream failed, or the server ended its session (a restart, a
/// `pg_terminate_backend`, SQLSTATE 57P01-57P03) or the connection (class 08).
fn broken(e: &sqlx::Error) -> bool {
    let code = db_code(e);
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
        || code.starts_with("08")
        || matches!(code.as_str(), "57P01" | "57P02" | "57P03")
}

enum Attempt {
    /// Lost a race: nothing of the batch is stored; try again from the head under lock.
    Contended(String),
    Failed(Failure),
}

/// Commits an executed batch and answers its senders: after the commit, never before.
async fn commit_and_answer(mut done: Executed, jobs: Vec<Job>, commits: Announcer, busy: Busy, started: Instant) {
    let outcomes = std::mem::take(&mut done.outcomes);
    let result = done.tx.commit().await;
    busy.stop();
    metrics::histogram!("ticket_audit_write_commit_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            announce(&commits, &outcomes, jobs.iter().map(|j| &j.delivery));
            if done.conflicts > 0 {
                metrics::counter!("ticket_audit_tenant_conflicts_total").increment(done.conflicts);
            }
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                job.answer(Ok(outcome));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, size = jobs.len(), "batch not committed");
            let shared = Arc::new(e);
            for job in jobs {
                job.answer(Err(WriteError::Unavailable(shared.clone())));
            }
        }
    }
}

/// Wall time with at least one batch being written or committed: the writer's busy share (the
/// sum of `ticket_audit_writer_busy_seconds`, one sample per busy span, over wall time), and
/// what the classifier yields to, accounted at every batch's start and end so that a span of
/// minutes under sustained load shows as it goes.
#[derive(Clone)]
struct Busy {
    state: Arc<std::sync::Mutex<BusyState>>,
    activity: Arc<WriterActivity>,
}

struct BusyState {
    batches: usize,
    last_event: Instant,
    span_start: Instant,
}

impl Busy {
    fn new(activity: &Arc<WriterActivity>) -> Self {
        let now = Instant::now();
        let state = BusyState { batches: 0, last_event: now, span_start: now };
        Busy { state: Arc::new(std::sync::Mutex::new(state)), activity: activity.clone() }
    }

    fn start(&self) {
        self.event(true);
    }

    fn stop(&self) {
        self.event(false);
    }

    fn event(&self, start: bool) {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.batches > 0 {
            self.activity.record(now - s.last_event);
        }
        s.last_event = now;
        if start {
            if s.batches == 0 {
                s.span_start = now;
            }
            s.batches += 1;
        } else if s.batches > 0 {
            s.batches -= 1;
            if s.batches == 0 {
                metrics::histogram!("ticket_audit_writer_busy_seconds").record((now - s.span_start).as_secs_f64());
            }
        }
    }
}

/// Tells the live tail what a committed batch added: its new seqs (the duplicates' are older),
/// each with its delivery's ticket. `outcomes` are the batch's deliveries', in order.
fn announce<'a>(commits: &Announcer, outcomes: &[Outcome], deliveries: impl IntoIterator<Item = &'a NewDelivery>) {
    commits.announce(
        outcomes
            .iter()
            .zip(deliveries)
            .filter(|(o, _)| !o.duplicate)
            .map(|(o, d)| (o.seq, d.normalized.ticket.as_deref())),
    );
}

/// Losing a race with another writer: a key or seq it took first (unique violation), or a
/// deadlock the server broke.
fn contended(e: &sqlx::Error) -> bool {
    matches!(db_code(e).as_str(), "23505" | "40P01" | "40001")
}

/// Errors caused by what a delivery holds (data exceptions, constraints, size limits), as
/// opposed to the database being unreachable, which every delivery in the batch shares.
fn refused_item(e: &sqlx::Error) -> bool {
    matches!(db_code(e).get(..2), Some("22" | "23" | "54"))
        || matches!(e, sqlx::Error::Encode(_) | sqlx::Error::TypeNotFound { .. })
}

fn db_code(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()).unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_allowed_until_too_many_come_too_close() {
        let t0 = Instant::now();
        let mut b = RestartBudget::default();
        for i in 0..MAX_RESTARTS {
            assert!(b.allow(t0 + Duration::from_secs(i as u64)), "restart {i}");
        }
        assert!(!b.allow(t0 + Duration::from_secs(10)), "one more within the window is refused");
        let later = t0 + RESTART_WINDOW + Duration::from_secs(MAX_RESTARTS as u64);
        assert!(b.allow(later), "the window has moved on");
    }

    fn job_of(commands: usize) -> Job {
        let cmds: Vec<_> = (0..commands).map(|i| serde_json::json!({"command": i.to_string()})).collect();
        let body =
            serde_json::json!({"Action": "POST:Ticket/SendTicketMessage", "Data": {"RequestBody": {"ticketName": "T"},
            "ResponseBody": {"data": {"executedCmds": cmds}}}})
            .to_string();
        let delivery =
            crate::ingest::prepare(body.into_bytes(), Default::default(), time::OffsetDateTime::now_utc(), usize::MAX)
                .unwrap();
        Job { delivery, reply: oneshot::channel().0 }
    }

    #[test]
    fn large_deliveries_take_at_most_half_the_writer_while_others_wait() {
        let t0 = Instant::now();
        let mut lanes = Lanes::new(false);
        let commit = |n: Next| match n {
            Next::Commit { jobs, large } => {
                (jobs.iter().map(|j| j.delivery.normalized.commands.len()).collect::<Vec<_>>(), large)
            }
            Next::WaitUntil(_) => panic!("expected a commit"),
        };
        lanes.add(job_of(LARGE_ROWS));
        lanes.add(job_of(1));
        lanes.add(job_of(LARGE_ROWS + 5));
        assert_eq!(commit(lanes.next(t0, false)), (vec![1], false), "the ordinary one goes first");
        assert_eq!(commit(lanes.next(t0, false)), (vec![LARGE_ROWS], true), "then one large, alone");
        lanes.repay(t0 + Duration::from_millis(300), Duration::from_millis(300));
        lanes.add(job_of(2));
        assert_eq!(commit(lanes.next(t0 + Duration::from_millis(300), false)), (vec![2], false));
        assert!(
            matches!(lanes.next(t0 + Duration::from_millis(400), false), Next::WaitUntil(at) if at == t0 + Duration::from_millis(600))
        );
        assert_eq!(
            commit(lanes.next(t0 + Duration::from_millis(400), true)),
            (vec![LARGE_ROWS + 5], true),
            "draining: no wait"
        );
        assert!(lanes.is_empty());
        let mut ordered = Lanes::new(true);
        for n in [LARGE_ROWS + 1, 1] {
            ordered.add(job_of(n));
        }
        assert_eq!(commit(ordered.next(t0, false)), (vec![LARGE_ROWS + 1, 1], false), "import keeps file order");
    }

    #[test]
    fn large_deliveries_get_transactions_of_their_own() {
        let job = |commands: usize| {
            let cmds: Vec<_> = (0..commands).map(|i| serde_json::json!({"command": i.to_string()})).collect();
            let body = serde_json::json!({"Action": "POST:Ticket/SendTicketMessage", "Data": {"RequestBody": {"ticketName": "T"},
                "ResponseBody": {"data": {"executedCmds": cmds}}}}).to_string();
            let delivery = crate::ingest::prepare(
                body.into_bytes(),
                Default::default(),
                time::OffsetDateTime::now_utc(),
                usize::MAX,
            )
            .unwrap();
            Job { delivery, reply: oneshot::channel().0 }
        };
        let sizes = |batches: Vec<Vec<Job>>| -> Vec<usize> { batches.iter().map(Vec::len).collect() };
        assert_eq!(sizes(by_rows((0..10).map(|_| job(0)).collect(), BATCH_ROWS)), [10]);
        assert_eq!(sizes(by_rows(vec![job(1), job(BATCH_ROWS), job(1), job(1)], BATCH_ROWS)), [1, 1, 2]);
        assert_eq!(sizes(by_rows(vec![job(10), job(10), job(10)], 25)), [2, 1]);
        assert!(by_rows(Vec::new(), BATCH_ROWS).is_empty());
    }
}
