-- Redaction that keeps the proof (issue 15, item 3).
--
-- A redaction replaces one delivery's raw body with a tombstone (the empty body) and blanks the
-- text its projection holds (messages' content, commands' line and output, the reporting copy of
-- the line), keeping body_sha256 and everything the chain and the tree cover: the delivery's
-- leaf, the tree's stored hashes and every checkpoint stay valid.
--
-- * The redaction is itself a ledger entry: a row of `deliveries` with key_source 'redaction',
--   the key 'redaction <seq>' (a space: no sender can send such a key, sender keys are visible
--   ASCII) and a small JSON body naming the target (seq, body_sha256), the reason, the actor,
--   the time, and the target's projection without its text (what `reproject` and `verify` need
--   to rebuild and check the redacted rows). It is chained and is a leaf like any delivery.
-- * `ticket_audit_redact(entry_seq)`, SECURITY DEFINER, is the only way to apply a redaction,
--   and it applies only one recorded in the ledger: it reads the entry row, checks it, records
--   the redaction in `redactions` and blanks the rows. The writer calls it in the transaction
--   that stores the entry (store/batch.rs), so a redaction is whole or absent.
-- * The append-only row triggers of deliveries and commands keep refusing every UPDATE and
--   DELETE, except the one UPDATE to the tombstone of a row whose redaction was recorded in the
--   same transaction (a `redactions` row with applied_in = this transaction): only the
--   definer function can write that table. V2's refuse_change() is left as it is (the other
--   append-only tables and every TRUNCATE trigger keep using it); the two row triggers are
--   re-created on the partitioned tables with the new function, so PostgreSQL puts them on every
--   partition, those turn_month() makes later included.

