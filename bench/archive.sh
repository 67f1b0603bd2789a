#!/usr/bin/env bash
# Times `ticket-audit archive` on one closed month of N commands (issue 15's target: at least
# 50,000 commands/s, constant memory), reading on one connection and on two, interleaved, in
# the same run:
#
#   bench/archive.sh [--commands 1000000] [--rounds 2] [--db ta_scale_archive] [--out DIR]
#
# The month: bench/seed_reporting.sql (N commands, N/5 deliveries) in the current month's
# partitions, closed by turn_month() as the writer's first batch of the next month would, the
# tree built by `ticket-audit migrate`, one checkpoint signed by `serve`. Each run writes the
# month to a fresh directory (removed after) and prints its seconds, commands/s and max RSS
# (GNU time). The database is dropped at the end. TICKET_AUDIT=path picks the binary (default
# target/release/ticket-audit, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
COMMANDS=1000000
ROUNDS=2
DB=ta_scale_archive
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --commands) COMMANDS=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --db) DB=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench}
mkdir -p "$OUT"
BIN=${TICKET_AUDIT:-$CARGO_TARGET_DIR/release/ticket-audit}
[ -x "$BIN" ] || cargo build --release --locked -p ticket-audit --bin ticket-audit >&2
ADMIN_URL=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
URL=${ADMIN_URL%/*}/$DB?sslmode=disable
PORT=${PORT:-18095}
db=(psql "$URL" -X -q -v ON_ERROR_STOP=1)
say() { printf '\n== %s (%s, load %s)\n' "$*" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }
SERVICE_PID=""
cleanup() {
    [ -z "$SERVICE_PID" ] || kill "$SERVICE_PID" 2>/dev/null || true
    psql "$ADMIN_URL" -X -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
    rm -rf "$OUT/archive-run" "$OUT/archive.key"
}
trap cleanup EXIT

say "fresh database $DB; seeding $COMMANDS commands"
psql "$ADMIN_URL" -X -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
DATABASE_URL=$URL "$BIN" migrate >&2
"${db[@]}" -v commands="$COMMANDS" -f bench/seed_reporting.sql >&2
# The month turn, as the writer's first batch of next month makes it (head held).
"${db[@]}" -At <<'SQL'
BEGIN;
SELECT 1 FROM ledger_head FOR UPDATE;
SELECT 'turned: next month from seq ' || turn_month((date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date);
COMMIT;
SQL
say "building the tree"
DATABASE_URL=$URL "$BIN" migrate >&2
head=$("${db[@]}" -Atc "SELECT seq FROM ledger_head")
rm -f "$OUT/archive.key"
"$BIN" keygen --name bench.ticket-audit/log --out "$OUT/archive.key" >/dev/null
say "signing a checkpoint over $head leaves"
DATABASE_URL=$URL LISTEN_ADDR=127.0.0.1:$PORT CHECKPOINT_KEY_FILE=$OUT/archive.key API_TOKENS=t \
    "$BIN" serve >"$OUT/archive-serve.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 600); do
    [ "$("${db[@]}" -Atc "SELECT count(*) FROM checkpoints WHERE tree_size >= $head")" -gt 0 ] && break
    kill -0 "$SERVICE_PID" || { cat "$OUT/archive-serve.log" >&2; exit 1; }
    sleep 0.5
done
kill "$SERVICE_PID"; wait "$SERVICE_PID" || true; SERVICE_PID=""
"${db[@]}" -c 'VACUUM ANALYZE'
before=$(date -u -d "$(date -u +%Y-%m-01) +1 month" +%Y-%m)
rows="results: $("${db[@]}" -Atc "SELECT (SELECT count(*) FROM deliveries) || ' deliveries, ' || (SELECT count(*) FROM commands) || ' commands, ' || (SELECT count(*) FROM messages) || ' messages, ' || (SELECT count(*) FROM action_events) || ' action events'")"
echo "$rows" >&2

echo "| round | connections | seconds | commands/s | max RSS MB | load avg before |"
echo "|---:|---:|---:|---:|---:|---|"
for round in $(seq 1 "$ROUNDS"); do
    for c in 1 2; do
        rm -rf "$OUT/archive-run"
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        /usr/bin/time -f '%e %M' -o "$OUT/archive-time" \
            env DATABASE_URL="$URL" "$BIN" archive --before "$before" --to "$OUT/archive-run" --connections "$c" \
            >"$OUT/archive-out" 2>&1 || { cat "$OUT/archive-out" >&2; exit 1; }
        read -r secs kb <"$OUT/archive-time"
        line=$(grep '^archived' "$OUT/archive-out")
        rate=$(echo "$line" | sed -E 's/.*\(([0-9]+) commands\/s\).*/\1/')
        echo "| $round | $c | $secs | $rate | $(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }') | $load |"
        echo "$line" >&2
    done
done
du -sh "$OUT/archive-run" >&2
