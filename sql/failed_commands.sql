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

-- From the commands counted per day, ticket and sub-command (reporting.command_counts, V12):
-- one row per failure class of each, then counted per class and agent.
WITH failed AS (
    SELECT o.outcome, coalesce(t.agent_name, '(none)') AS agent, c.ticket_name AS ticket, c.sub_command,
           o.n, o.last_at
    FROM reporting.command_counts(:'since'::timestamptz, :'until'::timestamptz) c
    LEFT JOIN public.tickets t ON t.name = c.ticket_name
    CROSS JOIN LATERAL (VALUES ('error', c.error, c.last_error_at), ('denied', c.denied, c.last_denied_at),
                               ('not_found', c.not_found, c.last_not_found_at),
                               ('timeout', c.timeout, c.last_timeout_at)) o (outcome, n, last_at)
    WHERE o.n > 0
      AND (:'tenant' = '' OR t.tenant_id = :'tenant')
), most_failing AS (
    -- The sub-command with the most failures (ties: the first by name), as mode() would give.
    SELECT DISTINCT ON (outcome, agent) outcome, agent, sub_command
    FROM (SELECT outcome, agent, sub_command, sum(n) AS n FROM failed WHERE sub_command IS NOT NULL
          GROUP BY 1, 2, 3) per_sub_command
    ORDER BY outcome, agent, n DESC, sub_command COLLATE "C"
)
SELECT f.outcome,
       f.agent,
       sum(f.n)::bigint AS commands,
       count(DISTINCT f.ticket) AS tickets,
       m.sub_command AS most_failing,
       max(f.last_at) AS last_failed_at
FROM failed f
LEFT JOIN most_failing m ON m.outcome = f.outcome AND m.agent = f.agent
GROUP BY f.outcome, f.agent, m.sub_command
ORDER BY f.outcome COLLATE "C", commands DESC, f.agent COLLATE "C";
