//! Several `serve` processes on one database, as behind a load balancer: one record whichever
//! instance a delivery reaches, a delivery sent to several at once stored once, and checkpoints
//! signed with the one key by each in turn, every one the one tree's root at its size.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use ticket_audit::domain::checkpoint::Checkpoint;

use crate::helpers::*;

const INSTANCES: usize = 3;
/// Distinct webhook-ids.
const DELIVERIES: usize = 300;
/// Of which every `REPEAT_EVERY`th is sent to every instance at once.
const REPEAT_EVERY: usize = 5;
const SENDERS: usize = 24;

/// What one instance answered for one webhook-id.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    seq: i64,
    instance: usize,
}

/// Sends `body` under `id` to `base` until it is acknowledged (a 503 is retried, as a sender would).
async fn send(client: &reqwest::Client, base: &str, id: &str, body: &str) -> (u16, i64) {
    let started = Instant::now();
    loop {
        let res = client.post(format!("{base}/webhooks")).header("webhook-id", id).body(body.to_owned()).send().await;
        if let Ok(res) = res {
            let status = res.status().as_u16();
            if status == 200 || status == 202 {
                let v: serde_json::Value = res.json().await.unwrap();
                assert_eq!(v["duplicate"], status == 200, "{id}: {v}");
                return (status, v["seq"].as_i64().unwrap());
            }
            assert_eq!(status, 503, "{id}: only an unavailable service may refuse a delivery");
        }
        // A bound against hanging for ever, not a timing: a loaded machine may be slow.
        assert!(started.elapsed() < Duration::from_secs(120), "{id} was never acknowledged");
        tokio::task::yield_now().await;
    }
}

