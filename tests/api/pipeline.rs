//! The pipelined write path (src/store/writer.rs): a batch goes in while the one before it
//! commits, and moves the head by compare-and-swap. Each promise under it: answers only after
//! the delivery's own commit, a predecessor that fails at commit, the same key in batches in
//! flight, and two writers on one database.

use std::collections::{HashMap, HashSet};

use sqlx::PgPool;
use ticket_audit::store::{NewDelivery, Writer};

use crate::helpers::*;

fn delivery(ticket: &str, id: &str) -> NewDelivery {
    let mut headers = serde_json::Map::new();
    headers.insert("webhook-id".into(), id.into());
    ticket_audit::ingest::prepare(
        message(ticket, id, "a", &[(&format!("echo {id}"), "ok")]).into_bytes(),
        headers,
        time::OffsetDateTime::now_utc(),
        100,
    )
    .unwrap()
}

/// Returns once `n` sessions of this database wait for a lock.
async fn until_sessions_wait(db: &PgPool, n: i64) {
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE NOT l.granted AND a.datname = current_database()",
        )
        .fetch_one(db)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// What every write must leave: seq 1..=n without a gap, each stored chain hash the one an
/// auditor recomputes, the tree's stored hashes those of the leaves, and recorded times that
/// never go backwards along seq.
async fn assert_one_record(db: &PgPool, n: i64) {
    let rows = chain_rows(db).await;
    let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "seq is gapless");
    let stored: Vec<Vec<u8>> = rows.iter().map(|r| r.6.clone()).collect();
    let recomputed: Vec<Vec<u8>> = recompute_chain(&rows).iter().map(|h| h.to_vec()).collect();
    assert_eq!(stored, recomputed, "one chain");
    let head: (i64, Vec<u8>) = sqlx::query_as("SELECT seq, hash FROM ledger_head").fetch_one(db).await.unwrap();
    assert_eq!(head, (n, stored.last().cloned().unwrap_or(vec![0; 32])));
    let mut conn = db.acquire().await.unwrap();
    assert!(ticket_audit::store::tree::check_stored_hashes(&mut conn).await.unwrap().is_none(), "one tree");
    assert_eq!(ticket_audit::store::tree::tree_size(&mut conn).await.unwrap() as i64, n);
    let backwards: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT recorded_at < lag(recorded_at) OVER (ORDER BY seq) AS back FROM deliveries) d \
         WHERE back",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(backwards, 0, "recorded times never go backwards along seq");
}

