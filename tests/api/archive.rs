//! `archive`: whole months to zstd NDJSON files with manifests tied to signed checkpoints;
//! `verify --archive` against the database and offline; `--drop`, and what still works after it.

use std::io::{BufRead, Write};
use std::path::Path;

use ticket_audit::store::partitions::{month_of, next_month, turn};

use crate::helpers::*;

/// A directory of the test's own, removed at its end.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ticket-audit-archive-{name}"));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn month_arg(m: time::Date) -> String {
    format!("{:04}-{:02}", m.year(), u8::from(m.month()))
}

fn month_dir(m: time::Date) -> String {
    format!("{:04}_{:02}", m.year(), u8::from(m.month()))
}

fn run(args: &[&str], db: Option<&str>) -> std::process::Output {
    let url = db.map(database_url);
    let env: Vec<(&str, &str)> = url.as_deref().map(|u| ("DATABASE_URL", u)).into_iter().collect();
    cli(args, &env).output().unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    std::io::BufReader::new(zstd::Decoder::new(file).unwrap()).lines().map(Result::unwrap).collect()
}

/// Three months: two closed (the first with seqs 1..=3, the second 4..=5), the third open.
async fn three_months(app: &TestApp) -> [time::Date; 3] {
    let m1 = month_of(time::OffsetDateTime::now_utc());
    let (m2, m3) = (next_month(m1), next_month(next_month(m1)));
    app.deliver(&add_ticket("A-1", "t1", "aws")).await;
    app.deliver(&message("A-1", "hi", "on it", &[("aws s3 ls", "ok"), ("aws s3 rb s3://x", "denied")])).await;
    app.deliver(&message("A-1", "and?", "done", &[("ls\0", "ok")])).await;
    for month in [m2, m3] {
        let mut conn = app.db.acquire().await.unwrap();
        // The app's classifier reads the record's tables while the month turns and may deadlock
        // with it; the server breaks the deadlock and the turn is tried again, as the writer's
        // batch that turns a month is.
        let mut attempts = 0;
        let first = loop {
            match turn(&mut conn, month).await {
                Err(e) if deadlock(&e) && attempts < 10 => attempts += 1,
                r => break r.unwrap(),
            }
        };
        first.expect("the month turns");
        drop(conn);
        if month == m2 {
            app.deliver(&message("A-1", "more", "sure", &[("kubectl get pods", "ok")])).await;
            app.deliver(&add_ticket("B-1", "t2", "k8s")).await;
        }
    }
    app.deliver(&message("B-1", "now", "ok", &[("pwd", "/")])).await;
    until_checkpoint(&app.db, 6).await;
    [m1, m2, m3]
}

#[tokio::test]
async fn archive_writes_whole_months_that_verify_against_the_tree_and_offline() {
    let app = spawn_app().await;
    let [m1, m2, m3] = three_months(&app).await;
    let dir = TempDir::new(&app.db_name);
    let to = dir.path().to_str().unwrap();

    // The current month, or anything after it, is refused.
    let refused = run(&["archive", "--before", &month_arg(next_month(m3)), "--to", to], Some(&app.db_name));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("current month"), "{refused:?}");

    let ran = run(&["archive", "--before", &month_arg(m3), "--to", to], Some(&app.db_name));
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let out = String::from_utf8_lossy(&ran.stdout);
    assert!(out.contains(&format!("archived {} (seq 1..=3)", month_dir(m1))), "{out}");
    assert!(out.contains(&format!("archived {} (seq 4..=5)", month_dir(m2))), "{out}");
    assert!(!dir.path().join(month_dir(m3)).exists(), "the open month is not archived");

    // Two connections (the default: the deliveries on one, the other tables on the other, at
    // the same time) or one: the same files, byte for byte.
    let one = TempDir::new(&format!("{}-one", app.db_name));
    let to_one = one.path().to_str().unwrap();
    let ran = run(&["archive", "--before", &month_arg(m3), "--to", to_one, "--connections", "1"], Some(&app.db_name));
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    for m in [m1, m2] {
        for file in [
            "manifest.json",
            "deliveries.ndjson.zst",
            "action_events.ndjson.zst",
            "messages.ndjson.zst",
            "commands.ndjson.zst",
            "ticket_anomalies.ndjson.zst",
        ] {
            let read = |d: &Path| std::fs::read(d.join(month_dir(m)).join(file)).unwrap();
            assert_eq!(read(dir.path()), read(one.path()), "{} {file}", month_dir(m));
        }
    }
    let three = run(&["archive", "--before", &month_arg(m3), "--to", to_one, "--connections", "3"], Some(&app.db_name));
    assert!(!three.status.success(), "one or two connections");

    // Files any engine reads: one JSON object per line, zstd; the rows as stored.
    let first = dir.path().join(month_dir(m1));
    let deliveries = lines(&first.join("deliveries.ndjson.zst"));
    assert_eq!(deliveries.len(), 3);
    let row: serde_json::Value = serde_json::from_str(&deliveries[0]).unwrap();
    assert_eq!(row["seq"], 1);
    assert_eq!(row["action"], "POST:Ticket/AddTicket");
    let commands = lines(&first.join("commands.ndjson.zst"));
    assert_eq!(commands.len(), 3);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("manifest.json")).unwrap()).unwrap();
    assert_eq!((manifest["first_seq"].as_i64(), manifest["last_seq"].as_i64()), (Some(1), Some(3)));
    assert!(manifest["checkpoint"]["tree_size"].as_u64().unwrap() >= 3);
    assert!(manifest["checkpoint"]["note"].as_str().unwrap().contains("test.ticket-audit/log"));
    // The database keeps everything without --drop.
    assert_eq!(app.count("deliveries").await, 6);

    let verified = run(&["verify", "--archive", to], Some(&app.db_name));
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("OK: 2 archived months"));
    let key = test_verifier().to_string();
    let offline = run(&["verify", "--archive", to, "--key", &key], None);
    assert!(offline.status.success(), "offline: {}", String::from_utf8_lossy(&offline.stderr));
    assert!(String::from_utf8_lossy(&offline.stdout).contains("its signed checkpoint"));

    // A changed row, even with the file's checksum made to match, no longer leads to the root.
    let path = first.join("deliveries.ndjson.zst");
    let original = std::fs::read(&path).unwrap();
    let changed: Vec<String> =
        deliveries.iter().map(|l| l.replace("POST:Ticket/AddTicket", "POST:Ticket/Other")).collect();
    let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
    for l in &changed {
        writeln!(enc, "{l}").unwrap();
    }
    let bytes = enc.finish().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let broken = run(&["verify", "--archive", to, "--key", &key], None);
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("SHA-256"), "{broken:?}");
    let manifest_path = first.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    use sha2::Digest;
    m["files"][0]["sha256"] = hex::encode(sha2::Sha256::digest(&bytes)).into();
    std::fs::write(&manifest_path, serde_json::to_string(&m).unwrap()).unwrap();
    let broken = run(&["verify", "--archive", to, "--key", &key], None);
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("range root"), "{broken:?}");
    // A wrong key is caught offline.
    std::fs::write(&path, &original).unwrap();
    std::fs::write(&manifest_path, text).unwrap();
    let other = ticket_audit::domain::checkpoint::Signer::generate("test.ticket-audit/log").unwrap().verifier();
    let wrong = run(&["verify", "--archive", to, "--key", &other.to_string()], None);
    assert!(!wrong.status.success(), "{wrong:?}");
}

