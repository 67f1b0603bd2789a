-- The most used tools and sub-commands per agent.
-- Answers: for each agent, its `top` most used tools (aws, kubectl, ...) and its `top` most used
-- sub-commands (aws s3, kubectl get, ...), with how often and what share of the agent's executed
-- commands in the window they make.
-- Parameters (psql -v NAME=VALUE, all optional): since (default -infinity), until (default
-- infinity), tenant (default: all), top (default 5). Example:
--     psql "$DATABASE_URL" -v top=3 -f sql/top_tools.sql
-- Rules: executed commands only, received in [since, until); tool and sub-command by rule 1 in
-- migrations/V3__reporting.sql (wrappers such as sudo and FOO=1 skipped); lines with no word are
-- left out. Ties rank by name. Agent '(none)': unassigned tickets and commands without a ticket.
-- Columns: agent, kind ('tool' or 'sub-command'), rank, name, uses, share_pct.
\ir params.psql

-- One pass over the commands counted per day, agent and tenant (reporting.agent_counts, V14),
-- grouped by sub-command (each belongs to one tool); tools are sums.
WITH per_sub_command AS (
    SELECT coalesce(c.agent_name, '(none)') AS agent, c.tool, c.sub_command, sum(c.executed)::bigint AS uses
    FROM reporting.agent_counts(:'since'::timestamptz, :'until'::timestamptz) c
    WHERE c.executed > 0 AND c.tool IS NOT NULL
      AND (:'tenant' = '' OR c.tenant_id = :'tenant')
    GROUP BY 1, c.tool, c.sub_command
), counted AS (
    SELECT agent, 'tool' AS kind, tool AS name, sum(uses) AS uses FROM per_sub_command GROUP BY agent, tool
    UNION ALL
    SELECT agent, 'sub-command', sub_command, sum(uses) FROM per_sub_command GROUP BY agent, sub_command
), ranked AS (
    SELECT agent, kind, name, uses,
           row_number() OVER (PARTITION BY agent, kind ORDER BY uses DESC, name COLLATE "C") AS rank,
           sum(uses) OVER (PARTITION BY agent, kind) AS total
    FROM counted
)
SELECT agent, kind, rank, name, uses, round(100.0 * uses / total, 1) AS share_pct
FROM ranked
WHERE rank <= (:'top')::int
ORDER BY agent COLLATE "C", kind = 'tool' DESC, rank;
