//! The writers' lease: with several service instances on one database, one writes at a time,
//! for a slice of time, and hands over to the next that waits.
//!
//! Correctness never rests on it: the head's compare-and-swap keeps seq gapless and the chain
//! and the tree exact whoever writes ([`super::batch`]). Without the lease, though, two writers
//! each pipelining from a head the other is about to move undo each other's batches (the swap
//! fails, the batch is written again from the head under lock), and under lock neither can put
//! its next batch in while the other commits: two instances stored 0.57x of what one did.
//!
//! So a writer holds a session advisory lock, on a connection of its own, while it writes: the
//! holder pipelines freely (no one else moves the head), the others wait for the lock with their
//! queues filling, and take the lock with a large batch. When the holder has nothing more to
//! write for the moment, or has written for a [`SLICE`], it asks whether another writer waits
//! for the lock (`pg_locks`), and if one does, lets its batch in flight commit, unlocks and asks
//! again, queueing behind the waiter (PostgreSQL grants a lock to its waiters in order): the
//! instances' senders are not left idle while one instance writes. A writer alone holds the lock
//! for as long as it runs and pays one probe per [`IDLE_LOOK`] at most.
//!
//! Whatever fails here (the connection, the wait past [`WAIT_MAX`]), the writer goes on without
//! the lease, from the head under lock: slower when another instance writes, never wrong.

use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};

/// Arbitrary constant: the advisory lock of the writers' lease ("ta_wrt").
pub const LEASE_LOCK: i64 = 0x7461_5f77_7274;

/// How long a writer holds the lease before it looks for a waiter (and, holding it, between two
/// looks). A waiter waits about this long, plus the holder's batch in flight.
pub const SLICE: Duration = Duration::from_millis(10);

/// How often an idle holder looks for a waiter at most: an instance alone, writing small batches
/// with pauses between them, asks at most this often. Each look is a round trip the writer waits
/// for: at 1 ms, one in every batch of a light load.
pub const IDLE_LOOK: Duration = Duration::from_millis(5);

/// The longest wait for the lease (the lock's `lock_timeout`): a holder that stopped answering
/// (its process frozen, its connection alive) must not stop the others. Past it the batch is
/// written without the lease.
pub const WAIT_MAX: Duration = Duration::from_secs(1);

/// The most that getting the lease's connection may add to that wait.
const CONNECT_MAX: Duration = Duration::from_millis(500);

/// After the lease could not be had, batches go without it for this long before it is tried
/// again: while the database is away, a batch must not wait for a second connection first.
const BACKOFF: Duration = Duration::from_secs(1);

/// The rows of `pg_locks` that are the lease ($1: [`LEASE_LOCK`]) in this database, granted or
/// awaited.
macro_rules! the_lease {
    () => {
        "locktype = 'advisory' AND objsubid = 1 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = ($1 >> 32)::oid AND objid = ($1 & 4294967295)::oid"
    };
}

/// Whether another session waits for the lease.
const WAITER_SQL: &str = concat!("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND ", the_lease!(), ")");

/// What a writer's connections are named (`application_name`, at most 63 bytes) when its
/// instance takes deliveries from the others: this, then the URL it is reached at.
pub const ADVERTISED: &str = "ta> ";

/// The `application_name` of the session that holds the lease.
const HOLDER_SQL: &str = concat!(
    "SELECT a.application_name FROM pg_locks JOIN pg_stat_activity a USING (pid) WHERE granted AND ",
    the_lease!(),
    " LIMIT 1"
);

/// The URL that the lease's holder is reached at, when its instance advertises one (its writer's
/// connections are named [`ADVERTISED`] and the URL); none when nobody holds the lease, or the
/// holder advertises nothing. Sessions of other logins show no name without `pg_read_all_stats`.
pub async fn holder_url(pool: &PgPool) -> Result<Option<String>, sqlx::Error> {
    let name: Option<String> = sqlx::query_scalar(HOLDER_SQL).bind(LEASE_LOCK).fetch_optional(pool).await?;
    Ok(name.and_then(|n| n.strip_prefix(ADVERTISED).map(str::to_owned)).filter(|u| !u.is_empty()))
}

