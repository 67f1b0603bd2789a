#!/usr/bin/env bash
# Head-of-line blocking: how long small deliveries wait while one sender posts very large ones.
#
#   bench/head_of_line.sh [--concurrency 8] [--duration 10] [--port 18090]
#
# Three passes, each on a fresh database with the release build, small deliveries from
# bench/loadgen at --concurrency senders for --duration seconds:
#   quiet     the small deliveries alone;
#   capped    beside a sender posting deliveries of 10,000 executed commands (the default
#             MAX_DELIVERY_ROWS) back to back;
#   uncapped  beside a sender posting 500,000 proposed commands each, the cap lifted: the
#             service as it was before the cap.
# Prints p50/p99/max of the small deliveries and the large ones' count and mean time.
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY=8
DURATION=10
PORT=18090
while [ $# -gt 0 ]; do
    case "$1" in
        --concurrency) CONCURRENCY=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --port) PORT=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
OUT=$CARGO_TARGET_DIR/bench
mkdir -p "$OUT"
ADMIN=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
cargo build --release --locked -p ticket-audit --bin ticket-audit >&2
cargo build --release --locked -p ticket-audit-bench >&2
SERVICE=$CARGO_TARGET_DIR/release/ticket-audit
LOADGEN=$CARGO_TARGET_DIR/release/ticket-audit-bench
data=$OUT/head-of-line-small.ndjson
[ -s "$data" ] || python3 bench/gen_deliveries.py --deliveries 50000 --tickets 2000 --seed 3 --no-times >"$data"

# large ROWS KIND FILE: one SendTicketMessage with ROWS commands (KIND executedCmds or Cmds).
large() {
    python3 - "$1" "$2" >"$3" <<'PY'
import json, sys
rows, kind = int(sys.argv[1]), sys.argv[2]
cmds = [{"command": f"kubectl get pod p{i}", "result": "ok"} if kind == "executedCmds" else f"kubectl get pod p{i}" for i in range(rows)]
print(json.dumps({"Action": "POST:Ticket/SendTicketMessage", "Data": {"RequestBody": {"ticketName": "BIG"},
      "ResponseBody": {"data": {kind: cmds}}, "StatusCode": 200}}))
PY
}
large 10000 executedCmds "$OUT/large-capped.json"
large 500000 Cmds "$OUT/large-uncapped.json"

pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT
pass() {
    local name=$1 big=$2
    shift 2
    local db=ta_bench_hol_$name
    psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    local url=${ADMIN%/*}/$db
    env DATABASE_URL="$url" LISTEN_ADDR=127.0.0.1:$PORT MAX_BODY_BYTES=67108864 "$@" "$SERVICE" serve >"$OUT/hol-$name.log" 2>&1 &
    pid=$!
    until curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null; do kill -0 "$pid"; sleep 0.1; done
    "$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --concurrency 4 --count 2000 --id-prefix warm- >/dev/null
    local sender=""
    if [ -n "$big" ]; then
        # Back to back, each a new delivery (a fresh key), until told to stop.
        ( i=0; while :; do i=$((i + 1))
            curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "idempotency-key: big-$name-$i" \
                -H 'content-type: application/json' --data-binary @"$big" "http://127.0.0.1:$PORT/webhooks"
          done ) >"$OUT/hol-$name-large.txt" &
        sender=$!
    fi
    local line
    line=$("$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --concurrency "$CONCURRENCY" \
        --duration "$DURATION" --id-prefix "$name-" --json)
    [ -n "$sender" ] && { kill "$sender" 2>/dev/null || true; wait "$sender" 2>/dev/null || true; }
    local large_summary="-"
    if [ -n "$big" ]; then
        large_summary=$(awk '{ n++; s += $2; codes[$1]++ } END { printf "%d sent, mean %.2f s, statuses:", n, (n ? s / n : 0); for (c in codes) printf " %s=%d", c, codes[c] }' "$OUT/hol-$name-large.txt")
    fi
    echo "$line" | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"{'$name':<9} small: {r['deliveries_per_sec']:7.0f}/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms   large: $large_summary\")"
    kill -TERM "$pid"; wait "$pid" || true; pid=""
    psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
echo "date $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $CONCURRENCY small senders, ${DURATION}s per pass"
pass quiet ""
pass capped "$OUT/large-capped.json"
pass uncapped "$OUT/large-uncapped.json" MAX_DELIVERY_ROWS=1000000
