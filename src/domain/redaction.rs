//! Redaction: the ledger entry that records one, and what the redacted delivery still projects.
//!
//! A redaction replaces a delivery's body with the empty tombstone and blanks the text of its
//! projection, keeping `body_sha256` (and so its chain link and its leaf). It is recorded by an
//! entry of its own in the ledger, whose body (this module's [`Entry`]) names the target, says
//! who, when and why, and keeps the target's projection without its text ([`Skeleton`]): what
//! `reproject` rebuilds the redacted rows from and what `verify` checks them against. The entry
//! holds no text of the target's body.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::normalize::{CommandRow, EventKind, MessageRole, MessageRow, Normalized};
use super::ticket::{CreateTime, TicketUpdate};

/// The action of a redaction entry (its chained `action` field).
pub const ACTION: &str = "ticket-audit:Redact";

/// Longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Longest actor name accepted, in characters.
pub const MAX_ACTOR_CHARS: usize = 200;

/// The key of the entry that redacts delivery `target`: holds a space, which no sender's key
/// can (they are visible ASCII), so only the service writes an entry with it.
pub fn key_of(target: i64) -> String {
    format!("redaction {target}")
}

/// The target a redaction entry's key names, if the key is one.
pub fn target_of_key(key: &str) -> Option<i64> {
    key.strip_prefix("redaction ").and_then(|n| n.parse().ok()).filter(|n: &i64| *n > 0 && key_of(*n) == key)
}

/// Why a reason or an actor is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidText {
    #[error("the {0} is empty")]
    Empty(&'static str),
    #[error("the {0} is longer than {1} characters")]
    TooLong(&'static str, usize),
    #[error("the {0} holds a control character")]
    Control(&'static str),
}

/// Trims and checks a reason or an actor name: 1 to `max` characters, no control character.
pub fn checked_text(what: &'static str, s: &str, max: usize) -> Result<String, InvalidText> {
    let s = s.trim();
    if s.is_empty() {
        return Err(InvalidText::Empty(what));
    }
    if s.chars().count() > max {
        return Err(InvalidText::TooLong(what, max));
    }
    if s.chars().any(char::is_control) {
        return Err(InvalidText::Control(what));
    }
    Ok(s.to_owned())
}

/// The body of a redaction entry: `{"Action": ACTION, "Redaction": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The redacted delivery (its seq).
    pub delivery_id: i64,
    /// Its body's SHA-256, hex: what its leaf keeps covering.
    pub body_sha256: String,
    pub reason: String,
    pub actor: String,
    /// RFC 3339, microseconds, UTC.
    pub at: String,
    /// Its projection without text.
    pub projection: Skeleton,
}

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Action")]
    action: std::borrow::Cow<'a, str>,
    #[serde(rename = "Redaction")]
    redaction: Entry,
}

impl Entry {
    pub fn new(
        target: i64,
        body_sha256: &[u8],
        reason: String,
        actor: String,
        at: OffsetDateTime,
        n: &Normalized,
    ) -> Self {
        Entry {
            delivery_id: target,
            body_sha256: hex::encode(body_sha256),
            reason,
            actor,
            at: super::timestamp::format_micros(at),
            projection: Skeleton::of(n),
        }
    }

    /// The entry's body, as stored (and chained through its SHA-256).
    pub fn body(&self) -> Vec<u8> {
        let e = Envelope { action: ACTION.into(), redaction: self.clone() };
        serde_json::to_vec(&e).expect("an entry serializes")
    }

    /// Reads an entry's body; `None` when it is not one.
    pub fn parse(body: &[u8]) -> Option<Entry> {
        let e: Envelope<'_> = serde_json::from_slice(body).ok()?;
        (e.action == ACTION).then_some(e.redaction)
    }
}

/// What a redacted delivery projects, without any text of its body: the ticket it concerns,
/// its event, the positions of its messages and commands, and its ticket updates less the
/// title and a `CreateTime` that was not a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skeleton {
    pub ticket: Option<String>,
    pub carried_tenant: Option<String>,
    pub kind: String,
    pub success: bool,
    /// (position, role: "user" or "agent").
    pub messages: Vec<(i32, String)>,
    /// (position, executed).
    pub commands: Vec<(i32, bool)>,
    pub ticket_updates: Vec<SkeletonUpdate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkeletonUpdate {
    pub name: String,
    pub status: Option<String>,
    pub tenant_id: Option<String>,
    pub agent_name: Option<String>,
    pub agent_id: Option<String>,
    /// RFC 3339, when the update stated a parsed CreateTime.
    pub created_at: Option<String>,
    pub activity: bool,
    pub messages: i64,
    pub commands: i64,
}

impl Skeleton {
    pub fn of(n: &Normalized) -> Self {
        Skeleton {
            ticket: n.ticket.clone(),
            carried_tenant: n.carried_tenant.clone(),
            kind: n.kind.as_str().to_owned(),
            success: n.success,
            messages: n.messages.iter().map(|m| (m.position, m.role.as_str().to_owned())).collect(),
            commands: n.commands.iter().map(|c| (c.position, c.executed)).collect(),
            ticket_updates: n
                .ticket_updates
                .iter()
                .map(|u| SkeletonUpdate {
                    name: u.name.clone(),
                    status: u.status.clone(),
                    tenant_id: u.tenant_id.clone(),
                    agent_name: u.agent_name.clone(),
                    agent_id: u.agent_id.clone(),
                    created_at: match &u.create_time {
                        Some(CreateTime::Parsed(t)) => Some(super::timestamp::format_micros(*t)),
                        _ => None,
                    },
                    activity: u.activity,
                    messages: u.messages,
                    commands: u.commands,
                })
                .collect(),
        }
    }

