#!/usr/bin/env bash
# The live tail's cost (issue 14's targets): service memory with 1,000 open streams, and ingest
# throughput with them open against none, in the same run (see bench/README.md).
#
#   bench/stream.sh [--streams 1000] [--path /api/v1/stream | --ticket-streams] [--concurrency 64]
#                   [--duration 10] [--rounds 2] [--port 18090] [--out DIR]
#                   [--service BIN] [--baseline BIN] [--db NAME]
#
# One fresh database (--db, default ta_bench_stream, dropped at the end) on DATABASE_URL's server
# (default the local postgres@127.0.0.1:5432), and `ticket-audit serve` (release build, or
# --service BIN).
# Rounds alternate ingest with no stream and with --streams streams open (ticket-audit-bench
# streams), so drift in the machine falls on both alike; the ratio is of the means. Memory: the
# service's VmRSS before the streams open, once they are open and idle, and its peak while the
# ingest with streams runs (VmHWM, reset before). CPU: the service's, the stream client's (on the
# same cores: it competes with the service, PostgreSQL and the senders), and that of the
# PostgreSQL backends serving the bench database (the tail's reads are there).
#
# --ticket-streams opens each stream on a ticket of its own (`?ticket=NAME`, as ticket pages do),
# the names taken from the warm-up's tickets, instead of --path for all. --baseline BIN runs each
# round with that build too (e.g. main's), one after the other on the same database, restarted
# for each: an A/B of two builds in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STREAMS=1000
STREAM_PATH=/api/v1/stream
CONCURRENCY=64
DURATION=10
ROUNDS=2
PORT=18090
OUT=""
TICKET_STREAMS=0
SERVICE_BIN=""
BASELINE=""
DB=ta_bench_stream
while [ $# -gt 0 ]; do
    case "$1" in
        --streams) STREAMS=$2; shift ;;
        --path) STREAM_PATH=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --port) PORT=$2; shift ;;
        --out) OUT=$2; shift ;;
        --ticket-streams) TICKET_STREAMS=1 ;;
        --service) SERVICE_BIN=$(realpath "$2"); shift ;;
        --baseline) BASELINE=$(realpath "$2"); shift ;;
        --db) DB=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench}
