//! A delivery in, the rows it produces out: the rules of recording, with no I/O.

use serde_json::Value;

use super::delivery::{field, identifier, text, Action, Envelope, StatusCode};
use super::ticket::{CreateTime, TicketUpdate};

/// Longest identifier (ticket name, tenant, agent, status) taken into an indexed column.
pub const MAX_IDENTIFIER_BYTES: usize = 256;

/// How a delivery's action event shows in a ticket's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A successful `AddTicket`.
    TicketCreated,
    /// Any other delivery: a failure, a read, a configuration change, an unknown action.
    Action,
    /// A successful message: its messages and commands are the timeline entries.
    Conversation,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TicketCreated => "ticket_created",
            EventKind::Action => "action",
            EventKind::Conversation => "conversation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRole {
    User,
    Agent,
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "user",
            MessageRole::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// Position within the delivery; 0 is the action event itself.
    pub position: i32,
    pub role: MessageRole,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRow {
    pub position: i32,
    pub command: String,
    /// Output of an executed command (None when only proposed, or when the sender sent none).
    pub result: Option<String>,
    pub executed: bool,
}

/// Everything one delivery produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub action: Option<String>,
    pub status_code: Option<i32>,
    pub success: bool,
    /// The ticket the delivery concerns, if it names one.
    pub ticket: Option<String>,
    /// A `TenantId` the delivery carries itself.
    pub carried_tenant: Option<String>,
    pub kind: EventKind,
    /// In application order. A write to the concerned ticket comes first.
    pub ticket_updates: Vec<TicketUpdate>,
    pub messages: Vec<MessageRow>,
    /// Commands; with no ticket name they are still recorded, under no ticket.
    pub commands: Vec<CommandRow>,
    /// Why the delivery could not be (fully) normalized. The delivery is stored regardless.
    pub problems: Vec<String>,
}

impl Normalized {
    pub fn error(&self) -> Option<String> {
        (!self.problems.is_empty()).then(|| self.problems.join("; "))
    }

    /// The same delivery projected as a bare event: what is stored when the database refuses
    /// its projection. It keeps its action and status; `why`, when given, joins its problems.
    pub fn unprojected(&self, why: Option<String>) -> Normalized {
        let mut problems = self.problems.clone();
        problems.extend(why);
        Normalized {
            ticket: None,
            carried_tenant: None,
            kind: EventKind::Action,
            ticket_updates: Vec::new(),
            messages: Vec::new(),
            commands: Vec::new(),
            problems,
            ..self.clone()
        }
    }
}

/// What a stored delivery normalizes to, as it was projected when stored: the one rule for live
/// ingest, `reproject` and `verify`. `None` when the body is no longer a JSON object.
pub fn derive(body: &[u8], unprojected: bool) -> Option<Normalized> {
    let n = normalize(&Envelope::parse(body).ok()?);
    Some(if unprojected { n.unprojected(None) } else { n })
}

/// The spellings of the command lists in `Data.ResponseBody.data`, in the order they are recorded.
pub const PROPOSED_KEYS: &[&str] = &["Cmds", "cmds"];
pub const EXECUTED_KEYS: &[&str] = &["executedCmds", "executed_cmds", "ExecutedCmds"];

const TICKET_NAME_KEYS: &[&str] = &["ticketName", "TicketName", "ticket_name"];
const ADD_TICKET: &str = "POST:Ticket/AddTicket";
const SEND_MESSAGE: &str = "POST:Ticket/SendTicketMessage";
const GET_TICKET: &str = "GET:Ticket/GetTicket";
const LIST_TICKET: &str = "GET:Ticket/ListTicket";

