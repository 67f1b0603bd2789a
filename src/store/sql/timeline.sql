-- A ticket's timeline: its shown action events, messages and commands, merged in (seq, position) order.
-- Each part is read in index order and cut at the page size, so a page costs the same however long
-- the ticket's history is (rather than fetching and sorting all of it). The merge pulls from each
-- part only as far as the page needs, so messages and commands cost a heap visit per entry shown
-- (plus one each); the action events come from their covering index alone (V16: it holds only the
-- kinds shown here, with the columns taken here), where they cost a heap visit each, the
-- conversation events (70%) included, before it.
SELECT seq, position, at, kind, content, command, result, action, status_code, success FROM (
    (SELECT e.seq, 0 AS position, e.received_at AS at, e.kind, NULL::text AS content, NULL::text AS command,
            NULL::text AS result, e.action, e.status_code, e.success
     FROM action_events e
     WHERE e.ticket_name = $1 AND e.kind <> 'conversation' AND (e.seq, 0) > ($2, $3)
     ORDER BY e.seq
     LIMIT $4)
    UNION ALL
    (SELECT m.seq, m.position, m.received_at, m.role || '_message', m.content, NULL, NULL, NULL, NULL, NULL
     FROM messages m
     WHERE m.ticket_name = $1 AND (m.seq, m.position) > ($2, $3)
     ORDER BY m.seq, m.position
     LIMIT $4)
    UNION ALL
    (SELECT c.seq, c.position, c.recorded_at,
            CASE WHEN c.executed THEN 'command_executed' ELSE 'command_proposed' END,
            NULL, c.command, c.result, NULL, NULL, NULL
     FROM commands c
     WHERE c.ticket_name = $1 AND (c.seq, c.position) > ($2, $3)
     ORDER BY c.seq, c.position
     LIMIT $4)
) entries
ORDER BY seq, position
LIMIT $4
