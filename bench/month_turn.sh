#!/usr/bin/env bash
# What the record's month turn costs (V9, issue 15): seeds the current month's partitions with
# the reporting seed (bench/seed_reporting.sql, N commands = N/5 deliveries), then times
# turn_month() as the writer calls it, in a transaction holding the ledger head, and prints the
# milliseconds the head (and the closed partitions) were held, per size. Usage:
#     bench/month_turn.sh [N ...]          # sizes in commands; default: 1000000 5000000
# Database: $DATABASE_URL when set (a scratch database: the seed replaces its record), else
# ta_month_turn_bench, created anew on 127.0.0.1:5432 as postgres. Migrated with
# $TICKET_AUDIT (a built binary) or `cargo run -- migrate`.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 5000000)
admin=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres)

for n in "${sizes[@]}"; do
    if [ -z "${DATABASE_URL:-}" ]; then
        "${admin[@]}" -c 'DROP DATABASE IF EXISTS ta_month_turn_bench WITH (FORCE)' \
            -c 'CREATE DATABASE ta_month_turn_bench'
        url=postgres://postgres@127.0.0.1:5432/ta_month_turn_bench
    else
        url=$DATABASE_URL
    fi
    if [ -n "${TICKET_AUDIT:-}" ]; then
        DATABASE_URL=$url "$TICKET_AUDIT" migrate >&2
    else
        DATABASE_URL=$url cargo run --quiet -- migrate >&2
    fi
    db=(psql -X -q -v ON_ERROR_STOP=1 "$url")
    echo "seeding $n commands" >&2
    "${db[@]}" -v commands="$n" -f bench/seed_reporting.sql >&2
    "${db[@]}" -c 'VACUUM ANALYZE' >&2
    "${db[@]}" -At -c "SELECT 'rows: ' || string_agg(t || ' ' || n, ', ') FROM (VALUES
        ('deliveries', (SELECT count(*) FROM deliveries)), ('action_events', (SELECT count(*) FROM action_events)),
        ('messages', (SELECT count(*) FROM messages)), ('commands', (SELECT count(*) FROM commands))) v (t, n)"
    "${db[@]}" -At -c "SELECT 'size: ' || pg_size_pretty(sum(pg_total_relation_size(relid))) FROM pg_partition_tree('deliveries')
        UNION ALL SELECT 'commands size: ' || pg_size_pretty(sum(pg_total_relation_size(relid))) FROM pg_partition_tree('commands')"
    # The turn, as the writer makes it: head held, then turn_month, timed by the server.
    "${db[@]}" -At <<'SQL'
BEGIN;
SELECT 1 AS locked FROM ledger_head FOR UPDATE \gset
SELECT clock_timestamp() AS t0 \gset
SELECT turn_month((date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date) AS first \gset
SELECT 'turn: first seq ' || :first || ', ' || round(extract(epoch FROM clock_timestamp() - :'t0') * 1000) || ' ms';
COMMIT;
SQL
done
