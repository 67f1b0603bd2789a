-- Command usage per agent.
-- Answers: for each agent, how many commands it executed in the window, on how many distinct
-- tickets, and what share of them ended in an error or a denial.
-- Parameters (psql -v NAME=VALUE, all optional): since (default -infinity), until (default
-- infinity), tenant (default: all). Example:
--     psql "$DATABASE_URL" -v since=2025-06-01 -v until=2025-07-01 -f sql/agent_usage.sql
-- Rules: a command counts in the window when its delivery was received in [since, until); its
-- agent is its ticket's assignee as the ticket is now ('(none)' for unassigned tickets and
-- commands without a ticket). Proposed-only commands are not counted. "Error or denial" is outcome
-- class error or denied (rule 2 in migrations/V3__reporting.sql); not_found and timeout are not
-- counted in that share (see failed_commands.sql for every failure class).
-- Columns: agent, executed, tickets, errors, denials, error_or_denial_pct (of executed, 1 decimal).
\ir params.psql

-- Counted per (agent, ticket) first, from the commands counted per day and ticket
-- (reporting.ticket_counts, V14), where count(DISTINCT ticket) would sort every command.
SELECT agent,
       sum(executed) AS executed,
       count(ticket) AS tickets,
       sum(errors) AS errors,
       sum(denials) AS denials,
       round(100.0 * sum(errors + denials) / sum(executed), 1) AS error_or_denial_pct
FROM (
    SELECT coalesce(t.agent_name, '(none)') AS agent,
           c.ticket_name AS ticket,
           sum(c.executed)::bigint AS executed,
           sum(c.error)::bigint AS errors,
           sum(c.denied)::bigint AS denials
    FROM reporting.ticket_counts(:'since'::timestamptz, :'until'::timestamptz) c
    LEFT JOIN public.tickets t ON t.name = c.ticket_name
    WHERE c.executed > 0
      AND (:'tenant' = '' OR t.tenant_id = :'tenant')
    GROUP BY 1, 2
) per_ticket
GROUP BY agent
ORDER BY executed DESC, agent COLLATE "C";
