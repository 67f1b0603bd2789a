-- A ticket's timeline: its shown action events, messages and commands, merged in (seq, position) order.
-- Each part is read in index order and cut at the page size, so a page costs the same however long
-- the ticket's history is (rather than fetching and sorting all of it).
--
-- A ticket's rows are spread over the heap (one page each, at 10^7 commands mostly outside
-- shared_buffers), so what a page costs is the heap pages it visits. The action events come from
-- their covering index alone (action_events_ticket_shown, V16: it holds only the kinds shown
-- here, with every column the page takes). The page's last entry is found first from the three
-- ticket indexes alone (index-only scans once the visibility map covers the rows, as vacuum
-- leaves it), and messages and commands are then read up to it: only the page's own rows are
-- visited, not each part's $4 (the first page of a ticket of 85 entries visited 52 heap pages).
WITH events AS MATERIALIZED (
    SELECT e.seq, e.received_at, e.kind, e.action, e.status_code, e.success
    FROM action_events e
    WHERE e.ticket_name = $1 AND e.kind <> 'conversation' AND (e.seq, 0) > ($2, $3)
    ORDER BY e.seq
    LIMIT $4
), last AS MATERIALIZED (
    SELECT seq, position FROM (
        SELECT seq, position FROM (
            (SELECT seq, 0 AS position FROM events)
            UNION ALL
            (SELECT m.seq, m.position FROM messages m
             WHERE m.ticket_name = $1 AND (m.seq, m.position) > ($2, $3)
             ORDER BY m.seq, m.position
             LIMIT $4)
            UNION ALL
            (SELECT c.seq, c.position FROM commands c
             WHERE c.ticket_name = $1 AND (c.seq, c.position) > ($2, $3)
             ORDER BY c.seq, c.position
             LIMIT $4)
        ) keys
        ORDER BY seq, position
        LIMIT $4
    ) page
    ORDER BY seq DESC, position DESC
    LIMIT 1
)
SELECT seq, position, at, kind, content, command, result, action, status_code, success FROM (
    (SELECT e.seq, 0 AS position, e.received_at AS at, e.kind, NULL::text AS content, NULL::text AS command,
            NULL::text AS result, e.action, e.status_code, e.success
     FROM events e)
    UNION ALL
    (SELECT m.seq, m.position, m.received_at, m.role || '_message', m.content, NULL, NULL, NULL, NULL, NULL
     FROM messages m
     WHERE m.ticket_name = $1 AND (m.seq, m.position) > ($2, $3)
       AND (m.seq, m.position) <= ((SELECT seq FROM last), (SELECT position FROM last))
     ORDER BY m.seq, m.position
     LIMIT $4)
    UNION ALL
    (SELECT c.seq, c.position, c.recorded_at,
            CASE WHEN c.executed THEN 'command_executed' ELSE 'command_proposed' END,
            NULL, c.command, c.result, NULL, NULL, NULL
     FROM commands c
     WHERE c.ticket_name = $1 AND (c.seq, c.position) > ($2, $3)
       AND (c.seq, c.position) <= ((SELECT seq FROM last), (SELECT position FROM last))
     ORDER BY c.seq, c.position
     LIMIT $4)
) entries
ORDER BY seq, position
LIMIT $4
