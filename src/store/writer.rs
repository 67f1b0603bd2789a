//! Group commit: one task per process gathers the deliveries waiting and commits them together.
//!
//! Handlers hand a checked delivery to the bounded queue and wait for their own outcome, which
//! is sent only after the transaction holding it has committed. While one batch commits, the
//! next gathers, so batches grow with load and cost nothing when it is quiet.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::classify::WriterActivity;
use super::write::{write_batch, NewDelivery, Outcome};
use crate::domain::{EventKind, Normalized};

#[derive(Debug, thiserror::Error)]
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
    reply: oneshot::Sender<Result<Outcome, WriteError>>,
}

#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    pool: PgPool,
    activity: Arc<WriterActivity>,
}

impl Writer {
    /// Starts the writer. It ends once every `Writer` clone is dropped and the queue is drained;
    /// the returned future resolves then.
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
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let activity = Arc::new(WriterActivity::default());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (done, finished) = oneshot::channel();
        let (writer_pool, writer_activity) = (pool.clone(), activity.clone());
        std::thread::Builder::new().name("ticket-audit-writer".into()).spawn(move || {
            runtime.block_on(async {
                run(writer_pool.clone(), rx, max_batch.max(1), writer_activity).await;
                // Its connections' I/O belongs to this runtime: close them before it goes.
                writer_pool.close().await;
            });
            let _ = done.send(());
        })?;
        Ok((Writer { queue: tx, pool, activity }, async move { finished.await.map_err(|_| WriteError::Stopped) }))
    }

    /// Stores one delivery; returns once it is committed (or known not to be).
    pub async fn submit(&self, delivery: NewDelivery) -> Result<Outcome, WriteError> {
        self.enqueue(delivery).map_err(|refused| refused.0)?.await
    }

    /// Queues a delivery without waiting; deliveries queued by one caller are stored in the
    /// order queued. A full queue hands the delivery back.
    pub fn enqueue(
        &self,
        delivery: NewDelivery,
    ) -> Result<impl std::future::Future<Output = Result<Outcome, WriteError>>, Box<(WriteError, NewDelivery)>> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Job { delivery, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) => Box::new((WriteError::QueueFull, job.delivery)),
            mpsc::error::TrySendError::Closed(job) => Box::new((WriteError::Stopped, job.delivery)),
        })?;
        Ok(async move { answer.await.map_err(|_| WriteError::Stopped)? })
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
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Job>, max_batch: usize, activity: Arc<WriterActivity>) {
    let mut jobs = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut jobs, max_batch).await > 0 {
        metrics::histogram!("ticket_audit_write_batch_size").record(jobs.len() as f64);
        let start = std::time::Instant::now();
        commit(&pool, std::mem::take(&mut jobs)).await;
        let spent = start.elapsed();
        metrics::histogram!("ticket_audit_write_commit_seconds").record(spent.as_secs_f64());
        activity.record(spent);
    }
}

async fn commit(pool: &PgPool, jobs: Vec<Job>) {
    match store(pool, jobs.iter().map(|j| &j.delivery).collect()).await {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(e) if refused_item(&e) && jobs.len() > 1 => {
            // One delivery the database refuses must not hold back the others: store one by one.
            tracing::warn!(error = %e, size = jobs.len(), "batch refused; storing its deliveries one by one");
            for job in jobs {
                Box::pin(commit(pool, vec![job])).await;
            }
        }
        Err(e) if refused_item(&e) => {
            let job = jobs.into_iter().next().expect("one job");
            let code = db_code(&e);
            tracing::error!(error = %e, "the database refused a delivery's projection; storing it unprojected");
            let mut raw = job.delivery.clone();
            raw.normalized = unprojected(&raw.normalized, &code);
            let result = store(pool, vec![&raw]).await.map(|o| o[0]).map_err(|e| WriteError::Unavailable(Arc::new(e)));
            let _ = job.reply.send(result);
        }
        Err(e) => {
            tracing::warn!(error = %e, size = jobs.len(), "batch not committed");
            let shared = Arc::new(e);
            for job in jobs {
                let _ = job.reply.send(Err(WriteError::Unavailable(shared.clone())));
            }
        }
    }
}

async fn store(pool: &PgPool, batch: Vec<&NewDelivery>) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    write_batch(&mut conn, &batch).await
}

/// Errors caused by what a delivery holds (data exceptions, constraints, size limits), as
/// opposed to the database being unreachable, which every delivery in the batch shares.
fn refused_item(e: &sqlx::Error) -> bool {
    matches!(db_code(e).get(..2), Some("22" | "23" | "54"))
}

fn db_code(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Marks, in `normalize_error`, a delivery stored as a bare event because its projection was
/// refused; `reproject` and `verify` read it to derive the same rows.
pub const UNPROJECTED_MARK: &str = "; stored unprojected";

/// The same delivery, projected as a bare event: kept and acknowledged, with the reason beside it.
pub fn unprojected(n: &Normalized, code: &str) -> Normalized {
    let mut problems = n.problems.clone();
    problems.push(format!("the database refused its projection (SQLSTATE {code}){UNPROJECTED_MARK}"));
    Normalized {
        ticket: None,
        carried_tenant: None,
        kind: EventKind::Action,
        ticket_updates: Vec::new(),
        messages: Vec::new(),
        commands: Vec::new(),
        problems,
        ..n.clone()
    }
}
