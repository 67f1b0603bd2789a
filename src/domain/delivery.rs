//! The webhook envelope: strict enough to refuse what is not JSON, lenient about everything inside.

use serde_json::Value;

/// Deepest nesting of arrays and objects a body may have (the contract's limit).
pub const MAX_DEPTH: usize = 128;

/// The 24 actions the ServiceDesk documents. Anything else is kept as [`Action::Other`].
pub const DOCUMENTED_ACTIONS: [&str; 24] = [
    "GET:Ticket/GetTicket",
    "GET:Ticket/GetTicketMessages",
    "GET:Ticket/ListTicket",
    "POST:Ticket/AddTicket",
    "POST:Ticket/SendTicketMessage",
    "POST:Ticket/StoreNextMessageContext",
    "GET:AgentBuildDefinition/ListAgentBuildDefinition",
    "GET:AgentDefinition/GetAgentDefinition",
    "GET:AgentDefinition/GetAgentRegistrations",
    "GET:AgentDefinition/ListAgentDefinition",
    "PUT:AgentDefinition/UpdateAgentDefinition",
    "GET:ServiceDeskAgents/GetAllowedAgentInstances",
    "GET:ToolDefinition/GetToolDefinition",
    "GET:ToolDefinition/ListToolDefinition",
    "GET:ToolDefinition/ListToolsPackages",
    "PUT:ToolDefinition/UpdateToolDefinition",
    "GET:VectorDb/GetVectorDb",
    "GET:VectorDb/ListVectorDb",
    "GET:VectorDb/ListVectorDbProcessedFiles",
    "GET:VectorDb/ListVectorDbUnprocessedFiles",
    "GET:ChunkingBuildDefinition/ListArchivedBuilds",
    "GET:Settings/GetSettings",
    "GET:Settings/GetSettingsMetadata",
    "GET:Settings/ListSettings",
];

/// Longest `Action` kept as an action name; longer strings are not action names (and would not fit an index).
pub const MAX_ACTION_BYTES: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is JSON but not a JSON object")]
    NotObject,
    #[error("JSON is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A delivery body that is known to be a JSON object of acceptable depth.
#[derive(Debug, Clone)]
pub struct Envelope {
    root: Value,
    /// What had to be read leniently (see [`super::json`]); recorded with the delivery.
    leniency: Vec<super::json::Leniency>,
}

impl Envelope {
    /// Parses a body. Refuses non-JSON, non-objects and excessive nesting; accepts any shape inside.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        if nesting_depth(body) > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        let (root, leniency) = super::json::parse(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
        if !root.is_object() {
            return Err(ParseError::NotObject);
        }
        Ok(Self { root, leniency })
    }

    pub fn leniency(&self) -> &[super::json::Leniency] {
        &self.leniency
    }

    pub fn action(&self) -> Action {
        match self.root.get("Action") {
            None | Some(Value::Null) => Action::Missing,
            Some(Value::String(s)) if s.len() <= MAX_ACTION_BYTES => Action::parse(s),
            Some(Value::String(_)) => Action::Invalid("Action is longer than 256 bytes"),
            Some(_) => Action::Invalid("Action is not a string"),
        }
    }

    /// `Data.StatusCode` (or a top-level `StatusCode`), read leniently.
    pub fn status_code(&self) -> StatusCode {
        let v = self.root.get("Data").and_then(|d| d.get("StatusCode")).or_else(|| self.root.get("StatusCode"));
        StatusCode::read(v)
    }

    pub fn request_body(&self) -> Option<&Value> {
        self.root.get("Data").and_then(|d| d.get("RequestBody"))
    }

    pub fn response_body(&self) -> Option<&Value> {
        self.root.get("Data").and_then(|d| d.get("ResponseBody"))
    }
}

/// Depth of the deepest array/object nesting, counted without building anything.
/// Stops counting once past the limit, so hostile input costs one linear scan.
pub fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
                if max > MAX_DEPTH {
                    return max;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// What the `Action` field says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// One of the 24 documented actions.
    Documented(&'static str),
    /// A string that is not one of them (kept: the sender may add actions).
    Other(String),
    Missing,
    Invalid(&'static str),
}

impl Action {
    pub fn parse(s: &str) -> Self {
        match DOCUMENTED_ACTIONS.iter().find(|a| **a == s) {
            Some(a) => Action::Documented(a),
            None => Action::Other(s.to_owned()),
        }
    }

    /// The name to record, when there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Action::Documented(a) => Some(a),
            Action::Other(s) => Some(s),
            Action::Missing | Action::Invalid(_) => None,
        }
    }

    /// The resource part of `METHOD:Resource/Operation`, e.g. `Ticket`.
    pub fn resource(&self) -> Option<&str> {
        let name = self.name()?;
        let rest = name.split_once(':').map_or(name, |(_, r)| r);
        Some(rest.split_once('/').map_or(rest, |(r, _)| r))
    }
}

