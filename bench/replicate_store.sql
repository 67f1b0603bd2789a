-- Grows a store imported by `ticket-audit import` (bench/gen_deliveries.py's deliveries) to
-- `copies` times its size, in SQL, for the benchmarks at 10^7 commands (bench/scale.sh):
--     psql -v prepare=1 -f bench/replicate_store.sql             (once, on the imported store)
--     psql -v copy=K -f bench/replicate_store.sql                (for K = 1 .. copies-1)
--     psql -v copies=10 -v finish=1 -f bench/replicate_store.sql (once, when all are in)
-- Copy K of the imported record (seq 1..N) becomes seq K*N+1 .. (K+1)*N: the same deliveries
-- for other tickets (`TICKET-000123` becomes `TICKET-000123-K`, in the bodies too), with their
-- own webhook-ids (`msg_1_7` becomes `msg_1_7-K`), later in time (received_at by K times the
-- imported span of received_at, recorded_at by K times that of recorded_at). Every row is the
-- one the service writes for such a delivery: the projection (action events, messages, commands,
-- tickets, anomalies), delivery_keys, the classification (reporting.command_class and
-- reporting.proposal_runs: the rules are functions of a command's line and result, which a copy
-- keeps, and of its ticket's other commands, which are copied with it) and the partition (the
-- month of the import, as `import` would have put them). Two things are not recomputed: the
-- chain hash (`deliveries.hash` is the original row's: `verify` reports the chain broken at
-- the first copy) and the tree, which `ticket-audit migrate` then builds from the rows (its
-- leaves are right). Copies can run in parallel sessions (one K each); `finish` moves the
-- ledger head and the classifier's watermark over them, once all are in.
\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;
-- A scratch store: losing the last transactions in a crash costs a rerun, nothing else.
SET synchronous_commit = off;
\if :{?prepare} \elif :{?finish} \elif :{?copy} \else
\echo 'give -v prepare=1, then -v copy=K for K = 1 .. copies-1, then -v finish=1'
\quit
\endif

DO $guard$
BEGIN
    IF EXISTS (SELECT FROM deliveries WHERE seq <= 1000 AND dedup_key NOT LIKE 'msg\_%') THEN
        RAISE EXCEPTION 'this database holds deliveries not made by bench/gen_deliveries.py: refusing to copy them';
    END IF;
END
$guard$;

\if :{?prepare}
-- Before any copy: the imported record's size and the spans its two clocks cover.
DROP TABLE IF EXISTS bench_replicate_base;
CREATE TABLE bench_replicate_base AS
SELECT count(*)::bigint AS n,
       max(received_at) - min(received_at) + interval '1 second' AS recv_span,
       max(recorded_at) - min(recorded_at) + interval '1 second' AS rec_span
FROM deliveries;
\quit
\endif

\if :{?finish}
-- Every copy in (each is one transaction: its last delivery is there or none of it is): the
-- head and the classifier's watermark over them.
SELECT count(*) = :copies - 1 AS complete
FROM bench_replicate_base b, generate_series(2, :copies) k
WHERE EXISTS (SELECT FROM deliveries d WHERE d.seq = k * b.n) \gset
\if :complete \else
\echo 'not every copy is in: run -v copy=K for each K = 1 .. copies-1 first'
\quit
\endif
UPDATE ledger_head SET seq = l.seq, hash = l.hash, at = l.recorded_at
FROM (SELECT seq, hash, recorded_at FROM deliveries ORDER BY seq DESC LIMIT 1) l;
UPDATE reporting.classified SET seq = (SELECT seq FROM ledger_head);
-- The days' counts (V12) over every copy, as the classifier would have left them: a copy's days
-- are not the base's (its times are shifted by less than a day), so they are counted again.
TRUNCATE reporting.command_days, reporting.message_days, reporting.agent_days, reporting.ticket_days,
         reporting.delivery_days, reporting.counted_pairs, reporting.pair_changes;
SELECT reporting.count_days(0, (SELECT seq FROM ledger_head));
DROP TABLE bench_replicate_base;
\else
BEGIN;
CREATE TEMP TABLE k AS
SELECT :copy::bigint AS k, :copy::bigint * b.n AS dseq, :copy * b.recv_span AS drecv, :copy * b.rec_span AS drec,
       '-' || :copy AS suffix
FROM bench_replicate_base b;

INSERT INTO deliveries (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code,
                        headers, normalize_error, hash, recorded_at, unprojected)
SELECT d.seq + k.dseq, d.received_at + k.drecv, d.dedup_key || k.suffix, d.key_source, x.body, sha256(x.body),
       d.action, d.status_code,
       CASE WHEN d.headers ? 'webhook-id' THEN jsonb_set(d.headers, '{webhook-id}', to_jsonb(d.dedup_key || k.suffix))
            ELSE d.headers END,
       d.normalize_error, d.hash, d.recorded_at + k.drec, d.unprojected
FROM k, bench_replicate_base b, deliveries d, LATERAL (
    SELECT convert_to(regexp_replace(convert_from(d.body, 'UTF8'), 'TICKET-([0-9]{6})', 'TICKET-\1' || k.suffix, 'g'),
                      'UTF8') AS body
) x
WHERE d.seq <= b.n;

INSERT INTO delivery_keys (scope, dedup_key, seq)
SELECT key_scope(d.key_source), d.dedup_key || k.suffix, d.seq + k.dseq
FROM k, bench_replicate_base b, deliveries d WHERE d.seq <= b.n;

INSERT INTO action_events (seq, received_at, action, status_code, success, kind, ticket_name, carried_tenant)
SELECT e.seq + k.dseq, e.received_at + k.drec, e.action, e.status_code, e.success, e.kind, e.ticket_name || k.suffix,
       e.carried_tenant
FROM k, bench_replicate_base b, action_events e WHERE e.seq <= b.n;

INSERT INTO messages (seq, position, ticket_name, role, content, received_at)
SELECT m.seq + k.dseq, m.position, m.ticket_name || k.suffix, m.role, m.content, m.received_at + k.drec
FROM k, bench_replicate_base b, messages m WHERE m.seq <= b.n;

INSERT INTO commands (seq, position, ticket_name, command, result, executed, recorded_at)
SELECT c.seq + k.dseq, c.position, c.ticket_name || k.suffix, c.command, c.result, c.executed, c.recorded_at + k.drec
FROM k, bench_replicate_base b, commands c WHERE c.seq <= b.n;

INSERT INTO ticket_anomalies (seq, position, ticket_name, kind, owner_tenant, claimed_tenant, recorded_at)
SELECT a.seq + k.dseq, a.position, a.ticket_name || k.suffix, a.kind, a.owner_tenant, a.claimed_tenant,
       a.recorded_at + k.drec
FROM k, bench_replicate_base b, ticket_anomalies a WHERE a.seq <= b.n;

-- The classification the classifier would write: the rules read the line and the result only.
INSERT INTO reporting.command_class
SELECT c.seq + k.dseq, c.position, c.ticket_name || k.suffix, c.recorded_at + k.drec, c.executed, c.command,
       c.tool, c.sub_command, c.outcome, c.risk
FROM k, bench_replicate_base b, reporting.command_class c WHERE c.seq <= b.n;
-- Rule 4's state (V12): a copy's proposals are run by the copy's executions.
INSERT INTO reporting.proposal_runs (seq, position, ticket_name, command_key, run_seq)
SELECT r.seq + k.dseq, r.position, r.ticket_name || k.suffix, r.command_key, r.run_seq + k.dseq
FROM k, bench_replicate_base b, reporting.proposal_runs r WHERE r.seq <= b.n;

-- The imported tickets are those of the base (no copy's name is in it: they end in -K).
INSERT INTO tickets (name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text,
                     first_seen_at, first_seen_seq, last_activity_at, message_count, command_count)
SELECT t.name || k.suffix, t.title, t.status, t.tenant_id, t.agent_name, t.agent_id, t.created_at + k.drecv,
       t.create_time_text, t.first_seen_at + k.drec, t.first_seen_seq + k.dseq, t.last_activity_at + k.drec,
       t.message_count, t.command_count
FROM k, tickets t WHERE t.name ~ '^TICKET-[0-9]{6}$';
COMMIT;
\endif