#[tokio::test]
async fn drop_removes_archived_months_and_proofs_keys_and_verify_still_work() {
    let app = spawn_app().await;
    let [m1, m2, m3] = three_months(&app).await;
    let dir = TempDir::new(&app.db_name);
    let to = dir.path().to_str().unwrap();
    // Only the first month.
    let ran = run(&["archive", "--before", &month_arg(m2), "--to", to, "--drop"], Some(&app.db_name));
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    assert!(String::from_utf8_lossy(&ran.stdout).contains(&format!("dropped {}", month_dir(m1))));
    assert_eq!(app.count("deliveries").await, 3);
    assert_eq!(app.count("commands").await, 2);
    let gone: bool = sqlx::query_scalar(&format!("SELECT to_regclass('deliveries_{}') IS NULL", month_dir(m1)))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(gone);

    // verify takes the chain up after the archived month; the archive still verifies.
    let verified = run(&["verify"], Some(&app.db_name));
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let note = dir.path().join("checkpoint.note");
    std::fs::write(&note, until_checkpoint(&app.db, 6).await).unwrap();
    let key = test_verifier().to_string();
    let tree = run(&["verify", "--checkpoint", note.to_str().unwrap(), "--key", &key], Some(&app.db_name));
    assert!(tree.status.success(), "the stored tree checks from the first month left: {tree:?}");
    std::fs::remove_file(&note).unwrap();
    let archive = run(&["verify", "--archive", to], Some(&app.db_name));
    assert!(archive.status.success(), "{}", String::from_utf8_lossy(&archive.stderr));

    // Proofs for archived deliveries still work: the tree stays.
    let proof = app.get("/api/v1/ledger/proof/inclusion?seq=2&tree_size=6", None).await;
    assert_eq!(proof.status(), 200);
    // Evidence for an archived command says where its delivery lives.
    let evidence = app.get("/api/v1/commands/2.3/evidence", None).await;
    assert_eq!(evidence.status(), 410);
    let problem: serde_json::Value = evidence.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("line 2 of {}/deliveries.ndjson.zst", month_dir(m1))), "{detail}");
    // An archived delivery's key is still taken.
    let again = app.post(add_ticket("A-1", "t1", "aws")).await;
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!((again["delivery_id"].as_i64(), again["duplicate"].as_bool()), (Some(1), Some(true)));
    // Reads of what is left answer; the next month archives and drops after it.
    let timeline = app.get_json("/api/v1/tickets/A-1/timeline").await;
    let seqs: Vec<i64> =
        timeline["items"].as_array().unwrap().iter().map(|e| e["delivery_id"].as_i64().unwrap()).collect();
    assert!(!seqs.is_empty() && seqs.iter().all(|&s| s == 4), "only the month left: {seqs:?}");
    let ran = run(&["archive", "--before", &month_arg(m3), "--to", to, "--drop"], Some(&app.db_name));
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(app.count("deliveries").await, 1);
    let verified = run(&["verify"], Some(&app.db_name));
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
}
