-- One batch, one statement: the new deliveries, their projection (events, messages, commands,
-- the tickets as folded by the domain, refused tenant claims), and the tree's new hashes. One
-- round trip instead of seven. The ledger head moves after it, by compare-and-swap (batch.rs),
-- so that this, the expensive part, runs while the batch before commits. Each table's binds
-- come from its own columns struct in batch.rs, in the order named here. `reproject` runs it
-- with no deliveries and no hashes: the projection alone.
WITH new_deliveries AS (
    INSERT INTO deliveries (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code,
                            headers, normalize_error, hash, recorded_at, unprojected)
    SELECT seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code,
           headers::jsonb, normalize_error, hash, recorded_at, unprojected
    FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bytea[], $6::bytea[],
                $7::text[], $8::int[], $9::text[], $10::text[], $11::bytea[], $12::timestamptz[], $13::bool[])
        AS u (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code,
              headers, normalize_error, hash, recorded_at, unprojected)
), new_events AS (
    INSERT INTO action_events (seq, received_at, action, status_code, success, kind, ticket_name, carried_tenant)
    SELECT * FROM UNNEST($14::bigint[], $15::timestamptz[], $16::text[], $17::int[], $18::bool[], $19::text[],
                         $20::text[], $21::text[])
), new_messages AS (
    INSERT INTO messages (seq, position, ticket_name, role, content, received_at)
    SELECT * FROM UNNEST($22::bigint[], $23::int[], $24::text[], $25::text[], $26::text[], $27::timestamptz[])
), new_commands AS (
    INSERT INTO commands (seq, position, ticket_name, command, result, executed, recorded_at)
    SELECT * FROM UNNEST($28::bigint[], $29::int[], $30::text[], $31::text[], $32::text[], $33::bool[], $34::timestamptz[])
), folded_tickets AS (
    -- Rows come fully merged from the domain's fold (TicketState::apply): the upsert only stores them.
    INSERT INTO tickets (name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text,
                         first_seen_at, first_seen_seq, last_activity_at, message_count, command_count)
    SELECT * FROM UNNEST($35::text[], $36::text[], $37::text[], $38::text[], $39::text[], $40::text[], $41::timestamptz[],
                         $42::text[], $43::timestamptz[], $44::bigint[], $45::timestamptz[], $46::bigint[], $47::bigint[])
    ON CONFLICT (name) DO UPDATE SET
        title = excluded.title,
        status = excluded.status,
        tenant_id = excluded.tenant_id,
        agent_name = excluded.agent_name,
        agent_id = excluded.agent_id,
        created_at = excluded.created_at,
        create_time_text = excluded.create_time_text,
        last_activity_at = excluded.last_activity_at,
        message_count = excluded.message_count,
        command_count = excluded.command_count
), new_anomalies AS (
    INSERT INTO ticket_anomalies (seq, position, ticket_name, kind, owner_tenant, claimed_tenant, recorded_at)
    SELECT * FROM UNNEST($48::bigint[], $49::int[], $50::text[], $51::text[], $52::text[], $53::text[], $54::timestamptz[])
)
-- The verifiable log's stored hashes for the new deliveries' leaves (store/tree.rs).
INSERT INTO tree_hashes (index, hash) SELECT * FROM UNNEST($55::bigint[], $56::bytea[])