fn body_of(i: usize) -> String {
    let ticket = format!("MULTI-{}", i % 17);
    message(&ticket, &format!("question {i}"), &format!("answer {i}"), &[(&format!("run --step {i}"), "ok")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_database_keep_one_gapless_chain_one_tree_and_store_each_delivery_once() {
    let started = Instant::now();
    let (options, name) = fresh_database().await;
    let url = database_url(&name);
    let direct = sqlx::PgPool::connect_with(options).await.unwrap();
    // The run's key for all (start_serving gives it), checkpoints as often as they come.
    let env = [("DATABASE_URL", url.as_str()), ("CHECKPOINT_INTERVAL_MS", "10"), ("RUST_LOG", "info")];
    let instances: Vec<Binary> = (0..INSTANCES).map(|_| start_binary(&env)).collect();
    let bases: Vec<String> = instances.iter().map(|b| b.base.clone()).collect();
    let client = reqwest::Client::new();

    let ids: Vec<usize> = (0..DELIVERIES).collect();
    let senders: Vec<_> = ids
        .chunks(DELIVERIES.div_ceil(SENDERS))
        .map(|chunk| {
            let (client, bases, chunk) = (client.clone(), bases.clone(), chunk.to_vec());
            tokio::spawn(async move {
                let mut answers: Vec<(String, Answer)> = Vec::new();
                for i in chunk {
                    let (id, body) = (format!("multi-{i}"), body_of(i));
                    let targets: Vec<usize> =
                        if i % REPEAT_EVERY == 0 { (0..INSTANCES).collect() } else { vec![i % INSTANCES] };
                    // A repeated id goes to every instance at the same moment: the race to store it.
                    let sent = futures_util::future::join_all(targets.iter().map(|&k| {
                        let (client, base, id, body) = (&client, &bases[k], &id, &body);
                        async move { (k, send(client, base, id, body).await) }
                    }))
                    .await;
                    for (instance, (status, seq)) in sent {
                        answers.push((id.clone(), Answer { status, seq, instance }));
                    }
                }
                answers
            })
        })
        .collect();
    let mut answers: BTreeMap<String, Vec<Answer>> = BTreeMap::new();
    for s in senders {
        for (id, a) in s.await.unwrap() {
            answers.entry(id).or_default().push(a);
        }
    }
    let sent: usize = answers.values().map(Vec::len).sum();
    let mut served = [0usize; INSTANCES];
    for a in answers.values().flatten() {
        served[a.instance] += 1;
    }
    assert!(served.iter().all(|&n| n > 0), "every instance served: {served:?}");

    // Every answer for one id names one seq; exactly one of them stored it (202), the rest are
    // duplicates (200) answered with the original's seq.
    for (id, list) in &answers {
        let seqs: HashSet<i64> = list.iter().map(|a| a.seq).collect();
        assert_eq!(seqs.len(), 1, "{id}: one seq in every answer: {list:?}");
        let new = list.iter().filter(|a| a.status == 202).count();
        assert_eq!(new, 1, "{id}: stored by exactly one instance: {list:?}");
    }
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT dedup_key, seq FROM deliveries ORDER BY seq").fetch_all(&direct).await.unwrap();
    assert_eq!(stored.len(), DELIVERIES, "each delivery stored exactly once");
    for (key, seq) in &stored {
        assert_eq!(answers[key][0].seq, *seq, "{key}: stored under the seq it was acknowledged with");
    }
    let seqs: Vec<i64> = stored.iter().map(|s| s.1).collect();
    assert_eq!(seqs, (1..=DELIVERIES as i64).collect::<Vec<_>>(), "gapless");
    let commands: i64 = sqlx::query_scalar("SELECT count(*) FROM commands").fetch_one(&direct).await.unwrap();
    assert_eq!(commands, DELIVERIES as i64, "each delivery's command projected once");

    // One chain: recomputed from the fields, link by link, it is the stored one.
    let rows = chain_rows(&direct).await;
    let recomputed = recompute_chain(&rows);
    for (row, hash) in rows.iter().zip(&recomputed) {
        assert_eq!(&row.6[..], &hash[..], "the chain at seq {}", row.0);
    }
    let head: (i64, Vec<u8>) = sqlx::query_as("SELECT seq, hash FROM ledger_head").fetch_one(&direct).await.unwrap();
    assert_eq!(head.0, DELIVERIES as i64);
    assert_eq!(&head.1[..], &recomputed.last().unwrap()[..], "the head is the chain's end");

    // One tree, signed by the instances in turn: every checkpoint any of them signed is the
    // tree's root at its size, so each extends every smaller one.
    until_checkpoint(&direct, DELIVERIES as i64).await;
    // The writers took turns with the lease: no batch was written from a head another instance
    // then moved, unless a wait for the lease timed out (a machine too loaded to hand it over
    // within a second).
    let (mut retries, mut timeouts, mut taken) = (0.0, 0.0, 0.0);
    for b in &instances {
        let m = client.get(format!("{}/metrics", b.base)).send().await.unwrap().text().await.unwrap();
        retries += sample(&m, "ticket_audit_write_retries_total");
        timeouts += sample(&m, "ticket_audit_writer_lease_timeouts_total");
        taken += sample(&m, "ticket_audit_writer_lease_taken_total");
    }
    assert!(taken >= INSTANCES as f64, "every instance took the writers' lease: {taken}");
    assert!(retries == 0.0 || timeouts > 0.0, "{retries} batches lost a race for the head with the lease");
    for mut b in instances {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(b.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let status = b.child.wait().unwrap();
        assert!(status.success(), "an instance stops cleanly: {status}");
        let _ = b.reader.join();
    }
    let key = test_verifier();
    let notes: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT id, tree_size, note FROM checkpoints ORDER BY id").fetch_all(&direct).await.unwrap();
    let mut conn = direct.acquire().await.unwrap();
    let mut out_of_order = 0;
    let mut largest = 0;
    for (id, size, note) in &notes {
        let cp = Checkpoint::open(note, &key).unwrap_or_else(|e| panic!("checkpoint {id}: {e}"));
        assert_eq!(cp.size as i64, *size);
        let root = ticket_audit::store::tree::root(&mut conn, cp.size).await.unwrap();
        assert_eq!(cp.root, root, "checkpoint {id} (size {size}) signs the tree's root at that size");
        if *size < largest {
            out_of_order += 1;
        }
        largest = largest.max(*size);
    }
    drop(conn);
    let sizes: HashSet<i64> = notes.iter().map(|n| n.1).collect();
    // Signers on several instances take turns: the sizes grow with the ids, none twice.
    assert_eq!(out_of_order, 0, "no checkpoint is smaller than one stored before it");
    assert_eq!(sizes.len(), notes.len(), "no size is signed twice");
    // The latest checkpoint served is the largest: `GET /ledger/checkpoint` never goes back.
    assert_eq!(notes.last().unwrap().1, DELIVERIES as i64, "the newest checkpoint covers the whole record");
    let latest = notes.last().unwrap().2.clone();
    let file = std::env::temp_dir().join(format!("ticket-audit-instances-{}.checkpoint", std::process::id()));
    std::fs::write(&file, latest).unwrap();
    let verify = run_bounded(
        cli(
            &["verify", "--checkpoint", file.to_str().unwrap()],
            &[("DATABASE_URL", &url), ("CHECKPOINT_KEY_FILE", test_key_file())],
        ),
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_file(&file);
    assert!(verify.status.success(), "ticket-audit verify passes:\n{}\n{}", verify.stdout, verify.stderr);
    eprintln!(
        "{INSTANCES} instances: {sent} requests for {DELIVERIES} deliveries (answers per instance {served:?}); \
         {} checkpoints of {} distinct sizes, {out_of_order} smaller than one signed before; \
         the lease taken {taken} times, {retries} retries, {timeouts} lease timeouts; {:?}",
        notes.len(),
        sizes.len(),
        started.elapsed()
    );
}

/// The lease as PostgreSQL holds it in `db`: (granted, waiting) sessions.
async fn lease_sessions(db: &sqlx::PgPool) -> (i64, i64) {
    let key = ticket_audit::store::lease::LEASE_LOCK;
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) FROM pg_locks
         WHERE locktype = 'advisory' AND objsubid = 1
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND classid = ($1 >> 32)::oid AND objid = ($1 & 4294967295)::oid",
    )
    .bind(key)
    .fetch_one(db)
    .await
    .unwrap()
}

/// A writer that holds the lease and stopped (its process frozen, its connection alive) must not
/// stop the others: each waits at most `lease::WAIT_MAX` and writes without it; once the holder
/// lets go, the lease is taken again.
#[tokio::test]
async fn a_lease_holder_that_stopped_answering_does_not_stop_another_instance() {
    let app = spawn_app().await;
    let key = ticket_audit::store::lease::LEASE_LOCK;
    let mut frozen = app.db.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(key).execute(&mut *frozen).await.unwrap();
    let before = app.get("/metrics", None).await.text().await.unwrap();
    let started = Instant::now();
    let first = app.deliver(&message("LEASE-1", "q", "a", &[("kubectl get pods", "ok")])).await;
    let waited = started.elapsed();
    assert!(waited >= ticket_audit::store::lease::WAIT_MAX, "it waited for the lease first: {waited:?}");
    let after = app.get("/metrics", None).await.text().await.unwrap();
    let timeouts = |m: &str| sample(m, "ticket_audit_writer_lease_timeouts_total");
    assert!(timeouts(&after) > timeouts(&before), "the wait is counted");
    assert_eq!(lease_sessions(&app.db).await, (1, 0), "only the frozen holder has it; nobody waits now");

    sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *frozen).await.unwrap();
    drop(frozen);
    // After its back-off the writer takes the lease again and keeps it.
    let mut n = 1;
    while lease_sessions(&app.db).await.0 == 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "the lease was never taken again");
        n += 1;
        app.deliver(&message("LEASE-1", &format!("q{n}"), "a", &[])).await;
    }
    let head: i64 = sqlx::query_scalar("SELECT seq FROM ledger_head").fetch_one(&app.db).await.unwrap();
    assert_eq!(head, first + n - 1, "every delivery stored, in order");
}

