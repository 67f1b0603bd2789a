-- The partitioned record (issue 15, item 1): deliveries and their projection (action events,
-- messages, commands, ticket anomalies) become tables partitioned by seq range, one partition
-- per calendar month (UTC, of recorded_at), so that a month can be archived and dropped whole.
--
-- * The current month's partition is open-ended: FROM (its first seq) TO (MAXVALUE). seq is
--   gapless and assigned under the ledger head lock, so the month's last seq is only known when
--   the next month begins: the writer's first batch of a month, holding the head lock, calls
--   turn_month(month), which closes the open partitions at head + 1 (DETACH, then ATTACH with
--   the exact bound) and opens the new month's. docs/operations.md gives its cost.
-- * ledger_months records each month's first seq: the map from months to seq ranges that
--   `archive` and the partitions' names follow.
-- * Idempotency across partitions: a unique index cannot span partitions (it would have to hold
--   seq), so every delivery's (key scope, key) is also written to delivery_keys, in the same
--   statement as the delivery (store_batch.sql), and the writer looks duplicates up there.
--   delivery_keys is never archived: a key stays taken after its partition is dropped.
-- * The existing tables are not copied: each is attached whole as the first partition
--   (`<table>_legacy`, seq < head + 1 at migration time), which costs one scan to check the bound
--   and no copy; it is archived as one unit once every month it holds is before --before.
-- * Foreign keys from the projection to deliveries are dropped: the writer writes both in one
--   statement, and a foreign key would forbid dropping an archived month's deliveries (tickets
--   keep first_seen_seq of archived deliveries).
-- * Views keep their definitions; they are re-created over the partitioned tables. Row triggers
--   (append-only) are defined on the partitioned tables, so PostgreSQL puts them on every
--   partition, later ones too; TRUNCATE triggers are statement triggers, so each partition gets
--   its own (turn_month adds them to the partitions it creates).

CREATE TABLE ledger_months (
    month date PRIMARY KEY CHECK (month = date_trunc('month', month)),
    first_seq bigint NOT NULL CHECK (first_seq > 0)
);
COMMENT ON TABLE ledger_months IS
    'Each month''s first seq (the record''s month is that of recorded_at, UTC); the current month runs to the head. Partitions <table>_YYYY_MM hold seq first_seq up to the next month''s first_seq - 1.';
CREATE TRIGGER ledger_months_append_only BEFORE UPDATE OR DELETE ON ledger_months
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

CREATE TABLE delivery_keys (
    scope text NOT NULL,
    dedup_key text NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (scope, dedup_key)
);
COMMENT ON TABLE delivery_keys IS
    'Every delivery''s idempotency key, in its scope (key_scope(key_source)), with its seq: unique across partitions and kept after a month is archived.';
CREATE TRIGGER delivery_keys_append_only BEFORE UPDATE OR DELETE ON delivery_keys
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER delivery_keys_no_truncate BEFORE TRUNCATE ON delivery_keys
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
INSERT INTO delivery_keys (scope, dedup_key, seq)
SELECT key_scope(key_source), dedup_key, seq FROM deliveries;

-- The partitioned tables, in the order the migration converts them (deliveries first).
CREATE FUNCTION record_partitioned_tables() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['deliveries', 'action_events', 'messages', 'commands', 'ticket_anomalies'];
COMMENT ON FUNCTION record_partitioned_tables() IS
    'The tables partitioned by seq range, one partition per month: the record and its projection.';

-- The tables whose partitions refuse TRUNCATE (V2: the record proper).
CREATE FUNCTION record_guarded_tables() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['deliveries', 'commands'];

DO $migrate$
DECLARE
    head bigint := (SELECT seq FROM ledger_head);
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    part text := to_char(date_trunc('month', now() AT TIME ZONE 'UTC'), 'YYYY_MM');
    tbl text;
    r record;
    views text[][] := '{}';
    v text[];
    indexes text[];
    idx text;
    table_comment text;
    empty text[] := '{}';
