-- Rows come fully merged from the domain's fold (TicketState::apply): the upsert only stores them.
INSERT INTO tickets (name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text,
                     first_seen_at, first_seen_seq, last_activity_at, message_count, command_count)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
                     $8::text[], $9::timestamptz[], $10::bigint[], $11::timestamptz[], $12::bigint[], $13::bigint[])
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
