-- The live tail: every ticket's timeline entries after ($1, $2), in (seq, position) order, with the
-- ticket they belong to. The same three parts as timeline.sql (the same kinds, columns and
-- order), over all tickets: each part walks its primary key from the cursor and is cut at the page.
SELECT ticket_name, seq, position, at, kind, content, command, result, action, status_code, success FROM (
    (SELECT e.ticket_name, e.seq, 0 AS position, e.received_at AS at, e.kind, NULL::text AS content,
            NULL::text AS command, NULL::text AS result, e.action, e.status_code, e.success
     FROM action_events e
     WHERE e.ticket_name IS NOT NULL AND e.kind <> 'conversation' AND (e.seq, 0) > ($1, $2)
     ORDER BY e.seq
     LIMIT $3)
    UNION ALL
    (SELECT m.ticket_name, m.seq, m.position, m.received_at, m.role || '_message', m.content, NULL, NULL, NULL,
            NULL, NULL
     FROM messages m
     WHERE m.ticket_name IS NOT NULL AND (m.seq, m.position) > ($1, $2)
     ORDER BY m.seq, m.position
     LIMIT $3)
    UNION ALL
    (SELECT c.ticket_name, c.seq, c.position, c.recorded_at,
            CASE WHEN c.executed THEN 'command_executed' ELSE 'command_proposed' END,
            NULL, c.command, c.result, NULL, NULL, NULL
     FROM commands c
     WHERE c.ticket_name IS NOT NULL AND (c.seq, c.position) > ($1, $2)
     ORDER BY c.seq, c.position
     LIMIT $3)
) entries
ORDER BY seq, position
LIMIT $3
