#!/usr/bin/env bash
# The web page's server-side rendering times (issue 14's targets, see bench/README.md):
#
#   bench/ui.sh [--commands 1000000] [--tickets 20000] [--entries 1000] [--iterations 300] [--keep]
#               [--reuse] [--service BIN] [--baseline BIN] [--port 18090]
#
# A store of --commands commands over --tickets tickets (bench/gen_deliveries.py, seeded, the read
# benchmark's generator, imported through the real write path), plus one ticket with --entries
# timeline entries; then `ticket-audit serve` on it (release build) and, one request at a time,
# each page --iterations times after an untimed warm-up round: the ticket page, and the commands
# page with no filter and with each filter of the read benchmark (agent, tenant, contains) and
# the page's own (outcome, risk). Prints p50 and p99 of the time to the last byte, as curl
# measures it on the loopback. Databases are named ta_bench_ui and dropped at the end (--keep
# keeps it; --reuse keeps it and uses it again when it holds the same store, skipping the import).
#
# --service BIN times that build instead of building the checkout's. --baseline BIN also serves
# another build (e.g. main's) on the same database, on the next port, and times both in the same
# run, request by request in turn, so that the machine's load falls on both alike; the table then
# has both builds' figures and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMANDS=1000000
TICKETS=20000
ENTRIES=1000
ITERATIONS=300
PORT=18090
KEEP=0
REUSE=0
SERVICE_BIN=""
BASELINE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --commands) COMMANDS=$2; shift ;;
        --tickets) TICKETS=$2; shift ;;
        --entries) ENTRIES=$2; shift ;;
        --iterations) ITERATIONS=$2; shift ;;
        --port) PORT=$2; shift ;;
        --keep) KEEP=1 ;;
        --reuse) KEEP=1; REUSE=1 ;;
        --service) SERVICE_BIN=$(realpath "$2"); shift ;;
        --baseline) BASELINE=$(realpath "$2"); shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$CARGO_TARGET_DIR/bench
mkdir -p "$OUT"
SERVICE=${SERVICE_BIN:-$CARGO_TARGET_DIR/release/ticket-audit}
ADMIN=postgres://postgres@127.0.0.1:5432
DB=ta_bench_ui
URL="$ADMIN/$DB?sslmode=disable"
TOKEN=bench-ui-token
say() { printf '\n== %s\n' "$*" >&2; }
psql_q() { psql "$1" -v ON_ERROR_STOP=1 -Atqc "$2"; }

if [ -z "$SERVICE_BIN" ]; then
    say "building the release binary"
    cargo build --release --locked --bin ticket-audit >&2
fi

SERVICE_PID=""
BASELINE_PID=""
cleanup() {
    [ -n "$SERVICE_PID" ] && { kill -TERM "$SERVICE_PID" 2>/dev/null || true; wait "$SERVICE_PID" 2>/dev/null || true; }
    [ -n "$BASELINE_PID" ] && { kill -TERM "$BASELINE_PID" 2>/dev/null || true; wait "$BASELINE_PID" 2>/dev/null || true; }
    [ "$KEEP" = 1 ] || psql_q "$ADMIN/postgres" "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
}
trap cleanup EXIT
trap "exit 130" INT TERM

store=$OUT/store-$COMMANDS-$TICKETS.ndjson
if [ ! -s "$store" ]; then
    say "generating $COMMANDS commands over $TICKETS tickets (seeded)"
    python3 bench/gen_deliveries.py --commands "$COMMANDS" --tickets "$TICKETS" --seed 1 >"$store.tmp"
    mv "$store.tmp" "$store"
fi
long=$OUT/ticket-$ENTRIES.ndjson
python3 - "$ENTRIES" >"$long" <<'PY'
import json, sys
n = int(sys.argv[1])
def line(i, body):
    return json.dumps({"body": body, "headers": {"webhook-id": f"ui-bench-{i}"}, "received_at": "2026-12-01T00:00:00Z"})
print(line(0, {"Action": "POST:Ticket/AddTicket", "Data": {"RequestBody": {"Ticket": {"Name": "UI-LONG-1", "Title": "a long ticket",
      "TenantId": "tenant-00", "Status": "Open", "Assignee": {"AgentName": "linux", "AgentId": "agent-linux-1"}}}, "StatusCode": 200}}))
# Each message delivery adds 4 entries: the user's message, the agent's, two executed commands.
i = 1
while 1 + 4 * i <= n:
    cmds = [{"command": f"journalctl -u app --since -{i}m", "result": "line\n" * 40},
            {"command": f"rm -rf /tmp/cache-{i}", "result": "rm: cannot remove: Permission denied"}]
    print(line(i, {"Action": "POST:Ticket/SendTicketMessage", "Data": {"RequestBody": {"ticketName": "UI-LONG-1",
          "message": {"Content": f"question {i}"}}, "ResponseBody": {"Content": f"answer {i}", "data": {"Cmds": [],
          "executedCmds": cmds}}, "StatusCode": 200}}))
    i += 1
PY

# What the database holds, to reuse it only for the same store.
want_store="$COMMANDS commands, $TICKETS tickets, $ENTRIES entries"
have_store=$(psql_q "$URL" "select obj_description('public.tickets'::regclass, 'pg_class')" 2>/dev/null || true)
if [ "$REUSE" = 1 ] && [ "$have_store" = "ui bench: $want_store" ]; then
    say "reusing $DB ($want_store)"
