-- A batch's reads in one round trip, before anything is written: which of its keys are stored
-- already (delivery_keys, V9: one table across the record's partitions and archived months),
-- and the tickets it touches, locked in name order (concurrent writers lock them in one order).
-- Prepared once per connection and run with a generic plan: the write pool turns sequential
-- scans off (store::write_pool), so every part is an index probe whatever the tables' statistics
-- were when it was planned. A row is one of the batch's keys (key_scope set; key_seq null when it
-- is new) or a stored ticket (name set).
WITH known AS (
    -- A scalar subquery per key: never flattened into a join, so always a probe of the key's index.
    SELECT k.scope, k.key,
           (SELECT d.seq FROM delivery_keys d WHERE d.scope = k.scope AND d.dedup_key = k.key) AS seq
    FROM UNNEST($1::text[], $2::text[]) AS k (scope, key)
), locked AS (
    SELECT name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text,
           first_seen_at, first_seen_seq, last_activity_at, message_count, command_count
    FROM tickets
    WHERE name = ANY($3::text[])
    ORDER BY name
    FOR UPDATE
)
SELECT scope AS key_scope, key AS dedup_key, seq AS key_seq,
       NULL AS name, NULL AS title, NULL AS status, NULL AS tenant_id, NULL AS agent_name, NULL AS agent_id,
       NULL::timestamptz AS created_at, NULL AS create_time_text, NULL::timestamptz AS first_seen_at,
       NULL::bigint AS first_seen_seq, NULL::timestamptz AS last_activity_at, NULL::bigint AS message_count,
       NULL::bigint AS command_count
FROM known
UNION ALL
SELECT NULL, NULL, NULL, name, title, status, tenant_id, agent_name, agent_id, created_at, create_time_text,
       first_seen_at, first_seen_seq, last_activity_at, message_count, command_count
FROM locked
