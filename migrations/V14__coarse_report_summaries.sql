-- Reports under 5 s at 10^7 commands (issue 15): summaries whose rows do not grow with the
-- commands' variety per ticket.
--
-- V12's reporting.command_days counts per (day, ticket, tool, sub-command, risk): on the
-- benchmark's record, 6x fewer rows than commands, and every report still joined each row to
-- its ticket for the agent and the tenant. This adds three summaries, kept by
-- reporting.count_days in the classifier's transaction as V12's are:
--
--   * reporting.agent_days: per (day, agent, tenant, tool, sub-command, risk), the counts of
--     command_days without the ticket. Agent and tenant are the ticket's as it is now, so a
--     change of a ticket's assignee or tenant moves its counts (the trigger on tickets below,
--     serialized with classify steps and redactions on the classifier's watermark row). Read by
--     top_tools, risky_commands, daily_activity and the most failing sub-command of
--     failed_commands.
--   * reporting.ticket_days: per (day, ticket), executed and proposed commands, failures per
--     class with the last time of each, and commands per risk class: what the distinct-ticket
--     counts need (agent_usage, failed_commands, risky_commands). Agent and tenant are joined
--     from tickets when read, so nothing moves; one row per ticket and day it was active.
--   * reporting.delivery_days: per (day, action), the deliveries, failed and not normalized, and
--     the first and last received: deliveries_by_action without reading the bodies' table.
--
-- As in V12, reporting.agent_counts, reporting.ticket_counts and reporting.delivery_counts give
-- a report's window: whole UTC days from the summary, the partial first and last days and what
-- is not classified yet row by row. The answers are those of the rows (tests/api/reports.rs
-- compares them with the reports before V12 and V14, at a watermark in the middle too, after a
-- reassignment and after a redaction).

CREATE TABLE reporting.agent_days (
    day date NOT NULL,
    agent_name text,
    tenant_id text,
    tool text,
    sub_command text,
    risk text,
    executed bigint NOT NULL,
    proposed bigint NOT NULL,
    ok bigint NOT NULL,
    unknown bigint NOT NULL,
    error bigint NOT NULL,
    denied bigint NOT NULL,
    not_found bigint NOT NULL,
    timeout bigint NOT NULL
);
CREATE UNIQUE INDEX agent_days_key ON reporting.agent_days (day, agent_name, tenant_id, tool, sub_command, risk)
    NULLS NOT DISTINCT;
COMMENT ON TABLE reporting.agent_days IS
    'Derived (V14): classified commands counted per UTC day, ticket''s agent and tenant (as they are now), tool, sub-command and risk class; kept by reporting.classify and moved when a ticket''s agent or tenant changes. Read through reporting.agent_counts(since, until).';

CREATE TABLE reporting.ticket_days (
    day date NOT NULL,
    ticket_name text,
    executed bigint NOT NULL,
    proposed bigint NOT NULL,
    -- Proposals not run (yet) by a classified execution: run_seq null in proposal_runs (rule 4).
    never_run bigint NOT NULL,
    error bigint NOT NULL,
    denied bigint NOT NULL,
    not_found bigint NOT NULL,
    timeout bigint NOT NULL,
    last_error_at timestamptz,
    last_denied_at timestamptz,
    last_not_found_at timestamptz,
    last_timeout_at timestamptz,
    -- Commands, executed or proposed, per risk class (rule 3).
    destroy bigint NOT NULL,
    delete bigint NOT NULL,
    terminate bigint NOT NULL,
    permissions bigint NOT NULL,
    secrets bigint NOT NULL
);
CREATE UNIQUE INDEX ticket_days_key ON reporting.ticket_days (day, ticket_name) NULLS NOT DISTINCT;
COMMENT ON TABLE reporting.ticket_days IS
    'Derived (V14): classified commands counted per UTC day and ticket (executed, proposed, failures per class and their last time, commands per risk class); kept by reporting.classify. Read through reporting.ticket_counts(since, until).';

