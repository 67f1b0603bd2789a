//! The verifiable log from outside: checkpoints, the key, proofs and evidence, checked with the
//! verifier key alone (our checker and the independent Python one), under the tenant rules.

use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ticket_audit::config::HttpSettings;
use ticket_audit::domain::checkpoint::{Checkpoint, Verifier};
use ticket_audit::domain::evidence::{self, Evidence};
use ticket_audit::domain::merkle::{check_record, check_tree, Hash, EMPTY_ROOT};

use crate::helpers::*;
use crate::interop::{python_check, Scratch};

fn hash(v: &serde_json::Value) -> Hash {
    B64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn hashes(v: &serde_json::Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hash).collect()
}

pub async fn text(app: &TestApp, path: &str, token: Option<&str>) -> String {
    let res = app.get(path, token).await;
    assert_eq!(res.status(), 200, "GET {path}");
    res.text().await.unwrap()
}

/// Delivers `n` messages with one executed command each; returns once a checkpoint covers them.
async fn deliver_commands(app: &TestApp, ticket: &str, n: usize) -> String {
    let mut last = 0;
    for i in 0..n {
        last = app.deliver(&message(ticket, &format!("q{i}"), "a", &[(&format!("echo {i}"), &format!("{i}"))])).await;
    }
    until_checkpoint(&app.db, last).await
}

