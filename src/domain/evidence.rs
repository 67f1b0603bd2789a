//! A command's evidence: one document that proves, offline, with the log's public key only, that
//! a command was recorded from a delivery that is in the signed log.
//!
//! Checking recomputes everything it can instead of trusting the document: the body's hash from
//! the raw bytes, the leaf from the delivery's fields, the root from the leaf and its audit path,
//! and the command from the body by the normalization rules. It names the first check that fails.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::checkpoint::{Checkpoint, NoteError, Verifier};
use super::ledger::{leaf_hash, sha256, ChainedFields};
use super::merkle::{check_record, Hash};
use super::{normalize, Envelope};

/// The evidence document of the contract (`GET /api/v1/commands/{id}/evidence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The command as the read API gives it.
    pub command: serde_json::Value,
    pub delivery: EvidenceDelivery,
    pub leaf_index: u64,
    #[serde(with = "b64::hash")]
    pub leaf_hash: Hash,
    pub tree_size: u64,
    #[serde(with = "b64::hashes")]
    pub inclusion: Vec<Hash>,
    /// The signed checkpoint of `tree_size` leaves the audit path leads to.
    pub checkpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceDelivery {
    pub seq: i64,
    /// RFC 3339 UTC with six fractional digits, as the leaf covers it (microseconds).
    pub received_at: String,
    pub key: String,
    pub action: Option<String>,
    pub status_code: Option<i32>,
    #[serde(with = "b64::hash")]
    pub body_sha256: Hash,
    #[serde(with = "b64::bytes")]
    pub body: Vec<u8>,
}

/// What a check found wrong, first failure only; [`EvidenceFailure::kind`] names the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceFailure {
    #[error("{0}")]
    Checkpoint(#[source] NoteError),
    #[error("the document says tree_size {document}, its checkpoint signs {signed}")]
    TreeSize { document: u64, signed: u64 },
    #[error("the raw body does not hash to the body_sha256 given")]
    Body,
    #[error("{0}")]
    Leaf(String),
    #[error("the inclusion proof of leaf {leaf_index} does not lead to the checkpoint's root ({reason})")]
    AuditPath { leaf_index: u64, reason: String },
    #[error("{0}")]
    Command(String),
}

impl EvidenceFailure {
    /// A short name of the failed check, for scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            EvidenceFailure::Checkpoint(NoteError::NotSignedByKey { .. }) => "key_id",
            EvidenceFailure::Checkpoint(NoteError::BadSignature(_)) => "signature",
            EvidenceFailure::Checkpoint(_) => "checkpoint",
            EvidenceFailure::TreeSize { .. } => "tree_size",
            EvidenceFailure::Body => "body",
            EvidenceFailure::Leaf(_) => "leaf",
            EvidenceFailure::AuditPath { .. } => "audit_path",
            EvidenceFailure::Command(_) => "command",
        }
    }
}

/// What a document that checks out proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub origin: String,
    pub tree_size: u64,
    pub seq: i64,
    pub command_id: String,
}

/// The fields of the read API's command that the body determines.
#[derive(Deserialize)]
struct ClaimedCommand {
    id: String,
    ticket: Option<String>,
    command: String,
    result: Option<String>,
    executed: bool,
    recorded_at: String,
    seq: i64,
    position: i32,
}

pub use super::timestamp::format_micros;

fn parse_time(s: &str, what: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("{what} is not RFC 3339 ({e})"))
}

/// Checks `e` with the log's verifier key.
pub fn check(e: &Evidence, key: &Verifier) -> Result<Checked, EvidenceFailure> {
    let cp = Checkpoint::open(&e.checkpoint, key).map_err(EvidenceFailure::Checkpoint)?;
    if cp.size != e.tree_size {
        return Err(EvidenceFailure::TreeSize { document: e.tree_size, signed: cp.size });
    }
    let d = &e.delivery;
    if sha256(&d.body) != d.body_sha256 {
        return Err(EvidenceFailure::Body);
    }
    if d.seq < 1 || e.leaf_index != (d.seq - 1) as u64 {
        return Err(EvidenceFailure::Leaf(format!("leaf_index {} is not seq {} - 1", e.leaf_index, d.seq)));
    }
    let received_at = parse_time(&d.received_at, "received_at").map_err(EvidenceFailure::Leaf)?;
    let leaf = leaf_hash(&ChainedFields {
        seq: d.seq,
        received_at,
        key: &d.key,
        action: d.action.as_deref(),
        status_code: d.status_code,
        body_sha256: &d.body_sha256,
    });
    if leaf != e.leaf_hash {
        return Err(EvidenceFailure::Leaf("the leaf recomputed from the delivery's fields is not leaf_hash".into()));
    }
    check_record(&e.inclusion, e.tree_size, &cp.root, e.leaf_index, &leaf)
        .map_err(|err| EvidenceFailure::AuditPath { leaf_index: e.leaf_index, reason: err.to_string() })?;
    let command_id = check_command(&e.command, &d.body, d.seq).map_err(EvidenceFailure::Command)?;
    Ok(Checked { origin: cp.origin, tree_size: cp.size, seq: d.seq, command_id })
}

