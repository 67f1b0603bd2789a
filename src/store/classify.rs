//! Classification behind ingest: the reporting rules' values (tool, sub-command, outcome, risk)
//! are computed after a command is committed, not while the writer holds the ledger head.
//!
//! The rules are SQL (migration V3) and `reporting.classify(n)` (V5) applies them to the next
//! commands after a watermark, in steps. Reports read `reporting.commands`, which computes the
//! rules for whatever is above the watermark, so they are exact at any moment; the classifier
//! only keeps them fast. It runs freely while the writer has time to spare, and takes a small,
//! bounded share while the writer is saturated (a burst), catching up once the burst is over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Commands per step: ~15-20 ms of PostgreSQL CPU, short enough not to be felt by the writer's
/// batches beside it, and to stop at once on shutdown.
pub const STEP: i32 = 250;

/// While the writer is saturated, the classifier waits this many times as long as its last step
/// took before the next: a share of about 10% of one core.
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

/// Starts the background classifier; it stops when `stop` turns true (after its current step).
pub fn spawn(pool: PgPool, activity: Arc<WriterActivity>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut since = (Instant::now(), activity.busy());
        while !*stop.borrow() {
            let started = Instant::now();
            let result = match pool.acquire().await {
                Ok(mut conn) => {
                    let result = step(&mut conn, STEP).await;
                    if let Ok(behind) = lag(&mut conn).await {
                        metrics::gauge!("ticket_audit_classify_lag_deliveries").set(behind as f64);
                    }
                    result
                }
                Err(e) => Err(e),
            };
            let pause = match result {
                Ok(0) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        () = activity.committed.notified() => {}
                        () = tokio::time::sleep(IDLE_TICK) => {}
                        _ = stop.changed() => {}
                    }
                    since = (Instant::now(), activity.busy());
                    continue;
                }
                Ok(n) => {
                    backoff = Duration::from_millis(100);
                    metrics::counter!("ticket_audit_commands_classified_total").increment(n as u64);
                    let (at, busy) = since;
                    let wall = at.elapsed();
                    let writer = activity.busy().saturating_sub(busy);
                    since = (Instant::now(), activity.busy());
                    if wall > Duration::ZERO && writer.as_secs_f64() / wall.as_secs_f64() >= SATURATED {
                        started.elapsed() * YIELD_FACTOR
                    } else {
                        Duration::ZERO
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "classifying commands for reports; trying again");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    backoff
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    })
}
