-- Large values (bodies, command output, messages) are compressed with lz4 where the server has
-- it: pglz was the service's top cost inside PostgreSQL under ingest load (bench/README.md).
-- Only new values are written with it; a server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE deliveries ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE commands ALTER COLUMN result SET COMPRESSION lz4;
    ALTER TABLE messages ALTER COLUMN content SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available on this server; large values stay compressed with pglz';
END;
$$;
