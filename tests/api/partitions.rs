//! The partitioned record (V9): the month turn, idempotency across partitions, append-only and
//! roles on partitions made later, and the migration of an existing database.

use futures_util::TryStreamExt;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use ticket_audit::store::partitions::{self, month_of, next_month, Partition};

use crate::helpers::*;

/// The partition a row of `table` with this seq lives in.
async fn partition_of(db: &PgPool, table: &str, seq: i64) -> String {
    sqlx::query_scalar(&format!("SELECT tableoid::regclass::text FROM {table} WHERE seq = $1 LIMIT 1"))
        .bind(seq)
        .fetch_one(db)
        .await
        .unwrap()
}

fn month_name(month: time::Date) -> String {
    format!("{:04}_{:02}", month.year(), u8::from(month.month()))
}

#[tokio::test]
async fn the_month_turn_closes_partitions_and_keys_stay_unique_across_them() {
    let app = spawn_app().await;
    let now = time::OffsetDateTime::now_utc();
    let this = month_of(now);
    let next = next_month(this);
    let key = |id: &str| vec![("webhook-id", id.to_owned())];
    let first = app.post_with(message("T-1", "u", "a", &[("ls", "ok")]), &key("k-1")).await;
    assert_eq!(first.status(), 202);
    assert_eq!(partition_of(&app.db, "deliveries", 1).await, format!("deliveries_{}", month_name(this)));

    // A batch in the same month turns nothing; the first of the next month does, at head + 1.
    assert_eq!(turn_as_writer(&app.db, Some(now), now).await, None);
    let in_next = time::PrimitiveDateTime::new(next, time::Time::MIDNIGHT).assume_utc();
    assert_eq!(turn_as_writer(&app.db, Some(now), in_next).await, Some(2));
    assert_eq!(turn_as_writer(&app.db, Some(in_next), in_next).await, None, "once");
    assert_eq!(turn_as_writer(&app.db, Some(now), in_next).await, None, "another process saw it turned");

    let mut conn = app.db.acquire().await.unwrap();
    for table in partitions::TABLES {
        let parts = partitions::list(&mut conn, table).await.unwrap();
        assert_eq!(
            parts,
            [
                Partition {
                    table: table.into(),
                    name: format!("{table}_{}", month_name(this)),
                    from: Some(1),
                    to: Some(2)
                },
                Partition {
                    table: table.into(),
                    name: format!("{table}_{}", month_name(next)),
                    from: Some(2),
                    to: None
                },
            ],
            "{table}"
        );
    }
    drop(conn);

    // The same key after the turn is the same delivery; a new key goes to the new month.
    let again = app.post_with(message("T-1", "u", "a", &[("ls", "ok")]), &key("k-1")).await;
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!((again["delivery_id"].as_i64(), again["duplicate"].as_bool()), (Some(1), Some(true)));
    let second = app.post_with(message("T-1", "u2", "a2", &[("pwd", "/")]), &key("k-2")).await;
    assert_eq!(second.status(), 202);
    for table in ["deliveries", "action_events", "messages", "commands"] {
        assert_eq!(partition_of(&app.db, table, 2).await, format!("{table}_{}", month_name(next)), "{table}");
    }
    // The same key in another scope is another delivery.
    let other_scope = app.post_with("{}", &[("idempotency-key", "k-1".to_owned())]).await;
    let other_scope: serde_json::Value = other_scope.json().await.unwrap();
    assert_eq!((other_scope["delivery_id"].as_i64(), other_scope["duplicate"].as_bool()), (Some(3), Some(false)));
    assert_eq!(app.count("delivery_keys").await, 3);
    assert_eq!(app.count("deliveries").await, 3);

    // Reads see both months: the ticket's timeline has both deliveries.
    let timeline = app.get_json("/api/v1/tickets/T-1/timeline").await;
    let seqs: Vec<i64> =
        timeline["items"].as_array().unwrap().iter().filter_map(|e| e["delivery_id"].as_i64()).collect();
    assert!(seqs.contains(&1) && seqs.contains(&2), "{timeline}");
}

