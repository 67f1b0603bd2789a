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

SELECT outcome,
       coalesce(agent_name, '(none)') AS agent,
       count(*) AS commands,
       count(DISTINCT ticket) AS tickets,
       mode() WITHIN GROUP (ORDER BY sub_command COLLATE "C") AS most_failing,
       max(at) AS last_failed_at
FROM reporting.commands
WHERE failed
  AND at >= :'since'::timestamptz AND at < :'until'::timestamptz
  AND (:'tenant' = '' OR tenant_id = :'tenant')
GROUP BY outcome, 2
ORDER BY outcome COLLATE "C", commands DESC, coalesce(agent_name, '(none)') COLLATE "C";
