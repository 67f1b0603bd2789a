#!/usr/bin/env bash
# Builds a large store for the benchmarks at 10^7 commands (issue 15's targets), in a database
# of its own that it keeps, and times the reports in sql/ on it before and after it grows:
#
#   bench/scale.sh [--commands 10000000] [--copies 10] [--tickets 200000] [--db ta_scale_large]
#                  [--no-reports] [--out DIR]
#
# 1. bench/gen_deliveries.py writes commands/copies commands over tickets/copies tickets (seed 1,
#    the read benchmark's generator and seed), imported through the real write path
#    (`ticket-audit import`: chain, tree, projection, classification);
# 2. the reports are timed on it (bench/reports.sh with SEED=0: the record as it is);
# 3. bench/replicate_store.sql adds copies-1 copies of it for other tickets, in SQL, two
#    sessions at a time (see that file for what is and is not recomputed), `ticket-audit migrate`
#    builds the tree over the copies, VACUUM ANALYZE;
# 4. the reports again, and bench/storage.sql.
# Then the reads: bench/run.sh reads --large-db DB --large COMMANDS --tickets TICKETS.
# The database is kept (drop it when done: psql -c 'DROP DATABASE ta_scale_large').
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMANDS=10000000
COPIES=10
TICKETS=200000
DB=ta_scale_large
REPORTS=1
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --commands) COMMANDS=$2; shift ;;
        --copies) COPIES=$2; shift ;;
        --tickets) TICKETS=$2; shift ;;
        --db) DB=$2; shift ;;
        --no-reports) REPORTS=0 ;;
        --out) OUT=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench}
mkdir -p "$OUT"
SERVICE=${TICKET_AUDIT:-$CARGO_TARGET_DIR/release/ticket-audit}
ADMIN_URL=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
URL=${ADMIN_URL%/*}/$DB?sslmode=disable
say() { printf '\n== %s (%s, load %s)\n' "$*" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }
q() { psql "$URL" -X -v ON_ERROR_STOP=1 -Atqc "$1"; }

[ -n "${TICKET_AUDIT:-}" ] || cargo build --release --locked -p ticket-audit --bin ticket-audit >&2

base_commands=$((COMMANDS / COPIES))
base_tickets=$((TICKETS / COPIES))
file=$OUT/store-$base_commands-$base_tickets.ndjson
if [ ! -s "$file" ]; then
    say "generating $base_commands commands over $base_tickets tickets (seed 1)"
    python3 bench/gen_deliveries.py --commands "$base_commands" --tickets "$base_tickets" --seed 1 >"$file.tmp"
    mv "$file.tmp" "$file"
fi

t0=$SECONDS
say "fresh database $DB; importing $file"
psql "$ADMIN_URL" -X -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
# As bench/run.sh does: a first slice, ANALYZE (the importer's prepared statements keep the plan
# made on the table as it was), then the rest.
head -n 5000 "$file" >"$OUT/part.ndjson"
DATABASE_URL=$URL "$SERVICE" import "$OUT/part.ndjson" >&2
q "VACUUM ANALYZE"
tail -n +5001 "$file" >"$OUT/part.ndjson"
DATABASE_URL=$URL "$SERVICE" import "$OUT/part.ndjson" >&2
rm -f "$OUT/part.ndjson"
q "VACUUM ANALYZE"
say "imported in $((SECONDS - t0)) s: $(q "select (select count(*) from commands) || ' commands, ' || (select count(*) from deliveries) || ' deliveries'")"

# The reports as they are (V12's summaries), then as they were before V12 (tests/data), on the
# same record: an A/B in one run. The old ones once each after the warm-up (RUNS_BEFORE).
reports() {
    [ "$REPORTS" = 1 ] || return 0
    say "reports at $1"
    SEED=0 DATABASE_URL=$URL TICKET_AUDIT=$SERVICE bench/reports.sh "$1" | tee "$OUT/reports-$1.md"
    say "reports before V12 at $1"
    RUNS=${RUNS_BEFORE:-1} REPORTS_DIR=tests/data/reports_before_v12 SEED=0 DATABASE_URL=$URL TICKET_AUDIT=$SERVICE \
        bench/reports.sh "$1" | tee "$OUT/reports-before-v12-$1.md"
}
reports "$base_commands"

t1=$SECONDS
say "copying the store $((COPIES - 1)) times"
psql "$URL" -X -v prepare=1 -f bench/replicate_store.sql
copy() { psql "$URL" -X -v copy="$1" -f bench/replicate_store.sql && echo "copy $1 in at $(date -u +%H:%M:%S)" >&2; }
k=1
while [ $k -lt "$COPIES" ]; do
    copy $k &
    a=$!
    if [ $((k + 1)) -lt "$COPIES" ]; then copy $((k + 1)) & b=$!; else b=""; fi
    wait $a
    [ -z "$b" ] || wait "$b"
    k=$((k + 2))
done
psql "$URL" -X -v copies="$COPIES" -v finish=1 -f bench/replicate_store.sql
say "copied in $((SECONDS - t1)) s; building the tree over the copies (ticket-audit migrate)"
t2=$SECONDS
DATABASE_URL=$URL "$SERVICE" migrate >&2
say "tree built in $((SECONDS - t2)) s; VACUUM ANALYZE"
t3=$SECONDS
q "VACUUM ANALYZE"
say "vacuumed in $((SECONDS - t3)) s; store ready in $((SECONDS - t0)) s: $(q "select (select count(*) from commands) || ' commands, ' || (select count(*) from tickets) || ' tickets, ' || (select seq from ledger_head) || ' deliveries'")"

reports "$COMMANDS"
psql "$URL" -X -f bench/storage.sql | tee "$OUT/storage-$COMMANDS.txt"
