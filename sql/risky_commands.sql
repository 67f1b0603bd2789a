-- Risky commands: deleting, terminating, destroying, changing permissions, touching secrets.
-- Answers: which risky commands agents ran or proposed: first a count per risk class and agent,
-- then the list, newest first.
-- Parameters (psql -v NAME=VALUE, all optional): since (default -infinity), until (default
-- infinity), tenant (default: all), limit (most rows in the list, default 100). Example:
--     psql "$DATABASE_URL" -v since=2025-06-01 -v limit=50 -f sql/risky_commands.sql
-- Rule (rule 3, reporting.command_risk in migrations/V3__reporting.sql): a command is risky when
-- its line, lower-cased, anywhere in it (so `cd x && terraform destroy` counts), matches one of
-- these classes; the first that matches, in this order, is reported:
--   destroy      "destroy" (terraform, pulumi, cdk, apply -destroy), "drop table|database|schema|
--                index|user|role", "truncate", "mkfs", "wipefs", "shred", `dd ... of=`
--   delete       "delete" (delete-bucket, --delete, SQL DELETE), "remove", "purge", "prune",
--                "uninstall", "rmi", and rm, rmdir, unlink, rb as a command word (not --rm)
--   terminate    "terminate", "kill", "pkill", "killall", "shutdown", "reboot", "halt",
--                "poweroff", "stop", "drain", "cordon", --replicas=0
--   permissions  chmod, chown, chgrp, setfacl, useradd, usermod, userdel, groupadd, visudo,
--                sudoers, GRANT, REVOKE, IAM attach-/detach-/put-...-policy, create-role|user|
--                group|policy, add-user-to-group, set-iam-policy, add-/remove-iam-policy-binding,
--                put-bucket-acl, (cluster)rolebinding, create (cluster)role, role assignment,
--                authorize-/revoke-security-group
--   secrets      reading or changing secrets or credentials: "secret", "password", "passwd",
--                "credential", "token", "access-key", "api-key", "private key", id_rsa, .pem,
--                .ssh/, --with-decryption, kms decrypt, vault read|write|kv|login|token
-- Proposed commands count too (outcome not_executed): an agent suggesting `rm -rf` is worth
-- knowing even if nobody ran it. Commands received in [since, until).
-- Result 1 columns: risk, agent, executed, proposed, failed, tickets.
-- Result 2 columns: at, ticket, tenant, agent, risk, outcome, command (newest first).
\ir params.psql

-- The counts from the commands counted per day, agent and tenant (reporting.agent_counts, V14),
-- the distinct tickets from those counted per day and ticket (reporting.ticket_counts); the
-- list from the commands themselves, newest first (an index on the risky ones' times).
WITH counts AS (
    SELECT c.risk,
           coalesce(c.agent_name, '(none)') AS agent,
           sum(c.executed)::bigint AS executed,
           sum(c.proposed)::bigint AS proposed,
           sum(c.error + c.denied + c.not_found + c.timeout)::bigint AS failed
    FROM reporting.agent_counts(:'since'::timestamptz, :'until'::timestamptz) c
    WHERE c.risk IS NOT NULL
      AND (:'tenant' = '' OR c.tenant_id = :'tenant')
    GROUP BY c.risk, 2
), tickets AS (
    SELECT r.risk, coalesce(t.agent_name, '(none)') AS agent, count(DISTINCT c.ticket_name) AS tickets
    FROM reporting.ticket_counts(:'since'::timestamptz, :'until'::timestamptz) c
    LEFT JOIN public.tickets t ON t.name = c.ticket_name
    CROSS JOIN LATERAL (VALUES ('destroy', c.destroy), ('delete', c.delete), ('terminate', c.terminate),
                               ('permissions', c.permissions), ('secrets', c.secrets)) r (risk, n)
    WHERE r.n > 0
      AND (:'tenant' = '' OR t.tenant_id = :'tenant')
    GROUP BY 1, 2
)
SELECT c.risk, c.agent, c.executed, c.proposed, c.failed, coalesce(t.tickets, 0) AS tickets
FROM counts c
LEFT JOIN tickets t ON t.risk = c.risk AND t.agent = c.agent
ORDER BY c.risk COLLATE "C", c.executed DESC, c.proposed DESC, c.agent COLLATE "C";

SELECT at, ticket, coalesce(tenant_id, '(none)') AS tenant, coalesce(agent_name, '(none)') AS agent,
       risk, outcome, command
FROM reporting.commands
WHERE risk IS NOT NULL
  AND at >= :'since'::timestamptz AND at < :'until'::timestamptz
  AND (:'tenant' = '' OR tenant_id = :'tenant')
ORDER BY at DESC, delivery_id DESC, position
LIMIT (:'limit')::bigint;