    /// The redacted delivery's projection: its rows with their text blank (messages' content and
    /// commands' line empty, no result), as the redaction left them. `action` and `status_code`
    /// are the delivery's chained ones.
    pub fn normalized(&self, action: Option<String>, status_code: Option<i32>) -> Normalized {
        let kind = match self.kind.as_str() {
            "ticket_created" => EventKind::TicketCreated,
            "conversation" => EventKind::Conversation,
            _ => EventKind::Action,
        };
        Normalized {
            action,
            status_code,
            success: self.success,
            ticket: self.ticket.clone(),
            carried_tenant: self.carried_tenant.clone(),
            kind,
            ticket_updates: self
                .ticket_updates
                .iter()
                .map(|u| TicketUpdate {
                    name: u.name.clone(),
                    title: None,
                    status: u.status.clone(),
                    tenant_id: u.tenant_id.clone(),
                    agent_name: u.agent_name.clone(),
                    agent_id: u.agent_id.clone(),
                    create_time: u.created_at.as_deref().and_then(super::timestamp::parse).map(CreateTime::Parsed),
                    activity: u.activity,
                    messages: u.messages,
                    commands: u.commands,
                })
                .collect(),
            messages: self
                .messages
                .iter()
                .map(|(position, role)| MessageRow {
                    position: *position,
                    role: if role == "agent" { MessageRole::Agent } else { MessageRole::User },
                    content: String::new(),
                })
                .collect(),
            commands: self
                .commands
                .iter()
                .map(|(position, executed)| CommandRow {
                    position: *position,
                    command: String::new(),
                    result: None,
                    executed: *executed,
                })
                .collect(),
            problems: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_delivery() -> Normalized {
        let body = serde_json::json!({"Action": "POST:Ticket/SendTicketMessage", "Data": {
            "RequestBody": {"ticketName": "T-1", "message": {"Content": "my card is 4111 1111"}},
            "ResponseBody": {"Content": "noted 4111", "data": {"Cmds": ["echo secret"],
                "executedCmds": [{"command": "cat /etc/shadow", "result": "root:x"}]}},
            "StatusCode": 200}});
        super::super::derive(body.to_string().as_bytes(), false).unwrap()
    }

    #[test]
    fn the_entry_round_trips_and_holds_no_text_of_the_target() {
        let n = message_delivery();
        let at = time::macros::datetime!(2026-12-01 10:00:00.123456 UTC);
        let e = Entry::new(7, &[1u8; 32], "GDPR erasure".into(), "alice".into(), at, &n);
        let body = e.body();
        let text = String::from_utf8(body.clone()).unwrap();
        for secret in ["4111", "secret", "shadow", "root:x"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(Entry::parse(&body), Some(e.clone()));
        assert!(Entry::parse(b"{\"Action\":\"x\",\"Redaction\":{}}").is_none());
        // The body is a delivery like any other: an action event of no ticket, no rows.
        let as_delivery = super::super::derive(&body, false).unwrap();
        assert_eq!(as_delivery.action.as_deref(), Some(ACTION));
        assert!(as_delivery.ticket.is_none() && as_delivery.carried_tenant.is_none());
        assert!(as_delivery.messages.is_empty() && as_delivery.commands.is_empty());
        assert!(as_delivery.ticket_updates.is_empty());
    }

    #[test]
    fn the_skeleton_projects_the_same_rows_without_their_text() {
        let n = message_delivery();
        let s = Skeleton::of(&n).normalized(n.action.clone(), n.status_code);
        assert_eq!((s.ticket.as_deref(), s.kind, s.success), (Some("T-1"), n.kind, n.success));
        let positions = |n: &Normalized| {
            (
                n.messages.iter().map(|m| (m.position, m.role)).collect::<Vec<_>>(),
                n.commands.iter().map(|c| (c.position, c.executed)).collect::<Vec<_>>(),
            )
        };
        assert_eq!(positions(&s), positions(&n));
        assert!(s.messages.iter().all(|m| m.content.is_empty()));
        assert!(s.commands.iter().all(|c| c.command.is_empty() && c.result.is_none()));
        let counts = |n: &Normalized| n.ticket_updates.iter().map(|u| (u.messages, u.commands)).collect::<Vec<_>>();
        assert_eq!(counts(&s), counts(&n));
    }

    #[test]
    fn keys_and_texts() {
        assert_eq!(key_of(12), "redaction 12");
        assert_eq!(target_of_key("redaction 12"), Some(12));
        for not in ["redaction:12", "redaction 012", "redaction -1", "redaction 0", "redaction  1", "x"] {
            assert_eq!(target_of_key(not), None, "{not}");
        }
        assert_eq!(checked_text("reason", "  why  ", 10), Ok("why".into()));
        assert_eq!(checked_text("reason", " ", 10), Err(InvalidText::Empty("reason")));
        assert_eq!(checked_text("reason", "ééééé", 4), Err(InvalidText::TooLong("reason", 4)));
        assert_eq!(checked_text("reason", "a\nb", 10), Err(InvalidText::Control("reason")));
    }
}
