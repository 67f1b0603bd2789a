-- A redaction (V11) blanks a command's reporting copy, whose tool, sub-command and risk hold
-- words of its line; the day summaries (V12) had counted it under those words. This moves its
-- count to the group of its blank copy, so the summaries still answer as the reports over
-- reporting.command_class do, and a group that only the redacted command made (holding its
-- words) goes. Only a redaction updates reporting.command_class.
CREATE FUNCTION reporting.recount_updated_class() RETURNS trigger
    LANGUAGE plpgsql
AS $fn$
DECLARE
    d date := (OLD.recorded_at AT TIME ZONE 'UTC')::date;
BEGIN
    UPDATE reporting.command_days s SET
        executed = s.executed - OLD.executed::int,
        proposed = s.proposed - (NOT OLD.executed)::int,
        ok = s.ok - (OLD.outcome IS NOT DISTINCT FROM 'ok')::int,
        unknown = s.unknown - (OLD.outcome IS NOT DISTINCT FROM 'unknown')::int,
        error = s.error - (OLD.outcome IS NOT DISTINCT FROM 'error')::int,
        denied = s.denied - (OLD.outcome IS NOT DISTINCT FROM 'denied')::int,
        not_found = s.not_found - (OLD.outcome IS NOT DISTINCT FROM 'not_found')::int,
        timeout = s.timeout - (OLD.outcome IS NOT DISTINCT FROM 'timeout')::int
    WHERE s.day = d AND s.ticket_name IS NOT DISTINCT FROM OLD.ticket_name AND s.tool IS NOT DISTINCT FROM OLD.tool
      AND s.sub_command IS NOT DISTINCT FROM OLD.sub_command AND s.risk IS NOT DISTINCT FROM OLD.risk;
    DELETE FROM reporting.command_days s
    WHERE s.day = d AND s.ticket_name IS NOT DISTINCT FROM OLD.ticket_name AND s.tool IS NOT DISTINCT FROM OLD.tool
      AND s.sub_command IS NOT DISTINCT FROM OLD.sub_command AND s.risk IS NOT DISTINCT FROM OLD.risk
      AND s.executed = 0 AND s.proposed = 0;
    INSERT INTO reporting.command_days AS s
    VALUES (d, NEW.ticket_name, NEW.tool, NEW.sub_command, NEW.risk,
            NEW.executed::int, (NOT NEW.executed)::int,
            (NEW.outcome IS NOT DISTINCT FROM 'ok')::int, (NEW.outcome IS NOT DISTINCT FROM 'unknown')::int,
            (NEW.outcome IS NOT DISTINCT FROM 'error')::int, (NEW.outcome IS NOT DISTINCT FROM 'denied')::int,
            (NEW.outcome IS NOT DISTINCT FROM 'not_found')::int, (NEW.outcome IS NOT DISTINCT FROM 'timeout')::int,
            CASE WHEN NEW.outcome = 'error' THEN NEW.recorded_at END,
            CASE WHEN NEW.outcome = 'denied' THEN NEW.recorded_at END,
            CASE WHEN NEW.outcome = 'not_found' THEN NEW.recorded_at END,
            CASE WHEN NEW.outcome = 'timeout' THEN NEW.recorded_at END,
            NEW.seq, NEW.seq)
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
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION reporting.recount_updated_class() IS
    'Keeps reporting.command_days (V12) in step when a redaction (V11) blanks a row of reporting.command_class.';
CREATE TRIGGER command_class_recount AFTER UPDATE ON reporting.command_class
    FOR EACH ROW EXECUTE FUNCTION reporting.recount_updated_class();
