-- A ticket's reassignment no longer waits for the classifier (issue 13's p99 at 64 senders).
--
-- V14 moved a ticket's counts in reporting.agent_days from its old (agent, tenant) to the new
-- one in the writer's transaction, after locking the classifier's watermark row: a batch that
-- changed a pair waited for the classify step in progress, 7.7% of the benchmark's deliveries
-- (a ticket's AddTicket after its first messages), and ingest fell to 0.85-0.88x.
--
-- Now the writer only notes the change (reporting.pair_changes, one row, no lock), and the
-- classifier applies it in its next step, where it counts:
--
--   * reporting.counted_pairs: for each ticket the classifier has counted, the pair its counts
--     in agent_days are under. A step counts its commands under these pairs (a ticket it has not
--     counted yet gets its pair from tickets first), then moves the tickets named in
--     pair_changes from their counted pair to their pair in tickets (all of the ticket's rows of
--     command_days, which now include the step's), and deletes the notes it took. Only the
--     classifier (and a redaction, which holds the same watermark lock) writes counted_pairs, so
--     a step never sees it half changed; a change committed while a step runs leaves its note
--     for the next step (at worst a move to the pair already counted: nothing).
--   * Invariant: a ticket whose counted pair differs from its pair in tickets has a note in
--     pair_changes. reporting.agent_counts reads the tickets with such a note and a differing
--     pair in its one snapshot (the function is STABLE) and moves their whole days' counts as
--     the next step will, so a report right after a reassignment answers as the rows do.
--
-- The redaction trigger (V14) moves a blanked command's count under the counted pair.

CREATE TABLE reporting.counted_pairs (
    ticket_name text PRIMARY KEY,
    agent_name text,
    tenant_id text
);
COMMENT ON TABLE reporting.counted_pairs IS
    'Derived (V15): the agent and tenant a ticket''s classified commands are counted under in reporting.agent_days; kept by reporting.classify, which moves them to the ticket''s pair when reporting.pair_changes names it.';

CREATE TABLE reporting.pair_changes (
    ticket_name text NOT NULL
);
COMMENT ON TABLE reporting.pair_changes IS
    'Derived (V15): tickets whose agent or tenant changed since the classifier last moved their counts; written by the writer''s trigger on tickets, taken by reporting.classify.';

-- What V14 counted is under each ticket's pair as it is now (its trigger moved them at once).
INSERT INTO reporting.counted_pairs (ticket_name, agent_name, tenant_id)
SELECT t.name, t.agent_name, t.tenant_id FROM public.tickets t;

DROP TRIGGER tickets_move_report_counts ON public.tickets;
DROP FUNCTION reporting.move_ticket_counts();

CREATE FUNCTION reporting.note_pair_change() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
BEGIN
    INSERT INTO reporting.pair_changes (ticket_name) VALUES (NEW.name);
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION reporting.note_pair_change() IS
    'Notes a ticket whose agent or tenant changed, for the classifier to move its counts (V15).';
CREATE TRIGGER tickets_note_pair_change AFTER UPDATE OF agent_name, tenant_id ON public.tickets
    FOR EACH ROW
    WHEN (OLD.agent_name IS DISTINCT FROM NEW.agent_name OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION reporting.note_pair_change();

-- V14's count_coarse_days, counting under the counted pairs, then moving the noted tickets.
CREATE OR REPLACE FUNCTION reporting.count_coarse_days(lo bigint, hi bigint) RETURNS void
    LANGUAGE plpgsql
AS $fn$
DECLARE
    names text[];
    old_agents text[];
    old_tenants text[];
    new_agents text[];
    new_tenants text[];
BEGIN
    -- The step's tickets not counted before: their pair as it is now.
    INSERT INTO reporting.counted_pairs (ticket_name, agent_name, tenant_id)
    SELECT t.name, t.agent_name, t.tenant_id
    FROM (SELECT DISTINCT k.ticket_name FROM reporting.command_class k
          WHERE k.seq > lo AND k.seq <= hi AND k.ticket_name IS NOT NULL) n
    JOIN public.tickets t ON t.name = n.ticket_name
    WHERE NOT EXISTS (SELECT 1 FROM reporting.counted_pairs p WHERE p.ticket_name = n.ticket_name)
    ON CONFLICT (ticket_name) DO NOTHING;

    INSERT INTO reporting.agent_days AS s
    SELECT g.day, p.agent_name, p.tenant_id, g.tool, g.sub_command, g.risk, sum(g.executed), sum(g.proposed),
           sum(g.ok), sum(g.unknown), sum(g.error), sum(g.denied), sum(g.not_found), sum(g.timeout)
    FROM (SELECT (k.recorded_at AT TIME ZONE 'UTC')::date AS day, k.ticket_name, k.tool, k.sub_command, k.risk,
                 count(*) FILTER (WHERE k.executed) AS executed, count(*) FILTER (WHERE NOT k.executed) AS proposed,
                 count(*) FILTER (WHERE k.outcome = 'ok') AS ok, count(*) FILTER (WHERE k.outcome = 'unknown') AS unknown,
                 count(*) FILTER (WHERE k.outcome = 'error') AS error,
                 count(*) FILTER (WHERE k.outcome = 'denied') AS denied,
                 count(*) FILTER (WHERE k.outcome = 'not_found') AS not_found,
                 count(*) FILTER (WHERE k.outcome = 'timeout') AS timeout
          FROM reporting.command_class k
          WHERE k.seq > lo AND k.seq <= hi
          GROUP BY 1, 2, 3, 4, 5) g
    LEFT JOIN reporting.counted_pairs p ON p.ticket_name = g.ticket_name
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (day, agent_name, tenant_id, tool, sub_command, risk) DO UPDATE SET
        executed = s.executed + excluded.executed, proposed = s.proposed + excluded.proposed,
        ok = s.ok + excluded.ok, unknown = s.unknown + excluded.unknown, error = s.error + excluded.error,
        denied = s.denied + excluded.denied, not_found = s.not_found + excluded.not_found,
        timeout = s.timeout + excluded.timeout;

    -- ticket_days and delivery_days as in V14.
    INSERT INTO reporting.ticket_days AS s
    SELECT (k.recorded_at AT TIME ZONE 'UTC')::date, k.ticket_name,
           count(*) FILTER (WHERE k.executed), count(*) FILTER (WHERE NOT k.executed),
           count(*) FILTER (WHERE NOT k.executed AND r.run_seq IS NULL),
           count(*) FILTER (WHERE k.outcome = 'error'), count(*) FILTER (WHERE k.outcome = 'denied'),
           count(*) FILTER (WHERE k.outcome = 'not_found'), count(*) FILTER (WHERE k.outcome = 'timeout'),
           max(k.recorded_at) FILTER (WHERE k.outcome = 'error'), max(k.recorded_at) FILTER (WHERE k.outcome = 'denied'),
           max(k.recorded_at) FILTER (WHERE k.outcome = 'not_found'),
           max(k.recorded_at) FILTER (WHERE k.outcome = 'timeout'),
           count(*) FILTER (WHERE k.risk = 'destroy'), count(*) FILTER (WHERE k.risk = 'delete'),
           count(*) FILTER (WHERE k.risk = 'terminate'), count(*) FILTER (WHERE k.risk = 'permissions'),
           count(*) FILTER (WHERE k.risk = 'secrets')
    FROM reporting.command_class k
    -- The step's proposals were tracked before (classify: track_proposals, then count_days).
    LEFT JOIN reporting.proposal_runs r ON r.seq = k.seq AND r.position = k.position AND NOT k.executed
    WHERE k.seq > lo AND k.seq <= hi
    GROUP BY 1, 2
    ON CONFLICT (day, ticket_name) DO UPDATE SET
        executed = s.executed + excluded.executed, proposed = s.proposed + excluded.proposed,
        never_run = s.never_run + excluded.never_run,
        error = s.error + excluded.error, denied = s.denied + excluded.denied,
        not_found = s.not_found + excluded.not_found, timeout = s.timeout + excluded.timeout,
        last_error_at = greatest(s.last_error_at, excluded.last_error_at),
        last_denied_at = greatest(s.last_denied_at, excluded.last_denied_at),
        last_not_found_at = greatest(s.last_not_found_at, excluded.last_not_found_at),
        last_timeout_at = greatest(s.last_timeout_at, excluded.last_timeout_at),
        destroy = s.destroy + excluded.destroy, delete = s.delete + excluded.delete,
        terminate = s.terminate + excluded.terminate, permissions = s.permissions + excluded.permissions,
        secrets = s.secrets + excluded.secrets;

    INSERT INTO reporting.delivery_days AS s
    SELECT (d.received_at AT TIME ZONE 'UTC')::date, d.action, count(*), count(*) FILTER (WHERE NOT e.success),
           count(*) FILTER (WHERE d.normalize_error IS NOT NULL), min(d.received_at), max(d.received_at),
           min(d.seq), max(d.seq)
    FROM public.deliveries d
    JOIN public.action_events e ON e.seq = d.seq
    WHERE d.seq > lo AND d.seq <= hi AND e.seq > lo AND e.seq <= hi
    GROUP BY 1, 2
    ON CONFLICT (day, action) DO UPDATE SET
        deliveries = s.deliveries + excluded.deliveries, failed = s.failed + excluded.failed,
        not_normalized = s.not_normalized + excluded.not_normalized,
        first_received = least(s.first_received, excluded.first_received),
        last_received = greatest(s.last_received, excluded.last_received),
        first_seq = least(s.first_seq, excluded.first_seq), last_seq = greatest(s.last_seq, excluded.last_seq);

    -- The noted tickets whose pair differs from the one counted (a note whose change a later one
    -- undid, or of a ticket not counted yet, is dropped).
    WITH taken AS (DELETE FROM reporting.pair_changes RETURNING ticket_name)
    SELECT array_agg(p.ticket_name), array_agg(p.agent_name), array_agg(p.tenant_id), array_agg(t.agent_name),
           array_agg(t.tenant_id)
    INTO names, old_agents, old_tenants, new_agents, new_tenants
    FROM (SELECT DISTINCT ticket_name FROM taken) n
    JOIN reporting.counted_pairs p ON p.ticket_name = n.ticket_name
    JOIN public.tickets t ON t.name = n.ticket_name
    WHERE p.agent_name IS DISTINCT FROM t.agent_name OR p.tenant_id IS DISTINCT FROM t.tenant_id;
    IF names IS NULL THEN
        RETURN;
    END IF;

    -- Each moved ticket's counts (all of its rows of command_days, this step's included) off its
    -- counted pair and onto its pair now, summed per key first (two tickets may share one).
    INSERT INTO reporting.agent_days AS s
    SELECT c.day, d.agent_name, d.tenant_id, c.tool, c.sub_command, c.risk, sum(d.sign * c.executed),
           sum(d.sign * c.proposed), sum(d.sign * c.ok), sum(d.sign * c.unknown), sum(d.sign * c.error),
           sum(d.sign * c.denied), sum(d.sign * c.not_found), sum(d.sign * c.timeout)
    FROM unnest(names, old_agents, old_tenants, new_agents, new_tenants) m (name, old_agent, old_tenant, new_agent, new_tenant)
    JOIN reporting.command_days c ON c.ticket_name = m.name
    CROSS JOIN LATERAL (VALUES (-1, m.old_agent, m.old_tenant), (1, m.new_agent, m.new_tenant)) d (sign, agent_name, tenant_id)
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (day, agent_name, tenant_id, tool, sub_command, risk) DO UPDATE SET
        executed = s.executed + excluded.executed, proposed = s.proposed + excluded.proposed,
        ok = s.ok + excluded.ok, unknown = s.unknown + excluded.unknown, error = s.error + excluded.error,
        denied = s.denied + excluded.denied, not_found = s.not_found + excluded.not_found,
        timeout = s.timeout + excluded.timeout;
    DELETE FROM reporting.agent_days a
    USING (SELECT DISTINCT c.day, m.old_agent, m.old_tenant
           FROM unnest(names, old_agents, old_tenants) m (name, old_agent, old_tenant)
           JOIN reporting.command_days c ON c.ticket_name = m.name) z
    WHERE a.day = z.day AND a.agent_name IS NOT DISTINCT FROM z.old_agent
      AND a.tenant_id IS NOT DISTINCT FROM z.old_tenant AND a.executed = 0 AND a.proposed = 0;
    UPDATE reporting.counted_pairs p SET agent_name = m.new_agent, tenant_id = m.new_tenant
    FROM unnest(names, new_agents, new_tenants) m (name, new_agent, new_tenant)
    WHERE p.ticket_name = m.name;
END
$fn$;

-- V14's redaction trigger on command_class, under the pair the command is counted under.
CREATE OR REPLACE FUNCTION reporting.recount_updated_class_coarse() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
DECLARE
    d date := (OLD.recorded_at AT TIME ZONE 'UTC')::date;
    agent text;
    tenant text;
BEGIN
    SELECT p.agent_name, p.tenant_id INTO agent, tenant FROM reporting.counted_pairs p
    WHERE p.ticket_name = OLD.ticket_name;
    UPDATE reporting.agent_days s SET
        executed = s.executed - OLD.executed::int,
        proposed = s.proposed - (NOT OLD.executed)::int,
        ok = s.ok - (OLD.outcome IS NOT DISTINCT FROM 'ok')::int,
        unknown = s.unknown - (OLD.outcome IS NOT DISTINCT FROM 'unknown')::int,
        error = s.error - (OLD.outcome IS NOT DISTINCT FROM 'error')::int,
        denied = s.denied - (OLD.outcome IS NOT DISTINCT FROM 'denied')::int,
        not_found = s.not_found - (OLD.outcome IS NOT DISTINCT FROM 'not_found')::int,
        timeout = s.timeout - (OLD.outcome IS NOT DISTINCT FROM 'timeout')::int
    WHERE s.day = d AND s.agent_name IS NOT DISTINCT FROM agent AND s.tenant_id IS NOT DISTINCT FROM tenant
      AND s.tool IS NOT DISTINCT FROM OLD.tool AND s.sub_command IS NOT DISTINCT FROM OLD.sub_command
      AND s.risk IS NOT DISTINCT FROM OLD.risk;
    DELETE FROM reporting.agent_days s
    WHERE s.day = d AND s.agent_name IS NOT DISTINCT FROM agent AND s.tenant_id IS NOT DISTINCT FROM tenant
      AND s.tool IS NOT DISTINCT FROM OLD.tool AND s.sub_command IS NOT DISTINCT FROM OLD.sub_command
      AND s.risk IS NOT DISTINCT FROM OLD.risk AND s.executed = 0 AND s.proposed = 0;
    INSERT INTO reporting.agent_days AS s
    VALUES (d, agent, tenant, NEW.tool, NEW.sub_command, NEW.risk, NEW.executed::int, (NOT NEW.executed)::int,
            (NEW.outcome IS NOT DISTINCT FROM 'ok')::int, (NEW.outcome IS NOT DISTINCT FROM 'unknown')::int,
            (NEW.outcome IS NOT DISTINCT FROM 'error')::int, (NEW.outcome IS NOT DISTINCT FROM 'denied')::int,
            (NEW.outcome IS NOT DISTINCT FROM 'not_found')::int, (NEW.outcome IS NOT DISTINCT FROM 'timeout')::int)
    ON CONFLICT (day, agent_name, tenant_id, tool, sub_command, risk) DO UPDATE SET
        executed = s.executed + excluded.executed, proposed = s.proposed + excluded.proposed,
        ok = s.ok + excluded.ok, unknown = s.unknown + excluded.unknown, error = s.error + excluded.error,
        denied = s.denied + excluded.denied, not_found = s.not_found + excluded.not_found,
        timeout = s.timeout + excluded.timeout;

    -- The ticket's day: executed and proposed do not change, outcome and risk may.
    UPDATE reporting.ticket_days s SET
        error = s.error - (OLD.outcome IS NOT DISTINCT FROM 'error')::int + (NEW.outcome IS NOT DISTINCT FROM 'error')::int,
        denied = s.denied - (OLD.outcome IS NOT DISTINCT FROM 'denied')::int
                 + (NEW.outcome IS NOT DISTINCT FROM 'denied')::int,
        not_found = s.not_found - (OLD.outcome IS NOT DISTINCT FROM 'not_found')::int
                    + (NEW.outcome IS NOT DISTINCT FROM 'not_found')::int,
        timeout = s.timeout - (OLD.outcome IS NOT DISTINCT FROM 'timeout')::int
                  + (NEW.outcome IS NOT DISTINCT FROM 'timeout')::int,
        destroy = s.destroy - (OLD.risk IS NOT DISTINCT FROM 'destroy')::int + (NEW.risk IS NOT DISTINCT FROM 'destroy')::int,
        delete = s.delete - (OLD.risk IS NOT DISTINCT FROM 'delete')::int + (NEW.risk IS NOT DISTINCT FROM 'delete')::int,
        terminate = s.terminate - (OLD.risk IS NOT DISTINCT FROM 'terminate')::int
                    + (NEW.risk IS NOT DISTINCT FROM 'terminate')::int,
        permissions = s.permissions - (OLD.risk IS NOT DISTINCT FROM 'permissions')::int
                      + (NEW.risk IS NOT DISTINCT FROM 'permissions')::int,
        secrets = s.secrets - (OLD.risk IS NOT DISTINCT FROM 'secrets')::int + (NEW.risk IS NOT DISTINCT FROM 'secrets')::int
    WHERE s.day = d AND s.ticket_name IS NOT DISTINCT FROM OLD.ticket_name;
    IF reporting.is_failure(OLD.outcome) OR reporting.is_failure(NEW.outcome) THEN
        -- The ticket's commands of that day (commands_ticket), as classified now.
        UPDATE reporting.ticket_days s SET
            last_error_at = f.last_error_at, last_denied_at = f.last_denied_at,
            last_not_found_at = f.last_not_found_at, last_timeout_at = f.last_timeout_at
        FROM (SELECT max(k.recorded_at) FILTER (WHERE k.outcome = 'error') AS last_error_at,
                     max(k.recorded_at) FILTER (WHERE k.outcome = 'denied') AS last_denied_at,
                     max(k.recorded_at) FILTER (WHERE k.outcome = 'not_found') AS last_not_found_at,
                     max(k.recorded_at) FILTER (WHERE k.outcome = 'timeout') AS last_timeout_at
              FROM public.commands c
              JOIN reporting.command_class k ON k.seq = c.seq AND k.position = c.position
              WHERE (c.ticket_name = OLD.ticket_name OR (OLD.ticket_name IS NULL AND c.ticket_name IS NULL))
                AND c.recorded_at >= (d::timestamp AT TIME ZONE 'UTC')
                AND c.recorded_at < ((d + 1)::timestamp AT TIME ZONE 'UTC')) f
        WHERE s.day = d AND s.ticket_name IS NOT DISTINCT FROM OLD.ticket_name;
    END IF;
    RETURN NULL;
END
$fn$;

-- V14's agent_counts, with the noted tickets' whole days moved as the next step will move them.
CREATE OR REPLACE FUNCTION reporting.agent_counts(since timestamptz, until timestamptz)
    RETURNS TABLE (day date, agent_name text, tenant_id text, tool text, sub_command text, risk text,
                   executed bigint, proposed bigint, ok bigint, unknown bigint, error bigint, denied bigint,
                   not_found bigint, timeout bigint)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 10000
AS $fn$
DECLARE
    w record;
BEGIN
    SELECT * INTO w FROM reporting.whole_days(since, until);
    IF NOT EXISTS (SELECT 1 FROM reporting.pair_changes n
                   JOIN reporting.counted_pairs p ON p.ticket_name = n.ticket_name
                   JOIN public.tickets t ON t.name = n.ticket_name
                   WHERE p.agent_name IS DISTINCT FROM t.agent_name OR p.tenant_id IS DISTINCT FROM t.tenant_id) THEN
        RETURN QUERY
        SELECT s.day, s.agent_name, s.tenant_id, s.tool, s.sub_command, s.risk, s.executed, s.proposed, s.ok,
               s.unknown, s.error, s.denied, s.not_found, s.timeout
        FROM reporting.agent_days s
        WHERE s.day >= w.first AND s.day < w.past;
    ELSE
        -- Few tickets, for the moments between a reassignment and the classifier's next step.
        RETURN QUERY
        SELECT x.day, x.agent_name, x.tenant_id, x.tool, x.sub_command, x.risk, sum(x.executed)::bigint,
               sum(x.proposed)::bigint, sum(x.ok)::bigint, sum(x.unknown)::bigint, sum(x.error)::bigint,
               sum(x.denied)::bigint, sum(x.not_found)::bigint, sum(x.timeout)::bigint
        FROM (SELECT s.day, s.agent_name, s.tenant_id, s.tool, s.sub_command, s.risk, s.executed, s.proposed, s.ok,
                     s.unknown, s.error, s.denied, s.not_found, s.timeout
              FROM reporting.agent_days s
              WHERE s.day >= w.first AND s.day < w.past
              UNION ALL
              SELECT c.day, d.agent_name, d.tenant_id, c.tool, c.sub_command, c.risk, d.sign * c.executed,
                     d.sign * c.proposed, d.sign * c.ok, d.sign * c.unknown, d.sign * c.error, d.sign * c.denied,
                     d.sign * c.not_found, d.sign * c.timeout
              FROM (SELECT DISTINCT p.ticket_name, p.agent_name AS old_agent, p.tenant_id AS old_tenant,
                           t.agent_name AS new_agent, t.tenant_id AS new_tenant
                    FROM reporting.pair_changes n
                    JOIN reporting.counted_pairs p ON p.ticket_name = n.ticket_name
                    JOIN public.tickets t ON t.name = n.ticket_name
                    WHERE p.agent_name IS DISTINCT FROM t.agent_name OR p.tenant_id IS DISTINCT FROM t.tenant_id) m
              JOIN reporting.command_days c ON c.ticket_name = m.ticket_name
              CROSS JOIN LATERAL (VALUES (-1, m.old_agent, m.old_tenant), (1, m.new_agent, m.new_tenant))
                  d (sign, agent_name, tenant_id)
              WHERE c.day >= w.first AND c.day < w.past) x
        GROUP BY 1, 2, 3, 4, 5, 6
        HAVING sum(x.executed) <> 0 OR sum(x.proposed) <> 0;
    END IF;
    RETURN QUERY
    SELECT e.day, t.agent_name, t.tenant_id, e.tool, e.sub_command, e.risk, e.executed, e.proposed, e.ok, e.unknown,
           e.error, e.denied, e.not_found, e.timeout
    FROM reporting.command_edges(since, until) e
    LEFT JOIN public.tickets t ON t.name = e.ticket_name;
END
$fn$;
COMMENT ON FUNCTION reporting.agent_counts(timestamptz, timestamptz) IS
    'Commands received in [since, until), counted per UTC day, agent and tenant of the ticket (as they are now), tool, sub-command and risk class (V14, V15): whole days from reporting.agent_days (a ticket reassigned since the classifier''s last step moved as it will move it), the rest row by row.';

GRANT SELECT, INSERT, UPDATE, DELETE ON reporting.counted_pairs TO ticket_audit_writer;
GRANT SELECT, INSERT, DELETE ON reporting.pair_changes TO ticket_audit_writer;
