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

SELECT coalesce(status, '(none)') AS status,
       coalesce(agent_name, '(none)') AS agent,
       count(*) AS tickets,
       count(*) FILTER (WHERE answered) AS answered,
       count(*) FILTER (WHERE NOT answered) AS unanswered
FROM reporting.tickets
WHERE first_activity_at >= :'since'::timestamptz AND first_activity_at < :'until'::timestamptz
  AND (:'tenant' = '' OR tenant_id = :'tenant')
GROUP BY 1, 2
ORDER BY coalesce(status, '(none)') COLLATE "C", coalesce(agent_name, '(none)') COLLATE "C";

SELECT ticket, coalesce(tenant_id, '(none)') AS tenant, coalesce(agent_name, '(none)') AS agent,
       coalesce(status, '(none)') AS status, first_activity_at, last_activity_at, user_messages
FROM reporting.tickets
WHERE NOT answered
  AND first_activity_at >= :'since'::timestamptz AND first_activity_at < :'until'::timestamptz
  AND (:'tenant' = '' OR tenant_id = :'tenant')
ORDER BY first_activity_at, ticket COLLATE "C"
LIMIT (:'limit')::bigint;