/// Derives the rows of one delivery. Total: any JSON object gives an answer, never a panic.
pub fn normalize(env: &Envelope) -> Normalized {
    let action = env.action();
    let status = env.status_code();
    let mut n = Normalized {
        action: action.name().map(str::to_owned),
        status_code: status.code(),
        success: status.is_success(),
        ticket: None,
        carried_tenant: carried_tenant(env),
        kind: EventKind::Action,
        ticket_updates: Vec::new(),
        messages: Vec::new(),
        commands: Vec::new(),
        problems: Vec::new(),
    };
    n.problems.extend(env.leniency().iter().map(|l| l.describe().to_owned()));
    match &action {
        Action::Missing => n.problems.push("no Action".into()),
        Action::Invalid(why) => n.problems.push((*why).into()),
        _ => {}
    }
    if status == StatusCode::Invalid {
        n.problems.push("StatusCode is not an integer status; taken as a failure".into());
    }
    let carried = n.carried_tenant.take();
    n.carried_tenant = checked_identifier(carried, "TenantId", &mut n.problems);

    match action.name() {
        Some(ADD_TICKET) => add_ticket(env, &mut n),
        Some(SEND_MESSAGE) => send_message(env, &mut n),
        _ => other_action(env, &action, &mut n),
    }
    n
}

fn add_ticket(env: &Envelope, n: &mut Normalized) {
    let ticket = field(env.request_body(), &[&["Ticket", "ticket"]]);
    let Some(name) = ticket_name(field(ticket, &[&["Name", "name"]]), n) else {
        n.problems.push("AddTicket without Data.RequestBody.Ticket.Name".into());
        return;
    };
    n.ticket = Some(name.clone());
    if n.success {
        n.kind = EventKind::TicketCreated;
        let mut update = ticket_fields(ticket, name, &mut n.problems);
        update.activity = true;
        n.ticket_updates.push(update);
    } else {
        // A failed AddTicket shows in the timeline but states no field of the ticket.
        n.ticket_updates.push(TicketUpdate { name, activity: true, ..Default::default() });
    }
}

fn send_message(env: &Envelope, n: &mut Normalized) {
    let req = env.request_body();
    let resp = env.response_body();
    n.ticket = ticket_name(field(req, &[TICKET_NAME_KEYS]), n);
    if n.ticket.is_none() {
        n.problems.push("SendTicketMessage without Data.RequestBody.ticketName".into());
    }
    let mut position = 0;
    let mut next = || {
        position += 1;
        position
    };
    // A failed message is retried by the sender: recording its messages would record them
    // twice. What ran did run, though, so executed commands are kept whatever the status.
    if n.success && n.ticket.is_some() {
        let user = text(field(req, &[&["message", "Message"], &["Content", "content"]]));
        let agent = text(field(resp, &[&["Content", "content"]]));
        for (role, content) in [(MessageRole::User, user), (MessageRole::Agent, agent)] {
            if let Some(content) = content {
                n.messages.push(MessageRow { position: next(), role, content });
            }
        }
    }
    let data = field(resp, &[&["data", "Data"]]);
    // A sender may spell a list both ways in one delivery: every spelling present is recorded,
    // proposed before executed, each in the order of PROPOSED_KEYS and EXECUTED_KEYS.
    if n.success {
        for (key, cmds) in every_spelling(data, PROPOSED_KEYS) {
            for command in list(cmds, key, &mut n.problems).iter().filter_map(proposed) {
                n.commands.push(CommandRow { position: next(), command, result: None, executed: false });
            }
        }
    }
    for (key, executed) in every_spelling(data, EXECUTED_KEYS) {
        for entry in list(executed, key, &mut n.problems) {
            match executed_command(entry) {
                Some((command, result)) => {
                    n.commands.push(CommandRow { position: next(), command, result, executed: true })
                }
                None => n.problems.push("an executedCmds entry has no command".into()),
            }
        }
    }
    if let Some(name) = n.ticket.clone() {
        n.kind = if n.success && !(n.messages.is_empty() && n.commands.is_empty()) {
            EventKind::Conversation
        } else {
            EventKind::Action
        };
        n.ticket_updates.push(TicketUpdate {
            name,
            activity: true,
            messages: n.messages.len() as i64,
            commands: n.commands.len() as i64,
            ..Default::default()
        });
    }
}

