-- Loads a synthetic, deterministic record for benchmarking the reports in sql/:
--     psql -v commands=1000000 -f bench/seed_reporting.sql   (default 100000)
-- into a migrated ticket-audit database. It REPLACES what is there (deliveries and projection), and
-- refuses to run on a database holding any delivery it did not make: never point it at a real one.
-- The hash chain is not computed (`ticket-audit verify` fails on the result).
--
-- Shape, for N commands (every number derives from N and a hash of the row's index, so two runs
-- with the same N load the same rows):
--   * N/5 SendTicketMessage deliveries of exactly 5 commands each; 2% of them answered 502 (then,
--     as the service does, only their executed commands are kept, no messages, no proposals).
--   * N/50 tickets (20,000 at 1,000,000 commands), in blocks of 100 whose 1,000 messages
--     interleave; each ticket's AddTicket is among its block's deliveries, sometimes after its first
--     message (out of order, as real senders do). 7 tenants, 8 agents, 3% of tickets unassigned,
--     4 statuses. 8% of tickets never get an agent answer, and 5% of other messages have none.
--   * a delivery's first command is a proposal 40% of the time (the same line as the next, executed,
--     command 70% of those times); the rest are executed, with results: 80% ok, 6% error,
--     5% denied, 4% not_found, 2% timeout, 3% none. About 1 command in 4 is risky (27%).
--   * times spread evenly over 90 days from 2025-01-01 UTC, in sequence order.
\set ON_ERROR_STOP on
\if :{?commands} \else \set commands 100000 \endif
\set QUIET on
SET client_min_messages = warning;

DO $guard$
BEGIN
    IF EXISTS (SELECT FROM deliveries WHERE dedup_key NOT LIKE 'seed-%') THEN
        RAISE EXCEPTION 'this database holds real deliveries: the seed would replace them; use an empty database';
    END IF;
END
$guard$;

-- A uniform number in [0, 1) from a row index and a salt: no state, so the order rows are
-- generated in does not matter.
CREATE FUNCTION pg_temp.h(i bigint, salt bigint) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ((hashint8extended(i, salt) & 4503599627370495)::float8 / 4503599627370496.0);

-- The record refuses TRUNCATE (migration V2); the seed, run as a superuser, lifts that here only.
SET session_replication_role = replica;
TRUNCATE deliveries, action_events, tickets, messages, commands, reporting.command_class, reporting.proposal_runs,
         reporting.command_days, reporting.message_days, reporting.agent_days, reporting.ticket_days,
         reporting.delivery_days, reporting.counted_pairs, reporting.pair_changes;
RESET session_replication_role;
UPDATE reporting.classified SET seq = 0;

CREATE TEMP TABLE params AS
SELECT :commands::bigint AS n,
       ceil(:commands / 5.0)::bigint AS msgs,
       ceil(:commands / 5000.0)::bigint AS blocks,
       timestamptz '2025-01-01 00:00:00+00' AS t0,
       interval '90 days' AS span;

-- Every delivery: 1,100 per block, every 11th an AddTicket.
CREATE TEMP TABLE plan AS
SELECT b * 1100 + p + 1 AS seq,
       p % 11 = 0 AS is_add,
       b * 100 + CASE WHEN p % 11 = 0 THEN p / 11 ELSE (p - p / 11 - 1) % 100 END + 1 AS ticket_no,
       CASE WHEN p % 11 = 0 THEN NULL ELSE b * 1000 + (p - p / 11 - 1) + 1 END AS msg_no
FROM params, generate_series(0, blocks - 1) b, generate_series(0, 1099) p;
DELETE FROM plan USING params WHERE plan.msg_no > params.msgs;
-- Renumber so sequence numbers stay gapless after the last, partial block.
CREATE TEMP TABLE d AS
SELECT row_number() OVER (ORDER BY seq) AS seq, is_add, ticket_no, msg_no,
       NOT is_add AND pg_temp.h(coalesce(msg_no, 0), 7) < 0.02 AS failed
FROM plan;
ALTER TABLE d ADD COLUMN at timestamptz;
UPDATE d SET at = date_trunc('milliseconds', t0 + span * (seq::float8 / (SELECT count(*) FROM d))) FROM params;
CREATE UNIQUE INDEX ON d (msg_no);
ANALYZE d;