-- 1. The service's own entries have a key source of their own (and so a scope of their own:
--    key_scope('redaction') = 'redaction'). The old check is dropped under its name wherever
--    it is (the parent and any partition that had it as its own, such as V9's legacy one).
DO $$
DECLARE
    r record;
BEGIN
    ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_key_source_check;
    FOR r IN SELECT c.conrelid::regclass AS rel, c.conname FROM pg_constraint c
             WHERE c.contype = 'c' AND c.conname = 'deliveries_key_source_check'
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
    END LOOP;
END;
$$;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_key_source_known
    CHECK (key_source IN ('webhook-id', 'svix-id', 'idempotency-key', 'body-sha256', 'redaction'));

-- 2. The redactions applied: one per redacted delivery, append-only.
CREATE TABLE redactions (
    target_seq bigint PRIMARY KEY CHECK (target_seq > 0),
    -- The ledger entry that records the redaction.
    redaction_seq bigint NOT NULL UNIQUE CHECK (redaction_seq > target_seq),
    -- The redacted body's SHA-256, as the target row keeps it.
    body_sha256 bytea NOT NULL CHECK (length(body_sha256) = 32),
    reason text NOT NULL,
    actor text NOT NULL,
    redacted_at timestamptz NOT NULL,
    -- The transaction that applied it: the append-only triggers let the tombstone through in it only.
    applied_in xid8 NOT NULL DEFAULT pg_current_xact_id()
);
COMMENT ON TABLE redactions IS
    'Deliveries whose body and projected text were replaced by a tombstone (ticket-audit redact), each by the ledger entry redaction_seq. Written only by ticket_audit_redact().';
CREATE TRIGGER redactions_append_only BEFORE UPDATE OR DELETE ON redactions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER redactions_no_truncate BEFORE TRUNCATE ON redactions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
GRANT SELECT ON redactions TO ticket_audit_writer;

-- 3. The row guard of deliveries and commands: V2's refusal, less the tombstone of a redaction
--    applied in this transaction. TG_ARGV[0] names the partitioned table (TG_TABLE_NAME is the
--    partition's name).
CREATE FUNCTION refuse_change_but_redaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND EXISTS (SELECT FROM redactions r WHERE r.target_seq = OLD.seq AND r.applied_in = pg_current_xact_id())
    THEN
        -- Nested: a field of the other table's row is not to be named in an expression.
        IF TG_ARGV[0] = 'deliveries' THEN
            IF NEW.body = ''::bytea AND to_jsonb(NEW) - 'body' = to_jsonb(OLD) - 'body' THEN
                RETURN NEW;
            END IF;
        ELSIF TG_ARGV[0] = 'commands' THEN
            IF NEW.command = '' AND NEW.result IS NULL
               AND to_jsonb(NEW) - 'command' - 'result' = to_jsonb(OLD) - 'command' - 'result' THEN
                RETURN NEW;
            END IF;
        END IF;
    END IF;
    RAISE EXCEPTION 'ticket-audit: % is append-only; % is refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The audit record is never changed. To rebuild projections run `ticket-audit reproject`; to redact a delivery, `ticket-audit redact`.';
END;
$$;
COMMENT ON FUNCTION refuse_change_but_redaction() IS
    'Row trigger of deliveries and commands: refuses UPDATE and DELETE, except the tombstone of a redaction that ticket_audit_redact() recorded in the same transaction.';

DROP TRIGGER deliveries_append_only ON deliveries;
CREATE TRIGGER deliveries_append_only BEFORE UPDATE OR DELETE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION refuse_change_but_redaction('deliveries');
DROP TRIGGER commands_append_only ON commands;
CREATE TRIGGER commands_append_only BEFORE UPDATE OR DELETE ON commands
    FOR EACH ROW EXECUTE FUNCTION refuse_change_but_redaction('commands');

-- 4. Applying a redaction recorded in the ledger: the entry at entry_seq (stored in this
--    transaction by the writer, or earlier). Returns the target's seq. Refusals are
--    check_violation (SQLSTATE 23514) with a message saying why; the service checks the same
--    before it writes the entry, so they are races (an archive dropping the month meanwhile).
CREATE FUNCTION ticket_audit_redact(entry_seq bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $fn$
DECLARE
    entry_key text;
    entry_source text;
    doc jsonb;
    target bigint;
    target_source text;
    target_sha bytea;
BEGIN
    SELECT d.dedup_key, d.key_source, convert_from(d.body, 'UTF8')::jsonb -> 'Redaction'
        INTO entry_key, entry_source, doc
    FROM deliveries d WHERE d.seq = entry_seq;
    IF NOT FOUND OR entry_source IS DISTINCT FROM 'redaction' OR doc IS NULL THEN
        RAISE EXCEPTION 'ticket_audit_redact: seq % is not a redaction entry', entry_seq
            USING ERRCODE = 'check_violation';
    END IF;
    target := (doc ->> 'delivery_id')::bigint;
    IF target IS NULL OR entry_key <> 'redaction ' || target OR target >= entry_seq THEN
        RAISE EXCEPTION 'ticket_audit_redact: the entry at seq % does not name an earlier delivery by its key', entry_seq
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT d.key_source, d.body_sha256 INTO target_source, target_sha
    FROM deliveries d WHERE d.seq = target FOR UPDATE;
    IF NOT FOUND THEN
        IF EXISTS (SELECT FROM archived_partitions a WHERE target BETWEEN a.first_seq AND a.last_seq) THEN
            RAISE EXCEPTION 'ticket_audit_redact: delivery % is in an archived month that was dropped', target
                USING ERRCODE = 'check_violation';
        END IF;
        RAISE EXCEPTION 'ticket_audit_redact: no delivery %', target USING ERRCODE = 'check_violation';
    END IF;
    IF target_source = 'redaction' THEN
        RAISE EXCEPTION 'ticket_audit_redact: delivery % is a redaction entry; it cannot be redacted', target
            USING ERRCODE = 'check_violation';
    END IF;
    IF encode(target_sha, 'hex') IS DISTINCT FROM doc ->> 'body_sha256' THEN
        RAISE EXCEPTION 'ticket_audit_redact: the entry at seq % names another body than delivery %''s', entry_seq, target
            USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT FROM redactions r WHERE r.target_seq = target) THEN
        RAISE EXCEPTION 'ticket_audit_redact: delivery % is already redacted', target
            USING ERRCODE = 'check_violation';
    END IF;
    -- The classifier's watermark: a classify step running now (which read the commands before
    -- this transaction blanks them) commits first and its rows are blanked below; one starting
    -- later reads the blank commands.
    PERFORM 1 FROM reporting.classified FOR UPDATE;
    INSERT INTO redactions (target_seq, redaction_seq, body_sha256, reason, actor, redacted_at)
    VALUES (target, entry_seq, target_sha, doc ->> 'reason', doc ->> 'actor', (doc ->> 'at')::timestamptz);
    -- The tombstones (the triggers let exactly these through, in this transaction).
    UPDATE deliveries SET body = ''::bytea WHERE seq = target;
    UPDATE commands SET command = '', result = NULL WHERE seq = target;
    UPDATE messages SET content = '' WHERE seq = target;
    UPDATE reporting.command_class
    SET command = '', tool = NULL, sub_command = NULL, outcome = reporting.command_outcome(executed, NULL), risk = NULL
    WHERE seq = target;
    RETURN target;
END
$fn$;
COMMENT ON FUNCTION ticket_audit_redact(bigint) IS
    'Applies the redaction recorded by the ledger entry at entry_seq: records it in redactions, replaces the target''s body by the empty tombstone and blanks its messages, commands and reporting copy. Only for entries with key_source redaction.';
REVOKE ALL ON FUNCTION ticket_audit_redact(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ticket_audit_redact(bigint) TO ticket_audit_writer;