/// Every other action: an event, tied to a ticket when it names one. Writes to a named ticket
/// are activity on it; successful ticket reads also tell us the ticket's current fields.
fn other_action(env: &Envelope, action: &Action, n: &mut Normalized) {
    let req = env.request_body();
    let is_ticket = action.resource() == Some("Ticket");
    let named = field(req, &[TICKET_NAME_KEYS])
        .or_else(|| if is_ticket { field(req, &[&["Name", "name"]]) } else { None })
        .or_else(|| if is_ticket { req.filter(|v| v.is_string()) } else { None });
    n.ticket = ticket_name(named, n);
    let is_read = action.name().is_some_and(|a| a.starts_with("GET:"));
    if let (Some(name), false) = (&n.ticket, is_read) {
        n.ticket_updates.push(TicketUpdate { name: name.clone(), activity: true, ..Default::default() });
    }
    if !n.success {
        return;
    }
    let resp = env.response_body();
    let observed: Vec<&Value> = match action.name() {
        Some(GET_TICKET) => {
            let t = field(resp, &[&["Ticket", "ticket"]]).or(resp);
            t.into_iter().collect()
        }
        Some(LIST_TICKET) => {
            let items = resp.filter(|v| v.is_array()).or_else(|| {
                field(resp, &[&["Tickets", "tickets", "Items", "items", "value", "Value", "data", "Data"]])
            });
            items.and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    for t in observed {
        let name = identifier(field(Some(t), &[&["Name", "name"]]));
        if let Some(name) = name.filter(|s| s.len() <= MAX_IDENTIFIER_BYTES) {
            if n.ticket.is_none() && action.name() == Some(GET_TICKET) {
                n.ticket = Some(name.clone());
            }
            n.ticket_updates.push(ticket_fields(Some(t), name, &mut n.problems));
        }
    }
}

/// The fields of a ticket object (an AddTicket's `Ticket`, or one seen in a read's answer).
fn ticket_fields(t: Option<&Value>, name: String, problems: &mut Vec<String>) -> TicketUpdate {
    let mut get = |keys: &[&str], what: &str| checked_identifier(identifier(field(t, &[keys])), what, problems);
    let status = get(&["Status", "status"], "Status");
    let tenant_id = get(&["TenantId", "tenantId", "tenant_id"], "TenantId");
    let assignee = field(t, &[&["Assignee", "assignee"]]);
    let agent_name = checked_identifier(
        identifier(field(assignee, &[&["AgentName", "agentName", "agent_name"]])),
        "Assignee.AgentName",
        problems,
    );
    let agent_id = checked_identifier(
        identifier(field(assignee, &[&["AgentId", "agentId", "agent_id"]])),
        "Assignee.AgentId",
        problems,
    );
    let create_time = match field(t, &[&["CreateTime", "createTime", "create_time"]]) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(CreateTime::read(s)),
        Some(other) => Some(CreateTime::Unparsed(other.to_string())),
    };
    TicketUpdate {
        name,
        title: text(field(t, &[&["Title", "title"]])),
        status,
        tenant_id,
        agent_name,
        agent_id,
        create_time,
        activity: false,
        messages: 0,
        commands: 0,
    }
}

fn ticket_name(v: Option<&Value>, n: &mut Normalized) -> Option<String> {
    checked_identifier(identifier(v), "ticket name", &mut n.problems)
}

/// Identifiers go into indexed columns: an overlong one is left out, and the reason recorded.
fn checked_identifier(v: Option<String>, what: &str, problems: &mut Vec<String>) -> Option<String> {
    match v {
        Some(s) if s.len() > MAX_IDENTIFIER_BYTES => {
            problems.push(format!("{what} longer than {MAX_IDENTIFIER_BYTES} bytes; left out"));
            None
        }
        other => other,
    }
}

fn carried_tenant(env: &Envelope) -> Option<String> {
    let req = env.request_body();
    let resp = env.response_body();
    const T: &[&str] = &["TenantId", "tenantId", "tenant_id"];
    const TICKET: &[&str] = &["Ticket", "ticket"];
    identifier(field(req, &[TICKET, T]))
        .or_else(|| identifier(field(req, &[T])))
        .or_else(|| identifier(field(resp, &[TICKET, T])))
        .or_else(|| identifier(field(resp, &[T])))
}

/// Every one of `spellings` that the object `v` holds, in the order of `spellings`.
fn every_spelling<'a>(
    v: Option<&'a Value>,
    spellings: &'static [&'static str],
) -> impl Iterator<Item = (&'static str, &'a Value)> {
    let obj = v.and_then(Value::as_object);
    spellings.iter().filter_map(move |k| Some((*k, obj?.get(*k)?)))
}

