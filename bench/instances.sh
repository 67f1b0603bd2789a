#!/usr/bin/env bash
# Ingest with one service instance, then with two on one database, in one run: the same 64
# senders (split evenly over the instances), the same file, a fresh database each time. Prints
# deliveries/s, p99 (the worst instance's), the head-moved retries (the instances contending
# for the ledger head), the writers' lease hand-overs (and waits for it that timed out), and checks that every acknowledged delivery is stored once, the seq is
# gapless and `ticket-audit verify` passes.
#
#   bench/instances.sh [--senders 64] [--duration 10] [--instances "1 2 2f"] [--bin PATH]
#
# An entry N runs N instances, each writing its own deliveries in turn (the writers' lease); Nf
# runs them with ADVERTISE_URL, so that the instances not writing pass deliveries on to the one
# that does (its column "passed on" counts them).
#
# Needs what bench/run.sh needs (its PostgreSQL, psql, curl, python3); builds the release
# binaries unless --bin is given.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SENDERS=64
DURATION=10
COUNTS="1 2 2f"
BIN=""
PORT=18180
while [ $# -gt 0 ]; do
    case "$1" in
        --senders) SENDERS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --instances) COUNTS=$2; shift ;;
        --bin) BIN=$(realpath "$2"); shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$CARGO_TARGET_DIR/bench
mkdir -p "$OUT"
if [ -z "$BIN" ]; then
    cargo build --release --locked -p ticket-audit --bin ticket-audit >&2
    BIN=$CARGO_TARGET_DIR/release/ticket-audit
