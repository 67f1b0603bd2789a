-- The live tail, told by this process's writer which seqs concern the watched tickets: the
-- timeline entries of the seqs in $1 (ascending) after ($2, $3), in (seq, position) order, with
-- the ticket they belong to. The same three parts as stream_entries.sql, each a probe of its
-- primary key per seq instead of a walk of every ticket's.
SELECT ticket_name, seq, position, at, kind, content, command, result, action, status_code, success FROM (
    (SELECT e.ticket_name, e.seq, 0 AS position, e.received_at AS at, e.kind, NULL::text AS content,
            NULL::text AS command, NULL::text AS result, e.action, e.status_code, e.success
     FROM action_events e
     WHERE e.seq = ANY($1) AND e.ticket_name IS NOT NULL AND e.kind <> 'conversation' AND (e.seq, 0) > ($2, $3)
     ORDER BY e.seq
     LIMIT $4)
    UNION ALL
    (SELECT m.ticket_name, m.seq, m.position, m.received_at, m.role || '_message', m.content, NULL, NULL, NULL,
            NULL, NULL
     FROM messages m
     WHERE m.seq = ANY($1) AND m.ticket_name IS NOT NULL AND (m.seq, m.position) > ($2, $3)
     ORDER BY m.seq, m.position
     LIMIT $4)
    UNION ALL
    (SELECT c.ticket_name, c.seq, c.position, c.recorded_at,
            CASE WHEN c.executed THEN 'command_executed' ELSE 'command_proposed' END,
            NULL, c.command, c.result, NULL, NULL, NULL
     FROM commands c
     WHERE c.seq = ANY($1) AND c.ticket_name IS NOT NULL AND (c.seq, c.position) > ($2, $3)
     ORDER BY c.seq, c.position
     LIMIT $4)
) entries
ORDER BY seq, position
LIMIT $4