fn list<'a>(v: &'a Value, what: &str, problems: &mut Vec<String>) -> &'a [Value] {
    match v {
        Value::Array(a) => a,
        Value::Null => &[],
        _ => {
            problems.push(format!("{what} is not an array"));
            &[]
        }
    }
}

fn proposed(v: &Value) -> Option<String> {
    match v {
        Value::Object(_) => text(field(Some(v), &[&["command", "Command", "cmd"]])),
        other => text(Some(other)),
    }
}

fn executed_command(v: &Value) -> Option<(String, Option<String>)> {
    match v {
        Value::Object(_) => {
            let command = text(field(Some(v), &[&["command", "Command", "cmd"]]))?;
            Some((command, text(field(Some(v), &[&["result", "Result", "output"]]))))
        }
        Value::Null => None,
        other => Some((text(Some(other))?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CreateTime;

    fn norm(body: &str) -> Normalized {
        normalize(&Envelope::parse(body.as_bytes()).expect("test body parses"))
    }

    #[test]
    fn add_ticket_sets_fields() {
        let n = norm(include_str!("../../tests/data/add_ticket.json"));
        assert_eq!(n.kind, EventKind::TicketCreated);
        assert_eq!(n.ticket.as_deref(), Some("TICKET-12345"));
        let u = &n.ticket_updates[0];
        assert_eq!(u.title.as_deref(), Some("Need help with AWS permissions"));
        assert_eq!(u.agent_name.as_deref(), Some("aws"));
        assert_eq!(u.tenant_id.as_deref(), Some("ea73f43c-dda3-4fb5-998d-54f262238225"));
        assert!(matches!(u.create_time, Some(CreateTime::Parsed(_))));
        assert!(n.problems.is_empty(), "{:?}", n.problems);
    }

    #[test]
    fn failed_add_ticket_states_no_field() {
        let n = norm(include_str!("../../tests/data/add_ticket_failed.json"));
        assert_eq!(n.kind, EventKind::Action);
        assert!(!n.success);
        assert_eq!(
            n.ticket_updates,
            vec![TicketUpdate { name: "TICKET-12399".into(), activity: true, ..Default::default() }]
        );
    }

    #[test]
    fn both_spellings_of_command_fields() {
        let a = norm(include_str!("../../tests/data/send_message.json"));
        let b = norm(include_str!("../../tests/data/send_message_snake_case.json"));
        assert_eq!(a.commands.iter().filter(|c| c.executed).count(), 1);
        assert_eq!(a.commands.iter().filter(|c| !c.executed).count(), 1);
        assert_eq!(b.commands.iter().filter(|c| c.executed).count(), 2);
        assert_eq!(b.commands.iter().filter(|c| !c.executed).count(), 2);
        let positions: Vec<i32> =
            b.messages.iter().map(|m| m.position).chain(b.commands.iter().map(|c| c.position)).collect();
        assert_eq!(positions, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn both_spellings_in_one_delivery_are_all_recorded() {
        let n = norm(
            r#"{"Action":"POST:Ticket/SendTicketMessage","Data":{"RequestBody":{"ticketName":"T"},"ResponseBody":{"data":{
            "cmds":["p2"],"Cmds":["p1"],"executed_cmds":[{"command":"e2"}],"ExecutedCmds":["e3"],"executedCmds":[{"command":"e1","result":"r"}]}}}}"#,
        );
        let got: Vec<(&str, bool, i32)> =
            n.commands.iter().map(|c| (c.command.as_str(), c.executed, c.position)).collect();
        assert_eq!(got, vec![("p1", false, 1), ("p2", false, 2), ("e1", true, 3), ("e2", true, 4), ("e3", true, 5)]);
        assert_eq!(n.ticket_updates[0].commands, 5);
    }

    #[test]
    fn failed_message_keeps_only_executed_commands() {
        let n = norm(
            r#"{"Action":"POST:Ticket/SendTicketMessage","Data":{"RequestBody":{"ticketName":"T","message":{"Content":"hi"}},
            "ResponseBody":{"Content":"x","data":{"Cmds":["a"],"executedCmds":[{"command":"kubectl delete pod x","result":"deleted"}]}},"StatusCode":502}}"#,
        );
        assert!(n.messages.is_empty());
        assert_eq!(
            n.commands,
            vec![CommandRow {
                position: 1,
                command: "kubectl delete pod x".into(),
                result: Some("deleted".into()),
                executed: true
            }]
        );
        assert_eq!(n.kind, EventKind::Action);
        assert_eq!(n.ticket_updates[0].commands, 1);
    }

    #[test]
    fn message_without_ticket_keeps_executed_commands_and_says_why() {
        let n = norm(
            r#"{"Action":"POST:Ticket/SendTicketMessage","Data":{"ResponseBody":{"data":{"executed_cmds":[{"command":"ls"}]}}}}"#,
        );
        assert_eq!(n.ticket, None);
        assert_eq!(n.commands.len(), 1);
        assert!(n.error().unwrap().contains("ticketName"));
    }

    #[test]
    fn list_ticket_observes_fields_without_activity() {
        let n = norm(include_str!("../../tests/data/list_ticket.json"));
        assert_eq!(n.ticket, None);
        assert_eq!(n.ticket_updates.len(), 1);
        assert_eq!(n.ticket_updates[0].status.as_deref(), Some("Open"));
        assert!(!n.ticket_updates[0].activity);
    }

    #[test]
    fn unknown_and_config_actions_are_events_only() {
        for body in [
            include_str!("../../tests/data/unknown_action.json"),
            include_str!("../../tests/data/update_agent_definition.json"),
        ] {
            let n = norm(body);
            assert_eq!(n.kind, EventKind::Action);
            assert!(n.ticket_updates.is_empty() && n.commands.is_empty() && n.messages.is_empty());
            assert!(n.problems.is_empty());
        }
    }

    #[test]
    fn wrong_types_are_survived() {
        let n = norm(r#"{"Action":7,"Data":{"RequestBody":{"Ticket":"nope"},"StatusCode":"abc"}}"#);
        assert_eq!(n.action, None);
        assert!(!n.success);
        assert!(n.error().is_some());
        let n = norm(
            r#"{"Action":"POST:Ticket/AddTicket","Data":{"RequestBody":{"Ticket":{"Name":12,"CreateTime":"soon","Assignee":null}}}}"#,
        );
        assert_eq!(n.ticket.as_deref(), Some("12"));
        assert_eq!(n.ticket_updates[0].create_time, Some(CreateTime::Unparsed("soon".into())));
    }

    #[test]
    fn overlong_identifiers_are_left_out() {
        let long = "x".repeat(MAX_IDENTIFIER_BYTES + 1);
        let body = format!(
            r#"{{"Action":"POST:Ticket/SendTicketMessage","Data":{{"RequestBody":{{"ticketName":"{long}"}}}}}}"#
        );
        let n = norm(&body);
        assert_eq!(n.ticket, None);
        assert!(n.error().unwrap().contains("longer than"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_json(v in arb_json()) {
            let body = serde_json::json!({"Action": "POST:Ticket/SendTicketMessage", "Data": v.clone()}).to_string();
            if let Ok(env) = Envelope::parse(body.as_bytes()) { let _ = normalize(&env); }
            for action in super::super::delivery::DOCUMENTED_ACTIONS {
                let body = serde_json::json!({"Action": action, "Data": {"RequestBody": v.clone(), "ResponseBody": v.clone(), "StatusCode": 200}}).to_string();
                if let Ok(env) = Envelope::parse(body.as_bytes()) { let _ = normalize(&env); }
            }
            if let Ok(env) = Envelope::parse(serde_json::json!({"x": v}).to_string().as_bytes()) { let _ = normalize(&env); }
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let key = prop_oneof![
            Just("Ticket".to_string()),
            Just("Name".to_string()),
            Just("ticketName".to_string()),
            Just("message".to_string()),
            Just("Content".to_string()),
            Just("data".to_string()),
            Just("Cmds".to_string()),
            Just("executedCmds".to_string()),
            Just("executed_cmds".to_string()),
            Just("command".to_string()),
            Just("result".to_string()),
            Just("CreateTime".to_string()),
            Just("Assignee".to_string()),
            Just("TenantId".to_string()),
            Just("StatusCode".to_string()),
            ".*"
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
