-- The month turn takes the record's tables all at once (V9's turn_month took them one by one).
-- Taken one by one, with the writer's first batch of a month holding one table exclusively and
-- waiting for the next, a reader holding that next table and about to read the first (a
-- classify step reads messages, then deliveries) deadlocked with it: the server broke it after
-- deadlock_timeout (1 s), and both retried. Now turn_month tries to lock every table without
-- waiting, and a try that fails holds nothing, so the reader goes on; the tries stop after a
-- second (once a month the writer may wait that long, as it did for the deadlock), and the
-- turn then waits as before. Only the lock step is new; the rest of the body is
-- V9's (CREATE OR REPLACE restates it whole).
CREATE OR REPLACE FUNCTION turn_month(new_month date) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '2s'
AS $fn$
DECLARE
    head bigint;
    last ledger_months;
    tbl text;
    part text := to_char(new_month, 'YYYY_MM');
    open_part regclass;
    nonempty boolean;
    tries_until timestamptz := clock_timestamp() + interval '1 second';
BEGIN
    IF new_month <> date_trunc('month', new_month) THEN
        RAISE EXCEPTION 'turn_month: % is not the first day of a month', new_month;
    END IF;
    SELECT h.seq INTO head FROM ledger_head h FOR UPDATE;
    SELECT * INTO last FROM ledger_months m ORDER BY m.month DESC LIMIT 1;
    IF last.month >= new_month THEN
        RETURN NULL;
    END IF;
    -- Every table's lock at once, or none held while waiting: a reader holding one of these
    -- tables and about to read another (a classify step reads messages, then deliveries) would
    -- otherwise wait for a table the turn holds while the turn waits for its table, a deadlock
    -- the server breaks only after deadlock_timeout. A failed try releases what it took (the
    -- block is a subtransaction), so the reader finishes and the next try gets them all. After
    -- a second of tries, the DETACHes below wait for their locks as before, within lock_timeout
    -- (queued, so that a stream of readers cannot hold the turn off).
    LOOP
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT',
                           (SELECT string_agg(quote_ident(t), ', ') FROM unnest(record_partitioned_tables()) t));
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            EXIT WHEN clock_timestamp() >= tries_until;
            PERFORM pg_sleep(0.001);
        END;
    END LOOP;
    FOREACH tbl IN ARRAY record_partitioned_tables() LOOP
        -- The one open partition: the last month's.
        SELECT c.oid::regclass INTO STRICT open_part
        FROM pg_partition_tree(tbl::regclass) p JOIN pg_class c ON c.oid = p.relid
        WHERE p.isleaf AND pg_get_expr(c.relpartbound, c.oid) LIKE '%TO (MAXVALUE)';
        IF last.first_seq > head THEN
            -- Nothing was recorded in the last month: its partition is empty; drop it.
            EXECUTE format('SELECT EXISTS (SELECT FROM %s)', open_part) INTO nonempty;
            IF nonempty THEN
                RAISE EXCEPTION 'turn_month: % holds rows above the ledger head (%)', open_part, head;
            END IF;
            EXECUTE format('DROP TABLE %s', open_part);
        ELSE
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %s', tbl, open_part);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)',
                           tbl, open_part, last.first_seq, head + 1);
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (MAXVALUE)',
                       tbl || '_' || part, tbl, head + 1);
        IF tbl = ANY (record_guarded_tables()) THEN
            EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()',
                           tbl || '_no_truncate', tbl || '_' || part);
        END IF;
    END LOOP;
    INSERT INTO ledger_months (month, first_seq) VALUES (new_month, head + 1);
    RETURN head + 1;
END
$fn$;
