-- The verifiable log: an RFC 6962 Merkle tree over the ledger's entries (leaf = seq - 1) and the
-- checkpoints signed over it. Both are append-only, like the record.
--
-- tree_hashes holds Go sumdb/tlog's stored hashes: appending leaf n writes its leaf hash and the
-- hash of every subtree it completes, at consecutive indexes from StoredHashIndex(0, n). Just
-- under two rows per leaf; a root or a proof reads O(log n) of them by primary key.
--
-- The tree for deliveries stored before this migration is built by the service itself, right
-- after migrating (store::tree::catch_up, in chunks, bounded memory): SHA-256 of the leaf needs
-- the strings unescaped (store/text.rs), which the Rust code does and SQL would have to repeat.

CREATE TABLE tree_hashes (
    index bigint PRIMARY KEY CHECK (index >= 0),
    hash  bytea NOT NULL CHECK (length(hash) = 32)
);
COMMENT ON TABLE tree_hashes IS
    'The Merkle tree''s permanent hashes, in Go sumdb/tlog''s stored-hash order; grown in the same transaction as each batch.';

CREATE TABLE checkpoints (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tree_size bigint NOT NULL CHECK (tree_size >= 0),
    root_hash bytea NOT NULL CHECK (length(root_hash) = 32),
    key_id    bytea NOT NULL CHECK (length(key_id) = 4),
    signed_at timestamptz NOT NULL DEFAULT now(),
    -- The signed note exactly as served (C2SP tlog-checkpoint in a signed note).
    note      text NOT NULL
);
CREATE INDEX checkpoints_by_size ON checkpoints (tree_size);
COMMENT ON TABLE checkpoints IS 'Every checkpoint the service signed, kept as signed.';

CREATE TRIGGER tree_hashes_append_only BEFORE UPDATE OR DELETE ON tree_hashes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER tree_hashes_no_truncate BEFORE TRUNCATE ON tree_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

GRANT SELECT, INSERT ON tree_hashes, checkpoints TO ticket_audit_writer;
