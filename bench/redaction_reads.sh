#!/usr/bin/env bash
# What redaction costs the read path. The read queries are unchanged; a page of timeline entries,
# commands or deliveries is marked afterwards, by one more query (`redactions` by seq, the page's
# tombstone-looking rows only), and only when it holds such a row (empty text, empty body): a page
# without one costs nothing more. This measures that one query against the page query it follows,
# on one store with `--redactions` tombstones, by pgbench (one client, one connection, prepared
# statements as the service uses them), the two drawn at random for every transaction of one run.
# Prints each one's mean latency and their ratio: what a page that holds a redacted row pays more.
#
#   bench/redaction_reads.sh [--deliveries 200000] [--redactions 1000] [--seconds 10] [--rounds 3] [--keep]
#
# Needs psql, pgbench and a PostgreSQL (DATABASE_URL's server, else postgres@127.0.0.1:5432);
# creates the database ta_bench_redact and drops it at the end (unless --keep). The schema is the
# one this build migrates to (target/debug/ticket-audit, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
deliveries=200000 redactions=1000 seconds=10 rounds=3 keep=
while [ $# -gt 0 ]; do
    case "$1" in
        --deliveries) deliveries=$2; shift 2 ;;
        --redactions) redactions=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        *) sed -n '2,12p' "$0"; exit 2 ;;
    esac
done
server=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
base=${server%/*}
db=ta_bench_redact
url="$base/$db"
bin=target/debug/ticket-audit
[ -x "$bin" ] || cargo build --locked --bin ticket-audit
psql -q "$server" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap 'psql -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
DATABASE_URL=$url "$bin" migrate >/dev/null
tickets=$((deliveries / 10))
# The store as tests/api/plans.rs makes it, larger: 10% AddTicket, 70% messages (two messages,
# 0-5 commands), 20% other; then `redactions` rows for that many message deliveries.
psql -q "$url" <<SQL
INSERT INTO deliveries (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, hash)
SELECT g, timestamptz '2026-01-01 00:00:00+00' + g * interval '20 ms', 'msg_' || g, 'webhook-id',
       convert_to('{"pad":"' || repeat('x', 1200) || '"}', 'UTF8'), sha256(int8send(g::bigint)),
       CASE WHEN g % 10 = 0 THEN 'POST:Ticket/AddTicket' WHEN g % 10 < 8 THEN 'POST:Ticket/SendTicketMessage'
            ELSE 'GET:Ticket/GetTicket' END,
       200, sha256(int8send(g::bigint))
FROM generate_series(1, $deliveries) g;
INSERT INTO action_events (seq, received_at, action, status_code, success, kind, ticket_name, carried_tenant)
SELECT seq, received_at, action, 200, true,
       CASE WHEN seq % 10 = 0 THEN 'ticket_created' WHEN seq % 10 < 8 THEN 'conversation' ELSE 'action' END,
       'T-' || lpad(((seq * 7919) % $tickets)::text, 6, '0'), NULL
FROM deliveries;
INSERT INTO tickets (name, title, status, tenant_id, agent_name, agent_id, created_at, first_seen_at,
                     first_seen_seq, last_activity_at)
SELECT 'T-' || lpad(i::text, 6, '0'), 'title ' || i, 'Open', 'tenant-' || (i % 8), 'agent-' || (i % 6),
       'id-' || (i % 6), timestamptz '2025-12-01', timestamptz '2026-01-01', i + 1, timestamptz '2026-01-01'
FROM generate_series(0, $tickets - 1) i;
INSERT INTO messages (seq, position, ticket_name, role, content, received_at)
SELECT e.seq, p, e.ticket_name, CASE p WHEN 1 THEN 'user' ELSE 'agent' END, repeat('words ', 40), e.received_at
FROM action_events e, generate_series(1, 2) p WHERE e.kind = 'conversation';
INSERT INTO commands (seq, position, ticket_name, command, result, executed, recorded_at)
SELECT e.seq, 2 + p, e.ticket_name, 'kubectl get pods ' || md5(e.seq::text), 'OK ' || repeat('out ', 20), true,
       e.received_at
FROM action_events e, generate_series(1, 5) p WHERE e.kind = 'conversation' AND p <= e.seq % 6;
INSERT INTO redactions (target_seq, redaction_seq, body_sha256, reason, actor, redacted_at)
SELECT s, $deliveries + row_number() OVER (ORDER BY s), sha256(int8send(s)), 'bench', 'bench', now()
FROM (SELECT seq AS s FROM action_events WHERE kind = 'conversation' ORDER BY seq * 7 % 1009, seq
      LIMIT $redactions) r;
-- Their tombstones, as ticket_audit_redact leaves them (written here past the triggers).
SET session_replication_role = replica;
UPDATE deliveries SET body = ''::bytea WHERE seq IN (SELECT target_seq FROM redactions);
UPDATE messages SET content = '' WHERE seq IN (SELECT target_seq FROM redactions);
UPDATE commands SET command = '', result = NULL WHERE seq IN (SELECT target_seq FROM redactions);
RESET session_replication_role;
VACUUM ANALYZE;
SQL
work=$(mktemp -d)
if [ -n "$keep" ]; then trap 'rm -rf "$work"' EXIT; else
    trap 'rm -rf "$work"; psql -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT; fi
ticket="\\set t random(0, $((tickets - 1)))"
name="'T-' || lpad(:t::text, 6, '0')"
cols="c.seq, c.position, c.ticket_name, t.tenant_id, t.agent_name, t.agent_id, c.command, c.result, c.executed, c.recorded_at"
# The read API's statement for a ticket's commands (src/store/read.rs), and the marking query for
# a page of 51 seqs, a redacted one among them (src/store/redaction.rs, `among`).
cat >"$work/page.sql" <<Q
$ticket
SELECT $cols FROM commands c LEFT JOIN tickets t ON t.name = c.ticket_name WHERE c.ticket_name = $name ORDER BY c.seq, c.position LIMIT 51;
Q
cat >"$work/mark.sql" <<Q
\\set s random(1, $((deliveries - 51)))
SELECT target_seq, redaction_seq, reason, actor, redacted_at FROM redactions WHERE target_seq = ANY(ARRAY[$(seq -s, 0 50 | sed 's/\([0-9][0-9]*\)/:s + \1/g')]::bigint[]);
Q
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $deliveries deliveries, $(psql -tAq "$url" -c 'SELECT count(*) FROM commands') commands, $redactions redactions"
echo
echo "| query | mean latency (ms) |"
echo "|---|---|"
out=$(pgbench -n -M prepared -c 1 -T "$((seconds * rounds))" -f "$work/page.sql@1" -f "$work/mark.sql@1" "$url" 2>/dev/null)
lat=$(printf '%s\n' "$out" | awk '/^SQL script/ {s++} /latency average/ && s {print $5}')
page=$(printf '%s\n' "$lat" | sed -n 1p) mark=$(printf '%s\n' "$lat" | sed -n 2p)
printf '| a ticket'"'"'s commands, first page (51) | %.3f |\n| marking a page of 51 seqs | %.3f |\n' "$page" "$mark"
printf '\nA page holding a redacted row: %.2fx the page query alone; any other page: 1.00x (no query).\n' \
    "$(echo "($page + $mark) / $page" | bc -l)"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