/// `ticket_audit_deliveries_forwarded_total{outcome}` of the instance at `base`.
async fn forwarded(client: &reqwest::Client, base: &str, outcome: &str) -> f64 {
    let m = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    sample(&m, &format!("ticket_audit_deliveries_forwarded_total{{outcome=\"{outcome}\"}}"))
}

/// `ticket_audit_deliveries_total{outcome="stored"}` of the instance at `base`.
async fn stored_here(client: &reqwest::Client, base: &str) -> f64 {
    let m = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    m.lines()
        .filter(|l| l.starts_with("ticket_audit_deliveries_total{") && l.contains("outcome=\"stored\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// With `ADVERTISE_URL`, an instance that does not write passes deliveries on to the one that
/// holds the writers' lease, which stores them and answers; passed on once at most; and when
/// that instance is gone, the other writes them itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_passes_deliveries_on_to_the_one_that_writes_and_writes_them_itself_when_it_is_gone() {
    let (options, name) = fresh_database().await;
    let url = database_url(&name);
    let direct = sqlx::PgPool::connect_with(options).await.unwrap();
    let env = [("DATABASE_URL", url.as_str()), ("ADVERTISE_URL", "auto"), ("RUST_LOG", "info")];
    let mut instances = vec![start_binary(&env), start_binary(&env)];
    let client = reqwest::Client::new();
    let started = Instant::now();

    // Whichever instance holds the lease keeps it while nobody else waits for it; the other sees
    // that within a look or two and passes its deliveries on from then.
    let mut i = 0;
    let passing_index = loop {
        let mut passed = [0.0; 2];
        for (k, b) in instances.iter().enumerate() {
            passed[k] = forwarded(&client, &b.base, "answered").await;
        }
        if let Some(k) = passed.iter().position(|&n| n > 0.0) {
            break k;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no instance ever passed a delivery on");
        let (status, _) = send(&client, &instances[i % 2].base, &format!("fwd-{i}"), &body_of(i)).await;
        assert_eq!(status, 202);
        i += 1;
    };
    let passing = instances.remove(passing_index);
    let mut writing = instances.remove(0);
    // Then many at once, to both, and a repeat of each to the other instance.
    let before = stored_here(&client, &passing.base).await;
    let first = i;
    let sent = futures_util::future::join_all((first..first + 60).map(|i| {
        let (client, bases) = (&client, [&writing.base, &passing.base]);
        async move {
            let id = format!("fwd-{i}");
            let a = send(client, bases[i % 2], &id, &body_of(i)).await;
            let b = send(client, bases[(i + 1) % 2], &id, &body_of(i)).await;
            (a, b)
        }
    }))
    .await;
    for (i, (a, b)) in (first..).zip(&sent) {
        assert_eq!((a.0, b.0), (202, 200), "fwd-{i}: stored, then a duplicate");
        assert_eq!(a.1, b.1, "fwd-{i}: one seq");
    }
    let passed = forwarded(&client, &passing.base, "answered").await;
    assert!(passed >= 60.0, "what reached the second instance went on: {passed}");
    assert_eq!(stored_here(&client, &passing.base).await, before, "and none was written there");

    // A delivery passed on once already is written where it arrives.
    let res = client
        .post(format!("{}/webhooks", passing.base))
        .header("webhook-id", "fwd-marked")
        .header("ticket-audit-forwarded-by", "http://elsewhere:1")
        .body(body_of(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(stored_here(&client, &passing.base).await, before + 1.0, "written by the instance it reached");

    // The writing instance dies: the other stores what it receives itself.
    writing.child.kill().unwrap();
    writing.child.wait().unwrap();
    let (status, seq) = send(&client, &passing.base, "fwd-after", &body_of(2000)).await;
    assert_eq!(status, 202, "stored by the instance left");
    let head: i64 = sqlx::query_scalar("SELECT seq FROM ledger_head").fetch_one(&direct).await.unwrap();
    assert_eq!(seq, head);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&direct).await.unwrap();
    assert_eq!(total, head, "gapless: {total} deliveries, head {head}");
    assert_eq!(total as usize, first + 60 + 2, "each stored once");
    let rows = chain_rows(&direct).await;
    let recomputed = recompute_chain(&rows);
    assert!(rows.iter().zip(&recomputed).all(|(row, hash)| row.6[..] == hash[..]), "one chain");
    let mut passing = passing;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(passing.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    assert!(passing.child.wait().unwrap().success());
}
