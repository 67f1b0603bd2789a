-- Classification off the ingest path (issue 5).
--
-- V3 stored the rules' values (tool, sub_command, outcome, risk) as generated columns of
-- public.commands, so every command paid for four rules inside the writer's transaction: about
-- 70 µs of PostgreSQL CPU per command, which halved ingest on a 2-core machine (bench/README.md).
-- The rules do not change; where their values are kept does:
--
--   * reporting.command_class holds, per command, the columns reports filter and group by,
--     with the rules' values. It is filled after the fact by reporting.classify(n), which the
--     service calls in the background (in small steps, yielding to ingest) and `import` and
--     `reproject` call until done.
--   * reporting.classified holds the watermark: every command of a delivery with seq <= it is in
--     command_class; none above it is. The watermark and the rows move in one transaction.
--   * reporting.commands reads command_class up to the watermark and computes the rules for the
--     commands above it, in the same snapshot: a report is exact however far behind the
--     classifier is; only its speed depends on it.

CREATE TABLE reporting.command_class (
    seq bigint NOT NULL,
    position integer NOT NULL,
    ticket_name text,
    recorded_at timestamptz NOT NULL,
    executed boolean NOT NULL,
    command text NOT NULL,
    tool text,
    sub_command text,
    outcome text NOT NULL,
    risk text,
    PRIMARY KEY (seq, position)
);
COMMENT ON TABLE reporting.command_class IS
    'Derived: each command''s reporting columns (all but its result) with the rules'' values (V3), filled behind ingest by reporting.classify. Read reporting.commands, not this table: it also covers commands not classified yet.';

CREATE TABLE reporting.classified (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq bigint NOT NULL CHECK (seq >= 0)
);
COMMENT ON TABLE reporting.classified IS
    'One row: the watermark. Commands of deliveries with seq <= it are in reporting.command_class; those above are not.';
INSERT INTO reporting.classified (seq) VALUES (0);

-- The rules applied to the commands of deliveries lo < seq <= hi, as rows of command_class: the one
-- place where they are applied, for the classifier and for the views' unclassified commands.
-- PL/pgSQL so that it is planned with its real bounds (an index range on commands' primary key),
-- where an inlined SQL function would be planned for a bound not known in advance (a full scan).
-- STABLE: it reads with the snapshot of the query that calls it.
CREATE FUNCTION reporting.classify_range(lo bigint, hi bigint) RETURNS SETOF reporting.command_class
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100
AS $fn$
BEGIN
    RETURN QUERY
    SELECT c.seq, c.position, c.ticket_name, c.recorded_at, c.executed, c.command,
           w[1], w[1] || coalesce(' ' || w[2], ''),
           reporting.command_outcome(c.executed, c.result),
           reporting.command_risk(c.command)
    FROM public.commands c,
         LATERAL (SELECT reporting.command_words(c.command) AS w) words
    WHERE c.seq > lo AND c.seq <= hi;
END
$fn$;
COMMENT ON FUNCTION reporting.classify_range(bigint, bigint) IS
    'The commands of deliveries lo < seq <= hi with the rules applied (tool, sub_command, outcome, risk), as rows of reporting.command_class.';

-- Classifies the commands of the next deliveries after the watermark, about `commands` of them
-- (whole deliveries, never part of one), up to the ledger head; returns how many it classified,
-- 0 when there was nothing left. Concurrent callers (several service processes) take turns on the
-- watermark row. Each statement sees what has committed when it starts, and a delivery's
-- commands commit with the head that covers them, so nothing at or below the head is missed.
CREATE FUNCTION reporting.classify(commands integer) RETURNS integer
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
    -- The seqs of the next commands, one past the step, in order: the step ends with the
    -- delivery of its last command (all of that delivery's commands are taken).
    SELECT array_agg(s.seq ORDER BY s.seq, s.position) INTO next_seqs
    FROM (SELECT c.seq, c.position FROM public.commands c
          WHERE c.seq > mark AND c.seq <= head
          ORDER BY c.seq, c.position
          LIMIT greatest(commands, 1) + 1) s;
    IF coalesce(array_length(next_seqs, 1), 0) <= greatest(commands, 1) THEN
        hi := head; -- the rest fits: up to the head, past deliveries without commands too
    ELSE
        hi := next_seqs[greatest(commands, 1)];
    END IF;
    INSERT INTO reporting.command_class SELECT * FROM reporting.classify_range(mark, hi);
    GET DIAGNOSTICS done = ROW_COUNT;
    UPDATE reporting.classified SET seq = hi;
    RETURN done;
END
$fn$;
COMMENT ON FUNCTION reporting.classify(integer) IS
    'Classifies about N more commands (whole deliveries) into reporting.command_class and moves the watermark; returns how many, 0 when caught up. Run it in a loop to catch up: SELECT reporting.classify(5000).';

-- ------------------------------------------------------------------------------------------------
-- The views keep their columns (and V3's comments on them); only where the rules' values come
-- from changes. reporting.proposals reads reporting.commands and needs no change.
-- ------------------------------------------------------------------------------------------------
-- Classified commands from the table, the others (above the watermark) computed, in one snapshot.
CREATE OR REPLACE VIEW reporting.commands AS
SELECT k.seq AS delivery_id,
       k.position,
       k.ticket_name AS ticket,
       t.tenant_id,
       t.agent_name,
       t.agent_id,
       k.recorded_at AS at,
       k.executed,
       k.command,
       c.result,
       k.tool,
       k.sub_command,
       k.outcome,
       reporting.is_failure(k.outcome) AS failed,
       k.risk
FROM (SELECT * FROM reporting.command_class
      UNION ALL
      SELECT * FROM reporting.classify_range((SELECT seq FROM reporting.classified), 9223372036854775807)) k
-- Unique on the right: PostgreSQL drops these joins from a query that reads none of their columns.
LEFT JOIN public.commands c ON c.seq = k.seq AND c.position = k.position
LEFT JOIN public.tickets t ON t.name = k.ticket_name;
COMMENT ON VIEW reporting.commands IS
    'One row per command, proposed or executed, with its ticket''s tenant and agent and its classification (rules 1 to 3 in V3__reporting.sql; stored by reporting.classify, computed here for commands not classified yet).';

-- Its commands counts now come from reporting.commands, not from the columns dropped below.
CREATE OR REPLACE VIEW reporting.tickets AS
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
    SELECT ticket AS ticket_name,
           count(*) FILTER (WHERE NOT executed) AS proposed,
           count(*) FILTER (WHERE executed) AS executed,
           count(*) FILTER (WHERE failed) AS failed
    FROM reporting.commands
    WHERE ticket IS NOT NULL
    GROUP BY ticket
) c ON c.ticket_name = t.name;

-- Nothing reads the generated columns any more: drop them (a catalog change; no rewrite).
ALTER TABLE public.commands
    DROP COLUMN tool,
    DROP COLUMN sub_command,
    DROP COLUMN outcome,
    DROP COLUMN risk;

-- The service classifies as the writer role; analysts read (default privileges of V3 cover the
-- new tables and views for ticket_audit_reporting).
GRANT USAGE ON SCHEMA reporting TO ticket_audit_writer;
GRANT SELECT, INSERT ON reporting.command_class TO ticket_audit_writer;
GRANT SELECT, UPDATE ON reporting.classified TO ticket_audit_writer;
