-- One batch, one statement: the new deliveries, their projection (events, messages, commands,
-- the tickets as folded by the domain), and the ledger head. One round trip instead of six.
-- `reproject` runs it with no deliveries and a null head ($46): the projection alone.
WITH new_deliveries AS (
    INSERT INTO deliveries
        (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, headers, normalize_error, hash)
    SELECT seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, headers::jsonb, normalize_error, hash
    FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bytea[], $6::bytea[],
                $7::text[], $8::int[], $9::text[], $10::text[], $11::bytea[])
        AS u (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, headers, normalize_error, hash)
), new_events AS (
    INSERT INTO action_events (seq, received_at, action, status_code, success, kind, ticket_name, carried_tenant)
    SELECT * FROM UNNEST($12::bigint[], $13::timestamptz[], $14::text[], $15::int[], $16::bool[], $17::text[], $18::text[], $19::text[])
), new_messages AS (
    INSERT INTO messages (seq, position, ticket_name, role, content, received_at)
    SELECT * FROM UNNEST($20::bigint[], $21::int[], $22::text[], $23::text[], $24::text[], $25::timestamptz[])
), new_commands AS (
    INSERT INTO commands (seq, position, ticket_name, command, result, executed, recorded_at)
    SELECT * FROM UNNEST($26::bigint[], $27::int[], $28::text[], $29::text[], $30::text[], $31::bool[], $32::timestamptz[])
), folded_tickets AS (
    -- Rows come fully merged from the domain's fold (TicketState::apply): the upsert only stores them.
    INSERT INTO tickets (name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text,
                         first_seen_at, first_seen_seq, last_activity_at, message_count, command_count)
    SELECT * FROM UNNEST($33::text[], $34::text[], $35::text[], $36::text[], $37::text[], $38::text[], $39::timestamptz[],
                         $40::text[], $41::timestamptz[], $42::bigint[], $43::timestamptz[], $44::bigint[], $45::bigint[])
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
)
UPDATE ledger_head SET seq = $46, hash = $47, at = $48 WHERE $46::bigint IS NOT NULL
