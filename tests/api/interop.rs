//! Our checkpoints, proofs and evidence, checked by a second implementation written from the
//! contract alone (tests/interop/check_checkpoint.py: Python's `cryptography` and hashlib).

use std::path::{Path, PathBuf};
use std::process::Command;

use ticket_audit::domain::checkpoint::{Checkpoint, Signer};
use ticket_audit::domain::evidence::{b64, format_micros, Evidence, EvidenceDelivery};
use ticket_audit::domain::ledger::{leaf_hash, sha256, ChainedFields};
use ticket_audit::domain::merkle::{
    record_proof, record_proof_indexes, stored_hash_index, tree_proof, tree_proof_indexes, Hash, RightEdge,
};

use crate::helpers::message;

/// The interpreter with `cryptography` installed: `TICKET_AUDIT_PYTHON`, or `python3`.
pub fn python() -> String {
    let python = std::env::var("TICKET_AUDIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python).args(["-c", "import cryptography"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(
        ok,
        "{python} cannot import `cryptography`, which the interoperability tests need: \
         python3 -m venv target/interop-venv && target/interop-venv/bin/pip install cryptography, \
         then TICKET_AUDIT_PYTHON=target/interop-venv/bin/python"
    );
    python
}

/// Runs the Python checker; its JSON on success, its `FAIL ...` line on failure.
pub fn python_check(args: &[&str]) -> Result<serde_json::Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_checkpoint.py");
    let out = Command::new(python()).arg(script).args(args).output().expect("run the Python checker");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("the checker prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ticket-audit-interop-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    pub fn write(&self, name: &str, contents: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p.to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A log built with the domain's own code: deliveries, stored hashes, checkpoints.
struct Log {
    edge: RightEdge,
    stored: std::collections::BTreeMap<u64, Hash>,
    deliveries: Vec<(EvidenceDelivery, Hash)>,
}

impl Log {
    fn new() -> Self {
        Log { edge: RightEdge::default(), stored: Default::default(), deliveries: Vec::new() }
    }
    fn append(&mut self, body: &str, key: &str, action: Option<&str>) {
        let seq = self.deliveries.len() as i64 + 1;
        let received_at = time::macros::datetime!(2026-03-04 05:06:07.089012 UTC) + time::Duration::minutes(seq);
        let d = EvidenceDelivery {
            seq,
            received_at: format_micros(received_at),
            key: key.to_owned(),
            action: action.map(str::to_owned),
            status_code: action.map(|_| 200),
            body_sha256: sha256(body.as_bytes()),
            body: body.as_bytes().to_vec(),
        };
        let leaf = leaf_hash(&ChainedFields {
            seq,
            received_at,
            key,
            action,
            status_code: d.status_code,
            body_sha256: &d.body_sha256,
        });
        let at = stored_hash_index(0, self.edge.size());
        for (i, h) in self.edge.append(leaf).into_iter().enumerate() {
            self.stored.insert(at + i as u64, h);
        }
        self.deliveries.push((d, leaf));
    }
    fn read(&self, indexes: &[u64]) -> Vec<Hash> {
        indexes.iter().map(|i| self.stored[i]).collect()
    }
}

#[test]
fn python_accepts_our_checkpoints_evidence_and_consistency_proofs() {
    let signer = Signer::generate("audit.example/ticket-audit").unwrap();
    let key = signer.verifier().to_string();
    let scratch = Scratch::new();
    let mut log = Log::new();
    let body = message("T-9", "what runs?", "this", &[("ps aux", "init\nsshd"), ("uname -a", "Linux \u{0} ✓")]);
    for i in 0..5 {
        log.append(&format!("{{\"n\":{i}}}"), &format!("k{i}"), None);
    }
    log.append(&body, "msg_\u{0}\u{2400}é", Some("POST:Ticket/SendTicketMessage"));
    let old = Checkpoint { origin: signer.name().into(), size: log.edge.size(), root: log.edge.root() };
    let old_note = scratch.write("old.note", &old.sign(&signer).unwrap());
    for i in 0..7 {
        log.append(&format!("{{\"m\":{i}}}"), &format!("later-{i}"), Some("GET:Agent/List"));
    }
    let size = log.edge.size();
    let new = Checkpoint { origin: signer.name().into(), size, root: log.edge.root() };
    let new_note = new.sign(&signer).unwrap();
    let new_file = scratch.write("new.note", &new_note);

    let got = python_check(&["checkpoint", &key, &new_file]).unwrap();
    assert_eq!(got["tree_size"], 13);
    assert_eq!(got["root"], b64::encode(&new.root));

    let proof = tree_proof(size, old.size, &log.read(&tree_proof_indexes(size, old.size).unwrap())).unwrap();
    let proof_json = serde_json::json!({"first": old.size, "second": size,
        "hashes": proof.iter().map(|h| b64::encode(h)).collect::<Vec<_>>()});
    let proof_file = scratch.write("proof.json", &proof_json.to_string());
    python_check(&["consistency", &key, &old_note, &new_file, &proof_file]).unwrap();

    let (d, leaf) = log.deliveries[5].clone();
    let evidence = Evidence {
        command: serde_json::json!({"id": "6.4", "ticket": "T-9", "command": "uname -a", "result": "Linux \u{0} ✓",
            "executed": true, "recorded_at": d.received_at, "seq": 6, "position": 4, "delivery_id": 6}),
        delivery: d,
        leaf_index: 5,
        leaf_hash: leaf,
        tree_size: size,
        inclusion: record_proof(size, 5, &log.read(&record_proof_indexes(size, 5).unwrap())).unwrap(),
        checkpoint: new_note.clone(),
    };
    let verifier = signer.verifier();
    ticket_audit::domain::evidence::check(&evidence, &verifier).expect("our own checker accepts it");
    let file = scratch.write("evidence.json", &serde_json::to_string(&evidence).unwrap());
    let got = python_check(&["evidence", &key, &file]).unwrap();
    assert_eq!((got["seq"].as_i64(), got["tree_size"].as_i64()), (Some(6), Some(13)));

    // The second implementation is not a rubber stamp: each lie fails there too, named.
    let mut lies: Vec<(&str, Evidence)> = Vec::new();
    let mut e = evidence.clone();
    e.delivery.key.push('!');
    lies.push(("FAIL leaf", e));
    let mut e = evidence.clone();
    e.delivery.body.push(b' ');
    lies.push(("FAIL body", e));
    let mut e = evidence.clone();
    e.inclusion.swap(0, 1);
    lies.push(("FAIL audit_path", e));
    let mut e = evidence.clone();
    e.checkpoint = Checkpoint { root: [1; 32], ..new.clone() }.sign(&Signer::generate(signer.name()).unwrap()).unwrap();
    lies.push(("FAIL key_id", e));
    let mut e = evidence.clone();
    e.checkpoint = e.checkpoint.replacen("\n13\n", "\n14\n", 1);
    lies.push(("FAIL signature", e));
    for (want, lie) in lies {
        let file = scratch.write("lie.json", &serde_json::to_string(&lie).unwrap());
        let err = python_check(&["evidence", &key, &file]).unwrap_err();
        assert!(err.starts_with(want), "{want}: {err}");
    }
    let bad_proof = proof_json.to_string().replacen(&b64::encode(&proof[0]), &b64::encode(&[0; 32]), 1);
    let bad_file = scratch.write("bad.json", &bad_proof);
    assert!(python_check(&["consistency", &key, &old_note, &new_file, &bad_file])
        .unwrap_err()
        .starts_with("FAIL consistency"));
}
