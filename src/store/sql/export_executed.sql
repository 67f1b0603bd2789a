-- Executed commands in [since, until), with their ticket's tenant and agent and their delivery's chain hash.
SELECT c.seq || '.' || c.position AS id, c.seq, c.position, c.recorded_at, c.ticket_name AS ticket,
       t.tenant_id, t.agent_name, t.agent_id, c.command, c.result, encode(d.hash, 'hex') AS delivery_hash
FROM commands c
JOIN deliveries d ON d.seq = c.seq
LEFT JOIN tickets t ON t.name = c.ticket_name
WHERE c.executed
  AND ($1::timestamptz IS NULL OR c.recorded_at >= $1)
  AND ($2::timestamptz IS NULL OR c.recorded_at < $2)
ORDER BY c.seq, c.position