/// A batch whose COMMIT fails while the next batch is already in, waiting on the head: the first
/// batch's sender gets a 503 and nothing of it is stored; the next batch's swap fails, it is
/// written again from the head under lock, and its senders get their 202s with seq from 1.
/// The commit is held (a deferred trigger waits for an advisory lock the test holds), so both
/// batches are where this test says they are when the first fails: no timing involved.
#[tokio::test]
async fn a_predecessor_that_fails_at_commit_fails_only_its_own_deliveries() {
    let app = spawn_app().await;
    sqlx::raw_sql(
        "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           PERFORM pg_advisory_xact_lock(4242); RAISE EXCEPTION 'refused at commit'; END $$; \
         CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON deliveries DEFERRABLE INITIALLY DEFERRED \
           FOR EACH ROW WHEN (NEW.dedup_key LIKE 'fail-at-commit%') EXECUTE FUNCTION fail_at_commit();",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let mut hold = app.db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(4242)").execute(&mut *hold).await.unwrap();

    let failing_id = [("webhook-id", "fail-at-commit-1".to_owned())];
    let failing = app.post_with(add_ticket("F", "t", "a"), &failing_id);
    let app = &app;
    let next = async move {
        // Once the first batch's statement is done and its commit waits for the test's lock.
        until_sessions_wait(&app.db, 1).await;
        let sends = (0..5).map(|i| async move {
            let id = [("webhook-id", format!("next-{i}"))];
            app.post_with(message("N", &format!("q{i}"), "a", &[]), &id).await
        });
        futures::future::join_all(sends).await.into_iter().map(|r| r.status().as_u16()).collect::<Vec<_>>()
    };
    let release = async {
        // Once the next batch is in and its swap waits for the first batch's commit.
        until_sessions_wait(&app.db, 2).await;
        hold.rollback().await.unwrap();
    };
    let (failing, next, ()) = tokio::join!(failing, next, release);
    assert_eq!(failing.status(), 503, "the failed batch's sender is told");
    assert_eq!(next, [202; 5], "the batch behind it is stored");
    assert_eq!(app.count("deliveries").await, 5);
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE dedup_key LIKE 'fail-at-commit%'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(failed, 0);
    let tickets: Vec<String> = sqlx::query_scalar("SELECT name FROM tickets").fetch_all(&app.db).await.unwrap();
    assert_eq!(tickets, ["N"], "nothing of the failed batch's projection either");
    assert_one_record(&app.db, 5).await;
}

/// A sender that retries while its first attempt's batch is still committing is answered from
/// that batch ("duplicate of seq 1"), but that answer holds only if the batch commits. Here it
/// fails at commit: the retry's batch, all duplicates, must notice (its head check waits for the
/// commit and finds the head unmoved) and store the delivery itself, with 202, not answer 200
/// for a delivery that is nowhere. The first commit is held as in the test above; only the
/// first commit fails (a sequence, which no rollback resets, counts the attempts).
#[tokio::test]
async fn a_retry_answered_from_a_batch_that_then_fails_is_stored_by_its_own() {
    let app = spawn_app().await;
    sqlx::raw_sql(
        "CREATE SEQUENCE commits_seen; GRANT USAGE, UPDATE ON SEQUENCE commits_seen TO PUBLIC; \
         CREATE FUNCTION fail_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF nextval('commits_seen') = 1 THEN \
             PERFORM pg_advisory_xact_lock(4243); RAISE EXCEPTION 'refused at commit'; \
           END IF; RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER fail_first_commit AFTER INSERT ON deliveries DEFERRABLE INITIALLY DEFERRED \
           FOR EACH ROW EXECUTE FUNCTION fail_first_commit();",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let mut hold = app.db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(4243)").execute(&mut *hold).await.unwrap();

    let id = [("webhook-id", "retried-1".to_owned())];
    let first = app.post_with(add_ticket("R", "t", "a"), &id);
    let app = &app;
    let retry_and_release = async {
        // Once the first batch's commit waits for the test's lock.
        until_sessions_wait(&app.db, 1).await;
        let retry = app.post_with(add_ticket("R", "t", "a"), &id);
        tokio::pin!(retry);
        tokio::select! {
            // Answered while the first batch has not committed: wrong, as the asserts say.
            early = &mut retry => {
                hold.rollback().await.unwrap();
                early
            }
            // The retry's batch waits on the head for that commit: let it fail.
            () = until_sessions_wait(&app.db, 2) => {
                hold.rollback().await.unwrap();
                retry.await
            }
        }
    };
    let (first, retry) = tokio::join!(first, retry_and_release);
    assert_eq!(first.status(), 503, "the failed batch's sender is told");
    assert_eq!(retry.status(), 202, "the retry is stored by its own batch, not answered as a duplicate");
    let answer: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(answer["duplicate"], false);
    assert_eq!(answer["delivery_id"], 1);
    let stored: Vec<String> = sqlx::query_scalar("SELECT dedup_key FROM deliveries").fetch_all(&app.db).await.unwrap();
    assert_eq!(stored, ["retried-1"]);
    assert_one_record(&app.db, 1).await;
}

/// The same key sent again and again while batches are in flight: stored once, and every answer
/// names the same seq, whichever batch it landed in.
#[tokio::test]
async fn the_same_key_in_batches_in_flight_is_stored_once() {
    let app = spawn_app().await;
    let mut seen: HashMap<String, HashSet<i64>> = HashMap::new();
    for wave in 0..6 {
        let sends = (0..40).map(|i| {
            // Ten keys, each sent by four senders at once, in every wave.
            let id = format!("same-{}", i % 10);
            let body = message(&format!("S-{}", i % 10), &id, "a", &[("echo x", "x")]);
            let app = &app;
            async move {
                let res = app.post_with(body, &[("webhook-id", id.clone())]).await;
                assert!(res.status().is_success(), "wave {wave}: {}", res.status());
                let v: serde_json::Value = res.json().await.unwrap();
                (id, v["delivery_id"].as_i64().unwrap())
            }
        });
        for (id, seq) in futures::future::join_all(sends).await {
            seen.entry(id).or_default().insert(seq);
        }
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.values().all(|s| s.len() == 1), "one seq per key: {seen:?}");
    assert_eq!(app.count("deliveries").await, 10);
    assert_eq!(app.count("commands").await, 10);
    assert_one_record(&app.db, 10).await;
}

/// Two writers (as two service instances would have) on one database, sending at once, half of
/// their keys the same: one chain, one tree, gapless seq, every key stored once, and both
/// writers answer a shared key with the same seq. They contend; they do not break anything.
#[tokio::test]
async fn two_writers_on_one_database_keep_one_record() {
    let app = spawn_app().await;
    let options = app.db.connect_options().as_ref().clone();
    let start = || {
        let pool = ticket_audit::store::write_pool(options.clone(), 3, std::time::Duration::from_secs(10), None);
        Writer::spawn(pool, 4096, 64).unwrap()
    };
    let ((a, a_task), (b, b_task)) = (start(), start());
    let send = |w: &Writer, who: &str| {
        let jobs: Vec<_> = (0..300)
            .map(|i| {
                let id = if i % 2 == 0 { format!("shared-{i}") } else { format!("{who}-{i}") };
                let w = w.clone();
                let d = delivery(&format!("T-{}", i % 37), &id);
                async move { (id, w.submit(d).await.unwrap()) }
            })
            .collect();
        futures::future::join_all(jobs)
    };
    let (from_a, from_b) = tokio::join!(send(&a, "a"), send(&b, "b"));
    drop((a, b));
    a_task.await.unwrap();
    b_task.await.unwrap();

    let mut by_key: HashMap<String, HashSet<i64>> = HashMap::new();
    for (id, outcome) in from_a.into_iter().chain(from_b) {
        by_key.entry(id).or_default().insert(outcome.seq);
    }
    assert_eq!(by_key.len(), 450, "150 shared keys, 150 of each writer's own");
    assert!(by_key.values().all(|s| s.len() == 1), "a shared key has one seq, whoever answered");
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT dedup_key, seq FROM deliveries").fetch_all(&app.db).await.unwrap();
    assert_eq!(stored.len(), 450, "every key stored once");
    for (key, seq) in stored {
        assert_eq!(by_key[&key], HashSet::from([seq]), "{key}");
    }
    assert_one_record(&app.db, 450).await;
    // The projection agrees with the deliveries: one command each, tickets counting them.
    let (commands, counted): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM commands), (SELECT sum(command_count)::bigint FROM tickets)")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((commands, counted), (450, 450));
}
