-- Commands proposed but never executed.
-- Answers: which commands agents put forward (Cmds) that never ran: first a count per agent, then
-- the list, newest first.
-- Parameters (psql -v NAME=VALUE, all optional): since (default -infinity), until (default
-- infinity), tenant (default: all), limit (most rows in the list, default 100). Example:
--     psql "$DATABASE_URL" -v tenant=acme -v limit=20 -f sql/proposed_not_executed.sql
-- Rule (rule 4, the view reporting.proposals in migrations/V3__reporting.sql): a proposal
-- (executed = false) received in [since, until) was never executed when no executed command with
-- the same line (white space at both ends trimmed) was recorded on the same ticket in the same
-- delivery or a later one. A proposal whose delivery named no ticket is matched within its own
-- delivery only. "Never" means as of now, not within the window: an execution after `until`
-- still counts.
-- Result 1 columns: agent, proposed, never_executed, never_executed_pct.
-- Result 2 columns: at, ticket, tenant, agent, command (newest first, then by delivery and position).
\ir params.psql

-- The counts per agent from reporting.proposal_counts (V14: whole days from the day summaries,
-- the rest row by row); the list from reporting.proposals, newest first (an index on the
-- proposals' times).
SELECT agent, proposed, never_executed, round(100.0 * never_executed / proposed, 1) AS never_executed_pct
FROM (
    SELECT coalesce(c.agent_name, '(none)') AS agent,
           sum(c.proposed)::bigint AS proposed,
           sum(c.never_executed)::bigint AS never_executed
    FROM reporting.proposal_counts(:'since'::timestamptz, :'until'::timestamptz) c
    WHERE :'tenant' = '' OR c.tenant_id = :'tenant'
    GROUP BY 1
) per_agent
ORDER BY never_executed DESC, agent COLLATE "C";

SELECT at, ticket, coalesce(tenant_id, '(none)') AS tenant, coalesce(agent_name, '(none)') AS agent, command
FROM reporting.proposals
WHERE NOT was_executed
  AND at >= :'since'::timestamptz AND at < :'until'::timestamptz
  AND (:'tenant' = '' OR tenant_id = :'tenant')
ORDER BY at DESC, delivery_id DESC, position
LIMIT (:'limit')::bigint;
