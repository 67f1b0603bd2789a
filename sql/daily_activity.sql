-- Daily activity per tenant.
-- Answers: for each day (UTC) and tenant, how many tickets were opened, how many messages were
-- written (by users and by agents) and how many commands were proposed and executed.
-- Parameters (psql -v NAME=VALUE, all optional): since (default -infinity), until (default
-- infinity), tenant (default: all). Example:
--     psql "$DATABASE_URL" -v since=2025-06-01 -v until=2025-06-08 -v tenant=acme -f sql/daily_activity.sql
-- Rules: a ticket is opened on the day the record first saw it (first_activity_at: its first
-- delivery, AddTicket or a message that came before it), not on the sender's CreateTime, which
-- may be missing or in another clock. Messages and commands count on the day their delivery was
-- received. Each is counted for its ticket's tenant ('(none)' when the ticket states none or the
-- command has no ticket). Only days with some activity are listed; days are UTC days.
-- Columns: day, tenant, tickets_opened, user_messages, agent_messages, commands_proposed,
-- commands_executed.
\ir params.psql

WITH events AS (
    SELECT (first_activity_at AT TIME ZONE 'UTC')::date AS day, tenant_id,
           1 AS opened, 0 AS user_messages, 0 AS agent_messages, 0 AS proposed, 0 AS executed
    FROM reporting.tickets
    WHERE first_activity_at >= :'since'::timestamptz AND first_activity_at < :'until'::timestamptz
    UNION ALL
    -- Messages and commands counted per day and ticket (V12), not row by row.
    SELECT m.day, t.tenant_id, 0, m.user_messages, m.agent_messages, 0, 0
    FROM reporting.message_counts(:'since'::timestamptz, :'until'::timestamptz) m
    LEFT JOIN public.tickets t ON t.name = m.ticket_name
    UNION ALL
    -- Commands counted per day and tenant (V14).
    SELECT c.day, c.tenant_id, 0, 0, 0, c.proposed, c.executed
    FROM reporting.agent_counts(:'since'::timestamptz, :'until'::timestamptz) c
)
SELECT day, coalesce(tenant_id, '(none)') AS tenant,
       sum(opened)::bigint AS tickets_opened,
       sum(user_messages)::bigint AS user_messages,
       sum(agent_messages)::bigint AS agent_messages,
       sum(proposed)::bigint AS commands_proposed,
       sum(executed)::bigint AS commands_executed
FROM events
WHERE :'tenant' = '' OR tenant_id = :'tenant'
GROUP BY day, tenant_id
ORDER BY day, coalesce(tenant_id, '(none)') COLLATE "C";