/// Checks that the claimed command is one the body yields, at its position, by the rules.
fn check_command(claimed: &serde_json::Value, body: &[u8], seq: i64) -> Result<String, String> {
    let c: ClaimedCommand =
        serde_json::from_value(claimed.clone()).map_err(|e| format!("not a command as the read API gives it: {e}"))?;
    if c.seq != seq || c.id != format!("{}.{}", c.seq, c.position) {
        return Err(format!("command {} is not from the delivery at seq {seq}", c.id));
    }
    // `recorded_at` is when the service stored it, not part of the leaf: nothing here proves it.
    parse_time(&c.recorded_at, "recorded_at")?;
    let envelope = Envelope::parse(body).map_err(|e| format!("the body does not parse: {e}"))?;
    let n = normalize(&envelope);
    let Some(derived) = n.commands.iter().find(|d| d.position == c.position) else {
        return Err(format!("the body yields no command at position {}", c.position));
    };
    if derived.command != c.command || derived.result != c.result || derived.executed != c.executed {
        return Err(format!("the body's command at position {} is not the one claimed", c.position));
    }
    if n.ticket != c.ticket {
        return Err("the body concerns another ticket".into());
    }
    Ok(c.id)
}

/// Standard padded base64 for hashes and bytes in JSON.
pub mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn encode(b: &[u8]) -> String {
        STANDARD.encode(b)
    }

    pub fn decode_hash(s: &str) -> Option<super::Hash> {
        STANDARD.decode(s).ok()?.try_into().ok()
    }

    pub mod bytes {
        use super::*;
        pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&STANDARD.encode(b))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            let s = String::deserialize(d)?;
            STANDARD.decode(s).map_err(serde::de::Error::custom)
        }
    }

    pub mod hash {
        use super::*;
        pub fn serialize<S: Serializer>(h: &super::super::Hash, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&STANDARD.encode(h))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::super::Hash, D::Error> {
            let s = String::deserialize(d)?;
            super::decode_hash(&s).ok_or_else(|| serde::de::Error::custom("not a base64 32-byte hash"))
        }
    }

    pub mod hashes {
        use super::*;
        use serde::ser::SerializeSeq;
        pub fn serialize<S: Serializer>(hs: &[super::super::Hash], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(hs.len()))?;
            for h in hs {
                seq.serialize_element(&STANDARD.encode(h))?;
            }
            seq.end()
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<super::super::Hash>, D::Error> {
            let v = Vec::<String>::deserialize(d)?;
            v.iter()
                .map(|s| super::decode_hash(s).ok_or_else(|| serde::de::Error::custom("not a base64 32-byte hash")))
                .collect()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::checkpoint::Signer;
    use crate::domain::merkle::{record_proof, record_proof_indexes, stored_hash_index, RightEdge};
    use std::collections::BTreeMap;
    use time::macros::datetime;

    const BODY: &str = r#"{"Action":"POST:Ticket/SendTicketMessage","Data":{"RequestBody":{"ticketName":"T-1","message":{"Content":"hi"}},"ResponseBody":{"Content":"ok","data":{"executedCmds":[{"command":"uptime","result":"up 3 days"}]}},"StatusCode":200}}"#;

    /// A log of `size` deliveries, the third carrying a command; its evidence at the last size.
    pub(crate) fn sample(signer: &Signer, size: u64) -> Evidence {
        let mut edge = RightEdge::default();
        let mut stored = BTreeMap::new();
        let mut deliveries = Vec::new();
        for seq in 1..=size as i64 {
            let body = if seq == 3 { BODY.as_bytes().to_vec() } else { format!("{{\"n\":{seq}}}").into_bytes() };
            let d = EvidenceDelivery {
                seq,
                received_at: format_micros(datetime!(2026-01-02 03:04:05.000001 UTC) + time::Duration::seconds(seq)),
                key: format!("msg_{seq}\u{0}"),
                action: (seq == 3).then(|| "POST:Ticket/SendTicketMessage".to_owned()),
                status_code: (seq == 3).then_some(200),
                body_sha256: sha256(&body),
                body,
            };
            let at = stored_hash_index(0, edge.size());
            let leaf = leaf_hash(&ChainedFields {
                seq,
                received_at: OffsetDateTime::parse(&d.received_at, &Rfc3339).unwrap(),
                key: &d.key,
                action: d.action.as_deref(),
                status_code: d.status_code,
                body_sha256: &d.body_sha256,
            });
            for (i, h) in edge.append(leaf).into_iter().enumerate() {
                stored.insert(at + i as u64, h);
            }
            deliveries.push((d, leaf));
        }
        let (d, leaf) = deliveries[2].clone();
        let read: Vec<Hash> = record_proof_indexes(size, 2).unwrap().iter().map(|i| stored[i]).collect();
        let cp = Checkpoint { origin: signer.name().to_owned(), size, root: edge.root() };
        Evidence {
            command: serde_json::json!({
                "id": "3.3", "ticket": "T-1", "tenant_id": null, "agent_name": null, "agent_id": null,
                "command": "uptime", "result": "up 3 days", "executed": true,
                "recorded_at": d.received_at, "seq": 3, "position": 3, "delivery_id": 3
            }),
            delivery: d,
            leaf_index: 2,
            leaf_hash: leaf,
            tree_size: size,
            inclusion: record_proof(size, 2, &read).unwrap(),
            checkpoint: cp.sign(signer).unwrap(),
        }
    }

    #[test]
    fn a_true_document_checks_and_each_lie_is_named() {
        let signer = Signer::from_seed("audit.example/log", [3; 32]).unwrap();
        let key = signer.verifier();
        let e = sample(&signer, 7);
        let json = serde_json::to_string(&e).unwrap();
        let back: Evidence = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        let ok = check(&e, &key).unwrap();
        assert_eq!((ok.seq, ok.tree_size, ok.command_id.as_str()), (3, 7, "3.3"));

        let kind = |f: &dyn Fn(&mut Evidence)| {
            let mut bad = e.clone();
            f(&mut bad);
            check(&bad, &key).unwrap_err().kind()
        };
        let other = Signer::from_seed("audit.example/log", [4; 32]).unwrap();
        assert_eq!(kind(&|b| b.checkpoint = sample(&other, 7).checkpoint), "key_id");
        assert_eq!(kind(&|b| b.checkpoint = b.checkpoint.replacen("\n7\n", "\n8\n", 1)), "signature");
        assert_eq!(kind(&|b| b.tree_size = 8), "tree_size");
        assert_eq!(kind(&|b| b.delivery.body[5] ^= 1), "body");
        assert_eq!(kind(&|b| b.delivery.key.push('x')), "leaf");
        assert_eq!(kind(&|b| b.delivery.received_at = "2026-01-02T03:04:08.000002Z".into()), "leaf");
        assert_eq!(kind(&|b| b.inclusion[0][0] ^= 1), "audit_path");
        assert_eq!(kind(&|b| b.inclusion.pop().map(|_| ()).unwrap_or(())), "audit_path");
        assert_eq!(kind(&|b| b.command["command"] = "rm -rf /".into()), "command");
        assert_eq!(kind(&|b| b.command["result"] = "fine".into()), "command");
        assert_eq!(kind(&|b| b.command["ticket"] = "T-2".into()), "command");
        assert_eq!(kind(&|b| b.command["position"] = 2.into()), "command");
        // A leaf rehashed to fit the lie still has to reach the signed root.
        let mut forged = e.clone();
        forged.delivery.key = "forged".into();
        forged.leaf_hash = leaf_hash(&ChainedFields {
            seq: 3,
            received_at: OffsetDateTime::parse(&forged.delivery.received_at, &Rfc3339).unwrap(),
            key: "forged",
            action: forged.delivery.action.as_deref(),
            status_code: forged.delivery.status_code,
            body_sha256: &forged.delivery.body_sha256,
        });
        assert_eq!(check(&forged, &key).unwrap_err().kind(), "audit_path");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Any one-byte change to a true document, wherever it lands, is refused (or leaves the
        /// document unreadable); never a panic, never a pass.
        #[test]
        fn any_edit_of_a_true_document_is_refused(pos in proptest::prelude::any::<proptest::sample::Index>(), byte in 0x20u8..0x7f) {
            let signer = Signer::from_seed("audit.example/log", [5; 32]).unwrap();
            let json = serde_json::to_string(&sample(&signer, 5)).unwrap();
            let mut b = json.into_bytes();
            let i = pos.index(b.len());
            proptest::prop_assume!(b[i] != byte);
            b[i] = byte;
            let Ok(text) = String::from_utf8(b) else { return Ok(()) };
            let Ok(doc) = serde_json::from_str::<Evidence>(&text) else { return Ok(()) };
            // An edit inside a field the checks do not cover (a name outside the claimed command's
            // checked fields, say) may leave a true document true: then it is the same proof.
            if let Ok(ok) = check(&doc, &signer.verifier()) {
                let original = sample(&signer, 5);
                // The same leaf: the same fields (a time may be spelled another way, `z` for `Z`).
                proptest::prop_assert_eq!(&doc.delivery.body, &original.delivery.body);
                proptest::prop_assert_eq!(&doc.delivery.key, &original.delivery.key);
                proptest::prop_assert_eq!(doc.leaf_hash, original.leaf_hash);
                proptest::prop_assert_eq!(ok.seq, 3);
            }
        }
    }

    #[test]
    fn times_keep_six_digits() {
        assert_eq!(format_micros(datetime!(2026-01-02 03:04:05 UTC)), "2026-01-02T03:04:05.000000Z");
        assert_eq!(format_micros(datetime!(2026-01-02 03:04:05.12 +02:00)), "2026-01-02T01:04:05.120000Z");
    }
}
