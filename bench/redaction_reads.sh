#!/usr/bin/env bash
# What redaction costs the read path: the read API's queries as they were (A) and as they are
# with the redaction marks (B: a probe of `redactions` for the rows of the page whose text is
# empty, a tombstone's, and for deliveries with an empty body), on one store, by pgbench (one
# client, one connection, prepared statements as the service uses them), A and B drawn at random
# for every transaction of one run. Prints each one's mean latency and B/A.
#
#   bench/redaction_reads.sh [--deliveries 200000] [--redactions 1000] [--seconds 10] [--rounds 3] [--keep]
#
# Needs psql, pgbench and a PostgreSQL (DATABASE_URL's server, else postgres@127.0.0.1:5432);
# creates the database ta_bench_redact and drops it at the end. The schema is the one this
# build migrates to (target/debug/ticket-audit, built if missing).
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
mark="CASE WHEN c.command = '' THEN EXISTS (SELECT FROM redactions r WHERE r.target_seq = c.seq) ELSE false END"
cols="c.seq, c.position, c.ticket_name, t.tenant_id, t.agent_name, t.agent_id, c.command, c.result, c.executed, c.recorded_at"
# The read API's statements (src/store/read.rs, src/store/sql/timeline.sql), before and after.
cat >"$work/commands_A.sql" <<Q
$ticket
SELECT $cols FROM commands c LEFT JOIN tickets t ON t.name = c.ticket_name WHERE c.ticket_name = $name ORDER BY c.seq, c.position LIMIT 51;
Q
cat >"$work/commands_B.sql" <<Q
$ticket
SELECT $cols, $mark AS redacted FROM commands c LEFT JOIN tickets t ON t.name = c.ticket_name WHERE c.ticket_name = $name ORDER BY c.seq, c.position LIMIT 51;
Q
cat >"$work/recent_A.sql" <<Q
SELECT $cols FROM commands c LEFT JOIN tickets t ON t.name = c.ticket_name ORDER BY c.seq DESC, c.position DESC LIMIT 51;
Q
cat >"$work/recent_B.sql" <<Q
SELECT $cols, $mark AS redacted FROM commands c LEFT JOIN tickets t ON t.name = c.ticket_name ORDER BY c.seq DESC, c.position DESC LIMIT 51;
Q
inner=$(sed -n '/^SELECT seq, position, at, kind/,/^LIMIT \$4$/p' src/store/sql/timeline.sql)
for v in A B; do
    q=$(printf '%s\n' "$inner" | sed -e "s/\\\$1/($name)/g" -e 's/\$2/0/g' -e 's/\$3/-1/g' -e 's/\$4/51/g' | tr '\n' ' ')
    if [ "$v" = B ]; then
        q="SELECT p.*, CASE WHEN coalesce(p.content, p.command, '') = '' THEN EXISTS (SELECT FROM redactions r WHERE r.target_seq = p.seq) ELSE false END AS redacted FROM ($q) p ORDER BY p.seq, p.position"
    fi
    printf '%s\n%s;\n' "$ticket" "$q" >"$work/timeline_$v.sql"
done
dcols="d.seq, d.received_at, d.dedup_key, d.key_source, d.action, d.status_code, d.headers, d.normalize_error, length(d.body) AS size, d.body_sha256, d.hash, e.ticket_name, coalesce(t.tenant_id, e.carried_tenant) AS tenant_id, d.unprojected"
djoin="FROM deliveries d LEFT JOIN action_events e ON e.seq = d.seq LEFT JOIN tickets t ON t.name = e.ticket_name"
echo "SELECT $dcols $djoin ORDER BY d.seq DESC LIMIT 51;" >"$work/deliveries_A.sql"
echo "SELECT $dcols, r.redaction_seq, r.reason, r.actor, r.redacted_at $djoin LEFT JOIN LATERAL (SELECT r.redaction_seq, r.reason, r.actor, r.redacted_at FROM redactions r WHERE length(d.body) = 0 AND r.target_seq = d.seq) r ON true ORDER BY d.seq DESC LIMIT 51;" >"$work/deliveries_B.sql"

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $deliveries deliveries, $(psql -tAq "$url" -c 'SELECT count(*) FROM commands') commands, $redactions redactions"
echo
echo "| read | A: before, mean latency (ms) | B: with redaction marks (ms) | B/A |"
echo "|---|---|---|---|"
for read in commands recent timeline deliveries; do
    # One run, A and B drawn at random for every transaction: both see the same machine.
    out=$(pgbench -n -M prepared -c 1 -T "$((seconds * rounds))" -f "$work/${read}_A.sql@1" -f "$work/${read}_B.sql@1" \
        "$url" 2>/dev/null)
    lat=$(printf '%s\n' "$out" | awk '/^SQL script/ {s++} /latency average/ && s {print $5}')
    a=$(printf '%s\n' "$lat" | sed -n 1p) b=$(printf '%s\n' "$lat" | sed -n 2p)
    printf '| %s | %.3f | %.3f | %.2f |\n' "$read" "$a" "$b" "$(echo "$b / $a" | bc -l)"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
