-- The record (deliveries, ledger head) and its projection (action events, tickets, messages, commands).
-- Text columns hold strings with U+0000 escaped (see README, "Text and U+0000"); raw bodies are bytea.

CREATE TABLE ledger_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq bigint NOT NULL CHECK (seq >= 0),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    at timestamptz
);
COMMENT ON TABLE ledger_head IS
    'One row: the last sequence number and chain hash. Writers lock it (FOR UPDATE) to assign gapless sequence numbers in commit order.';
INSERT INTO ledger_head (seq, hash, at) VALUES (0, decode(repeat('00', 32), 'hex'), NULL);

CREATE TABLE deliveries (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    received_at timestamptz NOT NULL,
    dedup_key text NOT NULL,
    key_source text NOT NULL CHECK (key_source IN ('webhook-id', 'svix-id', 'idempotency-key', 'body-sha256')),
    body bytea NOT NULL,
    body_sha256 bytea NOT NULL CHECK (length(body_sha256) = 32),
    action text,
    status_code integer,
    headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    normalize_error text,
    hash bytea NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT deliveries_dedup_key_unique UNIQUE (dedup_key)
);
COMMENT ON TABLE deliveries IS
    'Every acknowledged webhook delivery, byte for byte, in commit order (seq, gapless), hash-chained. delivery_id = seq.';
COMMENT ON COLUMN deliveries.dedup_key IS 'webhook-id, svix-id or Idempotency-Key header; else ''sha256:'' || hex(body_sha256).';
COMMENT ON COLUMN deliveries.headers IS 'Identity headers as received (webhook-*, svix-*, idempotency-key, content-type, user-agent).';
COMMENT ON COLUMN deliveries.normalize_error IS 'Why the delivery could not be (fully) normalized, when it could not; it is stored all the same.';
COMMENT ON COLUMN deliveries.hash IS 'SHA-256 chain hash over the previous hash and this row (encoding in README).';
CREATE INDEX deliveries_action_seq ON deliveries (action, seq);
CREATE INDEX deliveries_received_at ON deliveries (received_at);

CREATE TABLE action_events (
    seq bigint PRIMARY KEY REFERENCES deliveries (seq),
    received_at timestamptz NOT NULL,
    action text,
    status_code integer,
    success boolean NOT NULL,
    kind text NOT NULL CHECK (kind IN ('ticket_created', 'action', 'conversation')),
    ticket_name text,
    carried_tenant text
);
COMMENT ON TABLE action_events IS
    'Projection: one event per delivery (kind conversation = shown in timelines through its messages and commands).';
CREATE INDEX action_events_ticket ON action_events (ticket_name, seq) WHERE ticket_name IS NOT NULL;
CREATE INDEX action_events_carried_tenant ON action_events (carried_tenant, seq) WHERE carried_tenant IS NOT NULL;

CREATE TABLE tickets (
    name text PRIMARY KEY,
    title text,
    status text,
    tenant_id text,
    agent_name text,
    agent_id text,
    created_at timestamptz,
    create_time_text text,
    first_seen_at timestamptz NOT NULL,
    first_seen_seq bigint NOT NULL REFERENCES deliveries (seq),
    last_activity_at timestamptz NOT NULL,
    message_count bigint NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    command_count bigint NOT NULL DEFAULT 0 CHECK (command_count >= 0)
);
COMMENT ON TABLE tickets IS
    'Projection: each ticket as the fold, in seq order, of the deliveries that concern it. Fields from successful AddTicket and ticket reads; created with what is known when a message comes first.';
COMMENT ON COLUMN tickets.create_time_text IS 'CreateTime as received when it is not RFC 3339 (created_at is then null).';
CREATE INDEX tickets_first_seen ON tickets (first_seen_at, name);
CREATE INDEX tickets_tenant_first_seen ON tickets (tenant_id, first_seen_at, name);
CREATE INDEX tickets_agent_first_seen ON tickets (agent_name, first_seen_at, name);
CREATE INDEX tickets_status_first_seen ON tickets (status, first_seen_at, name);
CREATE INDEX tickets_created_at ON tickets (created_at);

CREATE TABLE messages (
    seq bigint NOT NULL REFERENCES deliveries (seq),
    position integer NOT NULL CHECK (position > 0),
    ticket_name text NOT NULL,
    role text NOT NULL CHECK (role IN ('user', 'agent')),
    content text NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (seq, position)
);
COMMENT ON TABLE messages IS
    'Projection: what the user wrote and what the agent answered, from successful SendTicketMessage deliveries.';
CREATE INDEX messages_ticket ON messages (ticket_name, seq, position);

CREATE TABLE commands (
    seq bigint NOT NULL REFERENCES deliveries (seq),
    position integer NOT NULL CHECK (position > 0),
    ticket_name text,
    command text NOT NULL,
    result text,
    executed boolean NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (seq, position)
);
COMMENT ON TABLE commands IS
    'Projection: commands agents proposed (executed = false, result null) and executed (with output, recorded whatever the status code).';
COMMENT ON COLUMN commands.ticket_name IS 'Null when the delivery named no ticket; the command is recorded all the same.';
CREATE INDEX commands_ticket ON commands (ticket_name, seq, position);
CREATE INDEX commands_recorded_at ON commands (recorded_at);
