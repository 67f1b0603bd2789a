-- A ticket's timeline reads its action events from an index alone (src/store/sql/timeline.sql).
-- action_events_ticket (V1) held every event of a ticket, and the timeline visited each one's
-- heap page to drop the conversation events (70% of them: those are shown through their messages
-- and commands) and to take the columns it shows. This index holds only the shown events, with
-- those columns: the timeline's events are an index-only scan (where the visibility map covers
-- them), and the index is a third of the old one's rows. The columns are small (an action is
-- at most 256 bytes: MAX_ACTION_BYTES), so an entry always fits an index page.
-- Nothing else reads action_events by ticket: the old index goes.
CREATE INDEX action_events_ticket_shown ON action_events (ticket_name, seq)
    INCLUDE (received_at, kind, action, status_code, success)
    WHERE ticket_name IS NOT NULL AND kind <> 'conversation';
DROP INDEX action_events_ticket;
