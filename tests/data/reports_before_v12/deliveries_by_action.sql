-- Which actions does the ServiceDesk report, how often, and how many of them failed or could not be normalized?
-- Parameters (all optional): -v since=2026-01-01T00:00:00Z  -v until=2026-02-01T00:00:00Z  (since inclusive, until exclusive)
-- Run: psql "$DATABASE_URL" -v since=... -v until=... -f sql/deliveries_by_action.sql
\if :{?since} \else \set since '-infinity' \endif
\if :{?until} \else \set until 'infinity' \endif

SELECT coalesce(d.action, '(none)')                                   AS action,
       count(*)                                                       AS deliveries,
       count(*) FILTER (WHERE NOT e.success)                          AS failed,
       count(*) FILTER (WHERE d.normalize_error IS NOT NULL)          AS not_normalized,
       min(d.received_at)                                             AS first_received,
       max(d.received_at)                                             AS last_received
FROM deliveries d
JOIN action_events e ON e.seq = d.seq
WHERE d.received_at >= :'since'::timestamptz
  AND d.received_at <  :'until'::timestamptz
GROUP BY 1
ORDER BY deliveries DESC, action;