mkdir -p "$OUT"
SERVICE=${SERVICE_BIN:-$CARGO_TARGET_DIR/release/ticket-audit}
LOADGEN=$CARGO_TARGET_DIR/release/ticket-audit-bench
SECRET="whsec_$(printf 'ticket-audit benchmark secret!!!' | base64)"
TOKEN=bench-read-token
say() { printf '\n== %s\n' "$*" >&2; }

ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SERVER_URL=${ADMIN_URL%%\?*}
SERVER_URL=${SERVER_URL%/*}
psql_q() { psql "$SERVER_URL/$1?sslmode=disable" -v ON_ERROR_STOP=1 -Atqc "$2"; }

SERVICE_PID=""
STREAMS_PID=""
cleanup() {
    [ -n "$STREAMS_PID" ] && kill "$STREAMS_PID" 2>/dev/null || true
    if [ -n "$SERVICE_PID" ]; then kill -TERM "$SERVICE_PID" 2>/dev/null || true; wait "$SERVICE_PID" 2>/dev/null || true; fi
    psql_q postgres "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
}
trap cleanup EXIT

say "building release binaries"
[ -n "$SERVICE_BIN" ] || cargo build --release --locked -p ticket-audit --bin ticket-audit >&2
cargo build --release --locked -p ticket-audit-bench >&2

data=$OUT/stream-deliveries.ndjson
[ -s "$data" ] || python3 bench/gen_deliveries.py --deliveries 100000 --tickets 2000 --seed 7 --no-times >"$data"

psql_q postgres "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
psql_q postgres "CREATE DATABASE $DB"
# Streams are connections: room for them and for the senders.
ulimit -n "$(( STREAMS + 1024 > 4096 ? STREAMS + 1024 : 4096 ))"
# start_service BIN: serve the database with that build until stop_service.
start_service() {
    env DATABASE_URL="$SERVER_URL/$DB?sslmode=disable" LISTEN_ADDR="127.0.0.1:$PORT" WEBHOOK_SECRET="$SECRET" \
        API_TOKENS="$TOKEN" MAX_CONNECTIONS=$(( STREAMS + 512 )) "$1" serve >>"$OUT/service-stream.log" 2>&1 &
    SERVICE_PID=$!
    for _ in $(seq 1 300); do
        curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$OUT/service-stream.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "the service did not become ready" >&2
    exit 1
}
stop_service() {
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    wait "$SERVICE_PID" 2>/dev/null || true
    SERVICE_PID=""
}
: >"$OUT/service-stream.log"
# CPU time (clock ticks) used so far by a process.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }
kb() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$SERVICE_PID/status"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# CPU ticks of the PostgreSQL backends serving the bench database, as "pid ticks" lines.
pg_ticks() {
    for pid in $(psql_q postgres "SELECT pid FROM pg_stat_activity WHERE datname = '$DB'"); do
        echo "$pid $(cpu_ticks "$pid")"
    done
}
# CPU seconds those backends used since pg_ticks wrote file $1 (a backend new since counts all).
pg_cpu_since() {
    pg_ticks | awk -v hz="$(getconf CLK_TCK)" 'NR == FNR { before[$1] = $2; next } { t += $2 - before[$1] } END { printf "%.2f", t / hz }' "$1" -
}

say "warm-up: 2,000 deliveries"
start_service "$SERVICE"
"$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --secret "$SECRET" --concurrency 8 --count 2000 \
    --id-prefix warm- --label warmup >&2
paths=$OUT/stream-paths.txt
if [ "$TICKET_STREAMS" = 1 ]; then
    psql_q "$DB" "SELECT '/api/v1/stream?ticket=' || name FROM tickets ORDER BY name LIMIT $STREAMS" >"$paths"
    STREAM_PATH="/api/v1/stream?ticket=NAME ($(wc -l <"$paths") tickets, one stream each)"
else
    echo "$STREAM_PATH" >"$paths"
fi
stop_service
variants="this:$SERVICE"
[ -n "$BASELINE" ] && variants="$variants baseline:$BASELINE"
rows=$OUT/stream-rows.jsonl
: >"$rows"
for round in $(seq 1 "$ROUNDS"); do
    for variant in $variants; do
        label=${variant%%:*} bin=${variant#*:}
        start_service "$bin"
        psql_q "$DB" "VACUUM ANALYZE"
        say "round $round, $label: ingest with no stream open"
        la=$(load1)
        svc0=$(cpu_ticks "$SERVICE_PID"); pg_ticks >"$OUT/pg-ticks"
        line=$("$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --secret "$SECRET" \
            --concurrency "$CONCURRENCY" --duration "$DURATION" --id-prefix "r${round}${label}none-" --label none --json)
        svc1=$(cpu_ticks "$SERVICE_PID"); pg=$(pg_cpu_since "$OUT/pg-ticks")
        echo "$line" | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(build='$label', round=$round, streams=0, load=$la, pg_cpu_s=$pg, service_cpu_s=($svc1-$svc0)/$(getconf CLK_TCK)); print(json.dumps(r))" >>"$rows"

        say "round $round, $label: opening $STREAMS streams ($STREAM_PATH)"
        rss_before=$(kb VmRSS)
        rm -f "$OUT/streams-ready"
        "$LOADGEN" streams --url "http://127.0.0.1:$PORT" --token "$TOKEN" --count "$STREAMS" --paths-file "$paths" \
            --duration $(( DURATION + 5 )) --ready-file "$OUT/streams-ready" >"$OUT/streams-$round.json" &
        STREAMS_PID=$!
        for _ in $(seq 1 600); do [ -s "$OUT/streams-ready" ] && break; sleep 0.1; done
        sleep 1
        rss_open=$(kb VmRSS)
        echo 5 >"/proc/$SERVICE_PID/clear_refs" 2>/dev/null || true
        say "round $round, $label: ingest with $(cat "$OUT/streams-ready") streams open"
        la=$(load1)
        svc0=$(cpu_ticks "$SERVICE_PID"); cli0=$(cpu_ticks "$STREAMS_PID"); pg_ticks >"$OUT/pg-ticks"
        line=$("$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --secret "$SECRET" \
            --concurrency "$CONCURRENCY" --duration "$DURATION" --id-prefix "r${round}${label}open-" --label open --json)
        svc1=$(cpu_ticks "$SERVICE_PID"); cli1=$(cpu_ticks "$STREAMS_PID"); pg=$(pg_cpu_since "$OUT/pg-ticks")
        hwm=$(kb VmHWM)
        wait "$STREAMS_PID" || true
        STREAMS_PID=""
        echo "$line" | python3 -c "import json,sys; r=json.load(sys.stdin); s=json.load(open('$OUT/streams-$round.json')); r.update(build='$label', round=$round, load=$la, streams=s['opened'], stream_failed=s['failed'], stream_events=s['events'], stream_bytes=s.get('bytes', 0), rss_before_kb=$rss_before, rss_open_kb=$rss_open, hwm_kb=$hwm, pg_cpu_s=$pg, service_cpu_s=($svc1-$svc0)/$(getconf CLK_TCK), client_cpu_s=($cli1-$cli0)/$(getconf CLK_TCK)); print(json.dumps(r))" >>"$rows"
        stop_service
    done
done
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); machine: $(nproc) cores; commit: $(git rev-parse --short HEAD); load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: bench/stream.sh --streams $STREAMS --path '$STREAM_PATH' --concurrency $CONCURRENCY --duration $DURATION --rounds $ROUNDS${BASELINE:+ --baseline $BASELINE}"
python3 - "$rows" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| build | round | streams open | load avg | deliveries/s | p99 ms | events read by the streams | MB read | service CPU s / stream client CPU s / PostgreSQL CPU s | VmRSS MB before / open idle / peak while ingesting |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
for r in rows:
    mem = f"{r['rss_before_kb']/1024:.1f} / {r['rss_open_kb']/1024:.1f} / {r['hwm_kb']/1024:.1f}" if r["streams"] else ""
    mb = f"{r['stream_bytes']/1e6:.0f}" if r["streams"] else ""
    print(f"| {r['build']} | {r['round']} | {r['streams']} | {r['load']:.1f} | {r['deliveries_per_sec']:.0f} | {r['p99_ms']:.1f} | {r.get('stream_events', '')} | {mb} | {r['service_cpu_s']:.1f} / {r.get('client_cpu_s', 0):.1f} / {r['pg_cpu_s']:.1f} | {mem} |")
print()
for build in dict.fromkeys(r["build"] for r in rows):
    mine = [r for r in rows if r["build"] == build]
    none = [r["deliveries_per_sec"] for r in mine if r["streams"] == 0]
    open_ = [r for r in mine if r["streams"]]
    ratio = (sum(r["deliveries_per_sec"] for r in open_) / len(open_)) / (sum(none) / len(none))
    rounds = ", ".join(f"{r['deliveries_per_sec'] / n:.2f}" for r, n in zip(open_, none))
    idle = max((r["rss_open_kb"] - r["rss_before_kb"]) / 1024 for r in open_)
    peak = max((r["hwm_kb"] - r["rss_before_kb"]) / 1024 for r in open_)
    print(f"{build}: ingest with streams / without: {ratio:.3f} (rounds: {rounds}); memory of the streams: +{idle:.1f} MB open and idle, +{peak:.1f} MB at the peak while ingesting")
PY