else
    say "importing into $DB"
    psql_q "$ADMIN/postgres" "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
    psql_q "$ADMIN/postgres" "CREATE DATABASE $DB"
    head -n 5000 "$store" >"$OUT/part.ndjson"
    DATABASE_URL="$URL" "$SERVICE" import "$OUT/part.ndjson" >&2
    psql_q "$URL" "VACUUM ANALYZE"
    tail -n +5001 "$store" | cat - "$long" >"$OUT/part.ndjson"
    DATABASE_URL="$URL" "$SERVICE" import "$OUT/part.ndjson" >&2
    rm -f "$OUT/part.ndjson"
    psql_q "$URL" "VACUUM ANALYZE"
    psql_q "$URL" "COMMENT ON TABLE public.tickets IS 'ui bench: $want_store'"
fi
counts=$(psql_q "$URL" "select (select count(*) from commands) || ' commands, ' || (select count(*) from tickets) || ' tickets; classified up to ' || (select seq from reporting.classified) || ' of ' || (select seq from ledger_head)")
entries=$(psql_q "$URL" "select (select count(*) from messages where ticket_name='UI-LONG-1') + (select count(*) from commands where ticket_name='UI-LONG-1') + (select count(*) from action_events where ticket_name='UI-LONG-1' and kind <> 'conversation')")
say "store: $counts; UI-LONG-1 has $entries timeline entries"

env DATABASE_URL="$URL" LISTEN_ADDR="127.0.0.1:$PORT" API_TOKENS="$TOKEN" RUST_LOG=warn "$SERVICE" serve >"$OUT/service-ui.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null
BPORT=$((PORT + 1))
if [ -n "$BASELINE" ]; then
    env DATABASE_URL="$URL" LISTEN_ADDR="127.0.0.1:$BPORT" API_TOKENS="$TOKEN" RUST_LOG=warn "$BASELINE" serve >"$OUT/service-ui-baseline.log" 2>&1 &
    BASELINE_PID=$!
    for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$BPORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fs "http://127.0.0.1:$BPORT/readyz" >/dev/null
fi

agent=$(psql_q "$URL" "select agent_name from tickets where agent_name is not null group by 1 order by count(*) desc limit 1")
tenant=$(psql_q "$URL" "select tenant_id from tickets where tenant_id is not null group by 1 order by count(*) desc limit 1")
pages=(
    "ticket page ($entries entries)|/ui/tickets/UI-LONG-1"
    "commands, no filter|/ui/commands"
    "commands, agent_name|/ui/commands?agent_name=$agent"
    "commands, tenant_id|/ui/commands?tenant_id=$tenant"
    "commands, contains|/ui/commands?contains=kubectl"
    "commands, outcome=error|/ui/commands?outcome=error"
    "commands, risk=any|/ui/commands?risk=any"
    "commands, risk=destroy|/ui/commands?risk=destroy"
    "tickets, no filter|/ui/tickets"
)
say "timing ${#pages[@]} pages, $ITERATIONS times each (store: $counts)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); load average: $(cut -d' ' -f1-3 /proc/loadavg); commit: $(git rev-parse --short HEAD); store: $counts"
echo "command: bench/ui.sh --commands $COMMANDS --tickets $TICKETS --entries $ENTRIES --iterations $ITERATIONS${BASELINE:+ --baseline $BASELINE}"
ports=("$PORT")
[ -n "$BASELINE" ] && ports+=("$BPORT")
if [ -n "$BASELINE" ]; then
    echo "| page | bytes (this / baseline) | p50 ms | p99 ms | baseline p50 ms | baseline p99 ms | p99 ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
else
    echo "| page | bytes | p50 ms | p99 ms |"
    echo "|---|---:|---:|---:|"
fi
for p in "${pages[@]}"; do
    name=${p%%|*} path=${p#*|}
    sizes=()
    for port in "${ports[@]}"; do
        url="http://127.0.0.1:$port$path"
        code=$(curl -s -o "$OUT/page.html" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$url")
        [ "$code" = 200 ] || { echo "$path answered $code on port $port" >&2; exit 1; }
        sizes+=("$(wc -c <"$OUT/page.html")")
        for _ in $(seq 1 20); do curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "$url"; done
    done
    # Each iteration times every build once, in turn (which goes first alternates).
    for i in $(seq 1 "$ITERATIONS"); do
        order=("${ports[@]}")
        [ $((i % 2)) = 0 ] && [ -n "$BASELINE" ] && order=("$BPORT" "$PORT")
        for port in "${order[@]}"; do
            printf '%s ' "$port"
            curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port$path"
        done
    done | python3 -c "
import sys
times = {}
for line in sys.stdin:
    port, t = line.split()
    times.setdefault(port, []).append(float(t) * 1000)
def q(port, f):
    t = sorted(times[port])
    return t[min(len(t) - 1, int(f * len(t)))]
a = '$PORT'
b = '$BPORT' if '$BASELINE' else None
sizes = '${sizes[*]}'.split()
if b:
    print(f'| $name | {sizes[0]} / {sizes[1]} | {q(a, .5):.1f} | {q(a, .99):.1f} | {q(b, .5):.1f} | {q(b, .99):.1f} | {q(a, .99) / q(b, .99):.2f} |')
else:
    print(f'| $name | {sizes[0]} | {q(a, .5):.1f} | {q(a, .99):.1f} |')"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
