//! Classification behind ingest: the reporting rules' values (tool, sub-command, outcome, risk)
//! are computed after a command is committed, not while the writer holds the ledger head.
//!
//! The rules are SQL (migration V3) and `reporting.classify(n)` (V5) applies them to the next
//! commands after a watermark, in steps. Reports read `reporting.commands`, which computes the
//! rules for whatever is above the watermark, so they are exact at any moment; the classifier
//! only keeps them fast. It runs freely while the writer has time to spare. While the writer is
//! saturated (a burst) it waits, unless the backlog has grown past DEFER_UP_TO deliveries, when
//! it takes a small, bounded share; it catches up once the burst is over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Commands per step: ~15-20 ms of PostgreSQL CPU, short enough not to be felt by the writer's
/// batches beside it, and to stop at once on shutdown.
pub const STEP: i32 = 250;

/// While the writer is saturated and the backlog is under this many deliveries, the classifier
/// waits: a burst of ingest keeps the machine (10 s at 5,000/s stays under it).
const DEFER_UP_TO: i64 = 50_000;

/// How often a waiting classifier looks at the writer and the backlog again.
const DEFER_CHECK: Duration = Duration::from_millis(250);

/// While the writer is saturated and the backlog is over DEFER_UP_TO, the classifier waits this
/// many times as long as its last step took before the next: a share of about 10% of one core.
const YIELD_FACTOR: u32 = 9;

/// The writer counts as saturated when it spent at least this share of the last interval committing.
const SATURATED: f64 = 0.5;

/// With nothing to classify, look again after this long even without a commit of ours (other
/// processes may write to the same database).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Classifies up to about `commands` commands (whole deliveries); returns how many, 0 when caught up.
pub async fn step(conn: &mut PgConnection, commands: i32) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT reporting.classify($1)").bind(commands).fetch_one(conn).await
}

/// How many deliveries the watermark is behind the ledger head.
pub async fn lag(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT (SELECT seq FROM ledger_head) - (SELECT seq FROM reporting.classified)")
        .fetch_one(conn)
        .await
}

/// Classifies everything committed so far; returns how many commands it classified.
pub async fn catch_up(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let mut total = 0u64;
    loop {
        let n = step(conn, STEP * 20).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// What the writer tells the classifier: that it committed, and how long it spent committing.
#[derive(Default)]
pub struct WriterActivity {
    busy_nanos: AtomicU64,
    committed: Notify,
}

impl WriterActivity {
    /// Called by the writer after each batch.
    pub fn record(&self, spent: Duration) {
        self.busy_nanos.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        self.committed.notify_one();
    }

    fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed))
    }
}

/// Starts the background classifier; it stops when `stop` is cancelled (after its current step).
pub fn spawn(pool: PgPool, activity: Arc<WriterActivity>, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(Classifier { pool, activity, stop, window: None, behind: i64::MAX }.run())
}

struct Classifier {
    pool: PgPool,
    activity: Arc<WriterActivity>,
    stop: CancellationToken,
    /// Start of the current observation of the writer, and its busy time then.
    window: Option<(Instant, Duration)>,
    /// Deliveries not classified yet, as last seen (unknown at first: classify).
    behind: i64,
}

enum Next {
    Step,
    Wait(Duration),
    UntilCommit,
}

impl Classifier {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        while !self.stop.is_cancelled() {
            let saturated = self.writer_saturated();
            let next = if saturated && self.behind < DEFER_UP_TO {
                // A burst: leave the machine to the writer while the backlog is small.
                self.refresh_lag().await;
                Next::Wait(DEFER_CHECK)
            } else {
                let started = Instant::now();
                match self.step().await {
                    Ok(0) => Next::UntilCommit,
                    Ok(n) => {
                        metrics::counter!("ticket_audit_commands_classified_total").increment(n as u64);
                        backoff = Duration::from_millis(100);
                        if saturated {
                            Next::Wait(started.elapsed() * YIELD_FACTOR)
                        } else {
                            Next::Step
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "classifying commands for reports; trying again");
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        Next::Wait(backoff)
                    }
                }
            };
            match next {
                Next::Step => {}
                Next::Wait(pause) => {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.stop.cancelled() => {}
                    }
                }
                Next::UntilCommit => {
                    tokio::select! {
                        () = self.activity.committed.notified() => {}
                        () = tokio::time::sleep(IDLE_TICK) => {}
                        () = self.stop.cancelled() => {}
                    }
                    // What the writer did while we were idle says nothing about a burst.
                    self.window = None;
                }
            }
        }
    }

    /// Whether the writer spent at least half the time since the last call committing.
    fn writer_saturated(&mut self) -> bool {
        let now = (Instant::now(), self.activity.busy());
        let Some((at, busy)) = self.window.replace(now) else { return false };
        let wall = now.0.duration_since(at).as_secs_f64();
        wall > 0.0 && now.1.saturating_sub(busy).as_secs_f64() / wall >= SATURATED
    }

    async fn step(&mut self) -> Result<i32, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let n = step(&mut conn, STEP).await?;
        self.see_lag(&mut conn).await?;
        Ok(n)
    }

    async fn refresh_lag(&mut self) {
        if let Ok(mut conn) = self.pool.acquire().await {
            let _ = self.see_lag(&mut conn).await;
        }
    }

    /// Reads the backlog, for the deferral and for `/metrics`.
    async fn see_lag(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        self.behind = lag(conn).await?;
        metrics::gauge!("ticket_audit_classify_lag_deliveries").set(self.behind as f64);
        Ok(())
    }
}
