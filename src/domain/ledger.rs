//! The hash chain over stored deliveries: the canonical encoding an auditor can recompute.
//!
//! `hash(n) = SHA-256(hash(n-1) || u64be(seq) || i64be(received_at, µs since 1970-01-01 UTC)
//!            || u32be(len(key)) || key || action_field || status_field || body_sha256)`
//! where `action_field` is `u32be(len) || bytes`, or `u32be(0xFFFFFFFF)` when there is no action;
//! `status_field` is `0x01 || i32be(code)`, or `0x00` when there is no integer status code;
//! strings are UTF-8 exactly as stored, and `hash(0)`, before the first delivery, is 32 zero bytes.
//!
//! The verifiable log's leaf is the same encoding without `hash(n-1)` (see [`leaf_input`]).

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
    encode_fields(f, |bytes| h.update(bytes));
    h.finalize().into()
}

/// The verifiable log's leaf input: the chain encoding without the previous hash. The caller
/// gives the strings as the read API returns them (unescaped), where the chain takes them as stored.
pub fn leaf_input(f: &ChainedFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + f.key.len() + f.action.map_or(0, str::len));
    encode_fields(f, |bytes| out.extend_from_slice(bytes));
    out
}

/// `SHA-256(0x00 || leaf_input)`: the leaf's hash in the verifiable log (RFC 6962).
pub fn leaf_hash(f: &ChainedFields<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    encode_fields(f, |bytes| h.update(bytes));
    h.finalize().into()
}

/// The one encoding of the fields, written to `out` piece by piece: the chain and the log's
/// leaves both come through here, so they cannot drift apart.
fn encode_fields(f: &ChainedFields<'_>, mut out: impl FnMut(&[u8])) {
    out(&(f.seq as u64).to_be_bytes());
    let micros = (f.received_at.unix_timestamp_nanos() / 1_000) as i64;
    out(&micros.to_be_bytes());
    out(&(f.key.len() as u32).to_be_bytes());
    out(f.key.as_bytes());
    match f.action {
        Some(a) => {
            out(&(a.len() as u32).to_be_bytes());
            out(a.as_bytes());
        }
        None => out(&u32::MAX.to_be_bytes()),
    }
    match f.status_code {
        Some(c) => {
            out(&[1u8]);
            out(&c.to_be_bytes());
        }
        None => out(&[0u8]),
    }
    out(f.body_sha256);
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

    #[test]
    fn leaf_is_the_chain_encoding_without_the_previous_hash() {
        let body = sha256(b"{}");
        let f = ChainedFields {
            seq: 1,
            received_at: datetime!(2026-01-02 03:04:05.123456 UTC),
            key: "msg_\0\u{2400}1",
            action: Some("POST:Ticket/AddTicket"),
            status_code: Some(200),
            body_sha256: &body,
        };
        let input = leaf_input(&f);
        let mut chained = GENESIS.to_vec();
        chained.extend_from_slice(&input);
        assert_eq!(sha256(&chained), chain_hash(&GENESIS, &f));
        assert_eq!(leaf_hash(&f), crate::domain::merkle::record_hash(&input));
        // Spelled out: the contract's layout, byte by byte.
        let mut want = Vec::new();
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(&1_767_323_045_123_456i64.to_be_bytes());
        want.extend_from_slice(&9u32.to_be_bytes());
        want.extend_from_slice("msg_\0\u{2400}1".as_bytes());
        want.extend_from_slice(&21u32.to_be_bytes());
        want.extend_from_slice(b"POST:Ticket/AddTicket");
        want.extend_from_slice(&[1, 0, 0, 0, 200]);
        want.extend_from_slice(&body);
        assert_eq!(input, want);
        let bare = leaf_input(&ChainedFields { action: None, status_code: None, ..f });
        assert_eq!(&bare[29..34], &[0xff, 0xff, 0xff, 0xff, 0]);
    }

    const PINNED: &str = "5c1f5491dce2a92f70e87776823ba0bd344193617200e8e6dbbe79954a488a82";
}
