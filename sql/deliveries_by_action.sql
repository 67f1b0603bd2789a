-- Which actions does the ServiceDesk report, how often, and how many of them failed or could not be normalized?
-- Parameters (all optional): -v since=2026-01-01T00:00:00Z  -v until=2026-02-01T00:00:00Z  (since inclusive, until exclusive)
-- Run: psql "$DATABASE_URL" -v since=... -v until=... -f sql/deliveries_by_action.sql
\if :{?since} \else \set since '-infinity' \endif
\if :{?until} \else \set until 'infinity' \endif

-- Counted per day and action (reporting.delivery_counts, V14: whole days from reporting.delivery_days,
-- the rest row by row), not over every delivery's row.
SELECT coalesce(c.action, '(none)')                                   AS action,
       sum(c.deliveries)::bigint                                      AS deliveries,
       sum(c.failed)::bigint                                          AS failed,
       sum(c.not_normalized)::bigint                                  AS not_normalized,
       min(c.first_received)                                          AS first_received,
       max(c.last_received)                                           AS last_received
FROM reporting.delivery_counts(:'since'::timestamptz, :'until'::timestamptz) c
GROUP BY 1
ORDER BY deliveries DESC, action;
