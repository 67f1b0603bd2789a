SELECT name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text,
       first_seen_at, first_seen_seq, last_activity_at, message_count, command_count
FROM tickets
WHERE name = ANY($1::text[])
FOR UPDATE
