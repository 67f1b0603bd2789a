-- Every message and command rewrites its ticket's row (its counters and last activity). None of
-- those columns is indexed, so the update can be HOT (heap-only: no new entry in the ticket's
-- five secondary indexes) when the row's page has room for the new version. Leave that room.
-- Applies to pages written from now on; `VACUUM FULL tickets` rewrites the existing ones.
ALTER TABLE tickets SET (fillfactor = 70);
