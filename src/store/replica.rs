//! A streaming replica beside the primary: how far it has replayed (in seq, bytes and seconds),
//! and waiting, bounded, until it shows a given seq.

use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

/// The highest seq a read on `pool` sees: the ledger head moves in the same transaction as the
/// deliveries it counts, so a replica that shows head N shows every delivery up to N.
pub async fn visible_seq(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT seq FROM ledger_head").fetch_one(pool).await
}

/// How often [`wait_for_seq`] looks again: a replica replays within milliseconds when it keeps up.
const POLL: Duration = Duration::from_millis(5);

/// Returns `Ok(None)` once `pool` shows seq `seq`, or `Ok(Some(at))` with the seq it shows if it
/// still does not after `bound`.
pub async fn wait_for_seq(pool: &PgPool, seq: i64, bound: Duration) -> Result<Option<i64>, sqlx::Error> {
    let deadline = Instant::now() + bound;
    loop {
        let at = visible_seq(pool).await?;
        if at >= seq {
            return Ok(None);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Some(at));
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// What a replica says of itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Whether it is a standby at all (a URL pointing at a primary has no lag to speak of).
    pub in_recovery: bool,
    /// Whether replay is paused (`pg_wal_replay_pause()`).
    pub paused: bool,
    /// 0 when it has replayed all it received, else the age of the last transaction it replayed
    /// (unknown before it has replayed one).
    pub seconds: Option<f64>,
    /// WAL the primary has written that the replica has not replayed yet.
    pub bytes: Option<u64>,
}

/// How long [`lag`] may take: it answers `/readyz` and `/metrics`, which must not hang on a
/// replica that accepts connections and never answers.
pub const LAG_BOUND: Duration = Duration::from_secs(2);

/// The replica's lag behind the primary, or an error after [`LAG_BOUND`].
pub async fn lag(primary: &PgPool, replica: &PgPool) -> Result<Lag, sqlx::Error> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "the replica's lag was not read in time");
    tokio::time::timeout(LAG_BOUND, unbounded_lag(primary, replica)).await.map_err(|_| sqlx::Error::Io(timed_out()))?
}

/// The replica is asked first, so the primary's position, read after, is never behind what it
/// is compared with: the bytes are never an underestimate.
async fn unbounded_lag(primary: &PgPool, replica: &PgPool) -> Result<Lag, sqlx::Error> {
    let (in_recovery, paused, seconds, replayed): (bool, bool, Option<f64>, Option<String>) = sqlx::query_as(
        "SELECT pg_is_in_recovery(), \
                pg_is_in_recovery() AND pg_is_wal_replay_paused(), \
                CASE WHEN NOT pg_is_in_recovery() \
                       OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
                     ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END, \
                pg_last_wal_replay_lsn()::text",
    )
    .fetch_one(replica)
    .await?;
    let bytes = match replayed.as_deref().and_then(parse_lsn) {
        Some(replayed) if in_recovery => {
            let current: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(primary).await?;
            parse_lsn(&current).map(|c| c.saturating_sub(replayed))
        }
        _ => (!in_recovery).then_some(0),
    };
    Ok(Lag { in_recovery, paused, seconds: seconds.map(|s| s.max(0.0)), bytes })
}

/// A WAL position, `XXXXXXXX/YYYYYYYY` in hex, as a byte offset.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    let (hi, lo) = (u32::from_str_radix(hi, 16).ok()?, u32::from_str_radix(lo, 16).ok()?);
    Some((u64::from(hi) << 32) | u64::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_as_postgres_writes_them() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B_3748));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        assert_eq!(parse_lsn("16B3748"), None);
        assert_eq!(parse_lsn("0/x"), None);
    }
}
