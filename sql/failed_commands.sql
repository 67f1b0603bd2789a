-- Commands that failed, by outcome class and agent.
-- Answers: which agents' commands fail, and how: for each failure class and agent, how many
-- executed commands failed, on how many tickets, the sub-command that failed most, and when the
-- last one was.
-- Parameters (psql -v NAME=VALUE, all optional): since (default -infinity), until (default
-- infinity), tenant (default: all). Example:
--     psql "$DATABASE_URL" -v since=2025-06-01 -f sql/failed_commands.sql
-- Rules: a command failed when its outcome class (rule 2 in migrations/V3__reporting.sql) is
-- error, denied, not_found or timeout; unknown (no result) is not a failure. Executed commands
-- received in [since, until). Agent '(none)': unassigned tickets and commands without a ticket.
-- Most failing sub-command: ties go to the first by name.
-- Columns: outcome, agent, commands, tickets, most_failing, last_failed_at.
\ir params.psql

-- From the summaries (V14): per ticket and day the failures of each class and the last one
-- (reporting.ticket_counts: the commands, the distinct tickets, the last time), per agent and
-- sub-command the failures of each class (reporting.agent_counts: the most failing, ties to
-- the first by name as mode() gives them).
WITH per_ticket AS (
    SELECT coalesce(t.agent_name, '(none)') AS agent, c.ticket_name, f.outcome, f.n, f.last_at
    FROM reporting.ticket_counts(:'since'::timestamptz, :'until'::timestamptz) c
    LEFT JOIN public.tickets t ON t.name = c.ticket_name
    CROSS JOIN LATERAL (VALUES ('error', c.error, c.last_error_at), ('denied', c.denied, c.last_denied_at),
                               ('not_found', c.not_found, c.last_not_found_at),
                               ('timeout', c.timeout, c.last_timeout_at)) f (outcome, n, last_at)
    WHERE f.n > 0
      AND (:'tenant' = '' OR t.tenant_id = :'tenant')
), per_sub_command AS (
    SELECT coalesce(a.agent_name, '(none)') AS agent, f.outcome, a.sub_command, sum(f.n) AS n
    FROM reporting.agent_counts(:'since'::timestamptz, :'until'::timestamptz) a
    CROSS JOIN LATERAL (VALUES ('error', a.error), ('denied', a.denied), ('not_found', a.not_found),
                               ('timeout', a.timeout)) f (outcome, n)
    WHERE f.n > 0 AND a.sub_command IS NOT NULL
      AND (:'tenant' = '' OR a.tenant_id = :'tenant')
    GROUP BY 1, 2, 3
), most_failing AS (
    SELECT DISTINCT ON (outcome, agent) outcome, agent, sub_command
    FROM per_sub_command
    ORDER BY outcome, agent, n DESC, sub_command COLLATE "C"
)
SELECT p.outcome,
       p.agent,
       sum(p.n)::bigint AS commands,
       count(DISTINCT p.ticket_name) AS tickets,
       m.sub_command AS most_failing,
       max(p.last_at) AS last_failed_at
FROM per_ticket p
LEFT JOIN most_failing m ON m.outcome = p.outcome AND m.agent = p.agent
GROUP BY p.outcome, p.agent, m.sub_command
ORDER BY p.outcome COLLATE "C", commands DESC, p.agent COLLATE "C";