CREATE TEMP TABLE tenants (i int, id text);
INSERT INTO tenants VALUES (0, 'acme'), (1, 'globex'), (2, 'initech'), (3, 'umbrella'), (4, 'hooli'),
                           (5, 'stark'), (6, 'wayne');
CREATE TEMP TABLE agents (i int, name text, id text);
INSERT INTO agents VALUES (0, 'aws', 'agent-aws'), (1, 'k8s', 'agent-k8s'), (2, 'terraform', 'agent-tf'),
                          (3, 'linux', 'agent-linux'), (4, 'db', 'agent-db'), (5, 'network', 'agent-net'),
                          (6, 'security', 'agent-sec'), (7, 'helpdesk', 'agent-help');

-- Command lines: 6 per agent, {n} replaced by a number. Risky ones among them on purpose.
CREATE TEMP TABLE catalog (agent int, k int, line text);
INSERT INTO catalog VALUES
  (0, 0, 'aws s3 ls s3://bucket-{n}'), (0, 1, 'aws ec2 describe-instances --instance-ids i-{n}'),
  (0, 2, 'aws sts get-caller-identity'), (0, 3, 'aws --region eu-west-1 iam list-roles'),
  (0, 4, 'aws ec2 terminate-instances --instance-ids i-{n}'), (0, 5, 'aws s3 rm s3://bucket-{n}/tmp --recursive'),
  (1, 0, 'kubectl get pods -n app-{n}'), (1, 1, 'kubectl -n prod describe deployment web-{n}'),
  (1, 2, 'kubectl logs web-{n} --tail=100'), (1, 3, 'kubectl get events -A'),
  (1, 4, 'kubectl delete pod web-{n}'), (1, 5, 'kubectl get secret db-{n} -o yaml'),
  (2, 0, 'terraform plan -out=plan-{n}'), (2, 1, 'terraform init -upgrade'),
  (2, 2, 'terraform apply -auto-approve plan-{n}'), (2, 3, 'terraform state list'),
  (2, 4, 'terraform output -json'), (2, 5, 'terraform destroy -target=module.app{n} -auto-approve'),
  (3, 0, 'df -h /var'), (3, 1, 'sudo systemctl status nginx'), (3, 2, 'journalctl -u app-{n} --since today'),
  (3, 3, 'sudo systemctl restart app-{n}'), (3, 4, 'sudo chmod 640 /etc/app/{n}.conf'), (3, 5, 'rm -rf /tmp/cache-{n}'),
  (4, 0, 'psql -h db-{n} -c "select 1"'), (4, 1, 'pg_dump --schema-only app_{n}'),
  (4, 2, 'mysql -e "show processlist"'), (4, 3, 'redis-cli info memory'),
  (4, 4, 'psql -c "GRANT SELECT ON orders TO analyst_{n}"'), (4, 5, 'PGOPTIONS=-c psql -c "TRUNCATE staging_{n}"'),
  (5, 0, 'ping -c 3 10.0.{n}.1'), (5, 1, 'dig api-{n}.example.com'), (5, 2, 'curl -sI https://svc-{n}.example.com'),
  (5, 3, 'traceroute 10.0.{n}.1'), (5, 4, 'nslookup db-{n}.internal'), (5, 5, 'aws ec2 authorize-security-group-ingress --group-id sg-{n}'),
  (6, 0, 'aws iam list-attached-role-policies --role-name app-{n}'), (6, 1, 'trivy image app:{n}'),
  (6, 2, 'aws secretsmanager get-secret-value --secret-id app/{n}'), (6, 3, 'aws iam attach-role-policy --role-name app-{n} --policy-arn arn:aws:iam::aws:policy/ReadOnlyAccess'),
  (6, 4, 'openssl s_client -connect svc-{n}.example.com:443'), (6, 5, 'nmap -p 443 10.0.{n}.0/24'),
  (7, 0, 'whoami'), (7, 1, 'git -C /srv/app-{n} status'), (7, 2, 'docker ps --filter name=app-{n}'),
  (7, 3, 'docker logs app-{n} --tail 50'), (7, 4, 'ls -la /var/log/app-{n}'), (7, 5, 'kill -HUP {n}');