#[tokio::test]
async fn the_empty_log_is_signed_and_its_key_published() {
    let app = spawn_app().await;
    let note = until_checkpoint(&app.db, 0).await;
    let key = Verifier::parse(text(&app, "/api/v1/ledger/key", None).await.trim()).unwrap();
    assert_eq!(key, test_verifier());
    let cp = Checkpoint::open(&note, &key).unwrap();
    assert_eq!((cp.size, cp.root), (0, EMPTY_ROOT));
    assert_eq!(cp.origin, "test.ticket-audit/log");
    let served = app.get("/api/v1/ledger/checkpoint", None).await;
    assert!(served.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(served.text().await.unwrap(), note);
}

#[tokio::test]
async fn proofs_check_against_signed_checkpoints() {
    let app = spawn_app().await;
    let key = test_verifier();
    let first_note = deliver_commands(&app, "P-1", 3).await;
    let first = Checkpoint::open(&first_note, &key).unwrap();
    assert!(first.size >= 3);
    // Sent at once, so that they land in one or two batches: some size between the two
    // checkpoints is then never signed (checked below), however slow the machine.
    let bodies: Vec<String> =
        (0..6).map(|i| message("P-2", &format!("q{i}"), "a", &[(&format!("echo {i}"), &format!("{i}"))])).collect();
    let seqs = futures::future::join_all(bodies.iter().map(|b| app.deliver(b))).await;
    until_checkpoint(&app.db, *seqs.iter().max().unwrap()).await;
    let now = Checkpoint::open(&text(&app, "/api/v1/ledger/checkpoint", None).await, &key).unwrap();
    assert_eq!(now.size, 9);

    // Inclusion of every delivery in the latest signed tree.
    for seq in 1..=9 {
        let p = app.get_json(&format!("/api/v1/ledger/proof/inclusion?seq={seq}&tree_size=9")).await;
        assert_eq!((p["leaf_index"].as_u64(), p["tree_size"].as_u64()), (Some(seq - 1), Some(9)));
        check_record(&hashes(&p["hashes"]), 9, &now.root, seq - 1, &hash(&p["leaf_hash"])).unwrap();
        // The same leaf in an earlier signed tree that holds it.
        if seq <= first.size {
            let size = first.size;
            let p = app.get_json(&format!("/api/v1/ledger/proof/inclusion?seq={seq}&tree_size={size}")).await;
            check_record(&hashes(&p["hashes"]), size, &first.root, seq - 1, &hash(&p["leaf_hash"])).unwrap();
        }
    }
    // Consistency from the earlier checkpoint, and from 0.
    let c = app.get_json(&format!("/api/v1/ledger/proof/consistency?first={}&second=9", first.size)).await;
    check_tree(&hashes(&c["hashes"]), 9, &now.root, first.size, &first.root).unwrap();
    let empty = app.get_json("/api/v1/ledger/proof/consistency?first=0&second=9").await;
    assert_eq!(empty["hashes"], serde_json::json!([]));

    // Every checkpoint is kept, newest first, with its note.
    let all = walk(&app, "/api/v1/ledger/checkpoints?limit=2", None).await;
    assert!(all.len() >= 3, "the empty tree's, the first's, today's");
    let sizes: Vec<i64> = all.iter().map(|c| c["tree_size"].as_i64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    assert_eq!(*sizes.last().unwrap(), 0);
    for c in &all {
        let cp = Checkpoint::open(c["note"].as_str().unwrap(), &key).unwrap();
        assert_eq!(cp.size as i64, c["tree_size"].as_i64().unwrap());
        assert_eq!(B64.encode(cp.root), c["root_hash"].as_str().unwrap());
    }

    // Sizes that are 0, beyond the tree, or never signed; seq outside; first > second: 400 problems.
    let unsigned = (1..9).find(|s| !sizes.contains(s)).expect("some size between was never signed");
    for bad in [
        "/api/v1/ledger/proof/inclusion?seq=1&tree_size=0".to_owned(),
        "/api/v1/ledger/proof/inclusion?seq=1&tree_size=10".to_owned(),
        "/api/v1/ledger/proof/inclusion?seq=0&tree_size=9".to_owned(),
        "/api/v1/ledger/proof/inclusion?seq=10&tree_size=9".to_owned(),
        format!("/api/v1/ledger/proof/inclusion?seq=1&tree_size={unsigned}"),
        "/api/v1/ledger/proof/consistency?first=5&second=3".to_owned(),
        "/api/v1/ledger/proof/consistency?first=1&second=10".to_owned(),
        format!("/api/v1/ledger/proof/consistency?first=1&second={unsigned}"),
        "/api/v1/ledger/proof/inclusion?seq=x&tree_size=9".to_owned(),
    ] {
        let res = app.get(&bad, None).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let p: serde_json::Value = res.json().await.unwrap();
        assert_eq!(p["status"], 400);
    }
}

#[tokio::test]
async fn evidence_checks_offline_here_in_python_and_with_the_cli() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("E-1", "tenant-a", "aws")).await;
    let body = message("E-1", "disk?", "checking", &[("df -h", "/dev/sda1 40%"), ("du -sh /var \u{0}", "3G ␀")]);
    let seq = app.deliver(&body).await;
    app.deliver(&message("E-1", "thanks", "bye", &[])).await;
    until_checkpoint(&app.db, 3).await;
    let commands = walk(&app, "/api/v1/tickets/E-1/commands", None).await;
    assert_eq!(commands.len(), 2);
    let id = commands[1]["id"].as_str().unwrap().to_owned();

    let doc = app.get_json(&format!("/api/v1/commands/{id}/evidence")).await;
    assert_eq!(doc["command"], commands[1], "the command as the read API gives it");
    assert_eq!(doc["delivery"]["seq"], seq);
    assert_eq!(B64.decode(doc["delivery"]["body"].as_str().unwrap()).unwrap(), body.as_bytes());
    assert_eq!(doc["delivery"]["received_at"].as_str().unwrap().len(), "2026-01-01T00:00:00.000000Z".len());
    let e: Evidence = serde_json::from_value(doc.clone()).unwrap();
    let ok = evidence::check(&e, &test_verifier()).unwrap();
    assert_eq!(ok.command_id, id);

    let scratch = Scratch::new();
    let file = scratch.write("evidence.json", &doc.to_string());
    let key = test_verifier().to_string();
    let py = python_check(&["evidence", &key, &file]).unwrap();
    assert_eq!(py["seq"], seq);

    let cli = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_ticket-audit")).args(args).output().unwrap();
    let checked = cli(&["check-evidence", "--key", &key, &file]);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    assert!(String::from_utf8_lossy(&checked.stdout).starts_with(&format!("OK: command {id}")));

    // The same document from the CLI, straight from the database.
    let out = Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
        .args(["evidence", &id])
        .env("DATABASE_URL", database_url(&app.db_name))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_cli["leaf_hash"], doc["leaf_hash"]);

    // A lie is named by the CLI.
    let mut lie = doc.clone();
    lie["command"]["result"] = "/dev/sda1 1%".into();
    let file = scratch.write("lie.json", &lie.to_string());
    let refused = cli(&["check-evidence", "--key", &key, &file]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("FAILED command"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(app.get("/api/v1/commands/99.1/evidence", None).await.status(), 404);
    assert_eq!(app.get("/api/v1/commands/nonsense/evidence", None).await.status(), 404);
}

#[tokio::test]
async fn a_tenant_gets_proofs_of_its_own_and_nothing_of_others() {
    let app = spawn_with(HttpSettings { api_tokens: secret("root ta=tenant-a tb=tenant-b"), ..settings() }).await;
    app.deliver(&add_ticket("A-1", "tenant-a", "aws")).await;
    app.deliver(&add_ticket("B-1", "tenant-b", "k8s")).await;
    app.deliver(&message("A-1", "a?", "a", &[("secret-a-command", "secret-a-output")])).await;
    app.deliver(&message("B-1", "b?", "b", &[("secret-b-command", "secret-b-output")])).await;
    until_checkpoint(&app.db, 4).await;
    let a_cmd = "3.3";
    let b_cmd = "4.3";
    assert_eq!(app.get(&format!("/api/v1/commands/{a_cmd}/evidence"), Some("ta")).await.status(), 200);
    assert_eq!(app.get(&format!("/api/v1/commands/{b_cmd}/evidence"), Some("ta")).await.status(), 404);
    assert_eq!(app.get(&format!("/api/v1/commands/{b_cmd}/evidence"), Some("tb")).await.status(), 200);
    assert_eq!(app.get("/api/v1/ledger/proof/inclusion?seq=3&tree_size=4", Some("ta")).await.status(), 200);
    assert_eq!(app.get("/api/v1/ledger/proof/inclusion?seq=4&tree_size=4", Some("ta")).await.status(), 404);
    // The proof of A's command carries B's delivery only as a hash.
    let proof = text(&app, "/api/v1/ledger/proof/inclusion?seq=3&tree_size=4", Some("ta")).await;
    let evidence = text(&app, &format!("/api/v1/commands/{a_cmd}/evidence"), Some("ta")).await;
    for leaked in ["secret-b", "B-1", "tenant-b"] {
        assert!(!proof.contains(leaked) && !evidence.contains(leaked), "{leaked}");
    }
    // Checkpoints and the key are for every reader; nothing without a token.
    for path in ["/api/v1/ledger/checkpoint", "/api/v1/ledger/checkpoints", "/api/v1/ledger/key"] {
        assert_eq!(app.get(path, Some("ta")).await.status(), 200, "{path}");
        assert_eq!(app.get(path, None).await.status(), 401, "{path}");
    }
    assert_eq!(app.get("/api/v1/ledger/proof/consistency?first=1&second=4", Some("tb")).await.status(), 200);
}

#[tokio::test]
async fn checkpoints_go_to_the_checkpoint_dir_one_file_each() {
    let scratch = Scratch::new();
    let dir = scratch.0.join("checkpoints");
    let app = spawn_with(HttpSettings { checkpoint_dir: Some(dir.clone()), ..settings() }).await;
    deliver_commands(&app, "D-1", 2).await;
    let kept: Vec<String> =
        sqlx::query_scalar("SELECT note FROM checkpoints ORDER BY id").fetch_all(&app.db).await.unwrap();
    // Named by zero-padded size, then key id: listed in order of signing.
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let files: Vec<String> = paths.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert_eq!(files, kept);
    let last = scratch.write("last.checkpoint", kept.last().unwrap());
    assert_eq!(python_check(&["checkpoint", &test_verifier().to_string(), &last]).unwrap()["tree_size"], 2);
}

#[tokio::test]
async fn the_tree_is_built_for_deliveries_stored_before_it() {
    let app = spawn_app().await;
    deliver_commands(&app, "OLD-1", 7).await;
    let before: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT index, hash FROM tree_hashes ORDER BY index").fetch_all(&app.db).await.unwrap();
    assert_eq!(before.len() as u64, ticket_audit::domain::merkle::stored_hash_count(7));
    let mut app = app;
    app.stop().await;
    // As a database migrated before V7 holds it: deliveries and no tree.
    let mut conn = app.db.acquire().await.unwrap();
    sqlx::raw_sql(
        "SET session_replication_role = replica; DELETE FROM tree_hashes; SET session_replication_role = origin",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let out = Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
        .arg("migrate")
        .env("DATABASE_URL", database_url(&app.db_name))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT index, hash FROM tree_hashes ORDER BY index").fetch_all(&app.db).await.unwrap();
    assert_eq!(after, before, "the same tree, rebuilt from the deliveries");
}

#[test]
fn keys_are_generated_once_in_the_data_dir_mode_0600_and_keygen_writes_them() {
    use std::os::unix::fs::PermissionsExt;
    use ticket_audit::checkpointing::{load_signer, GENERATED_KEY_FILE};
    use ticket_audit::config::CheckpointSettings;
    let scratch = Scratch::new();
    let data = scratch.0.join("data");
    let first = load_signer(&CheckpointSettings::default(), &data).unwrap();
    let file = data.join(GENERATED_KEY_FILE);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(first.name().starts_with("ticket-audit/"), "a unique origin: {}", first.name());
    let again = load_signer(&CheckpointSettings::default(), &data).unwrap();
    assert_eq!(again.verifier(), first.verifier(), "the same key on every start");
    let other = CheckpointSettings { checkpoint_origin: Some("elsewhere".into()), ..Default::default() };
    assert!(load_signer(&other, &data).unwrap_err().to_string().contains("keygen --name elsewhere"));

    let out = scratch.0.join("audit.key");
    let keygen = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
            .args(["keygen", "--name", name, "--out", out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let made = keygen("audit.example/log");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let printed = Verifier::parse(String::from_utf8_lossy(&made.stdout).trim()).unwrap();
    assert_eq!(printed.name(), "audit.example/log");
    let given = CheckpointSettings { checkpoint_key_file: Some(out.clone()), ..Default::default() };
    assert_eq!(load_signer(&given, &data).unwrap().verifier(), printed);
    assert!(!keygen("audit.example/log").status.success(), "an existing key file is never replaced");
    assert!(!keygen("two words").status.success());
}

#[tokio::test]
async fn after_a_restart_the_signer_still_refuses_a_rewrite_even_with_the_checkpoint_rows_gone() {
    use ticket_audit::checkpointing::{read_key_file, sign_if_grown};
    let scratch = Scratch::new();
    let dir = scratch.0.join("checkpoints");
    let mut app = spawn_with(HttpSettings { checkpoint_dir: Some(dir.clone()), ..settings() }).await;
    deliver_commands(&app, "R-1", 3).await;
    app.stop().await;
    // The superuser rewrites history, rehashes everything, and deletes the checkpoints it could reach.
    crate::ledger::tamper(&app, "UPDATE deliveries SET action = 'GET:Settings/GetSettings' WHERE seq = 2").await;
    crate::ledger::rehash_everything(&app).await;
    crate::ledger::tamper(&app, "DELETE FROM checkpoints").await;
    let signer = read_key_file(test_key_file().as_ref()).unwrap();
    // A restarted signer that keeps its checkpoints only in the database would sign the rewrite...
    let mut fresh = None;
    let without_dir = sign_if_grown(&app.db, &signer, None, &mut fresh).await.unwrap();
    assert!(without_dir.is_some(), "nothing in the database to extend: it signs");
    crate::ledger::tamper(&app, "DELETE FROM checkpoints").await;
    // ...one that also reads CHECKPOINT_DIR does not.
    let mut fresh = None;
    let refused = sign_if_grown(&app.db, &signer, Some(&dir), &mut fresh).await.unwrap_err();
    assert!(refused.to_string().contains("NOT SIGNING"), "{refused}");
}
