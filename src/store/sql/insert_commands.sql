INSERT INTO commands (seq, position, ticket_name, command, result, executed, recorded_at)
SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::timestamptz[])