CREATE TEMP TABLE results (outcome text, k int, body text);
INSERT INTO results VALUES
  ('ok', 0, 'NAME        READY   STATUS    RESTARTS   AGE' || E'\n' || 'web-7f9c    1/1     Running   0          3d'),
  ('ok', 1, '{"Account": "123456789012", "UserId": "AIDAEXAMPLE", "Arn": "arn:aws:iam::123456789012:user/ops"}'),
  ('ok', 2, 'Filesystem      Size  Used Avail Use% Mounted on' || E'\n' || '/dev/nvme0n1p1   50G   31G   20G  62% /var'),
  ('ok', 3, 'Plan: 2 to add, 1 to change, 0 to destroy.'),
  ('ok', 4, repeat('2025-01-01T00:00:00Z INFO request served in 12ms path=/api/v1/items status=200' || E'\n', 4)),
  ('ok', 5, 'done'),
  ('error', 0, 'Error: exit status 1'),
  ('error', 1, 'An error occurred (InvalidParameterValue) when calling the DescribeInstances operation: bad id'),
  ('denied', 0, 'An error occurred (AccessDenied) when calling the ListBuckets operation: Access Denied'),
  ('denied', 1, 'Error from server (Forbidden): pods is forbidden: User "agent" cannot list resource "pods"'),
  ('not_found', 0, 'Error from server (NotFound): deployments.apps "web" not found'),
  ('not_found', 1, 'ls: cannot access ''/var/log/app'': No such file or directory'),
  ('timeout', 0, 'Unable to connect to the server: dial tcp 10.0.0.1:443: i/o timeout');
ANALYZE catalog; ANALYZE results;

-- Tickets' fixed traits, by ticket number.
CREATE TEMP TABLE traits AS
SELECT ticket_no,
       (SELECT id FROM tenants WHERE i = floor(pg_temp.h(ticket_no, 1) * 7)::int) AS tenant_id,
       CASE WHEN pg_temp.h(ticket_no, 2) < 0.03 THEN NULL ELSE floor(pg_temp.h(ticket_no, 3) * 8)::int END AS agent,
       (ARRAY['Open', 'InProgress', 'Resolved', 'Closed'])[1 + floor(pg_temp.h(ticket_no, 4) * 4)::int] AS status,
       pg_temp.h(ticket_no, 5) < 0.08 AS silent
FROM (SELECT DISTINCT ticket_no FROM d) t;
CREATE UNIQUE INDEX ON traits (ticket_no);
ANALYZE traits;

INSERT INTO deliveries (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, hash)
SELECT seq, at, 'seed-' || seq, 'webhook-id', b, sha256(b),
       CASE WHEN is_add THEN 'POST:Ticket/AddTicket' ELSE 'POST:Ticket/SendTicketMessage' END,
       CASE WHEN failed THEN 502 ELSE 200 END, sha256(int8send(seq))
FROM (SELECT d.*, convert_to('{"seed":' || seq || ',"ticket":"T-' || ticket_no || '"}', 'UTF8') AS b FROM d) x;

INSERT INTO action_events (seq, received_at, action, status_code, success, kind, ticket_name, carried_tenant)
SELECT d.seq, d.at,
       CASE WHEN is_add THEN 'POST:Ticket/AddTicket' ELSE 'POST:Ticket/SendTicketMessage' END,
       CASE WHEN failed THEN 502 ELSE 200 END, NOT failed,
       CASE WHEN is_add THEN 'ticket_created' WHEN failed THEN 'action' ELSE 'conversation' END,
       'T-' || d.ticket_no, CASE WHEN is_add THEN tr.tenant_id END
FROM d JOIN traits tr USING (ticket_no);

-- Messages: the user's, then the agent's answer (none for silent tickets, and 5% of the rest).
CREATE TEMP TABLE answered AS
SELECT d.seq, NOT tr.silent AND pg_temp.h(d.msg_no, 6) >= 0.05 AS answered
FROM d JOIN traits tr USING (ticket_no) WHERE NOT d.is_add AND NOT d.failed;
INSERT INTO messages (seq, position, ticket_name, role, content, received_at)
SELECT d.seq, 1, 'T-' || d.ticket_no, 'user', 'Please look at app-' || d.msg_no || ', it is failing again', d.at
FROM d JOIN answered a USING (seq)
UNION ALL
SELECT d.seq, 2, 'T-' || d.ticket_no, 'agent', 'I checked app-' || d.msg_no || ' and ran the commands below.', d.at
FROM d JOIN answered a USING (seq) WHERE a.answered;