fi
cargo build --release --locked -p ticket-audit-bench >&2
LOADGEN=$CARGO_TARGET_DIR/release/ticket-audit-bench
SECRET="whsec_$(printf 'ticket-audit benchmark secret!!!' | base64)"
TOKEN=bench-read-token
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SERVER_URL=${ADMIN_URL%%\?*}
SERVER_URL=${SERVER_URL%/*}
db_url() { echo "$SERVER_URL/$1?sslmode=disable"; }
psql_q() { psql "$(db_url "$1")" -v ON_ERROR_STOP=1 -Atqc "$2"; }

DATA=$OUT/ingest-100000-20000.ndjson
if [ ! -s "$DATA" ]; then
    python3 bench/gen_deliveries.py --deliveries 100000 --tickets 20000 --seed 7 --no-times >"$DATA.tmp"
    mv "$DATA.tmp" "$DATA"
fi

PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT
metric() { # sum of a metric over the instances
    local total=0 v i
    for i in $(seq 0 $(($1 - 1))); do
        v=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$((PORT + i))/metrics" |
            awk -v m="$2" '$1 == m { print $2 }')
        total=$(python3 -c "print($total + ${v:-0})")
    done
    echo "$total"
}

ROWS=$OUT/instances-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: >"$ROWS"
for spec in $COUNTS; do
    n=${spec%f}
    db=ta_bench_instances_$n
    psql_q postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql_q postgres "CREATE DATABASE $db"
    # Migrate once, so that the instances start on a current schema.
    DATABASE_URL=$(db_url "$db") "$BIN" migrate >/dev/null
    key=$OUT/instances.key
    rm -f "$key"
    "$BIN" keygen --name bench.ticket-audit/log --out "$key" >/dev/null
    for i in $(seq 0 $((n - 1))); do
        advertise=()
        [ "$spec" = "$n" ] || advertise=(ADVERTISE_URL="http://127.0.0.1:$((PORT + i))")
        env "${advertise[@]}" DATABASE_URL="$(db_url "$db")" LISTEN_ADDR="127.0.0.1:$((PORT + i))" WEBHOOK_SECRET="$SECRET" \
            API_TOKENS="$TOKEN" CHECKPOINT_KEY_FILE="$key" CHECKPOINT_ORIGIN=bench.ticket-audit/log \
            DATA_DIR="$OUT/instance-$i" "$BIN" serve >"$OUT/instance-$n-$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in $(seq 0 $((n - 1))); do
        until curl -fs "http://127.0.0.1:$((PORT + i))/readyz" >/dev/null 2>&1; do sleep 0.1; done
        "$LOADGEN" ingest --url "http://127.0.0.1:$((PORT + i))" --file "$DATA" --secret "$SECRET" \
            --concurrency 4 --count 1000 --id-prefix "warm$i-" --label warmup >/dev/null 2>&1
    done
    psql_q "$db" "VACUUM ANALYZE"
    retries0=$(metric "$n" ticket_audit_write_retries_total)
    handed0=$(metric "$n" ticket_audit_writer_lease_handed_over_total)
    timeouts0=$(metric "$n" ticket_audit_writer_lease_timeouts_total)
    lg=()
    for i in $(seq 0 $((n - 1))); do
        "$LOADGEN" ingest --url "http://127.0.0.1:$((PORT + i))" --file "$DATA" --secret "$SECRET" \
            --concurrency $((SENDERS / n)) --duration "$DURATION" --id-prefix "n${n}i$i-" --json \
            >"$OUT/instances-$n-$i.json" &
        lg+=($!)
    done
    for p in "${lg[@]}"; do wait "$p"; done
    retries1=$(metric "$n" ticket_audit_write_retries_total)
    handed=$(python3 -c "print($(metric "$n" ticket_audit_writer_lease_handed_over_total) - $handed0)")
    timeouts=$(python3 -c "print($(metric "$n" ticket_audit_writer_lease_timeouts_total) - $timeouts0)")
    passed=$(metric "$n" 'ticket_audit_deliveries_forwarded_total{outcome="answered"}')
    stop_all
    stored=$(psql_q "$db" "select count(*) from deliveries")
    gapless=$(psql_q "$db" "select count(*) = max(seq) from deliveries")
    verified=ok
    DATABASE_URL=$(db_url "$db") "$BIN" verify >"$OUT/instances-$n-verify.txt" 2>&1 || verified=FAILED
    python3 - "$n" "$stored" "$gapless" "$verified" "$retries0" "$retries1" "$OUT" "$handed" "$timeouts" "$spec" "$passed" >>"$ROWS" <<'EOF'
import json, sys
n, stored, gapless, verified, r0, r1, out, handed, timeouts, spec, passed = sys.argv[1:]
runs = [json.load(open(f"{out}/instances-{n}-{i}.json")) for i in range(int(n))]
print(json.dumps({
    "instances": int(n), "spec": spec, "passed_on": float(passed),
    "deliveries_per_sec": sum(r["deliveries_per_sec"] for r in runs),
    "p50_ms": max(r["p50_ms"] for r in runs),
    "p99_ms": max(r["p99_ms"] for r in runs),
    "acknowledged": sum(r["acknowledged"] for r in runs),
    "non_2xx": sum(v for r in runs for k, v in r["statuses"].items() if not k.startswith("2")),
    "stored": int(stored), "gapless": gapless == "t", "verify": verified,
    "retries": float(r1) - float(r0),
    "handed_over": float(handed), "lease_timeouts": float(timeouts),
}))
EOF
    psql_q postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)"
done
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit: $(git rev-parse --short HEAD); command: bench/instances.sh --senders $SENDERS --duration $DURATION"
python3 - "$ROWS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| instances | deliveries/s | p50 ms | p99 ms (worst instance) | non-2xx | head retries | lease hand-overs (timeouts) | passed on | stored (incl. warm-up) | gapless | verify |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
for r in rows:
    label = f"{r['instances']}" + (" passing on" if r.get('spec', '').endswith('f') else "")
    print(f"| {label} | {r['deliveries_per_sec']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['non_2xx']} | "
          f"{r['retries']:.0f} | {r.get('handed_over', 0):.0f} ({r.get('lease_timeouts', 0):.0f}) | {r.get('passed_on', 0):.0f} | {r['stored']} | {r['gapless']} | {r['verify']} |")
for r in rows[1:]:
    label = f"{r['instances']} instances" + (" passing on" if r.get('spec', '').endswith('f') else "")
    print(f"\n{label} / {rows[0]['instances']}: {r['deliveries_per_sec'] / rows[0]['deliveries_per_sec']:.2f}x")
EOF
