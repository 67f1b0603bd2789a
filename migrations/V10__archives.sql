-- Archives (issue 15, item 2): the months `ticket-audit archive --drop` has written, checked and
-- dropped from the database. Their leaves stay in the tree (tree_hashes) and their checkpoints
-- in checkpoints, forever: proofs for them still work, and the evidence of an archived command
-- says where its delivery lives (the file and the line) instead of failing.

CREATE TABLE archived_partitions (
    partition text PRIMARY KEY,
    first_seq bigint NOT NULL CHECK (first_seq > 0),
    last_seq bigint NOT NULL CHECK (last_seq >= first_seq),
    -- The chain hash of last_seq: where `verify` takes up the chain after the archived months.
    last_hash bytea NOT NULL CHECK (length(last_hash) = 32),
    -- Where `archive --to` wrote it, as given (the files may have moved since: the manifest's
    -- checksum identifies them).
    directory text NOT NULL,
    manifest_sha256 text NOT NULL,
    dropped_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE archived_partitions IS
    'Months archived to files and dropped from the record (ticket-audit archive --drop): seq first_seq..=last_seq live in <directory>/<partition>/.';
CREATE INDEX archived_partitions_range ON archived_partitions (first_seq, last_seq);
CREATE TRIGGER archived_partitions_append_only BEFORE UPDATE OR DELETE ON archived_partitions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
GRANT SELECT ON archived_partitions TO ticket_audit_writer;
