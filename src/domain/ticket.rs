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
        // Only a time the record can hold is parsed (in UTC, at microseconds, so a rebuild
        // compares equal); any other text, a valid RFC 3339 time out of range included, is kept.
        match super::timestamp::parse(s.trim()) {
            Some(t) => CreateTime::Parsed(t),
            None => CreateTime::Unparsed(s.to_owned()),
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
    ///
    /// Except the tenant, which owns the ticket's past: the first tenant stated (by an AddTicket
    /// or a ticket read's answer) owns the ticket for good. A later delivery that states another
    /// moves nothing; the claim is returned, to be recorded as an anomaly.
    pub fn apply(&mut self, u: &TicketUpdate, at: OffsetDateTime) -> Option<TenantConflict> {
        fn set(field: &mut Option<String>, v: &Option<String>) {
            if v.is_some() {
                field.clone_from(v);
            }
        }
        let conflict = match (&self.tenant_id, &u.tenant_id) {
            (None, Some(claimed)) => {
                self.tenant_id = Some(claimed.clone());
                None
            }
            (Some(owner), Some(claimed)) if owner != claimed => {
                Some(TenantConflict { owner: owner.clone(), claimed: claimed.clone() })
            }
            _ => None,
        };
        set(&mut self.title, &u.title);
        set(&mut self.status, &u.status);
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
        conflict
    }
}

/// A delivery that states a tenant other than the one owning the ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConflict {
    pub owner: String,
    pub claimed: String,
}

pub use super::timestamp::truncate_to_micros;

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn later_fields_win_and_absent_fields_keep() {
        let t0 = datetime!(2025-01-01 0:00 UTC);
        let mut t = TicketState::new("T-1".into(), 1, t0);
        let _ = t.apply(
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
        let _ = t.apply(
            &TicketUpdate { name: "T-1".into(), status: Some("Closed".into()), activity: false, ..Default::default() },
            datetime!(2025-01-02 0:00 UTC),
        );
        assert_eq!(t.title.as_deref(), Some("a"));
        assert_eq!(t.status.as_deref(), Some("Closed"));
        assert_eq!(t.last_activity_at, t0, "an observation is not activity");
        assert_eq!(t.message_count, 2);
    }

    #[test]
    fn the_first_tenant_stated_owns_the_ticket() {
        let t0 = datetime!(2025-01-01 0:00 UTC);
        let claim = |tenant: Option<&str>| TicketUpdate {
            name: "T".into(),
            tenant_id: tenant.map(str::to_owned),
            title: Some(format!("by {tenant:?}")),
            activity: true,
            ..Default::default()
        };
        let mut t = TicketState::new("T".into(), 1, t0);
        assert_eq!(t.apply(&claim(None), t0), None);
        assert_eq!(t.tenant_id, None);
        assert_eq!(t.apply(&claim(Some("A")), t0), None);
        assert_eq!(t.apply(&claim(Some("A")), t0), None, "the same tenant again is no conflict");
        assert_eq!(t.apply(&claim(Some("B")), t0), Some(TenantConflict { owner: "A".into(), claimed: "B".into() }));
        assert_eq!(t.tenant_id.as_deref(), Some("A"));
        assert_eq!(t.apply(&claim(None), t0), None);
        assert_eq!(t.tenant_id.as_deref(), Some("A"));
    }

    proptest::proptest! {
        /// Whatever sequence of claims arrives, the owner is the first tenant stated, and every
        /// later different claim, and only those, is a conflict.
        #[test]
        fn ownership_never_moves(claims in proptest::collection::vec(proptest::option::of("[AB C]{0,2}"), 0..12)) {
            let t0 = datetime!(2025-01-01 0:00 UTC);
            let mut t = TicketState::new("T".into(), 1, t0);
            let first = claims.iter().flatten().next().cloned();
            for c in &claims {
                let u = TicketUpdate { name: "T".into(), tenant_id: c.clone(), ..Default::default() };
                let conflict = t.apply(&u, t0);
                let expect = match (&first, c) {
                    (Some(o), Some(c)) if o != c => Some(TenantConflict { owner: o.clone(), claimed: c.clone() }),
                    _ => None,
                };
                proptest::prop_assert_eq!(conflict, expect);
            }
            proptest::prop_assert_eq!(t.tenant_id, first);
        }
    }

    #[test]
    fn create_time_keeps_text_that_does_not_parse() {
        assert_eq!(CreateTime::read("yesterday"), CreateTime::Unparsed("yesterday".into()));
        assert_eq!(
            CreateTime::read("2025-05-25T16:02:11.250+02:00"),
            CreateTime::Parsed(datetime!(2025-05-25 14:02:11.250 UTC))
        );
        for edge in ["9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+00:01", "0000-01-01T00:00:00Z"] {
            assert_eq!(CreateTime::read(edge), CreateTime::Unparsed(edge.into()), "{edge}");
        }
        assert_eq!(
            CreateTime::read("2025-05-25T16:02:11.1234567Z"),
            CreateTime::Parsed(datetime!(2025-05-25 16:02:11.123456 UTC))
        );
    }
}
