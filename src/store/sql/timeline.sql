-- A ticket's timeline: its shown action events, messages and commands, merged in (seq, position) order.
SELECT seq, position, at, kind, content, command, result, action, status_code, success FROM (
    SELECT e.seq, 0 AS position, e.received_at AS at, e.kind, NULL::text AS content, NULL::text AS command,
           NULL::text AS result, e.action, e.status_code, e.success
    FROM action_events e
    WHERE e.ticket_name = $1 AND e.kind <> 'conversation'
    UNION ALL
    SELECT m.seq, m.position, m.received_at, m.role || '_message', m.content, NULL, NULL, NULL, NULL, NULL
    FROM messages m
    WHERE m.ticket_name = $1
    UNION ALL
    SELECT c.seq, c.position, c.recorded_at,
           CASE WHEN c.executed THEN 'command_executed' ELSE 'command_proposed' END,
           NULL, c.command, c.result, NULL, NULL, NULL
    FROM commands c
    WHERE c.ticket_name = $1
) entries
WHERE (seq, position) > ($2, $3)
ORDER BY seq, position
LIMIT $4
