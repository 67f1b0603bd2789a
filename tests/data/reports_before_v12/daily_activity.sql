-- Daily activity per tenant (as before V12: tests/api/reports.rs compares it with sql/).
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
    SELECT (m.received_at AT TIME ZONE 'UTC')::date, t.tenant_id,
           0, (m.role = 'user')::int, (m.role = 'agent')::int, 0, 0
    FROM public.messages m
    LEFT JOIN public.tickets t ON t.name = m.ticket_name
    WHERE m.received_at >= :'since'::timestamptz AND m.received_at < :'until'::timestamptz
    UNION ALL
    SELECT (at AT TIME ZONE 'UTC')::date, tenant_id, 0, 0, 0, (NOT executed)::int, executed::int
    FROM reporting.commands
    WHERE at >= :'since'::timestamptz AND at < :'until'::timestamptz
)
SELECT day, coalesce(tenant_id, '(none)') AS tenant,
       sum(opened) AS tickets_opened,
       sum(user_messages) AS user_messages,
       sum(agent_messages) AS agent_messages,
       sum(proposed) AS commands_proposed,
       sum(executed) AS commands_executed
FROM events
WHERE :'tenant' = '' OR tenant_id = :'tenant'
GROUP BY day, tenant_id
ORDER BY day, coalesce(tenant_id, '(none)') COLLATE "C";
