-- Tickets per status and assignee, and tickets with no agent answer yet.
-- Answers: how many tickets each status and assignee has, how many of them the agent has answered;
-- then which tickets have had no agent answer at all, oldest first (the longest waiting).
-- Parameters (psql -v NAME=VALUE, all optional): since (default -infinity), until (default
-- infinity), tenant (default: all), limit (most rows in the list, default 100). Example:
--     psql "$DATABASE_URL" -v tenant=acme -f sql/tickets_by_status.sql
-- Rules: tickets first seen in [since, until) (first_activity_at), with their status and assignee
-- as they are now ('(none)' when never stated). A ticket is answered when at least one agent
-- message was recorded for it (a SendTicketMessage whose ResponseBody.Content was present and
-- whose delivery succeeded); a ticket with no message at all is unanswered too. The list shows
-- every status, closed ones included: a ticket closed without an answer is worth seeing.
-- Result 1 columns: status, agent, tickets, answered, unanswered.
-- Result 2 columns: ticket, tenant, agent, status, first_activity_at, last_activity_at,
-- user_messages (oldest first, then by name).
\ir params.psql

-- The tickets themselves, answered when an agent message is counted for them, at any time, by
-- reporting.message_counts (V12: the day summary for classified deliveries, the messages above
-- the classifier's watermark one by one), not every message read and grouped as
-- reporting.tickets does. The list's user messages are counted for its rows only
-- (messages_ticket).
WITH answered AS (
    SELECT m.ticket_name, true AS answered
    FROM reporting.message_counts('-infinity', 'infinity') m
    GROUP BY m.ticket_name
    HAVING sum(m.agent_messages) > 0
), tickets AS (
    SELECT t.name AS ticket, t.tenant_id, t.agent_name, t.status, t.first_seen_at AS first_activity_at,
           t.last_activity_at, a.answered IS TRUE AS answered
    FROM public.tickets t
    LEFT JOIN answered a ON a.ticket_name = t.name
    WHERE t.first_seen_at >= :'since'::timestamptz AND t.first_seen_at < :'until'::timestamptz
      AND (:'tenant' = '' OR t.tenant_id = :'tenant')
)
SELECT coalesce(status, '(none)') AS status,
       coalesce(agent_name, '(none)') AS agent,
       count(*) AS tickets,
       count(*) FILTER (WHERE answered) AS answered,
       count(*) FILTER (WHERE NOT answered) AS unanswered
FROM tickets
GROUP BY 1, 2
ORDER BY coalesce(status, '(none)') COLLATE "C", coalesce(agent_name, '(none)') COLLATE "C";

WITH answered AS (
    SELECT m.ticket_name, true AS answered
    FROM reporting.message_counts('-infinity', 'infinity') m
    GROUP BY m.ticket_name
    HAVING sum(m.agent_messages) > 0
), flagged AS MATERIALIZED (
    -- Every ticket of the window with its flag first (one hash join), then the oldest: planned
    -- with the LIMIT inside, the join walks the tickets in order and loops over the answered
    -- set (whose size the planner does not know) for each.
    SELECT t.name AS ticket, t.tenant_id, t.agent_name, t.status, t.first_seen_at AS first_activity_at,
           t.last_activity_at, a.answered IS TRUE AS answered
    FROM public.tickets t
    LEFT JOIN answered a ON a.ticket_name = t.name
    WHERE t.first_seen_at >= :'since'::timestamptz AND t.first_seen_at < :'until'::timestamptz
      AND (:'tenant' = '' OR t.tenant_id = :'tenant')
), waiting AS (
    SELECT * FROM flagged WHERE NOT answered
    ORDER BY first_activity_at, ticket COLLATE "C"
    LIMIT (:'limit')::bigint
)
SELECT w.ticket, coalesce(w.tenant_id, '(none)') AS tenant, coalesce(w.agent_name, '(none)') AS agent,
       coalesce(w.status, '(none)') AS status, w.first_activity_at, w.last_activity_at,
       (SELECT count(*) FROM public.messages m WHERE m.ticket_name = w.ticket AND m.role = 'user') AS user_messages
FROM waiting w
ORDER BY w.first_activity_at, w.ticket COLLATE "C";
