-- Hardening (issue 10): a key's source is part of its identity, a recorded time that never goes
-- backwards along seq, the unprojected flag as a column, and conflicting tenant claims recorded.

-- 1. Idempotency keys are scoped by their source: an Idempotency-Key chosen by a client cannot
--    collide with the body-hash key of another delivery, nor with a webhook-id. svix-id is an
--    alias of webhook-id (the same Standard Webhooks identity), so the two share one scope.
CREATE FUNCTION key_scope(key_source text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT CASE key_source WHEN 'svix-id' THEN 'webhook-id' ELSE key_source END $$;
COMMENT ON FUNCTION key_scope(text) IS
    'The namespace of an idempotency key: webhook-id (and its alias svix-id), idempotency-key, or body-sha256.';
CREATE UNIQUE INDEX deliveries_scoped_key_unique ON deliveries (key_scope(key_source), dedup_key);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_dedup_key_unique;
COMMENT ON COLUMN deliveries.dedup_key IS
    'webhook-id, svix-id or Idempotency-Key header; else ''sha256:'' || hex(body_sha256). Unique within key_scope(key_source).';

-- 2. The time a delivery was sequenced: taken while the ledger head is held, never earlier than
--    the one before it, so times read along seq never go backwards. received_at (the chained
--    time of receipt) stays as it was. Null for deliveries stored before this migration: their
--    recorded time is their received_at.
ALTER TABLE deliveries ADD COLUMN recorded_at timestamptz;
COMMENT ON COLUMN deliveries.recorded_at IS
    'When the delivery was sequenced (monotonic along seq); timelines and command histories show it. Null before V6: received_at.';
COMMENT ON COLUMN ledger_head.at IS 'recorded_at of the last delivery (received_at before V6).';

-- 3. Whether a delivery was stored as a bare event because the database refused its projection,
--    as a column rather than a suffix of normalize_error. The few rows marked the old way are
--    flagged here: the flag is not chained, and the owner lifts the append-only trigger for it.
ALTER TABLE deliveries ADD COLUMN unprojected boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN deliveries.unprojected IS
    'The database refused this delivery''s projection: it is stored, and projected as a bare event only.';
ALTER TABLE deliveries DISABLE TRIGGER deliveries_append_only;
UPDATE deliveries SET unprojected = true WHERE normalize_error LIKE '%; stored unprojected';
ALTER TABLE deliveries ENABLE TRIGGER deliveries_append_only;

-- 4. A ticket belongs to the first tenant stated for it. A later delivery that states another
--    moves nothing; its claim is kept here, for admins (GET /api/v1/anomalies) and /metrics.
CREATE TABLE ticket_anomalies (
    seq bigint NOT NULL REFERENCES deliveries (seq),
    position integer NOT NULL CHECK (position >= 0),
    ticket_name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('tenant_conflict')),
    owner_tenant text NOT NULL,
    claimed_tenant text NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (seq, position)
);
COMMENT ON TABLE ticket_anomalies IS
    'Projection: deliveries that claimed a ticket for a tenant other than its owner (the first tenant stated). Nothing moved.';
CREATE INDEX ticket_anomalies_ticket ON ticket_anomalies (ticket_name, seq);
GRANT SELECT, INSERT ON ticket_anomalies TO ticket_audit_writer;