#[tokio::test]
async fn append_only_and_roles_hold_on_partitions_the_turn_makes() {
    let app = spawn_app().await;
    app.deliver(&message("T-1", "u", "a", &[("ls", "ok")])).await;
    let now = time::OffsetDateTime::now_utc();
    let next = next_month(month_of(now));
    turn_as_writer(&app.db, Some(now), time::PrimitiveDateTime::new(next, time::Time::MIDNIGHT).assume_utc())
        .await
        .unwrap();
    app.deliver(&message("T-1", "u", "a", &[("rm -rf /", "denied")])).await;
    let (new_deliveries, new_commands) =
        (format!("deliveries_{}", month_name(next)), format!("commands_{}", month_name(next)));

    // A connection of its own: it changes roles.
    let mut owner = raw_connection(&app.db.connect_options()).await;
    let refused = |sql: String| {
        let db = app.db.clone();
        async move {
            let err = sqlx::query(&sql).execute(&db).await.expect_err(&sql);
            err.as_database_error().expect("a database error").message().to_owned()
        }
    };
    // The owner itself cannot change the record, on the new partitions or through the parent.
    for sql in [
        format!("UPDATE {new_deliveries} SET action = 'x'"),
        format!("DELETE FROM {new_commands}"),
        format!("TRUNCATE {new_deliveries}"),
        format!("TRUNCATE {new_commands}"),
        "DELETE FROM deliveries WHERE seq = 2".to_owned(),
        "UPDATE commands SET result = 'ok' WHERE seq = 2".to_owned(),
    ] {
        let message = refused(sql.clone()).await;
        assert!(message.contains("is append-only"), "{sql}: {message}");
    }
    // The writer may add to the record, not read or change a partition directly.
    sqlx::query("SET ROLE ticket_audit_writer").execute(&mut owner).await.unwrap();
    let direct = sqlx::query(&format!("DELETE FROM {new_deliveries}")).execute(&mut owner).await.unwrap_err();
    assert!(direct.to_string().contains("permission denied"), "{direct}");
    // Readers read the new partitions and the views over them.
    sqlx::query("RESET ROLE").execute(&mut owner).await.unwrap();
    sqlx::query("SET ROLE ticket_audit_reporting").execute(&mut owner).await.unwrap();
    let n: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM {new_commands}")).fetch_one(&mut owner).await.unwrap();
    assert_eq!(n, 1);
    let risky: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT delivery_id, risk FROM reporting.commands ORDER BY delivery_id")
            .fetch_all(&mut owner)
            .await
            .unwrap();
    assert_eq!(risky, [(1, None), (2, Some("delete".into()))]);
    let executed: i64 = sqlx::query_scalar("SELECT commands_executed FROM reporting.tickets WHERE ticket = 'T-1'")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(executed, 2);
    let insert = sqlx::query(&format!(
        "INSERT INTO {new_commands} (seq, position, command, executed, recorded_at) VALUES (9, 1, 'x', true, now())"
    ))
    .execute(&mut owner)
    .await
    .unwrap_err();
    assert!(insert.to_string().contains("permission denied"), "{insert}");
    drop(owner);

    // reproject rebuilds the projection across partitions (it lifts the TRUNCATE guard on each).
    let ran = cli(&["reproject"], &[("DATABASE_URL", &database_url(&app.db_name))]).output().unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(app.count("commands").await, 2);
    assert_eq!(partition_of(&app.db, "commands", 2).await, new_commands);
    let still = refused(format!("TRUNCATE {new_commands}")).await;
    assert!(still.contains("is append-only"), "the guard is back: {still}");
}