CREATE TABLE reporting.delivery_days (
    day date NOT NULL,
    action text,
    deliveries bigint NOT NULL,
    failed bigint NOT NULL,
    not_normalized bigint NOT NULL,
    first_received timestamptz NOT NULL,
    last_received timestamptz NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL
);
CREATE UNIQUE INDEX delivery_days_key ON reporting.delivery_days (day, action) NULLS NOT DISTINCT;
COMMENT ON TABLE reporting.delivery_days IS
    'Derived (V14): classified deliveries with an action event counted per UTC day (of received_at) and action; kept by reporting.classify. Read through reporting.delivery_counts(since, until).';

-- A ticket's rows in V12's summary: what moves when its agent or tenant changes.
CREATE INDEX command_days_ticket ON reporting.command_days (ticket_name);

-- Adds the classified commands and deliveries lo < seq <= hi to the three summaries.
CREATE FUNCTION reporting.count_coarse_days(lo bigint, hi bigint) RETURNS void
    LANGUAGE plpgsql
AS $fn$
BEGIN
    -- Counted per ticket first, then each of the step's tickets looked up by its key (LIMIT 1
    -- keeps the lookup a probe: joined by hash, every step read all of tickets, 170 ms at 10^7).
    INSERT INTO reporting.agent_days AS s
    SELECT g.day, t.agent_name, t.tenant_id, g.tool, g.sub_command, g.risk, sum(g.executed), sum(g.proposed),
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
    LEFT JOIN LATERAL (SELECT x.agent_name, x.tenant_id FROM public.tickets x WHERE x.name = g.ticket_name LIMIT 1) t ON true
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (day, agent_name, tenant_id, tool, sub_command, risk) DO UPDATE SET
        executed = s.executed + excluded.executed, proposed = s.proposed + excluded.proposed,
        ok = s.ok + excluded.ok, unknown = s.unknown + excluded.unknown, error = s.error + excluded.error,
        denied = s.denied + excluded.denied, not_found = s.not_found + excluded.not_found,
        timeout = s.timeout + excluded.timeout;

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
END
$fn$;

-- V12's count_days (which classify calls for each step), with the three summaries above.
CREATE OR REPLACE FUNCTION reporting.count_days(lo bigint, hi bigint) RETURNS void
    LANGUAGE plpgsql
AS $fn$
BEGIN
    INSERT INTO reporting.command_days AS s
    SELECT (k.recorded_at AT TIME ZONE 'UTC')::date, k.ticket_name, k.tool, k.sub_command, k.risk,
           count(*) FILTER (WHERE k.executed), count(*) FILTER (WHERE NOT k.executed),
           count(*) FILTER (WHERE k.outcome = 'ok'), count(*) FILTER (WHERE k.outcome = 'unknown'),
           count(*) FILTER (WHERE k.outcome = 'error'), count(*) FILTER (WHERE k.outcome = 'denied'),
           count(*) FILTER (WHERE k.outcome = 'not_found'), count(*) FILTER (WHERE k.outcome = 'timeout'),
           max(k.recorded_at) FILTER (WHERE k.outcome = 'error'), max(k.recorded_at) FILTER (WHERE k.outcome = 'denied'),
           max(k.recorded_at) FILTER (WHERE k.outcome = 'not_found'),
           max(k.recorded_at) FILTER (WHERE k.outcome = 'timeout'),
           min(k.seq), max(k.seq)
    FROM reporting.command_class k
    WHERE k.seq > lo AND k.seq <= hi
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (day, ticket_name, tool, sub_command, risk) DO UPDATE SET
        executed = s.executed + excluded.executed, proposed = s.proposed + excluded.proposed,
        ok = s.ok + excluded.ok, unknown = s.unknown + excluded.unknown, error = s.error + excluded.error,
        denied = s.denied + excluded.denied, not_found = s.not_found + excluded.not_found,
        timeout = s.timeout + excluded.timeout,
        last_error_at = greatest(s.last_error_at, excluded.last_error_at),
        last_denied_at = greatest(s.last_denied_at, excluded.last_denied_at),
        last_not_found_at = greatest(s.last_not_found_at, excluded.last_not_found_at),
        last_timeout_at = greatest(s.last_timeout_at, excluded.last_timeout_at),
        first_seq = least(s.first_seq, excluded.first_seq), last_seq = greatest(s.last_seq, excluded.last_seq);

    INSERT INTO reporting.message_days AS s
    SELECT (m.received_at AT TIME ZONE 'UTC')::date, m.ticket_name,
           count(*) FILTER (WHERE m.role = 'user'), count(*) FILTER (WHERE m.role = 'agent'), min(m.seq), max(m.seq)
    FROM public.messages m
    WHERE m.seq > lo AND m.seq <= hi
    GROUP BY 1, 2
    ON CONFLICT (day, ticket_name) DO UPDATE SET
        user_messages = s.user_messages + excluded.user_messages,
        agent_messages = s.agent_messages + excluded.agent_messages,
        first_seq = least(s.first_seq, excluded.first_seq), last_seq = greatest(s.last_seq, excluded.last_seq);

    PERFORM reporting.count_coarse_days(lo, hi);