pub struct Lease {
    pool: PgPool,
    /// The lease's own connection, kept between hand-overs (a new one is a new backend).
    conn: Option<PgConnection>,
    held: bool,
    /// When the holder last looked for a waiter (or took the lease).
    looked_at: Instant,
    /// No attempt before then.
    not_before: Option<Instant>,
}

/// What [`Lease::take`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Held already: go on as before.
    Kept,
    /// Just taken: another writer may have written since this one last did.
    New,
    /// Not held: write without it.
    Without,
}

impl Lease {
    /// The lease of writers on `pool`'s database; its connection comes from `pool` (and leaves
    /// it: the pool may open another in its place).
    pub fn new(pool: &PgPool) -> Self {
        Lease { pool: pool.clone(), conn: None, held: false, looked_at: Instant::now(), not_before: None }
    }

    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Takes the lease unless held, waiting behind the writer that holds it (at most
    /// [`WAIT_MAX`]).
    pub async fn take(&mut self) -> Taken {
        if self.held {
            return Taken::Kept;
        }
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return Taken::Without;
        }
        // Bounded as a whole: while the database is away, connecting must not hold the batch up
        // for the pool's whole acquire timeout (the batch waits for its own connection next).
        let locked = match tokio::time::timeout(WAIT_MAX + CONNECT_MAX, self.lock()).await {
            Ok(locked) => locked,
            Err(_) => {
                // Left in the middle of a round trip: the connection is of no more use (closing
                // it unlocks the lock, should the server have granted it).
                self.conn = None;
                Err(sqlx::Error::PoolTimedOut)
            }
        };
        match locked {
            Ok(()) => {
                self.held = true;
                self.looked_at = Instant::now();
                self.not_before = None;
                metrics::counter!("ticket_audit_writer_lease_taken_total").increment(1);
                Taken::New
            }
            Err(e) => {
                tracing::debug!(error = %e, "writing without the writers' lease for now");
                // A lock wait that timed out leaves the connection usable; anything else may not.
                if is_lock_timeout(&e) {
                    metrics::counter!("ticket_audit_writer_lease_timeouts_total").increment(1);
                } else {
                    self.conn = None;
                }
                self.not_before = Some(Instant::now() + BACKOFF);
                Taken::Without
            }
        }
    }

    async fn lock(&mut self) -> Result<(), sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let mut conn = self.pool.acquire().await?.detach();
                let ms = WAIT_MAX.as_millis();
                sqlx::raw_sql(&format!("SET lock_timeout = {ms}")).execute(&mut conn).await?;
                conn
            }
        };
        let conn = self.conn.insert(conn);
        sqlx::query("SELECT pg_advisory_lock($1)").bind(LEASE_LOCK).execute(conn).await?;
        Ok(())
    }

    /// Whether the holder should hand the lease over: another writer waits, and this one has
    /// nothing else to write now (`idle`) or has held it for a slice since it last looked. Looked
    /// at most once per [`IDLE_LOOK`] when idle, per [`SLICE`] otherwise. False when not held. A
    /// failed look gives the lease up (its connection is closed, which unlocks it).
    pub async fn wanted(&mut self, idle: bool) -> bool {
        let Some(conn) = self.conn.as_mut().filter(|_| self.held) else { return false };
        if self.looked_at.elapsed() < if idle { IDLE_LOOK } else { SLICE } {
            return false;
        }
        self.looked_at = Instant::now();
        match sqlx::query_scalar::<_, bool>(WAITER_SQL).bind(LEASE_LOCK).fetch_one(&mut *conn).await {
            Ok(waits) => waits,
            Err(e) => {
                tracing::debug!(error = %e, "the writers' lease is lost");
                self.held = false;
                self.conn = None;
                false
            }
        }
    }

    /// Unlocks (the caller has let its batch in flight commit first).
    pub async fn release(&mut self) {
        if !std::mem::take(&mut self.held) {
            return;
        }
        let Some(conn) = self.conn.as_mut() else { return };
        match sqlx::query("SELECT pg_advisory_unlock($1)").bind(LEASE_LOCK).execute(conn).await {
            Ok(_) => metrics::counter!("ticket_audit_writer_lease_handed_over_total").increment(1),
            // Closing the connection unlocks it, if the server still has it.
            Err(_) => self.conn = None,
        }
    }
}

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("55P03"))
}
