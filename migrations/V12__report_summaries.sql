-- Reports at 10^7 commands (issue 15): rule 4 ("proposed but never executed") kept by the
-- classifier instead of probed per proposal at query time.
--
-- reporting.proposals (V3) answered, for every proposal, "was an executed command with the same
-- line recorded on its ticket at or after it?" with one index probe of commands_executed_key
-- per proposal: linear in the proposals (1.4 s at 10^6 commands on the reporting seed, 24 s at
-- 3*10^6 on the read benchmark's record under load: bench/README.md). The answer can only turn from no to yes, when a later execution is stored.
-- So the classifier, which takes every command once and in seq order, keeps it:
--
--   * reporting.proposal_runs: one row per classified proposal, with run_seq, the first
--     classified execution that runs it (same ticket, same reporting.command_key, seq at or
--     after it; for a proposal without a ticket, in its own delivery), or null: none among the
--     classified commands (seq <= the watermark).
--   * reporting.classify(n), in the same transaction as it classifies a step: the step's
--     proposals are added with their run_seq looked up among the commands up to the step's end,
--     and the step's executions fill run_seq of the earlier proposals they run.
--   * reporting.proposals reads it: a classified proposal was executed when run_seq is set or a
--     command above the watermark (not classified yet: few, once the classifier has caught up)
--     runs it, one hashed lookup in the set of those; an unclassified one is probed as before.
--     The answers are V3's, exactly, at any watermark (tests/api/reports.rs compares them).

CREATE TABLE reporting.proposal_runs (
    seq bigint NOT NULL,
    position integer NOT NULL,
    ticket_name text,
    command_key text NOT NULL,
    run_seq bigint CHECK (run_seq >= seq),
    PRIMARY KEY (seq, position)
);
COMMENT ON TABLE reporting.proposal_runs IS
    'Derived (V12): each classified proposal with run_seq, the first classified execution of it on its ticket at or after it (rule 4), null while none; kept by reporting.classify. Read reporting.proposals.';
-- The proposals still waiting for an execution, by what an execution must match.
CREATE INDEX proposal_runs_pending ON reporting.proposal_runs (ticket_name, command_key)
    WHERE run_seq IS NULL AND ticket_name IS NOT NULL;

-- The first execution of proposal (seq, ticket, key) among commands up to hi: the one rule-4
-- lookup, for the classifier and the backfill below.
CREATE FUNCTION reporting.first_run(seq bigint, ticket text, key text, hi bigint) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN ticket IS NULL
            THEN (SELECT min(e.seq) FROM public.commands e
                  WHERE e.seq = first_run.seq AND e.executed AND reporting.command_key(e.command) = key)
            ELSE (SELECT min(e.seq) FROM public.commands e
                  WHERE e.executed AND e.ticket_name = ticket AND reporting.command_key(e.command) = key
                    AND e.seq >= first_run.seq AND e.seq <= hi)
       END;

-- Adds the proposals of the classified step lo < seq <= hi and fills run_seq of earlier ones
-- that the step's executions run. Called by classify, after the step's command_class rows.
CREATE FUNCTION reporting.track_proposals(lo bigint, hi bigint) RETURNS void
    LANGUAGE plpgsql
AS $fn$
BEGIN
    INSERT INTO reporting.proposal_runs (seq, position, ticket_name, command_key, run_seq)
    SELECT k.seq, k.position, k.ticket_name, reporting.command_key(k.command),
           reporting.first_run(k.seq, k.ticket_name, reporting.command_key(k.command), hi)
    FROM reporting.command_class k
    WHERE k.seq > lo AND k.seq <= hi AND NOT k.executed;
    -- Every pending proposal is at or below lo: any execution of the step comes after it. (The
    -- step's own proposals found theirs above, or have none at or after them up to hi.)
    UPDATE reporting.proposal_runs p SET run_seq = e.seq
    FROM (SELECT k.ticket_name, reporting.command_key(k.command) AS key, min(k.seq) AS seq
          FROM reporting.command_class k
          WHERE k.seq > lo AND k.seq <= hi AND k.executed AND k.ticket_name IS NOT NULL
          GROUP BY 1, 2) e
    WHERE p.run_seq IS NULL AND p.ticket_name IS NOT NULL AND p.seq <= lo
      AND p.ticket_name = e.ticket_name AND p.command_key = e.key;
END
$fn$;

-- V5's classify, with the proposals tracked and the days counted (below) in the same transaction.
CREATE OR REPLACE FUNCTION reporting.classify(commands integer) RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    mark bigint;
    head bigint;
    hi bigint;
    next_seqs bigint[];
    done integer;
BEGIN
    SELECT c.seq INTO mark FROM reporting.classified c FOR UPDATE;
    SELECT h.seq INTO head FROM public.ledger_head h;
    IF head <= mark THEN
        RETURN 0;
    END IF;
    SELECT array_agg(s.seq ORDER BY s.seq, s.position) INTO next_seqs
    FROM (SELECT c.seq, c.position FROM public.commands c
          WHERE c.seq > mark AND c.seq <= head
          ORDER BY c.seq, c.position
          LIMIT greatest(commands, 1) + 1) s;
    IF coalesce(array_length(next_seqs, 1), 0) <= greatest(commands, 1) THEN
        hi := head;
    ELSE
        hi := next_seqs[greatest(commands, 1)];
    END IF;
    INSERT INTO reporting.command_class SELECT * FROM reporting.classify_range(mark, hi);
    GET DIAGNOSTICS done = ROW_COUNT;
    PERFORM reporting.track_proposals(mark, hi);
    PERFORM reporting.count_days(mark, hi);
    UPDATE reporting.classified SET seq = hi;
    RETURN done;
END
$fn$;

-- (ticket, key) of the executed commands above lo: what may still run a classified proposal.
-- PL/pgSQL, planned with its real bound (a range of commands' primary key).
CREATE FUNCTION reporting.executions_after(lo bigint) RETURNS TABLE (ticket_name text, command_key text)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100
AS $fn$
BEGIN
    RETURN QUERY
    SELECT c.ticket_name, reporting.command_key(c.command)
    FROM public.commands c
    WHERE c.seq > lo AND c.executed AND c.ticket_name IS NOT NULL;
END
$fn$;

CREATE OR REPLACE VIEW reporting.proposals AS
SELECT p.delivery_id, p.position, p.ticket, p.tenant_id, p.agent_name, p.agent_id, p.at, p.command, p.tool,
       p.sub_command, p.risk,
       CASE WHEN r.seq IS NOT NULL
            -- Classified: known up to the watermark; above it, the few commands not classified yet.
            THEN r.run_seq IS NOT NULL
                 OR (r.ticket_name IS NOT NULL
                     AND (r.ticket_name, r.command_key) IN
                         (SELECT x.ticket_name, x.command_key
                          FROM reporting.executions_after((SELECT seq FROM reporting.classified)) x))
            WHEN p.ticket IS NULL
            THEN EXISTS (SELECT FROM public.commands e
                         WHERE e.seq = p.delivery_id AND e.executed
                           AND reporting.command_key(e.command) = reporting.command_key(p.command))
            ELSE EXISTS (SELECT FROM public.commands e
                         WHERE e.executed AND e.ticket_name = p.ticket
                           AND reporting.command_key(e.command) = reporting.command_key(p.command)
                           AND e.seq >= p.delivery_id)
       END AS was_executed
FROM reporting.commands p
LEFT JOIN reporting.proposal_runs r ON r.seq = p.delivery_id AND r.position = p.position
WHERE NOT p.executed;
COMMENT ON VIEW reporting.proposals IS
    'One row per proposed command (executed = false), with whether it was executed afterwards (rule 4 in V3__reporting.sql; kept in reporting.proposal_runs by the classifier since V12).';
COMMENT ON COLUMN reporting.proposals.was_executed IS
    'Rule 4: an executed command with the same trimmed line followed on the same ticket (same delivery or later); for a proposal without a ticket, in its own delivery.';

-- The proposals classified before this migration.
INSERT INTO reporting.proposal_runs (seq, position, ticket_name, command_key, run_seq)
SELECT k.seq, k.position, k.ticket_name, reporting.command_key(k.command),
       reporting.first_run(k.seq, k.ticket_name, reporting.command_key(k.command), (SELECT seq FROM reporting.classified))
FROM reporting.command_class k
WHERE NOT k.executed;
ANALYZE reporting.proposal_runs;

GRANT SELECT, INSERT, UPDATE ON reporting.proposal_runs TO ticket_audit_writer;

-- ------------------------------------------------------------------------------------------------
-- Counts per UTC day and ticket, kept by the classifier in the same transaction as it classifies
-- (the reports that count commands and messages read them instead of every row).
--
--   * reporting.command_days: per day (of the command's recorded_at, UTC), ticket, tool,
--     sub-command and risk class, the commands executed and proposed, the executed ones per
--     outcome class, and the last time of each failure class; first_seq/last_seq bound the
--     rows it counts.
--   * reporting.message_days: per day and ticket, the user's and the agent's messages.
--
-- Grouped by ticket, not by agent or tenant: those are the ticket's as it is now (a ticket's
-- assignee changes, and its tenant is set by a later AddTicket), so the reports join tickets
-- when they read, as they did, and count distinct tickets exactly. Only deliveries at or below
-- the watermark are counted here. reporting.command_counts(since, until) and
-- reporting.message_counts(since, until) give the rows a report over [since, until) needs:
-- the summary for the whole days inside the window, and, one row per command or message, the
-- rest: the window's partial first and last days (found by the days' seq bounds) and what is
-- not classified yet. The reports' answers are those of the rows themselves (tests/api/reports.rs
-- compares them with the reports as they were before V12 on a seeded record).
-- ------------------------------------------------------------------------------------------------
CREATE TABLE reporting.command_days (
    day date NOT NULL,
    ticket_name text,
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
    timeout bigint NOT NULL,
    last_error_at timestamptz,
    last_denied_at timestamptz,
    last_not_found_at timestamptz,
    last_timeout_at timestamptz,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL
);
CREATE UNIQUE INDEX command_days_key ON reporting.command_days (day, ticket_name, tool, sub_command, risk)
    NULLS NOT DISTINCT;
COMMENT ON TABLE reporting.command_days IS
    'Derived (V12): classified commands counted per UTC day, ticket, tool, sub-command and risk class; kept by reporting.classify. Read through reporting.command_counts(since, until).';

CREATE TABLE reporting.message_days (
    day date NOT NULL,
    ticket_name text NOT NULL,
    user_messages bigint NOT NULL,
    agent_messages bigint NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    PRIMARY KEY (day, ticket_name)
);
COMMENT ON TABLE reporting.message_days IS
    'Derived (V12): messages of classified deliveries counted per UTC day and ticket; kept by reporting.classify. Read through reporting.message_counts(since, until).';

-- The row type both halves of reporting.command_counts give.
CREATE TYPE reporting.command_count AS (
    day date, ticket_name text, tool text, sub_command text, risk text,
    executed bigint, proposed bigint, ok bigint, unknown bigint, error bigint, denied bigint, not_found bigint,
    timeout bigint, last_error_at timestamptz, last_denied_at timestamptz, last_not_found_at timestamptz,
    last_timeout_at timestamptz
);

-- Adds the commands and messages of deliveries lo < seq <= hi (just classified) to the days.
CREATE FUNCTION reporting.count_days(lo bigint, hi bigint) RETURNS void
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
END
$fn$;

-- The whole UTC days inside [since, until): [first, past). Empty when first >= past.
CREATE FUNCTION reporting.whole_days(since timestamptz, until timestamptz, OUT first date, OUT past date)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN isfinite(since) AND (since AT TIME ZONE 'UTC') > date_trunc('day', since AT TIME ZONE 'UTC')
                THEN (since AT TIME ZONE 'UTC')::date + 1
                ELSE (since AT TIME ZONE 'UTC')::date END,
           (until AT TIME ZONE 'UTC')::date
$$;

-- The rows of commands received in [since, until) that the reports count: per day, ticket,
-- tool, sub-command and risk class; the whole days from reporting.command_days, the rest one
-- row per command (classified ones from command_class, the others with the rules computed).
-- Sums over it are the sums over reporting.commands in the window.
CREATE FUNCTION reporting.command_counts(since timestamptz, until timestamptz)
    RETURNS SETOF reporting.command_count
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100000
AS $fn$
DECLARE
    mark bigint := (SELECT c.seq FROM reporting.classified c);
    first_day date;
    past_day date;
    lo_first bigint; lo_last bigint; hi_first bigint; hi_last bigint;
BEGIN
    SELECT w.first, w.past INTO first_day, past_day FROM reporting.whole_days(since, until) w;
    IF first_day >= past_day THEN
        -- No whole day: the window's rows one by one, from the days it touches.
        first_day := 'infinity';
        past_day := 'infinity';
    END IF;
    -- The seq bounds of the partial days (the day of since, before the first whole day, and the
    -- day of until, from the past whole day on); null when the window has none.
    IF isfinite(since) AND (since AT TIME ZONE 'UTC')::date < first_day THEN
        SELECT min(s.first_seq), max(s.last_seq) INTO lo_first, lo_last FROM reporting.command_days s
        WHERE s.day >= (since AT TIME ZONE 'UTC')::date AND s.day < least(first_day, (until AT TIME ZONE 'UTC')::date + 1);
    END IF;
    IF isfinite(until) AND past_day < 'infinity' AND (until AT TIME ZONE 'UTC') > past_day::timestamp THEN
        SELECT min(s.first_seq), max(s.last_seq) INTO hi_first, hi_last FROM reporting.command_days s
        WHERE s.day = past_day;
    END IF;
    RETURN QUERY
    SELECT s.day, s.ticket_name, s.tool, s.sub_command, s.risk, s.executed, s.proposed, s.ok, s.unknown, s.error,
           s.denied, s.not_found, s.timeout, s.last_error_at, s.last_denied_at, s.last_not_found_at, s.last_timeout_at
    FROM reporting.command_days s
    WHERE s.day >= first_day AND s.day < past_day;
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
COMMENT ON FUNCTION reporting.command_counts(timestamptz, timestamptz) IS
    'Commands received in [since, until), counted per UTC day, ticket, tool, sub-command and risk class (V12): whole days from reporting.command_days, the rest row by row. Sums over it are sums over reporting.commands.';

CREATE FUNCTION reporting.message_counts(since timestamptz, until timestamptz)
    RETURNS TABLE (day date, ticket_name text, user_messages bigint, agent_messages bigint)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100000
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
        SELECT min(s.first_seq), max(s.last_seq) INTO lo_first, lo_last FROM reporting.message_days s
        WHERE s.day >= (since AT TIME ZONE 'UTC')::date AND s.day < least(first_day, (until AT TIME ZONE 'UTC')::date + 1);
    END IF;
    IF isfinite(until) AND past_day < 'infinity' AND (until AT TIME ZONE 'UTC') > past_day::timestamp THEN
        SELECT min(s.first_seq), max(s.last_seq) INTO hi_first, hi_last FROM reporting.message_days s
        WHERE s.day = past_day;
    END IF;
    RETURN QUERY
    SELECT s.day, s.ticket_name, s.user_messages, s.agent_messages
    FROM reporting.message_days s
    WHERE s.day >= first_day AND s.day < past_day;
    RETURN QUERY
    SELECT (m.received_at AT TIME ZONE 'UTC')::date, m.ticket_name, (m.role = 'user')::int::bigint,
           (m.role = 'agent')::int::bigint
    FROM public.messages m
    WHERE ((m.seq >= lo_first AND m.seq <= lo_last) OR (m.seq >= hi_first AND m.seq <= hi_last))
      AND m.seq <= mark
      AND m.received_at >= since AND m.received_at < until
      AND NOT (m.received_at >= (first_day::timestamp AT TIME ZONE 'UTC') AND m.received_at < (past_day::timestamp AT TIME ZONE 'UTC'));
    RETURN QUERY
    SELECT (m.received_at AT TIME ZONE 'UTC')::date, m.ticket_name, (m.role = 'user')::int::bigint,
           (m.role = 'agent')::int::bigint
    FROM public.messages m
    WHERE m.seq > mark AND m.received_at >= since AND m.received_at < until;
END
$fn$;
COMMENT ON FUNCTION reporting.message_counts(timestamptz, timestamptz) IS
    'Messages received in [since, until), counted per UTC day and ticket (V12): whole days from reporting.message_days, the rest row by row.';

-- The lists of risky commands and of proposals never run are read newest first (LIMIT): an
-- index on each one's times, in the lists' order, instead of sorting every risky command.
CREATE INDEX command_class_risky_at ON reporting.command_class (recorded_at DESC, seq DESC, position)
    WHERE risk IS NOT NULL;
CREATE INDEX command_class_proposed_at ON reporting.command_class (recorded_at DESC, seq DESC, position)
    WHERE NOT executed;

-- What was classified before this migration.
SELECT reporting.count_days(0, (SELECT seq FROM reporting.classified));
ANALYZE reporting.command_days, reporting.message_days;

GRANT SELECT, INSERT, UPDATE ON reporting.command_days, reporting.message_days TO ticket_audit_writer;
