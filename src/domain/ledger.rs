//! The hash chain over stored deliveries: the canonical encoding an auditor can recompute.
//!
//! `hash(n) = SHA-256(hash(n-1) || u64be(seq) || i64be(received_at, µs since 1970-01-01 UTC)
//!            || u32be(len(key)) || key || action_field || status_field || body_sha256)`
//! where `action_field` is `u32be(len) || bytes`, or `u32be(0xFFFFFFFF)` when there is no action;
//! `status_field` is `0x01 || i32be(code)`, or `0x00` when there is no integer status code;
//! strings are UTF-8 exactly as stored, and `hash(0)`, before the first delivery, is 32 zero bytes.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub type Hash = [u8; 32];

/// The hash before the first delivery.
pub const GENESIS: Hash = [0u8; 32];

/// The fields of a stored delivery that the chain covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainedFields<'a> {
    pub seq: i64,
    pub received_at: OffsetDateTime,
    pub key: &'a str,
    pub action: Option<&'a str>,
    pub status_code: Option<i32>,
    pub body_sha256: &'a [u8],
}

pub fn chain_hash(prev: &Hash, f: &ChainedFields<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update((f.seq as u64).to_be_bytes());
    let micros = (f.received_at.unix_timestamp_nanos() / 1_000) as i64;
    h.update(micros.to_be_bytes());
    h.update((f.key.len() as u32).to_be_bytes());
    h.update(f.key.as_bytes());
    match f.action {
        Some(a) => {
            h.update((a.len() as u32).to_be_bytes());
            h.update(a.as_bytes());
        }
        None => h.update(u32::MAX.to_be_bytes()),
    }
    match f.status_code {
        Some(c) => {
            h.update([1u8]);
            h.update(c.to_be_bytes());
        }
        None => h.update([0u8]),
    }
    h.update(f.body_sha256);
    h.finalize().into()
}

pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn encoding_is_pinned() {
        // Recomputed independently with Python's hashlib/struct (docs/ledger.md, "Recomputing it yourself").
        let body = sha256(b"{}");
        let f = ChainedFields {
            seq: 1,
            received_at: datetime!(2026-01-02 03:04:05.123456 UTC),
            key: "msg_1",
            action: Some("POST:Ticket/AddTicket"),
            status_code: Some(200),
            body_sha256: &body,
        };
        let h = chain_hash(&GENESIS, &f);
        assert_eq!(hex::encode(h), PINNED);
        let no_action = ChainedFields { action: None, status_code: None, ..f };
        assert_ne!(chain_hash(&GENESIS, &no_action), h);
        assert_ne!(chain_hash(&h, &f), h, "the previous hash is covered");
    }

    const PINNED: &str = "5c1f5491dce2a92f70e87776823ba0bd344193617200e8e6dbbe79954a488a82";
}
