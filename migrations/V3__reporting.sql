-- Reporting layer (issue 4): the schema `reporting` with the classification rules as IMMUTABLE
-- functions, views (one row per command, per ticket, per proposal), the index the "never executed" rule needs, and the
-- read-only group role ticket_audit_reporting. sql/README.md explains all of it with examples.
--
-- The rules live in the functions only. The public commands table stores their values as generated
-- columns, so a rule is evaluated once, when the command is written (and again when the table is
-- rebuilt), never per report row: that is what keeps reports over 1,000,000 commands under 2 seconds.
-- Changing a rule means a new migration that replaces the function and re-creates the generated
-- column (DROP COLUMN ... ADD COLUMN), which recomputes every row.

CREATE SCHEMA reporting;
COMMENT ON SCHEMA reporting IS
    'Views, rules and helpers for analysts (issue 4). Read with the role ticket_audit_reporting; see sql/README.md.';

-- ------------------------------------------------------------------------------------------------
-- Rule 1: the tool and the sub-command of a command line.
--
-- * The line is split on white space; quotes are not interpreted. Only the first simple command of
--   a line counts (`cd /srv && terraform apply` has the tool `cd`).
-- * Leading wrappers are skipped: environment assignments (`FOO=1`, `AWS_PROFILE=prod`), and the
--   words `sudo`, `env`, `nohup`, `time`, `exec` with their options (the options of sudo and env
--   that take a value, e.g. `sudo -u root`, `env -u NAME`, skip that value too).
-- * The tool is the first remaining word without its directory (`/usr/local/bin/kubectl` ->
--   `kubectl`). A line with no word has no tool (null).
-- * The sub-command is the tool, a space and the first later word that is not an option, when that
--   word looks like a sub-command: lower-case letters, digits, `_` and `-`, starting with a letter
--   (`aws s3`, `kubectl get`, `terraform apply`, `git status`). Options before it are skipped
--   (`kubectl -n prod get pods` -> `kubectl get`); of the global options that take a separate
--   value, those in the list below skip their value too. If the first non-option word is a path, a
--   file name, a number, quoted, or anything else (`ls -la /tmp`, `cat app.log`), or `--` ends the
--   options, the sub-command is the tool alone. For tools without sub-commands the second word can
--   be an argument (`grep error app.log` -> `grep error`): the rule does not know every tool.
-- ------------------------------------------------------------------------------------------------
CREATE FUNCTION reporting.command_words(command text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $fn$
DECLARE
    w text[] := regexp_split_to_array(btrim(command, E' \t\r\n'), E'\\s+');
    n int := coalesce(array_length(w, 1), 0);
    i int := 1;
    wrapper text;
    tool text;
    sub text;
BEGIN
    LOOP
        EXIT WHEN i > n;
        IF w[i] ~ '^[A-Za-z_][A-Za-z0-9_]*=' THEN
            i := i + 1;
        ELSIF w[i] IN ('sudo', 'env', 'nohup', 'time', 'exec') THEN
            wrapper := w[i];
            i := i + 1;
            WHILE i <= n AND w[i] LIKE '-%' LOOP
                IF w[i] = '--' THEN
                    i := i + 1;
                    EXIT;
                END IF;
                IF (wrapper = 'sudo' AND w[i] IN ('-u', '-g', '-C', '-D', '-h', '-p', '-R', '-r', '-T', '-t', '-U'))
                    OR (wrapper = 'env' AND w[i] IN ('-u', '-C', '-S', '--unset', '--chdir', '--split-string')) THEN
                    i := i + 2;
                ELSE
                    i := i + 1;
                END IF;
            END LOOP;
        ELSE
            EXIT;
        END IF;
    END LOOP;
    IF i > n OR w[i] = '' THEN
        RETURN ARRAY[NULL, NULL]::text[];
    END IF;
    tool := regexp_replace(w[i], '^.*/', '');
    IF tool = '' THEN
        tool := w[i];
    END IF;
    i := i + 1;
    WHILE i <= n AND w[i] LIKE '-%' AND w[i] <> '--' LOOP
        -- Global options that take a separate value, in the tools agents use most.
        IF w[i] IN ('-n', '--namespace', '--context', '--cluster', '--kubeconfig', '--user', '--as',
                    '-s', '--server', '--token', '--profile', '--region', '--endpoint-url', '--output',
                    '-o', '--project', '--account', '--configuration', '--subscription', '-C', '-c',
                    '--config', '-H', '--host', '--kube-context') THEN
            i := i + 2;
        ELSE
            i := i + 1;
        END IF;
    END LOOP;
    IF i <= n AND w[i] ~ '^[a-z][a-z0-9_-]*$' THEN
        sub := w[i];
    END IF;
    RETURN ARRAY[tool, sub];
END
$fn$;
COMMENT ON FUNCTION reporting.command_words(text) IS
    'Rule 1: {tool, word after it} of a command line, or {null, null}: wrappers (sudo, env, nohup, time, exec, FOO=1) skipped, options skipped; see V3__reporting.sql.';

CREATE FUNCTION reporting.command_tool(command text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (reporting.command_words(command))[1];
COMMENT ON FUNCTION reporting.command_tool(text) IS
    'Rule 1: the tool of a command line (first word after wrappers, without its directory), e.g. kubectl.';

CREATE FUNCTION reporting.command_sub_command(command text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (SELECT w[1] || coalesce(' ' || w[2], '') FROM (SELECT reporting.command_words(command) AS w) s);
COMMENT ON FUNCTION reporting.command_sub_command(text) IS
    'Rule 1: tool and sub-command of a command line, e.g. ''kubectl get'', or the tool alone when no word looks like a sub-command.';

-- ------------------------------------------------------------------------------------------------
-- Rule 2: the outcome class of a command, from its result. The first rule that matches wins:
--
--   not_executed  the command was only proposed (executed = false; result is then null).
--   unknown       executed, but the sender sent no result, or only white space.
--   timeout       the result says it timed out: "timed out", "deadline exceeded", "ETIMEDOUT",
--                 "i/o timeout", "<read|connect|connection|request|gateway|operation|socket> timeout",
--                 "timeout expired|exceeded|waiting|after|while", "exit code 124".
--   denied        refused for lack of rights: "access denied", "AccessDenied", "permission denied",
--                 "forbidden", "unauthorized", "not authorized", "authorization failed",
--                 "insufficient privileges|permissions|scope", "operation not permitted",
--                 "not permitted to", "is not allowed to", "does not have permission|access".
--   not_found     the thing (or the command) is not there: "not found", "NotFound", "no such file,
--                 directory, host, bucket, key", "NoSuchKey", "NoSuchBucket", "NoSuchEntity",
--                 "does not exist", "doesn't exist", "unknown command", "unknown host".
--   error         any other failure marker: a line starting with "error", "fatal", "panic",
--                 "exception" or "traceback"; "error:", "error(", "error[", "error from server";
--                 "an error occurred"; "exception:"; "failed to|with|because", "failed:";
--                 "cannot ", "can't ", "unable to"; "connection refused"; "exit code|status N"
--                 with N not 0; "segmentation fault"; "syntax error"; "invalid argument|option|
--                 value|parameter|syntax"; "command failed"; "returned non-zero".
--   ok            executed, with a result that shows none of the markers above.
--
-- Matching ignores case and reads the first 4,096 characters of the result only: tools print their
-- error first, and a long successful output (a log, a listing) is not held to what it quotes
-- further down. The classes are a heuristic: "ok" means "no failure marker", not "proven success".
-- Failed commands, in the reports, are those of class error, denied, not_found or timeout.
-- ------------------------------------------------------------------------------------------------
CREATE FUNCTION reporting.command_outcome(executed boolean, result text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (
    SELECT CASE
        WHEN executed IS NOT TRUE THEN 'not_executed'
        WHEN h IS NULL OR btrim(h, E' \t\r\n') = '' THEN 'unknown'
        WHEN h ~* ('\mtimed out\M|deadline exceeded|\metimedout\M|i/o timeout'
                   '|\m(read|connect|connection|request|gateway|operation|socket) time-?out\M'
                   '|\mtimeout (expired|exceeded|waiting|after|while)\M|exit (code|status):? 124\M') THEN 'timeout'
        WHEN h ~* ('access ?denied|permission denied|forbidden|unauthori[sz]ed|not authori[sz]ed'
                   '|authori[sz]ation ?failed|insufficient (privileges|permissions|scope)'
                   '|operation not permitted|not permitted to|is not allowed to'
                   '|does not have (permission|access)') THEN 'denied'
        WHEN h ~* ('not ?found|no ?such ?(file|directory|host|bucket|key|entity)'
                   '|does not exist|doesn''t exist|unknown (command|host)') THEN 'not_found'
        WHEN h ~* ('(^|\n)\s*(error|fatal|panic|exception|traceback)\M|\merror( from server)?\s*[:(\[]'
                   '|an error occurred|\mexception:|\mfailed (to|with|because)\M|\mfailed:|\mcannot |\mcan''t '
                   '|\munable to\M|connection refused|exit (code|status):? [1-9]|segmentation fault'
                   '|syntax error|\minvalid (argument|option|value|parameter|syntax)|command failed'
                   '|returned non-zero') THEN 'error'
        ELSE 'ok'
    END
    FROM (SELECT left(result, 4096) AS h) head
);
COMMENT ON FUNCTION reporting.command_outcome(boolean, text) IS
    'Rule 2: outcome class of a command: not_executed, unknown, timeout, denied, not_found, error or ok (first match wins; see V3__reporting.sql).';

-- Not STRICT, so that PostgreSQL inlines it into queries (a call per row costs 0.6 s per million).
CREATE FUNCTION reporting.is_failure(outcome text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN outcome IN ('error', 'denied', 'not_found', 'timeout');
COMMENT ON FUNCTION reporting.is_failure(text) IS
    'A failed command: outcome error, denied, not_found or timeout (unknown is not counted as a failure).';

-- ------------------------------------------------------------------------------------------------
-- Rule 3: risky commands. A command is risky when its line (any part of it, lower-cased, so
-- `cd x && terraform destroy` counts) matches one of these classes; the first class that matches
-- is the one reported, in this order:
--
--   destroy      destroys infrastructure or data wholesale: the word "destroy" (terraform, pulumi,
--                cdk; `terraform apply -destroy`), "drop table|database|schema|index|user|role",
--                "truncate", "mkfs", "wipefs", "shred", `dd ... of=`.
--   delete       deletes: the words "delete" (also `delete-bucket`, `--delete`, SQL DELETE),
--                "remove", "purge", "prune", "uninstall", "rmi", and the commands `rm`, `rmdir`,
--                `unlink`, `rb` (as a word of their own, not `--rm`).
--   terminate    stops or kills something running: "terminate" (terminate-instances), "kill",
--                "pkill", "killall", "shutdown", "reboot", "halt", "poweroff", "stop"
--                (stop-instances, systemctl stop), "drain", "cordon", scaling to 0 replicas.
--   permissions  changes who may do what: chmod, chown, chgrp, setfacl, useradd, usermod, userdel,
--                groupadd, visudo, sudoers, GRANT, REVOKE; IAM: attach-/detach-/put-...-policy,
--                create-role|user|group|policy, add-user-to-group, set-iam-policy,
--                add-/remove-iam-policy-binding, put-bucket-acl, (cluster)rolebinding,
--                `create role|clusterrole`, "role assignment", authorize-/revoke-security-group.
--   secrets      reads or changes secrets or credentials (showing a secret to an agent is as much
--                a compliance event as changing it): "secret" (kubectl secrets, secretsmanager,
--                get-secret-value), "password", "passwd", "credential", "token", "access-key",
--                "api-key"/"apikey", "private key", "id_rsa", ".pem", ".ssh/", "--with-decryption",
--                "kms decrypt", `vault read|write|kv|login|token`.
--
-- A command that matches no class is not risky (null). Proposed commands are classified too.
-- ------------------------------------------------------------------------------------------------
CREATE FUNCTION reporting.command_risk(command text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT CASE
        WHEN c ~ ('\mdestroy\M|\mdrop (table|database|schema|index|user|role)\M|\mtruncate\M|\mmkfs'
                  '|\mwipefs\M|\mshred\M|(^|[\s;&|(])dd\s.*\mof=') THEN 'destroy'
        WHEN c ~ ('\mdelete\M|\mremove\M|\mpurge\M|\mprune\M|\muninstall\M|\mrmi\M'
                  '|(^|[\s;&|(/])(rm|rmdir|unlink|rb)(\s|$)') THEN 'delete'
        WHEN c ~ ('\mterminate|\mkill\M|\mpkill\M|\mkillall\M|\mshutdown\M|\mreboot\M|\mhalt\M'
                  '|\mpoweroff\M|\mstop\M|\mdrain\M|\mcordon\M|--replicas[= ]0\M') THEN 'terminate'
        WHEN c ~ ('\m(chmod|chown|chgrp|setfacl|useradd|usermod|userdel|groupadd|visudo|sudoers|grant|revoke)\M'
                  '|\m(attach|detach|put)-[a-z-]*policy\M|\mcreate-(role|user|group|policy)\M'
                  '|\madd-user-to-group\M|\mset-iam-policy\M|\m(add|remove)-iam-policy-binding\M'
                  '|\mput-bucket-acl\M|\m(cluster)?rolebinding\M|\mcreate (cluster)?role\M'
                  '|\mrole assignment\M|\m(authorize|revoke)-security-group') THEN 'permissions'
        WHEN c ~ ('secret|password|\mpasswd\M|credential|\mtokens?\M|access-key|\mapi-?keys?\M'
                  '|private[-_ ]?key|id_rsa|\.pem\M|\.ssh/|--with-decryption|\mkms decrypt\M'
                  '|\mvault (read|write|kv|login|token)\M') THEN 'secrets'
    END
    FROM (SELECT lower(command) AS c) lowered
);
COMMENT ON FUNCTION reporting.command_risk(text) IS
    'Rule 3: risk class of a command line: destroy, delete, terminate, permissions, secrets, or null when not risky (first match wins; see V3__reporting.sql).';

-- ------------------------------------------------------------------------------------------------
-- The rules' values, stored with each command. Generated columns cannot drift from the rules and
-- cost the writer one evaluation per command; computing them per report row instead costs seconds
-- at 1,000,000 commands (figures in sql/README.md). Adding them rewrites the table once.
-- ------------------------------------------------------------------------------------------------
ALTER TABLE public.commands
    ADD COLUMN tool text GENERATED ALWAYS AS (reporting.command_tool(command)) STORED,
    ADD COLUMN sub_command text GENERATED ALWAYS AS (reporting.command_sub_command(command)) STORED,
    ADD COLUMN outcome text GENERATED ALWAYS AS (reporting.command_outcome(executed, result)) STORED,
    ADD COLUMN risk text GENERATED ALWAYS AS (reporting.command_risk(command)) STORED;
COMMENT ON COLUMN public.commands.tool IS 'reporting.command_tool(command), stored (rule 1).';
COMMENT ON COLUMN public.commands.sub_command IS 'reporting.command_sub_command(command), stored (rule 1).';
COMMENT ON COLUMN public.commands.outcome IS 'reporting.command_outcome(executed, result), stored (rule 2).';
COMMENT ON COLUMN public.commands.risk IS 'reporting.command_risk(command), stored (rule 3); null when not risky.';

-- ------------------------------------------------------------------------------------------------
-- Views
-- ------------------------------------------------------------------------------------------------
CREATE VIEW reporting.commands AS
SELECT c.seq AS delivery_id,
       c.position,
       c.ticket_name AS ticket,
       t.tenant_id,
       t.agent_name,
       t.agent_id,
       c.recorded_at AS at,
       c.executed,
       c.command,
       c.result,
       c.tool,
       c.sub_command,
       c.outcome,
       reporting.is_failure(c.outcome) AS failed,
       c.risk
FROM public.commands c
LEFT JOIN public.tickets t ON t.name = c.ticket_name;
COMMENT ON VIEW reporting.commands IS
    'One row per command, proposed or executed, with its ticket''s tenant and agent and its classification (rules 1 to 3 in V3__reporting.sql).';
COMMENT ON COLUMN reporting.commands.delivery_id IS 'The delivery (seq) that carried the command; with position, the command''s key.';
COMMENT ON COLUMN reporting.commands.position IS 'Position within the delivery (messages first, then proposed, then executed commands).';
COMMENT ON COLUMN reporting.commands.ticket IS 'Ticket name; null when the delivery named no ticket.';
COMMENT ON COLUMN reporting.commands.tenant_id IS 'Tenant of the command''s ticket (as the ticket is now); null when unknown.';
COMMENT ON COLUMN reporting.commands.agent_name IS 'Assignee of the command''s ticket (as the ticket is now); null when unassigned or unknown.';
COMMENT ON COLUMN reporting.commands.agent_id IS 'Assignee id of the command''s ticket.';
COMMENT ON COLUMN reporting.commands.at IS 'When the delivery carrying the command was received (the record''s clock).';
COMMENT ON COLUMN reporting.commands.executed IS 'True when the command ran (executedCmds); false when only proposed (Cmds).';
COMMENT ON COLUMN reporting.commands.command IS 'The command line as sent (U+0000 stored as ␀0).';
COMMENT ON COLUMN reporting.commands.result IS 'Its output; null when only proposed or when the sender sent none.';
COMMENT ON COLUMN reporting.commands.tool IS 'Rule 1: first word after wrappers (sudo, env, FOO=1), without directory: aws, kubectl, terraform.';
COMMENT ON COLUMN reporting.commands.sub_command IS 'Rule 1: tool and first non-option word that looks like a sub-command: aws s3, kubectl get; else the tool.';
COMMENT ON COLUMN reporting.commands.outcome IS 'Rule 2: not_executed, unknown, timeout, denied, not_found, error or ok.';
COMMENT ON COLUMN reporting.commands.failed IS 'Outcome is error, denied, not_found or timeout.';
COMMENT ON COLUMN reporting.commands.risk IS 'Rule 3: destroy, delete, terminate, permissions or secrets; null when not risky.';

-- The aggregates are grouped by ticket so that PostgreSQL drops a join whose columns a query does
-- not use (a report on statuses never reads the commands).
CREATE VIEW reporting.tickets AS
SELECT t.name AS ticket,
       t.title,
       t.status,
       t.tenant_id,
       t.agent_name,
       t.agent_id,
       t.created_at,
       t.first_seen_at AS first_activity_at,
       t.last_activity_at,
       coalesce(m.messages, 0) AS messages,
       coalesce(m.user_messages, 0) AS user_messages,
       coalesce(m.agent_messages, 0) AS agent_messages,
       coalesce(c.proposed, 0) AS commands_proposed,
       coalesce(c.executed, 0) AS commands_executed,
       coalesce(c.failed, 0) AS commands_failed,
       coalesce(m.agent_messages, 0) > 0 AS answered
FROM public.tickets t
LEFT JOIN (
    SELECT ticket_name,
           count(*) AS messages,
           count(*) FILTER (WHERE role = 'user') AS user_messages,
           count(*) FILTER (WHERE role = 'agent') AS agent_messages
    FROM public.messages
    GROUP BY ticket_name
) m ON m.ticket_name = t.name
LEFT JOIN (
    SELECT ticket_name,
           count(*) FILTER (WHERE NOT executed) AS proposed,
           count(*) FILTER (WHERE executed) AS executed,
           count(*) FILTER (WHERE reporting.is_failure(outcome)) AS failed
    FROM public.commands
    WHERE ticket_name IS NOT NULL
    GROUP BY ticket_name
) c ON c.ticket_name = t.name;
COMMENT ON VIEW reporting.tickets IS
    'One row per ticket: its fields as now, its message and command counts, and its first and last activity.';
COMMENT ON COLUMN reporting.tickets.ticket IS 'Ticket name (unique).';
COMMENT ON COLUMN reporting.tickets.status IS 'Status as last stated by a successful AddTicket or ticket read; null when never stated.';
COMMENT ON COLUMN reporting.tickets.tenant_id IS 'Tenant; null when no delivery stated it (e.g. a message arrived before its ticket).';
COMMENT ON COLUMN reporting.tickets.agent_name IS 'Assignee''s agent name; null when unassigned or unknown.';
COMMENT ON COLUMN reporting.tickets.created_at IS 'CreateTime as the sender stated it; null when absent or not RFC 3339.';
COMMENT ON COLUMN reporting.tickets.first_activity_at IS 'When the record first saw the ticket (the first delivery naming it).';
COMMENT ON COLUMN reporting.tickets.last_activity_at IS 'When the last delivery that wrote to the ticket was received.';
COMMENT ON COLUMN reporting.tickets.messages IS 'Messages recorded (user and agent).';
COMMENT ON COLUMN reporting.tickets.user_messages IS 'Messages the user wrote.';
COMMENT ON COLUMN reporting.tickets.agent_messages IS 'Answers the agent gave.';
COMMENT ON COLUMN reporting.tickets.commands_proposed IS 'Commands proposed (Cmds), whether later run or not.';
COMMENT ON COLUMN reporting.tickets.commands_executed IS 'Commands executed (executedCmds).';
COMMENT ON COLUMN reporting.tickets.commands_failed IS 'Executed commands whose outcome is error, denied, not_found or timeout (rule 2).';
COMMENT ON COLUMN reporting.tickets.answered IS 'The agent has answered at least once (agent_messages > 0).';

-- ------------------------------------------------------------------------------------------------
-- Rule 4: a proposal that was never executed. A proposed command (executed = false) was executed
-- when an executed command with the same line (white space at both ends trimmed) was recorded on
-- the same ticket in the same delivery or a later one; a proposal whose delivery named no ticket is
-- matched within its own delivery only. Lines are compared through reporting.command_key, the md5
-- of the trimmed line: a btree cannot index a line of any length, and the index below needs one
-- (two different lines with one md5 would pass for the same: not a practical concern).
-- ------------------------------------------------------------------------------------------------
CREATE FUNCTION reporting.command_key(command text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN md5(btrim(command));
COMMENT ON FUNCTION reporting.command_key(text) IS
    'Rule 4: what two command lines must share to be the same command: md5 of the line with white space at both ends trimmed.';

CREATE INDEX commands_executed_key ON public.commands (ticket_name, reporting.command_key(command), seq) WHERE executed;
COMMENT ON INDEX commands_executed_key IS 'reporting.proposals: finds a later execution of a proposed command on its ticket.';

CREATE VIEW reporting.proposals AS
SELECT p.delivery_id, p.position, p.ticket, p.tenant_id, p.agent_name, p.agent_id, p.at, p.command, p.tool,
       p.sub_command, p.risk,
       CASE WHEN p.ticket IS NULL
            THEN EXISTS (SELECT FROM public.commands e
                         WHERE e.seq = p.delivery_id AND e.executed
                           AND reporting.command_key(e.command) = reporting.command_key(p.command))
            -- The same delivery has the same ticket, so seq >= covers it; one index probe.
            ELSE EXISTS (SELECT FROM public.commands e
                         WHERE e.executed AND e.ticket_name = p.ticket
                           AND reporting.command_key(e.command) = reporting.command_key(p.command)
                           AND e.seq >= p.delivery_id)
       END AS was_executed
FROM reporting.commands p
WHERE NOT p.executed;
COMMENT ON VIEW reporting.proposals IS
    'One row per proposed command (executed = false), with whether it was executed afterwards (rule 4 in V3__reporting.sql).';
COMMENT ON COLUMN reporting.proposals.was_executed IS
    'Rule 4: an executed command with the same trimmed line followed on the same ticket (same delivery or later); for a proposal without a ticket, in its own delivery.';

-- ------------------------------------------------------------------------------------------------
-- The read-only role. Roles belong to the cluster, not to one database, and every database of the
-- cluster (each test database, a staging copy) runs this migration: create it only if missing, and
-- tolerate a concurrent migration creating it first. It cannot log in; give it to people:
--     CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE ticket_audit_reporting;
--     -- or, for an existing user: GRANT ticket_audit_reporting TO alice;
-- It may read the reporting views and the public tables, and nothing else: no INSERT, UPDATE,
-- DELETE, TRUNCATE, no CREATE in any schema (PostgreSQL 15 gives PUBLIC no CREATE on public).
-- ------------------------------------------------------------------------------------------------
DO $role$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ticket_audit_reporting') THEN
        CREATE ROLE ticket_audit_reporting NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL; -- another database's migration created it meanwhile
END
$role$;
COMMENT ON ROLE ticket_audit_reporting IS
    'Read-only access to ticket-audit''s record and its reporting views (sql/README.md). Grant it to login users.';

GRANT USAGE ON SCHEMA reporting TO ticket_audit_reporting;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO ticket_audit_reporting;
GRANT USAGE ON SCHEMA public TO ticket_audit_reporting;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO ticket_audit_reporting;
-- Tables and views that later migrations add (applied by the same user) are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO ticket_audit_reporting;
ALTER DEFAULT PRIVILEGES IN SCHEMA reporting GRANT SELECT ON TABLES TO ticket_audit_reporting;
