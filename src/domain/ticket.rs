//! A ticket as the projection of the deliveries that concern it, folded in sequence order.

use time::OffsetDateTime;

/// `CreateTime` as sent: parsed when it is RFC 3339, otherwise kept as the text received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateTime {
    Parsed(OffsetDateTime),
    Unparsed(String),
}

impl CreateTime {
    pub fn read(s: &str) -> Self {
        match OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339) {
            // PostgreSQL keeps microseconds; truncate here so a rebuild compares equal.
            Ok(t) => CreateTime::Parsed(truncate_to_micros(t)),
            Err(_) => CreateTime::Unparsed(s.to_owned()),
        }
    }
}

/// What one delivery says about one ticket. `None` fields say nothing and change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketUpdate {
    pub name: String,
    pub title: Option<String>,
    pub status: Option<String>,
    pub tenant_id: Option<String>,
    pub agent_name: Option<String>,
    pub agent_id: Option<String>,
    pub create_time: Option<CreateTime>,
    /// Something happened to the ticket (a write), as opposed to it being seen in a read's answer.
    pub activity: bool,
    pub messages: i64,
    pub commands: i64,
}

/// The stored row of a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketState {
    pub name: String,
    pub title: Option<String>,
    pub status: Option<String>,
    pub tenant_id: Option<String>,
    pub agent_name: Option<String>,
    pub agent_id: Option<String>,
    pub created_at: Option<OffsetDateTime>,
    /// `CreateTime` as received when it did not parse as RFC 3339.
    pub create_time_text: Option<String>,
    pub first_seen_at: OffsetDateTime,
    pub first_seen_seq: i64,
    pub last_activity_at: OffsetDateTime,
    pub message_count: i64,
    pub command_count: i64,
}

impl TicketState {
    /// A ticket first seen in delivery `seq`, received at `at`, knowing nothing else yet.
    pub fn new(name: String, seq: i64, at: OffsetDateTime) -> Self {
        TicketState {
            name,
            title: None,
            status: None,
            tenant_id: None,
            agent_name: None,
            agent_id: None,
            created_at: None,
            create_time_text: None,
            first_seen_at: at,
            first_seen_seq: seq,
            last_activity_at: at,
            message_count: 0,
            command_count: 0,
        }
    }

    /// The one merge rule: applied in sequence order, a field a delivery states replaces the
    /// one before; a field it leaves out or sends as null keeps its value.
    pub fn apply(&mut self, u: &TicketUpdate, at: OffsetDateTime) {
        fn set(field: &mut Option<String>, v: &Option<String>) {
            if v.is_some() {
                field.clone_from(v);
            }
        }
        set(&mut self.title, &u.title);
        set(&mut self.status, &u.status);
        set(&mut self.tenant_id, &u.tenant_id);
        set(&mut self.agent_name, &u.agent_name);
        set(&mut self.agent_id, &u.agent_id);
        match &u.create_time {
            Some(CreateTime::Parsed(t)) => {
                self.created_at = Some(*t);
                self.create_time_text = None;
            }
            Some(CreateTime::Unparsed(s)) => {
                self.created_at = None;
                self.create_time_text = Some(s.clone());
            }
            None => {}
        }
        if u.activity && at > self.last_activity_at {
            self.last_activity_at = at;
        }
        self.message_count += u.messages;
        self.command_count += u.commands;
    }
}

/// PostgreSQL `timestamptz` holds microseconds.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let micros = t.nanosecond() / 1_000 * 1_000;
    t.replace_nanosecond(micros).expect("a truncated nanosecond is in range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn later_fields_win_and_absent_fields_keep() {
        let t0 = datetime!(2025-01-01 0:00 UTC);
        let mut t = TicketState::new("T-1".into(), 1, t0);
        t.apply(
            &TicketUpdate {
                name: "T-1".into(),
                title: Some("a".into()),
                status: Some("Open".into()),
                activity: true,
                messages: 2,
                ..Default::default()
            },
            t0,
        );
        t.apply(
            &TicketUpdate { name: "T-1".into(), status: Some("Closed".into()), activity: false, ..Default::default() },
            datetime!(2025-01-02 0:00 UTC),
        );
        assert_eq!(t.title.as_deref(), Some("a"));
        assert_eq!(t.status.as_deref(), Some("Closed"));
        assert_eq!(t.last_activity_at, t0, "an observation is not activity");
        assert_eq!(t.message_count, 2);
    }

    #[test]
    fn create_time_keeps_text_that_does_not_parse() {
        assert_eq!(CreateTime::read("yesterday"), CreateTime::Unparsed("yesterday".into()));
        assert_eq!(
            CreateTime::read("2025-05-25T16:02:11.250+02:00"),
            CreateTime::Parsed(datetime!(2025-05-25 14:02:11.250 UTC))
        );
        assert_eq!(
            CreateTime::read("2025-05-25T16:02:11.1234567Z"),
            CreateTime::Parsed(datetime!(2025-05-25 16:02:11.123456 UTC))
        );
    }
}