/// Everything a reader can ask of a database holding `seqs`, as (path, status, body).
async fn answers(app: &TestApp, seqs: i64) -> Vec<(String, u16, Vec<u8>)> {
    let mut paths: Vec<String> = [
        "/api/v1/tickets",
        "/api/v1/tickets?tenant_id=t1",
        "/api/v1/commands",
        "/api/v1/commands?order=asc&executed=true",
        "/api/v1/deliveries",
        "/api/v1/anomalies",
        "/api/v1/ledger/head",
        "/api/v1/ledger/checkpoint",
        "/api/v1/ledger/verify",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for name in ["A-1", "A-2", "TICKET-12345"] {
        for tail in ["", "/timeline", "/commands"] {
            paths.push(format!("/api/v1/tickets/{name}{tail}"));
        }
    }
    for seq in 1..=seqs {
        paths.push(format!("/api/v1/deliveries/{seq}"));
        paths.push(format!("/api/v1/deliveries/{seq}/raw"));
        paths.push(format!("/api/v1/ledger/proof/inclusion?seq={seq}&tree_size={seqs}"));
        paths.push(format!("/api/v1/ledger/proof/consistency?first={seq}&second={seqs}"));
    }
    let commands = app.get_json("/api/v1/commands?limit=100").await;
    for c in commands["items"].as_array().unwrap() {
        paths.push(format!("/api/v1/commands/{}/evidence", c["id"].as_str().unwrap()));
    }
    let mut out = Vec::new();
    for path in paths {
        let res = app.get(&path, None).await;
        let status = res.status().as_u16();
        out.push((path, status, res.bytes().await.unwrap().to_vec()));
    }
    out
}

fn verify(db_name: &str) -> String {
    let ran = cli(&["verify", "--json"], &[("DATABASE_URL", &database_url(db_name))]).output().unwrap();
    assert!(ran.status.success(), "verify {db_name}: {}", String::from_utf8_lossy(&ran.stderr));
    String::from_utf8(ran.stdout).unwrap()
}

/// The tables a V7 database holds, and the rows to copy into one: the record as the service
/// wrote it, through the same columns.
const COPIED: [&str; 9] = [
    "deliveries",
    "action_events",
    "tickets",
    "messages",
    "commands",
    "ticket_anomalies",
    "tree_hashes",
    "checkpoints",
    "reporting.command_class",
];

async fn copy_table(from: &mut PgConnection, to: &mut PgConnection, table: &str) {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(column_name) FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(&mut *to)
    .await
    .unwrap();
    let columns = columns.join(", ");
    let data: Vec<u8> = from
        .copy_out_raw(&format!("COPY (SELECT {columns} FROM {table}) TO STDOUT (FORMAT binary)"))
        .await
        .unwrap()
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .unwrap();
    let mut sink = to.copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN (FORMAT binary)")).await.unwrap();
    sink.send(data).await.unwrap();
    sink.finish().await.unwrap();
}

#[tokio::test]
async fn migrating_a_v7_database_keeps_every_answer_and_verify() {
    // The record as the service writes it: tickets, messages, commands, a tenant conflict.
    let source = spawn_app().await;
    app_traffic(&source).await;
    let seqs: i64 = sqlx::query_scalar("SELECT seq FROM ledger_head").fetch_one(&source.db).await.unwrap();
    until_checkpoint(&source.db, seqs).await;
    let before = answers(&source, seqs).await;
    let verified_before = verify(&source.db_name);

    // The same rows in a database at V7, the migration before the partitions.
    let options = (*source.db.connect_options()).clone();
    let old_name = format!("{}_v7", source.db_name);
    let mut admin = options.connect().await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {old_name}")).execute(&mut admin).await.unwrap();
    let old = options.clone().database(&old_name);
    let mut to = old.connect().await.unwrap();
    ticket_audit::store::migrate::run_to(&mut to, 7).await.unwrap();
    let mut from = raw_connection(&options.clone().database(&source.db_name)).await;
    for table in COPIED {
        copy_table(&mut from, &mut to, table).await;
    }
    sqlx::query("UPDATE ledger_head SET (seq, hash, at) = ($1, $2, $3)")
        .bind(seqs)
        .bind(sqlx::query_scalar::<_, Vec<u8>>("SELECT hash FROM ledger_head").fetch_one(&mut from).await.unwrap())
        .bind(
            sqlx::query_scalar::<_, Option<time::OffsetDateTime>>("SELECT at FROM ledger_head")
                .fetch_one(&mut from)
                .await
                .unwrap(),
        )
        .execute(&mut to)
        .await
        .unwrap();
    let classified: i64 =
        sqlx::query_scalar("SELECT seq FROM reporting.classified").fetch_one(&mut from).await.unwrap();
    sqlx::query("UPDATE reporting.classified SET seq = $1").bind(classified).execute(&mut to).await.unwrap();
    let partitioned: bool = sqlx::query_scalar("SELECT relkind = 'p' FROM pg_class WHERE oid = 'deliveries'::regclass")
        .fetch_one(&mut to)
        .await
        .unwrap();
    assert!(!partitioned, "V7 has one heap per table");
    to.close().await.unwrap();

    // Migrated, the old database answers every read and verify as the source did.
    ticket_audit::migrate(&old).await.unwrap();
    let migrated = spawn_on(old.clone(), old_name.clone(), settings(), pools()).await;
    let after = answers(&migrated, seqs).await;
    let failed: Vec<_> = before.iter().filter(|a| a.1 != 200).map(|a| (&a.0, a.1)).collect();
    assert!(failed.is_empty(), "every read answers: {failed:?}");
    assert!(before.len() > 40, "{}", before.len());
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.0, a.0);
        assert_eq!((b.1, String::from_utf8_lossy(&b.2)), (a.1, String::from_utf8_lossy(&a.2)), "{}", b.0);
    }
    assert_eq!(verify(&old_name), verified_before);

    // The old rows are one partition, attached, not copied; new ones go to the month's.
    let mut conn = migrated.db.acquire().await.unwrap();
    let parts = partitions::list(&mut conn, "deliveries").await.unwrap();
    let month = month_name(month_of(time::OffsetDateTime::now_utc()));
    assert_eq!(
        parts,
        [
            Partition { table: "deliveries".into(), name: "deliveries_legacy".into(), from: None, to: Some(seqs + 1) },
            Partition {
                table: "deliveries".into(),
                name: format!("deliveries_{month}"),
                from: Some(seqs + 1),
                to: None
            },
        ]
    );
    drop(conn);
    // Keys stored before the migration still answer as duplicates; new deliveries are stored.
    let dup = migrated.post(add_ticket("A-1", "t1", "aws")).await;
    let dup: serde_json::Value = dup.json().await.unwrap();
    assert_eq!(dup["duplicate"], true, "{dup}");
    let new = migrated.deliver(&add_ticket("A-9", "t1", "aws")).await;
    assert_eq!(new, seqs + 1);
    assert_eq!(partition_of(&migrated.db, "deliveries", new).await, format!("deliveries_{month}"));
    assert_eq!(partition_of(&migrated.db, "deliveries", 1).await, "deliveries_legacy");
    drop(migrated);
    // `admin` is a connection to the source's database, which dropping `source` removes on a
    // server given by DATABASE_URL: the copy goes first.
    sqlx::query(&format!("DROP DATABASE IF EXISTS {old_name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
    drop(admin);
    drop(source);
}

async fn app_traffic(app: &TestApp) {
    app.deliver(&add_ticket("A-1", "t1", "aws")).await;
    app.deliver(&add_ticket("A-2", "t2", "k8s")).await;
    app.deliver(&message("A-1", "hello", "on it", &[("aws s3 ls", "ok"), ("aws iam delete-user x", "AccessDenied")]))
        .await;
    app.deliver(&message("A-2", "pods?", "here", &[("kubectl get pods", "ok")])).await;
    app.deliver(&fixture("send_message.json")).await;
    app.deliver(&add_ticket("A-2", "t9", "k8s")).await; // a conflicting tenant claim
}

/// The writer itself turns the month: its first batch in a month later than the head's closes
/// the last month's partitions at head + 1. The database is made to look as if the last month
/// were the previous one (the partitions and ledger_months relabelled, the head's time moved back).
#[tokio::test]
async fn the_writers_first_batch_of_a_month_turns_it() {
    let mut first = spawn_app().await;
    first.deliver(&message("T-1", "u", "a", &[("ls", "ok")])).await;
    // Stopped while the database is relabelled: a running writer keeps the head it committed.
    first.stop().await;
    let app = &first;
    let this = month_of(time::OffsetDateTime::now_utc());
    let last = time::Date::from_julian_day(this.to_julian_day() - 1).unwrap();
    let last = time::Date::from_calendar_date(last.year(), last.month(), 1).unwrap();
    let mut owner = raw_connection(&app.db.connect_options()).await;
    for table in partitions::TABLES {
        sqlx::raw_sql(&format!("ALTER TABLE {table}_{} RENAME TO {table}_{}", month_name(this), month_name(last)))
            .execute(&mut owner)
            .await
            .unwrap();
    }
    sqlx::raw_sql(&format!(
        "ALTER TABLE ledger_months DISABLE TRIGGER ledger_months_append_only;
         UPDATE ledger_months SET month = '{last}';
         ALTER TABLE ledger_months ENABLE TRIGGER ledger_months_append_only;
         UPDATE ledger_head SET at = '{last} 12:00:00+00';"
    ))
    .execute(&mut owner)
    .await
    .unwrap();
    let options = (*first.db.connect_options()).clone();
    let app = spawn_on(options, first.db_name.clone(), settings(), pools()).await;

    let second = app.deliver(&message("T-1", "u2", "a2", &[("pwd", "/")])).await;
    assert_eq!(second, 2);
    let months: Vec<(time::Date, i64)> = sqlx::query_as("SELECT month, first_seq FROM ledger_months ORDER BY month")
        .fetch_all(&mut owner)
        .await
        .unwrap();
    assert_eq!(months, [(last, 1), (this, 2)]);
    for table in ["deliveries", "action_events", "messages", "commands"] {
        let parts = partitions::list(&mut owner, table).await.unwrap();
        assert_eq!(
            parts,
            [
                Partition {
                    table: table.into(),
                    name: format!("{table}_{}", month_name(last)),
                    from: Some(1),
                    to: Some(2)
                },
                Partition {
                    table: table.into(),
                    name: format!("{table}_{}", month_name(this)),
                    from: Some(2),
                    to: None
                },
            ],
            "{table}"
        );
        assert_eq!(partition_of(&app.db, table, 2).await, format!("{table}_{}", month_name(this)));
    }
    // The next batch, in the same month, turns nothing.
    app.deliver(&message("T-1", "u3", "a3", &[("id", "root")])).await;
    assert_eq!(app.count("ledger_months").await, 2);
    let verified = cli(&["verify"], &[("DATABASE_URL", &database_url(&app.db_name))]).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
}

/// A reader that holds one of the record's tables and then reads another (as a classify step
/// reads messages, then deliveries) while the month turns is not deadlocked by the turn (V18):
/// the turn takes every table at once or holds none while it waits. With V9's turn, which took
/// them one by one, the reader's second read waited for the turn holding `deliveries` while the
/// turn waited for the reader's `messages`, until the server broke the deadlock.
#[tokio::test]
async fn a_month_turn_beside_a_reader_of_two_tables_lets_the_reader_finish_and_then_turns() {
    let app = spawn_app().await;
    app.deliver(&message("T-1", "u", "a", &[("ls", "ok")])).await;
    let now = time::OffsetDateTime::now_utc();
    let in_next = time::PrimitiveDateTime::new(next_month(month_of(now)), time::Time::MIDNIGHT).assume_utc();

    let mut reader = raw_connection(&app.db.connect_options()).await;
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    sqlx::query("SELECT count(*) FROM messages").execute(&mut reader).await.unwrap();

    // The turn as the writer runs it, on a connection of its own, without retrying a deadlock.
    let mut turner = raw_connection(&app.db.connect_options()).await;
    let turner_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut turner).await.unwrap();
    let turn = tokio::spawn(async move { turn_once(&mut turner, Some(now), in_next).await });
    // Until the turn is held up by the reader: waiting for a lock (V9) or between tries (V18).
    loop {
        let held: bool = sqlx::query_scalar(
            "SELECT coalesce(bool_or(wait_event_type = 'Lock' OR wait_event = 'PgSleep'), false) \
             FROM pg_stat_activity WHERE pid = $1",
        )
        .bind(turner_pid)
        .fetch_one(&app.db)
        .await
        .unwrap();
        if held {
            break;
        }
        assert!(!turn.is_finished(), "the turn did not wait for the reader holding messages");
        tokio::task::yield_now().await;
    }

    // The reader's second table, then its commit: neither waits for the turn.
    let second = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM deliveries").fetch_one(&mut reader).await;
    assert_eq!(second.map_err(|e| e.to_string()), Ok(1), "the reader's second read");
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();

    // And the turn then goes through, at head + 1.
    let turned = turn.await.unwrap().map_err(|e| e.to_string());
    assert_eq!(turned, Ok(Some(2)), "the turn");
    let mut conn = app.db.acquire().await.unwrap();
    for table in partitions::TABLES {
        let parts = partitions::list(&mut conn, table).await.unwrap();
        assert_eq!(parts.last().map(|p| (p.from, p.to)), Some((Some(2), None)), "{table}");
    }
}
