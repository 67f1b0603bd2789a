#!/usr/bin/env bash
# Times every report in sql/ against a seeded record of 100,000 and 1,000,000 commands (issue 4)
# and prints a table of milliseconds. Usage:
#     bench/reports.sh [N ...]          # sizes in commands; default: 100000 1000000
# Database: $DATABASE_URL when set (a scratch database: the seed replaces its record), else the
# database ta_reports_bench, created anew on the system PostgreSQL (127.0.0.1:5432, user postgres).
# It is migrated with `cargo run -- migrate` (set TICKET_AUDIT=/path/to/ticket-audit to use a built
# binary, CARGO_PROFILE=release for a release build). Each report runs once to warm the cache,
# then RUNS times (default 3); the table shows the median wall time of `psql -f`, connection
# included, output discarded.
# SEED=0 times the record as it is, once, with the size given (one) as its label: for a store
# loaded otherwise (bench/scale.sh). The database is then $DATABASE_URL, required.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
runs=${RUNS:-3}
seed=${SEED:-1}
if [ "$seed" = 0 ] && { [ -z "${DATABASE_URL:-}" ] || [ ${#sizes[@]} -ne 1 ]; }; then
    echo "SEED=0 needs DATABASE_URL and one size (the label of the record as it is)" >&2
    exit 2
fi

if [ -z "${DATABASE_URL:-}" ]; then
    admin=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres)
    "${admin[@]}" -c 'DROP DATABASE IF EXISTS ta_reports_bench WITH (FORCE)' -c 'CREATE DATABASE ta_reports_bench'
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/ta_reports_bench
fi

echo "migrating $DATABASE_URL" >&2
if [ -n "${TICKET_AUDIT:-}" ]; then
    "$TICKET_AUDIT" migrate
else
    cargo run --quiet --profile "${CARGO_PROFILE:-dev}" -- migrate
fi

db=(psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL")
# REPORTS_DIR=tests/data/reports_before_v12 times the reports as they were before V12's summaries.
reports=("${REPORTS_DIR:-sql}"/*.sql)
declare -A ms

ms_now() { date +%s%N | cut -b1-13; }

for n in "${sizes[@]}"; do
    if [ "$seed" != 0 ]; then
        echo "seeding $n commands" >&2
        t0=$(ms_now)
        "${db[@]}" -v commands="$n" -f bench/seed_reporting.sql >&2
        echo "seeded in $(( ($(ms_now) - t0) / 1000 )) s" >&2
    fi
    for r in "${reports[@]}"; do
        "${db[@]}" -f "$r" >/dev/null
        times=()
        for _ in $(seq "$runs"); do
            t0=$(ms_now)
            "${db[@]}" -f "$r" >/dev/null
            times+=($(( $(ms_now) - t0 )))
        done
        ms[$r,$n]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
        echo "  $r: ${times[*]} ms" >&2
    done
done

header="| report |"; rule="|---|"
for n in "${sizes[@]}"; do header+=" $n commands (ms) |"; rule+="---:|"; done
echo "$header"; echo "$rule"
for r in "${reports[@]}"; do
    line="| $(basename "$r" .sql) |"
    for n in "${sizes[@]}"; do line+=" ${ms[$r,$n]} |"; done
    echo "$line"
done
