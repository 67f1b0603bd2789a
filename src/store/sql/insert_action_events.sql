INSERT INTO action_events (seq, received_at, action, status_code, success, kind, ticket_name, carried_tenant)
SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::int[], $5::bool[], $6::text[], $7::text[], $8::text[])
