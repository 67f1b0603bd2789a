-- Command usage per agent (as before V12: tests/api/reports.rs compares it with sql/).
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

-- Counted per (agent, ticket) first: hash aggregation in parallel, where count(DISTINCT ticket)
-- would sort every command.
SELECT agent,
       sum(executed) AS executed,
       count(ticket) AS tickets,
       sum(errors) AS errors,
       sum(denials) AS denials,
       round(100.0 * sum(errors + denials) / sum(executed), 1) AS error_or_denial_pct
FROM (
    SELECT coalesce(agent_name, '(none)') AS agent,
           ticket,
           count(*) AS executed,
           count(*) FILTER (WHERE outcome = 'error') AS errors,
           count(*) FILTER (WHERE outcome = 'denied') AS denials
    FROM reporting.commands
    WHERE executed
      AND at >= :'since'::timestamptz AND at < :'until'::timestamptz
      AND (:'tenant' = '' OR tenant_id = :'tenant')
    GROUP BY 1, ticket
) per_ticket
GROUP BY agent
ORDER BY executed DESC, agent COLLATE "C";