/// `StatusCode`, which senders may send as anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    Absent,
    Code(i32),
    /// Present but not an integer that fits 32 bits (a string of letters, 200.5, 1e30, an object...).
    Invalid,
}

impl StatusCode {
    fn read(v: Option<&Value>) -> Self {
        match v {
            None | Some(Value::Null) => StatusCode::Absent,
            Some(Value::Number(n)) => {
                let int =
                    n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64));
                int.and_then(|i| i32::try_from(i).ok()).map_or(StatusCode::Invalid, StatusCode::Code)
            }
            Some(Value::String(s)) => s.trim().parse::<i32>().map_or(StatusCode::Invalid, StatusCode::Code),
            Some(_) => StatusCode::Invalid,
        }
    }

    /// Whether the sender reports success. An absent code is taken as success: the sender
    /// reported no failure. Anything present that is not 2xx is a failure.
    pub fn is_success(self) -> bool {
        match self {
            StatusCode::Absent => true,
            StatusCode::Code(c) => (200..300).contains(&c),
            StatusCode::Invalid => false,
        }
    }

    pub fn code(self) -> Option<i32> {
        match self {
            StatusCode::Code(c) => Some(c),
            _ => None,
        }
    }
}

/// Lenient field access: follows `path` through objects, trying each spelling of a key.
pub fn field<'a>(v: Option<&'a Value>, path: &[&[&str]]) -> Option<&'a Value> {
    let mut cur = v?;
    for spellings in path {
        let obj = cur.as_object()?;
        cur = spellings.iter().find_map(|k| obj.get(*k))?;
    }
    Some(cur)
}

/// A field that names something (a ticket, a tenant, an agent): a string, or a number written out.
pub fn identifier(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A field holding free text (message content, command output): strings as they are,
/// other JSON written out compactly so nothing the sender said is dropped.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_limit_is_exactly_128() {
        let ok = format!("{{\"a\":{}}}", nested(MAX_DEPTH - 1));
        assert_eq!(nesting_depth(ok.as_bytes()), MAX_DEPTH);
        assert!(Envelope::parse(ok.as_bytes()).is_ok());
        let deep = format!("{{\"a\":{}}}", nested(MAX_DEPTH));
        assert_eq!(Envelope::parse(deep.as_bytes()).unwrap_err(), ParseError::TooDeep);
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let body = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert_eq!(nesting_depth(body.as_bytes()), 1);
        assert!(Envelope::parse(body.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_non_objects_and_non_json() {
        assert_eq!(Envelope::parse(b"[1]").unwrap_err(), ParseError::NotObject);
        assert_eq!(Envelope::parse(b"\"x\"").unwrap_err(), ParseError::NotObject);
        assert!(matches!(Envelope::parse(b"{").unwrap_err(), ParseError::NotJson(_)));
        assert!(matches!(Envelope::parse(b"{} x").unwrap_err(), ParseError::NotJson(_)));
        assert!(matches!(Envelope::parse(b"{\"a\":\"\xff\"}").unwrap_err(), ParseError::NotJson(_)));
    }

    #[test]
    fn status_codes_are_read_leniently() {
        let sc = |s: &str| Envelope::parse(s.as_bytes()).unwrap().status_code();
        assert_eq!(sc(r#"{"Data":{"StatusCode":200}}"#), StatusCode::Code(200));
        assert_eq!(sc(r#"{"Data":{"StatusCode":"404"}}"#), StatusCode::Code(404));
        assert_eq!(sc(r#"{"Data":{"StatusCode":201.0}}"#), StatusCode::Code(201));
        assert_eq!(sc(r#"{"Data":{"StatusCode":200.5}}"#), StatusCode::Invalid);
        assert_eq!(sc(r#"{"Data":{"StatusCode":99999999999}}"#), StatusCode::Invalid);
        assert_eq!(sc(r#"{"Data":{"StatusCode":{}}}"#), StatusCode::Invalid);
        assert_eq!(sc(r#"{"Data":{}}"#), StatusCode::Absent);
        assert!(StatusCode::Absent.is_success());
        assert!(!StatusCode::Code(500).is_success());
        assert!(!StatusCode::Invalid.is_success());
    }

    #[test]
    fn actions() {
        assert_eq!(Action::parse("POST:Ticket/AddTicket"), Action::Documented("POST:Ticket/AddTicket"));
        assert_eq!(Action::parse("POST:Ticket/AddTicket").resource(), Some("Ticket"));
        assert_eq!(Action::parse("weird").resource(), Some("weird"));
        assert_eq!(DOCUMENTED_ACTIONS.len(), 24);
    }
}
