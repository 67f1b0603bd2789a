-- The record is append-only: stored deliveries and recorded commands cannot be changed or
-- removed through ordinary SQL, and the service works with a role that can only add to them.

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ticket-audit: % is append-only; % is refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The audit record is never changed. To rebuild projections run `ticket-audit reproject`.';
END;
$$;
COMMENT ON FUNCTION refuse_change() IS 'Trigger function: refuses UPDATE, DELETE and TRUNCATE on the record.';

CREATE TRIGGER deliveries_append_only BEFORE UPDATE OR DELETE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER deliveries_no_truncate BEFORE TRUNCATE ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER commands_append_only BEFORE UPDATE OR DELETE ON commands
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER commands_no_truncate BEFORE TRUNCATE ON commands
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Roles are cluster-wide and every database of a cluster runs this migration: create once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ticket_audit_writer') THEN
        CREATE ROLE ticket_audit_writer NOLOGIN;
    END IF;
END;
$$;
COMMENT ON ROLE ticket_audit_writer IS
    'What the running service needs: add to the record (INSERT, SELECT), maintain projections, advance the ledger head.';

GRANT USAGE ON SCHEMA public TO ticket_audit_writer;
GRANT SELECT, INSERT ON deliveries, commands TO ticket_audit_writer;
GRANT SELECT, INSERT ON action_events, messages TO ticket_audit_writer;
GRANT SELECT, INSERT, UPDATE ON tickets TO ticket_audit_writer;
GRANT SELECT, UPDATE ON ledger_head TO ticket_audit_writer;
GRANT SELECT ON refinery_schema_history TO ticket_audit_writer;

-- The user that runs migrations may act as the writer: the service switches to it (SET ROLE)
-- on every connection it serves with, so even when it logs in as the owner, it serves without
-- the owner's rights.
GRANT ticket_audit_writer TO CURRENT_USER;
