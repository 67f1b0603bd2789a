INSERT INTO messages (seq, position, ticket_name, role, content, received_at)
SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