-- Commands: 5 per message delivery, after that delivery's messages.
INSERT INTO commands (seq, position, ticket_name, command, result, executed, recorded_at)
SELECT d.seq,
       CASE WHEN d.failed THEN 0 WHEN a.answered THEN 2 ELSE 1 END + slot + 1,
       'T-' || d.ticket_no,
       replace(cat.line, '{n}', (floor(pg_temp.h(line_i, 12) * 50))::text),
       CASE WHEN proposal THEN NULL ELSE r.body END,
       NOT proposal,
       d.at
FROM (
    SELECT i, (i - 1) / 5 + 1 AS msg_no, (i - 1) % 5 AS slot,
           -- A proposal's line is often the next (executed) command's: index of the line to use.
           CASE WHEN (i - 1) % 5 = 0 AND pg_temp.h((i - 1) / 5, 8) < 0.4 AND pg_temp.h((i - 1) / 5, 9) < 0.7
                THEN i + 1 ELSE i END AS line_i,
           (i - 1) % 5 = 0 AND pg_temp.h((i - 1) / 5, 8) < 0.4 AS proposed_slot,
           pg_temp.h(i, 10) AS o
    FROM params, generate_series(1, n) i
) c
JOIN d ON d.msg_no = c.msg_no
JOIN traits tr ON tr.ticket_no = d.ticket_no
LEFT JOIN answered a ON a.seq = d.seq
CROSS JOIN LATERAL (SELECT c.proposed_slot AND NOT d.failed AS proposal) p
JOIN catalog cat
  ON cat.agent = CASE WHEN tr.agent IS NULL OR pg_temp.h(c.line_i, 11) < 0.1
                      THEN floor(pg_temp.h(c.line_i, 13) * 8)::int ELSE tr.agent END
 AND cat.k = floor(pg_temp.h(c.line_i, 14) * 6)::int
LEFT JOIN results r
  ON (r.outcome, r.k) = (CASE WHEN c.o < 0.80 THEN 'ok' WHEN c.o < 0.86 THEN 'error' WHEN c.o < 0.91 THEN 'denied'
                              WHEN c.o < 0.95 THEN 'not_found' WHEN c.o < 0.97 THEN 'timeout' ELSE 'none' END,
                         floor(pg_temp.h(c.i, 15) * CASE WHEN c.o < 0.80 THEN 6 WHEN c.o < 0.95 THEN 2 ELSE 1 END)::int);

INSERT INTO tickets (name, title, status, tenant_id, agent_name, agent_id, created_at, first_seen_at, first_seen_seq,
                     last_activity_at, message_count, command_count)
SELECT 'T-' || tr.ticket_no, 'Synthetic ticket ' || tr.ticket_no, tr.status, tr.tenant_id, ag.name, ag.id,
       s.add_at, s.first_at, s.first_seq, s.last_at,
       coalesce((SELECT count(*) FROM messages m WHERE m.ticket_name = 'T-' || tr.ticket_no), 0),
       coalesce((SELECT count(*) FROM commands c WHERE c.ticket_name = 'T-' || tr.ticket_no), 0)
FROM traits tr
LEFT JOIN agents ag ON ag.i = tr.agent
JOIN (SELECT ticket_no, min(seq) AS first_seq, min(at) AS first_at, max(at) AS last_at,
             min(at) FILTER (WHERE is_add) AS add_at
      FROM d GROUP BY ticket_no) s USING (ticket_no);

UPDATE ledger_head SET seq = (SELECT count(*) FROM d), hash = sha256(int8send((SELECT count(*) FROM d))),
                       at = (SELECT max(at) FROM d);

-- Classified, as the service's background classifier leaves a record once it has caught up.
SELECT reporting.classify(:commands + 1) \gset
VACUUM ANALYZE reporting.command_class;
VACUUM ANALYZE reporting.proposal_runs;
VACUUM ANALYZE reporting.command_days;
VACUUM ANALYZE reporting.message_days;
VACUUM ANALYZE deliveries;
VACUUM ANALYZE action_events;
VACUUM ANALYZE tickets;
VACUUM ANALYZE messages;
VACUUM ANALYZE commands;

\set QUIET off
SELECT (SELECT count(*) FROM deliveries) AS deliveries, (SELECT count(*) FROM tickets) AS tickets,
       (SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM commands) AS commands;