BEGIN
    -- Foreign keys to or from the record's tables.
    FOR r IN SELECT c.conname, c.conrelid::regclass AS rel FROM pg_constraint c
             WHERE c.contype = 'f'
               AND (c.conrelid::regclass::text = ANY (record_partitioned_tables() || ARRAY['tickets'])
                    OR c.confrelid::regclass::text = ANY (record_partitioned_tables()))
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
    END LOOP;

    -- Views over them, as defined now: re-created over the partitioned tables below.
    FOR r IN SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS def
             FROM pg_depend d
             JOIN pg_rewrite w ON w.oid = d.objid
             JOIN pg_class v ON v.oid = w.ev_class
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.refobjid::regclass::text = ANY (record_partitioned_tables())
               AND v.oid <> d.refobjid
    LOOP
        views := views || ARRAY[ARRAY[r.name, r.def]];
    END LOOP;

    FOREACH tbl IN ARRAY record_partitioned_tables() LOOP
        -- Index definitions as they read now (ON public.<tbl>), less the scoped key's unique
        -- index (delivery_keys replaces it) and the primary key (added as a constraint).
        SELECT coalesce(array_agg(pg_get_indexdef(i.indexrelid) ORDER BY c.relname), '{}') INTO indexes
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = tbl::regclass AND NOT i.indisprimary AND c.relname <> 'deliveries_scoped_key_unique';
        table_comment := obj_description(tbl::regclass, 'pg_class');

        IF tbl = 'deliveries' THEN
            DROP INDEX deliveries_scoped_key_unique;
        END IF;
        EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, tbl || '_legacy');
        FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = (tbl || '_legacy')::regclass
        LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, left(r.relname, 55) || '_legacy');
        END LOOP;
        FOR r IN SELECT t.tgname FROM pg_trigger t WHERE t.tgrelid = (tbl || '_legacy')::regclass AND NOT t.tgisinternal
        LOOP
            EXECUTE format('DROP TRIGGER %I ON %I', r.tgname, tbl || '_legacy');
        END LOOP;

        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS '
                       'INCLUDING COMPRESSION INCLUDING STORAGE) PARTITION BY RANGE (seq)', tbl, tbl || '_legacy');
        EXECUTE format('COMMENT ON TABLE %I IS %L', tbl,
                       table_comment || ' Partitioned by seq range, one partition per month (V9).');

        IF head > 0 THEN
            -- The bound checked once here, by one scan; no row is copied.
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%s)',
                           tbl, tbl || '_legacy', head + 1);
            EXECUTE format('COMMENT ON TABLE %I IS %L', tbl || '_legacy',
                           format('Partition of %s: every row stored before V9 (seq < %s).', tbl, head + 1));
        ELSE
            empty := empty || (tbl || '_legacy');
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (MAXVALUE)',
                       tbl || '_' || part, tbl, head + 1);

        -- The primary key and indexes on the partitioned table: the legacy partition's own
        -- indexes match and are attached, not built again.
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (%s)', tbl, tbl || '_pkey',
                       CASE WHEN tbl IN ('deliveries', 'action_events') THEN 'seq' ELSE 'seq, position' END);
        FOREACH idx IN ARRAY indexes LOOP
            EXECUTE idx;
        END LOOP;
    END LOOP;

    FOREACH v SLICE 1 IN ARRAY views LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', v[1], v[2]);
    END LOOP;
    -- A new database's tables were empty: nothing to keep.
    FOREACH tbl IN ARRAY empty LOOP
        EXECUTE format('DROP TABLE %I', tbl);
    END LOOP;

    FOREACH tbl IN ARRAY record_guarded_tables() LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION refuse_change()',
                       tbl || '_append_only', tbl);
        FOR r IN SELECT p.relid FROM pg_partition_tree(tbl::regclass) p LOOP
            EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()',
                           tbl || '_no_truncate', r.relid::regclass);
        END LOOP;
    END LOOP;

    INSERT INTO ledger_months (month, first_seq) VALUES (this_month, head + 1);
END;
$migrate$;

-- Rights: the service adds to the record through the partitioned tables (privileges are checked
-- there, not on partitions); readers read them, and the partitions too (default privileges).
GRANT SELECT, INSERT ON deliveries, commands, action_events, messages, ticket_anomalies TO ticket_audit_writer;
GRANT SELECT, INSERT ON delivery_keys TO ticket_audit_writer;
GRANT SELECT ON ledger_months TO ticket_audit_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO ticket_audit_reporting;
-- Partitioned tables are not analyzed by autovacuum; their partitions are.
ANALYZE deliveries, action_events, messages, commands, ticket_anomalies, delivery_keys;

-- The month turn. Called by the writer's first batch of a month, in its transaction, holding the
-- ledger head (so head + 1 is the new month's first seq), before it reads or writes the record.
-- SECURITY DEFINER: the writer role may not change tables; this function does only this.
-- Closing a partition is DETACH and ATTACH with its exact bound: ATTACH scans the partition once
-- to check the bound, with the partition locked (readers of it wait; docs/operations.md gives
-- the cost per million rows). lock_timeout: a session holding the record's tables for longer
-- makes the batch fail (the senders get 503 and retry), and the next batch tries again, rather
-- than let every reader queue behind the turn.
-- Returns the new month's first seq, or null when the month had already begun.
CREATE FUNCTION turn_month(new_month date) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '2s'
AS $fn$
DECLARE
    head bigint;
    last ledger_months;
    tbl text;
    part text := to_char(new_month, 'YYYY_MM');
    open_part regclass;
    nonempty boolean;
BEGIN
    IF new_month <> date_trunc('month', new_month) THEN
        RAISE EXCEPTION 'turn_month: % is not the first day of a month', new_month;
    END IF;
    SELECT h.seq INTO head FROM ledger_head h FOR UPDATE;
    SELECT * INTO last FROM ledger_months m ORDER BY m.month DESC LIMIT 1;
    IF last.month >= new_month THEN
        RETURN NULL;
    END IF;
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
COMMENT ON FUNCTION turn_month(date) IS
    'The month turn: closes the open partitions at head + 1 and opens new_month''s. The writer calls it, holding the ledger head, in the first batch of a month.';
REVOKE ALL ON FUNCTION turn_month(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION turn_month(date) TO ticket_audit_writer;
