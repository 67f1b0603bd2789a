-- Storage of a ticket-audit database per 1,000,000 deliveries, by table (heap, TOAST and
-- indexes, all partitions), and in two sums: the record alone (deliveries, their keys, the
-- tree and checkpoints: what `ticket-audit` must keep) and the projection (everything derived
-- from the deliveries: events, messages, commands, tickets, anomalies, the classification and
-- the reports' summaries).
--     psql "$DATABASE_URL" -f bench/storage.sql
-- Run it after VACUUM ANALYZE (bench/scale.sh does): dead rows and stale statistics aside.
\set QUIET on
\pset footer off
WITH sizes AS (
    SELECT t.name, t.part,
           -- A partitioned table's partitions; pg_partition_tree gives nothing for a plain table.
           coalesce((SELECT sum(pg_total_relation_size(p.relid)) FROM pg_partition_tree(t.name::regclass) p),
                    pg_total_relation_size(t.name::regclass)) AS bytes
    FROM (VALUES ('deliveries', 'record'), ('delivery_keys', 'record'), ('tree_hashes', 'record'),
                 ('checkpoints', 'record'), ('action_events', 'projection'), ('messages', 'projection'),
                 ('commands', 'projection'), ('tickets', 'projection'), ('ticket_anomalies', 'projection'),
                 ('reporting.command_class', 'projection'), ('reporting.proposal_runs', 'projection'),
                 ('reporting.command_days', 'projection'), ('reporting.message_days', 'projection')) AS t (name, part)
), n AS (
    SELECT (SELECT seq FROM ledger_head) AS deliveries
)
SELECT name, part, pg_size_pretty(bytes) AS total,
       round(bytes / 1e9 * 1e6 / n.deliveries, 3) AS gb_per_million_deliveries,
       round(bytes::numeric / n.deliveries) AS bytes_per_delivery
FROM sizes, n
UNION ALL
SELECT 'all: ' || part, part, pg_size_pretty(sum(bytes)), round(sum(bytes) / 1e9 * 1e6 / max(n.deliveries), 3),
       round(sum(bytes) / max(n.deliveries))
FROM sizes, n GROUP BY part
UNION ALL
SELECT 'all', '', pg_size_pretty(sum(bytes)), round(sum(bytes) / 1e9 * 1e6 / max(n.deliveries), 3),
       round(sum(bytes) / max(n.deliveries))
FROM sizes, n
ORDER BY part DESC, name;
SELECT (SELECT seq FROM ledger_head) AS deliveries, (SELECT count(*) FROM tickets) AS tickets,
       pg_size_pretty(pg_database_size(current_database())) AS database;