END
$fn$;

-- ------------------------------------------------------------------------------------------------
-- A ticket's agent or tenant changes: its classified commands' counts (its rows of command_days,
-- which count exactly those) move from the old pair to the new one in agent_days. The
-- classifier's watermark row is locked first, as a redaction does: a classify step in progress
-- (which counted this ticket's new commands under the pair it saw, the old one) commits before
-- the move reads command_days, and a step starting later waits for this transaction and reads
-- the new pair. A ticket's first row (INSERT) moves nothing: the commands of a delivery are
-- stored in the statement that upserts their tickets (store_batch.sql), so no classified command
-- names a ticket before its row exists. Only a change of the pair takes the lock.
-- ------------------------------------------------------------------------------------------------
CREATE FUNCTION reporting.move_ticket_counts() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM 1 FROM reporting.classified FOR UPDATE;
    UPDATE reporting.agent_days a SET
        executed = a.executed - c.executed, proposed = a.proposed - c.proposed, ok = a.ok - c.ok,
        unknown = a.unknown - c.unknown, error = a.error - c.error, denied = a.denied - c.denied,
        not_found = a.not_found - c.not_found, timeout = a.timeout - c.timeout
    FROM reporting.command_days c
    WHERE c.ticket_name = NEW.name
      AND a.day = c.day AND a.agent_name IS NOT DISTINCT FROM OLD.agent_name
      AND a.tenant_id IS NOT DISTINCT FROM OLD.tenant_id AND a.tool IS NOT DISTINCT FROM c.tool
      AND a.sub_command IS NOT DISTINCT FROM c.sub_command AND a.risk IS NOT DISTINCT FROM c.risk;
    DELETE FROM reporting.agent_days a
    WHERE a.agent_name IS NOT DISTINCT FROM OLD.agent_name AND a.tenant_id IS NOT DISTINCT FROM OLD.tenant_id
      AND a.executed = 0 AND a.proposed = 0
      AND a.day IN (SELECT c.day FROM reporting.command_days c WHERE c.ticket_name = NEW.name);
    INSERT INTO reporting.agent_days AS s
    SELECT c.day, NEW.agent_name, NEW.tenant_id, c.tool, c.sub_command, c.risk, c.executed, c.proposed, c.ok,
           c.unknown, c.error, c.denied, c.not_found, c.timeout
    FROM reporting.command_days c
    WHERE c.ticket_name = NEW.name
    ON CONFLICT (day, agent_name, tenant_id, tool, sub_command, risk) DO UPDATE SET
        executed = s.executed + excluded.executed, proposed = s.proposed + excluded.proposed,
        ok = s.ok + excluded.ok, unknown = s.unknown + excluded.unknown, error = s.error + excluded.error,
        denied = s.denied + excluded.denied, not_found = s.not_found + excluded.not_found,
        timeout = s.timeout + excluded.timeout;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION reporting.move_ticket_counts() IS
    'Moves a ticket''s classified commands'' counts in reporting.agent_days (V14) when its agent or tenant changes.';
CREATE TRIGGER tickets_move_report_counts AFTER UPDATE OF agent_name, tenant_id ON public.tickets
    FOR EACH ROW
    WHEN (OLD.agent_name IS DISTINCT FROM NEW.agent_name OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION reporting.move_ticket_counts();

-- ------------------------------------------------------------------------------------------------
-- A redaction blanks a row of command_class (V11; V13 moves it in command_days): its count moves
-- to its blank copy's group in agent_days (under its ticket's pair as it is now: a move of the
-- pair holds the watermark row, as the redaction does) and in ticket_days (risk and outcome), and
-- the day's last failure times of its ticket are taken again from its commands.
-- ------------------------------------------------------------------------------------------------
CREATE FUNCTION reporting.recount_updated_class_coarse() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
DECLARE
    d date := (OLD.recorded_at AT TIME ZONE 'UTC')::date;
    agent text;
    tenant text;
BEGIN
    SELECT t.agent_name, t.tenant_id INTO agent, tenant FROM public.tickets t WHERE t.name = OLD.ticket_name;
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
COMMENT ON FUNCTION reporting.recount_updated_class_coarse() IS
    'Keeps reporting.agent_days and reporting.ticket_days (V14) in step when a redaction (V11) blanks a row of reporting.command_class.';
CREATE TRIGGER command_class_recount_coarse AFTER UPDATE ON reporting.command_class
    FOR EACH ROW EXECUTE FUNCTION reporting.recount_updated_class_coarse();

-- ------------------------------------------------------------------------------------------------
-- Reading them: a window's whole days from the summary, the rest row by row.
-- ------------------------------------------------------------------------------------------------

-- The rows of reporting.command_counts(since, until) that do not come from the whole days: one
-- per command of the window's partial first and last days and per command not classified yet.
-- The same bounds as command_counts (the days' seq bounds from command_days).
CREATE FUNCTION reporting.command_edges(since timestamptz, until timestamptz)
    RETURNS SETOF reporting.command_count
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1000
AS $fn$
DECLARE
    mark bigint := (SELECT c.seq FROM reporting.classified c);
    first_day date;
    past_day date;
    lo_first bigint; lo_last bigint; hi_first bigint; hi_last bigint;
BEGIN
    SELECT w.first, w.past INTO first_day, past_day FROM reporting.whole_days(since, until) w;
    IF first_day >= past_day THEN
        first_day := 'infinity';
        past_day := 'infinity';
    END IF;
    IF isfinite(since) AND (since AT TIME ZONE 'UTC')::date < first_day THEN
        SELECT min(s.first_seq), max(s.last_seq) INTO lo_first, lo_last FROM reporting.command_days s
        WHERE s.day >= (since AT TIME ZONE 'UTC')::date AND s.day < least(first_day, (until AT TIME ZONE 'UTC')::date + 1);
    END IF;
    IF isfinite(until) AND past_day < 'infinity' AND (until AT TIME ZONE 'UTC') > past_day::timestamp THEN
        SELECT min(s.first_seq), max(s.last_seq) INTO hi_first, hi_last FROM reporting.command_days s
        WHERE s.day = past_day;
    END IF;
    RETURN QUERY
    SELECT (k.recorded_at AT TIME ZONE 'UTC')::date, k.ticket_name, k.tool, k.sub_command, k.risk,
           k.executed::int::bigint, (NOT k.executed)::int::bigint, (k.outcome = 'ok')::int::bigint,
           (k.outcome = 'unknown')::int::bigint, (k.outcome = 'error')::int::bigint,
           (k.outcome = 'denied')::int::bigint, (k.outcome = 'not_found')::int::bigint,
           (k.outcome = 'timeout')::int::bigint,
           CASE WHEN k.outcome = 'error' THEN k.recorded_at END, CASE WHEN k.outcome = 'denied' THEN k.recorded_at END,
           CASE WHEN k.outcome = 'not_found' THEN k.recorded_at END, CASE WHEN k.outcome = 'timeout' THEN k.recorded_at END
    FROM reporting.command_class k
    WHERE ((k.seq >= lo_first AND k.seq <= lo_last) OR (k.seq >= hi_first AND k.seq <= hi_last))
      AND k.seq <= mark
      AND k.recorded_at >= since AND k.recorded_at < until
      AND NOT (k.recorded_at >= (first_day::timestamp AT TIME ZONE 'UTC') AND k.recorded_at < (past_day::timestamp AT TIME ZONE 'UTC'));
    RETURN QUERY
    SELECT (k.recorded_at AT TIME ZONE 'UTC')::date, k.ticket_name, k.tool, k.sub_command, k.risk,
           k.executed::int::bigint, (NOT k.executed)::int::bigint, (k.outcome = 'ok')::int::bigint,
           (k.outcome = 'unknown')::int::bigint, (k.outcome = 'error')::int::bigint,
           (k.outcome = 'denied')::int::bigint, (k.outcome = 'not_found')::int::bigint,
           (k.outcome = 'timeout')::int::bigint,
           CASE WHEN k.outcome = 'error' THEN k.recorded_at END, CASE WHEN k.outcome = 'denied' THEN k.recorded_at END,
           CASE WHEN k.outcome = 'not_found' THEN k.recorded_at END, CASE WHEN k.outcome = 'timeout' THEN k.recorded_at END
    FROM reporting.classify_range(mark, 9223372036854775807) k
    WHERE k.recorded_at >= since AND k.recorded_at < until;
END
$fn$;

-- Commands received in [since, until) per day, ticket's agent and tenant (as they are now),
-- tool, sub-command and risk class. Sums over it are sums over reporting.commands.
CREATE FUNCTION reporting.agent_counts(since timestamptz, until timestamptz)
    RETURNS TABLE (day date, agent_name text, tenant_id text, tool text, sub_command text, risk text,
                   executed bigint, proposed bigint, ok bigint, unknown bigint, error bigint, denied bigint,
                   not_found bigint, timeout bigint)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 10000
AS $fn$
DECLARE
    w record;
BEGIN
    SELECT * INTO w FROM reporting.whole_days(since, until);
    RETURN QUERY
    SELECT s.day, s.agent_name, s.tenant_id, s.tool, s.sub_command, s.risk, s.executed, s.proposed, s.ok, s.unknown,
           s.error, s.denied, s.not_found, s.timeout
    FROM reporting.agent_days s
    WHERE s.day >= w.first AND s.day < w.past;
    RETURN QUERY
    SELECT e.day, t.agent_name, t.tenant_id, e.tool, e.sub_command, e.risk, e.executed, e.proposed, e.ok, e.unknown,
           e.error, e.denied, e.not_found, e.timeout
    FROM reporting.command_edges(since, until) e
    LEFT JOIN public.tickets t ON t.name = e.ticket_name;
END
$fn$;
COMMENT ON FUNCTION reporting.agent_counts(timestamptz, timestamptz) IS
    'Commands received in [since, until), counted per UTC day, agent and tenant of the ticket (as they are now), tool, sub-command and risk class (V14): whole days from reporting.agent_days, the rest row by row.';

-- Commands received in [since, until) per day and ticket: executed, proposed, failures per class
-- and the last of each, commands per risk class.
CREATE FUNCTION reporting.ticket_counts(since timestamptz, until timestamptz)
    RETURNS TABLE (day date, ticket_name text, executed bigint, proposed bigint, never_run bigint, error bigint,
                   denied bigint,
                   not_found bigint, timeout bigint, last_error_at timestamptz, last_denied_at timestamptz,
                   last_not_found_at timestamptz, last_timeout_at timestamptz, destroy bigint, delete bigint,
                   terminate bigint, permissions bigint, secrets bigint)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100000
AS $fn$
DECLARE
    w record;
BEGIN
    SELECT * INTO w FROM reporting.whole_days(since, until);
    RETURN QUERY
    SELECT s.day, s.ticket_name, s.executed, s.proposed, s.never_run, s.error, s.denied, s.not_found, s.timeout, s.last_error_at,
           s.last_denied_at, s.last_not_found_at, s.last_timeout_at, s.destroy, s.delete, s.terminate,
           s.permissions, s.secrets
    FROM reporting.ticket_days s
    WHERE s.day >= w.first AND s.day < w.past;
    RETURN QUERY
    SELECT e.day, e.ticket_name, e.executed, e.proposed, NULL::bigint, e.error, e.denied, e.not_found, e.timeout, e.last_error_at,
           e.last_denied_at, e.last_not_found_at, e.last_timeout_at, (e.risk = 'destroy')::int::bigint,
           (e.risk = 'delete')::int::bigint, (e.risk = 'terminate')::int::bigint,
           (e.risk = 'permissions')::int::bigint, (e.risk = 'secrets')::int::bigint
    FROM reporting.command_edges(since, until) e;
END
$fn$;
COMMENT ON FUNCTION reporting.ticket_counts(timestamptz, timestamptz) IS
    'Commands received in [since, until), counted per UTC day and ticket (V14): whole days from reporting.ticket_days, the rest row by row.';

-- Deliveries with an action event received in [since, until), per day and action.
CREATE FUNCTION reporting.delivery_counts(since timestamptz, until timestamptz)
    RETURNS TABLE (day date, action text, deliveries bigint, failed bigint, not_normalized bigint,
                   first_received timestamptz, last_received timestamptz)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1000
AS $fn$
DECLARE
    mark bigint := (SELECT c.seq FROM reporting.classified c);
    first_day date;
    past_day date;
    lo_first bigint; lo_last bigint; hi_first bigint; hi_last bigint;
BEGIN
    SELECT w.first, w.past INTO first_day, past_day FROM reporting.whole_days(since, until) w;
    IF first_day >= past_day THEN
        first_day := 'infinity';
        past_day := 'infinity';
    END IF;
    IF isfinite(since) AND (since AT TIME ZONE 'UTC')::date < first_day THEN
        SELECT min(s.first_seq), max(s.last_seq) INTO lo_first, lo_last FROM reporting.delivery_days s
        WHERE s.day >= (since AT TIME ZONE 'UTC')::date AND s.day < least(first_day, (until AT TIME ZONE 'UTC')::date + 1);
    END IF;
    IF isfinite(until) AND past_day < 'infinity' AND (until AT TIME ZONE 'UTC') > past_day::timestamp THEN
        SELECT min(s.first_seq), max(s.last_seq) INTO hi_first, hi_last FROM reporting.delivery_days s
        WHERE s.day = past_day;
    END IF;
    RETURN QUERY
    SELECT s.day, s.action, s.deliveries, s.failed, s.not_normalized, s.first_received, s.last_received
    FROM reporting.delivery_days s
    WHERE s.day >= first_day AND s.day < past_day;
    RETURN QUERY
    SELECT (d.received_at AT TIME ZONE 'UTC')::date, d.action, 1::bigint, (NOT e.success)::int::bigint,
           (d.normalize_error IS NOT NULL)::int::bigint, d.received_at, d.received_at
    FROM public.deliveries d
    JOIN public.action_events e ON e.seq = d.seq
    WHERE ((d.seq >= lo_first AND d.seq <= lo_last) OR (d.seq >= hi_first AND d.seq <= hi_last))
      AND d.seq <= mark
      AND d.received_at >= since AND d.received_at < until
      AND NOT (d.received_at >= (first_day::timestamp AT TIME ZONE 'UTC') AND d.received_at < (past_day::timestamp AT TIME ZONE 'UTC'));
    RETURN QUERY
    SELECT (d.received_at AT TIME ZONE 'UTC')::date, d.action, 1::bigint, (NOT e.success)::int::bigint,
           (d.normalize_error IS NOT NULL)::int::bigint, d.received_at, d.received_at
    FROM public.deliveries d
    JOIN public.action_events e ON e.seq = d.seq
    WHERE d.seq > mark AND e.seq > mark AND d.received_at >= since AND d.received_at < until;
END
$fn$;
COMMENT ON FUNCTION reporting.delivery_counts(timestamptz, timestamptz) IS
    'Deliveries with an action event received in [since, until), counted per UTC day and action (V14): whole days from reporting.delivery_days, the rest row by row.';

-- ------------------------------------------------------------------------------------------------
-- Rule 4's answer turns from "not run" to "run" when the classifier finds a later execution
-- (track_proposals sets run_seq of an earlier step's proposal): one fewer never_run on the
-- proposal's ticket and day. Only the classifier updates proposal_runs, in its step.
-- ------------------------------------------------------------------------------------------------
CREATE FUNCTION reporting.recount_run_proposals() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
BEGIN
    UPDATE reporting.ticket_days s SET never_run = s.never_run - r.n
    FROM (SELECT (k.recorded_at AT TIME ZONE 'UTC')::date AS day, o.ticket_name, count(*) AS n
          FROM old_runs o
          JOIN new_runs n ON n.seq = o.seq AND n.position = o.position
          JOIN reporting.command_class k ON k.seq = o.seq AND k.position = o.position
          WHERE o.run_seq IS NULL AND n.run_seq IS NOT NULL AND o.ticket_name IS NOT NULL
          GROUP BY 1, 2) r
    -- Equality (a proposal without a ticket is run in its own delivery, never later): IS NOT
    -- DISTINCT FROM would neither hash nor use the key, one pass over ticket_days per row.
    WHERE s.day = r.day AND s.ticket_name = r.ticket_name;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER proposal_runs_recount AFTER UPDATE ON reporting.proposal_runs
    REFERENCING OLD TABLE AS old_runs NEW TABLE AS new_runs
    FOR EACH STATEMENT EXECUTE FUNCTION reporting.recount_run_proposals();

-- Proposals received in [since, until), per ticket's agent and tenant (as they are now): how many,
-- and how many were never executed (reporting.proposals' was_executed false), exactly as counting
-- reporting.proposals would. Whole days: ticket_days' counts (classified proposals), less those
-- still pending there that a command not classified yet runs; the partial days, and the
-- proposals not classified yet, from reporting.proposals row by row.
CREATE FUNCTION reporting.proposal_counts(since timestamptz, until timestamptz)
    RETURNS TABLE (agent_name text, tenant_id text, proposed bigint, never_executed bigint)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1000
AS $fn$
DECLARE
    mark bigint := (SELECT c.seq FROM reporting.classified c);
    w record;
    whole_from timestamptz;
    whole_to timestamptz;
BEGIN
    SELECT * INTO w FROM reporting.whole_days(since, until);
    IF w.first < w.past THEN
        whole_from := w.first::timestamp AT TIME ZONE 'UTC';
        whole_to := w.past::timestamp AT TIME ZONE 'UTC';
    ELSE
        -- No whole day: all of [since, until) row by row.
        whole_from := until;
        whole_to := until;
    END IF;
    RETURN QUERY
    SELECT t.agent_name, t.tenant_id, sum(s.proposed)::bigint, sum(s.never_run)::bigint
    FROM reporting.ticket_days s
    LEFT JOIN public.tickets t ON t.name = s.ticket_name
    WHERE s.day >= w.first AND s.day < w.past AND s.proposed > 0
    GROUP BY 1, 2;
    RETURN QUERY
    SELECT t.agent_name, t.tenant_id, 0::bigint, -count(*)
    FROM reporting.proposal_runs r
    JOIN reporting.command_class k ON k.seq = r.seq AND k.position = r.position
    LEFT JOIN public.tickets t ON t.name = r.ticket_name
    WHERE r.run_seq IS NULL AND r.ticket_name IS NOT NULL
      AND (r.ticket_name, r.command_key) IN (SELECT x.ticket_name, x.command_key FROM reporting.executions_after(mark) x)
      AND k.recorded_at >= whole_from AND k.recorded_at < whole_to
    GROUP BY 1, 2;
    RETURN QUERY
    SELECT p.agent_name, p.tenant_id, count(*), count(*) FILTER (WHERE NOT p.was_executed)
    FROM reporting.proposals p
    WHERE (p.at >= since AND p.at < least(until, whole_from)) OR (p.at >= greatest(since, whole_to) AND p.at < until)
    GROUP BY 1, 2;
    RETURN QUERY
    SELECT p.agent_name, p.tenant_id, count(*), count(*) FILTER (WHERE NOT p.was_executed)
    FROM reporting.proposals p
    WHERE p.delivery_id > mark AND p.at >= whole_from AND p.at < whole_to
    GROUP BY 1, 2;
END
$fn$;
COMMENT ON FUNCTION reporting.proposal_counts(timestamptz, timestamptz) IS
    'Proposals received in [since, until) per agent and tenant of the ticket, and how many were never executed (rule 4), as reporting.proposals counts them (V14).';

-- What was classified before this migration, in steps of about 500,000 deliveries (memory and
-- each statement's sort bounded whatever the record's size).
DO $backfill$
DECLARE
    mark bigint := (SELECT seq FROM reporting.classified);
    lo bigint := 0;
BEGIN
    WHILE lo < mark LOOP
        PERFORM reporting.count_coarse_days(lo, least(lo + 500000, mark));
        lo := lo + 500000;
    END LOOP;
END
$backfill$;
ANALYZE reporting.agent_days, reporting.ticket_days, reporting.delivery_days, reporting.command_days;

GRANT SELECT, INSERT, UPDATE, DELETE ON reporting.agent_days TO ticket_audit_writer;
GRANT SELECT, INSERT, UPDATE ON reporting.ticket_days, reporting.delivery_days TO ticket_audit_writer;
