#!/usr/bin/env bash
# The live tail's cost (issue 14's targets): service memory with 1,000 open streams, and ingest
# throughput with them open against none, in the same run (see bench/README.md).
#
#   bench/stream.sh [--streams 1000] [--path /api/v1/stream] [--concurrency 64] [--duration 10]
#                   [--rounds 2] [--port 18090] [--out DIR]
#
# One fresh database (ta_bench_stream, dropped at the end) on DATABASE_URL's server (default the
# local postgres@127.0.0.1:5432), one `ticket-audit serve` (release build) for the whole run.
# Rounds alternate ingest with no stream and with --streams streams open (ticket-audit-bench
# streams), so drift in the machine falls on both alike; the ratio is of the means. Memory: the
# service's VmRSS before the streams open, once they are open and idle, and its peak while the
# ingest with streams runs (VmHWM, reset before).
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
while [ $# -gt 0 ]; do
    case "$1" in
        --streams) STREAMS=$2; shift ;;
        --path) STREAM_PATH=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --port) PORT=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench}
mkdir -p "$OUT"
SERVICE=$CARGO_TARGET_DIR/release/ticket-audit
LOADGEN=$CARGO_TARGET_DIR/release/ticket-audit-bench
SECRET="whsec_$(printf 'ticket-audit benchmark secret!!!' | base64)"
TOKEN=bench-read-token
say() { printf '\n== %s\n' "$*" >&2; }

ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SERVER_URL=${ADMIN_URL%%\?*}
SERVER_URL=${SERVER_URL%/*}
DB=ta_bench_stream
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
cargo build --release --locked -p ticket-audit --bin ticket-audit >&2
cargo build --release --locked -p ticket-audit-bench >&2

data=$OUT/stream-deliveries.ndjson
[ -s "$data" ] || python3 bench/gen_deliveries.py --deliveries 100000 --tickets 2000 --seed 7 --no-times >"$data"

psql_q postgres "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
psql_q postgres "CREATE DATABASE $DB"
# Streams are connections: room for them and for the senders.
ulimit -n "$(( STREAMS + 1024 > 4096 ? STREAMS + 1024 : 4096 ))"
env DATABASE_URL="$SERVER_URL/$DB?sslmode=disable" LISTEN_ADDR="127.0.0.1:$PORT" WEBHOOK_SECRET="$SECRET" \
    API_TOKENS="$TOKEN" MAX_CONNECTIONS=$(( STREAMS + 512 )) "$SERVICE" serve >"$OUT/service-stream.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$OUT/service-stream.log" >&2; exit 1; }
    sleep 0.1
done
# CPU time (clock ticks) used so far by a process.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }
kb() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$SERVICE_PID/status"; }

say "warm-up: 2,000 deliveries"
"$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --secret "$SECRET" --concurrency 8 --count 2000 \
    --id-prefix warm- --label warmup >&2
rows=$OUT/stream-rows.jsonl
: >"$rows"
for round in $(seq 1 "$ROUNDS"); do
    psql_q "$DB" "VACUUM ANALYZE"
    say "round $round: ingest with no stream open"
    svc0=$(cpu_ticks "$SERVICE_PID")
    line=$("$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --secret "$SECRET" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --id-prefix "r${round}none-" --label none --json)
    svc1=$(cpu_ticks "$SERVICE_PID")
    echo "$line" | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(round=$round, streams=0, service_cpu_s=($svc1-$svc0)/$(getconf CLK_TCK)); print(json.dumps(r))" >>"$rows"

    say "round $round: opening $STREAMS streams ($STREAM_PATH)"
    rss_before=$(kb VmRSS)
    rm -f "$OUT/streams-ready"
    "$LOADGEN" streams --url "http://127.0.0.1:$PORT" --token "$TOKEN" --count "$STREAMS" --path "$STREAM_PATH" \
        --duration $(( DURATION + 5 )) --ready-file "$OUT/streams-ready" >"$OUT/streams-$round.json" &
    STREAMS_PID=$!
    for _ in $(seq 1 600); do [ -s "$OUT/streams-ready" ] && break; sleep 0.1; done
    sleep 1
    rss_open=$(kb VmRSS)
    echo 5 >"/proc/$SERVICE_PID/clear_refs" 2>/dev/null || true
    say "round $round: ingest with $(cat "$OUT/streams-ready") streams open"
    svc0=$(cpu_ticks "$SERVICE_PID"); cli0=$(cpu_ticks "$STREAMS_PID")
    line=$("$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --secret "$SECRET" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --id-prefix "r${round}open-" --label open --json)
    svc1=$(cpu_ticks "$SERVICE_PID"); cli1=$(cpu_ticks "$STREAMS_PID")
    hwm=$(kb VmHWM)
    wait "$STREAMS_PID" || true
    STREAMS_PID=""
    echo "$line" | python3 -c "import json,sys; r=json.load(sys.stdin); s=json.load(open('$OUT/streams-$round.json')); r.update(round=$round, streams=s['opened'], stream_failed=s['failed'], stream_events=s['events'], rss_before_kb=$rss_before, rss_open_kb=$rss_open, hwm_kb=$hwm, service_cpu_s=($svc1-$svc0)/$(getconf CLK_TCK), client_cpu_s=($cli1-$cli0)/$(getconf CLK_TCK)); print(json.dumps(r))" >>"$rows"
done
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); machine: $(nproc) cores; commit: $(git rev-parse --short HEAD)"
echo "command: bench/stream.sh --streams $STREAMS --path $STREAM_PATH --concurrency $CONCURRENCY --duration $DURATION --rounds $ROUNDS"
python3 - "$rows" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| round | streams open | deliveries/s | p99 ms | events read by the streams | service CPU s / stream client CPU s | VmRSS MB before / open idle / peak while ingesting |")
print("|---:|---:|---:|---:|---:|---|---|")
for r in rows:
    mem = f"{r['rss_before_kb']/1024:.1f} / {r['rss_open_kb']/1024:.1f} / {r['hwm_kb']/1024:.1f}" if r["streams"] else ""
    print(f"| {r['round']} | {r['streams']} | {r['deliveries_per_sec']:.0f} | {r['p99_ms']:.1f} | {r.get('stream_events', '')} | {r['service_cpu_s']:.1f} / {r.get('client_cpu_s', 0):.1f} | {mem} |")
none = [r["deliveries_per_sec"] for r in rows if r["streams"] == 0]
open_ = [r for r in rows if r["streams"]]
ratio = (sum(r["deliveries_per_sec"] for r in open_) / len(open_)) / (sum(none) / len(none))
idle = max((r["rss_open_kb"] - r["rss_before_kb"]) / 1024 for r in open_)
peak = max((r["hwm_kb"] - r["rss_before_kb"]) / 1024 for r in open_)
print(f"\ningest with streams / without: {ratio:.3f}; memory of the streams: +{idle:.1f} MB open and idle, +{peak:.1f} MB at the peak while ingesting")
PY
