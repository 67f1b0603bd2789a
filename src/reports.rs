//! The analysts' reports of `sql/`, embedded in the binary, and the little of psql they are
//! written in: `\ir`, `\set`, `\if :{?name} ... \else ... \endif` and `:'name'` variables. A
//! variable becomes a bind parameter (`$n`, sent as text), never text spliced into the SQL, so a
//! value cannot change what a report runs. The same files run unchanged with `psql -f`.

use std::collections::{BTreeMap, BTreeSet};

/// A report: its file name without `.sql`, and the file.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(Report { name: $name, source: include_str!(concat!("../sql/", $name, ".sql")) }),*]
    };
}

/// Every report in `sql/` (a test checks that none is missing).
pub const REPORTS: &[Report] = embed![
    "agent_usage",
    "daily_activity",
    "deliveries_by_action",
    "failed_commands",
    "proposed_not_executed",
    "risky_commands",
    "tickets_by_status",
    "top_tools",
];

/// Files the reports include with `\ir`.
const INCLUDES: &[(&str, &str)] = &[("params.psql", include_str!("../sql/params.psql"))];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("there is no report `{name}`; the reports are: {known}")]
    Unknown { name: String, known: String },
    #[error("report {report} takes no parameter `{param}`; it takes: {known}")]
    UnknownParam { report: String, param: String, known: String },
    #[error("--param `{0}` is not NAME=VALUE")]
    BadParam(String),
    #[error("{file}:{line}: {what}")]
    Script { file: String, line: usize, what: String },
}

pub fn find(name: &str) -> Result<Report, ReportError> {
    let name = name.strip_suffix(".sql").unwrap_or(name);
    REPORTS.iter().copied().find(|r| r.name == name).ok_or_else(|| ReportError::Unknown {
        name: name.to_owned(),
        known: REPORTS.iter().map(|r| r.name).collect::<Vec<_>>().join(", "),
    })
}

/// `NAME=VALUE`, as `psql -v` takes it.
pub fn parse_param(s: &str) -> Result<(String, String), ReportError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(ReportError::BadParam(s.to_owned())),
    }
}

/// One statement to run: SQL with `$1..$n`, the values bound to them, and whether it returns rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub binds: Vec<String>,
    pub returns_rows: bool,
}

impl Report {
    /// What the report answers: the first line of its leading comment.
    pub fn description(&self) -> &'static str {
        self.source.lines().next().and_then(|l| l.strip_prefix("--")).map_or("", str::trim)
    }

    /// The statements to run with `params` (as `psql -v NAME=VALUE` would set them).
    pub fn prepare(&self, params: &[(String, String)]) -> Result<Vec<Statement>, ReportError> {
        let mut script = Script {
            vars: params.iter().cloned().collect(),
            referenced: BTreeSet::new(),
            conditions: Vec::new(),
            statements: Vec::new(),
            current: Pending::default(),
        };
        let file = format!("{}.sql", self.name);
        script.run(&file, self.source, 0)?;
        if !script.current.sql.trim().is_empty() {
            script.finish_statement();
        }
        if !script.conditions.is_empty() {
            return Err(ReportError::Script {
                file,
                line: self.source.lines().count(),
                what: "\\if without \\endif".into(),
            });
        }
        for (name, _) in params {
            if !script.referenced.contains(name) {
                return Err(ReportError::UnknownParam {
                    report: self.name.to_owned(),
                    param: name.clone(),
                    known: script.referenced.iter().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(script.statements)
    }

    /// The parameters the report reads, with their defaults.
    pub fn parameters(&self) -> Vec<(String, String)> {
        let mut script = Script {
            vars: BTreeMap::new(),
            referenced: BTreeSet::new(),
            conditions: Vec::new(),
            statements: Vec::new(),
            current: Pending::default(),
        };
        if script.run(self.name, self.source, 0).is_err() {
            return Vec::new();
        }
        script.referenced.iter().map(|n| (n.clone(), script.vars.get(n).cloned().unwrap_or_default())).collect()
    }
}

#[derive(Debug, Default)]
struct Pending {
    sql: String,
    /// Variable names in `$n` order.
    binds: Vec<String>,
    values: Vec<String>,
}

struct Script {
    vars: BTreeMap<String, String>,
    /// Every variable the script's SQL reads (`:'name'`): the parameters it takes.
    referenced: BTreeSet<String>,
    /// One entry per open `\if`: (this branch runs, some branch already ran).
    conditions: Vec<(bool, bool)>,
    statements: Vec<Statement>,
    current: Pending,
}

impl Script {
    fn active(&self) -> bool {
        self.conditions.iter().all(|(runs, _)| *runs)
    }

    fn emit(&mut self, s: &str) {
        if self.active() {
            self.current.sql.push_str(s);
        }
    }

    fn finish_statement(&mut self) {
        let Pending { sql, values, .. } = std::mem::take(&mut self.current);
        let sql = sql.trim().to_owned();
        if sql.is_empty() {
            return;
        }
        let first = sql.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("").to_ascii_uppercase();
        let returns_rows = matches!(first.as_str(), "SELECT" | "WITH" | "VALUES" | "TABLE");
        self.statements.push(Statement { sql, binds: values, returns_rows });
    }

    fn run(&mut self, file: &str, text: &str, depth: usize) -> Result<(), ReportError> {
        let err = |i: usize, what: String| ReportError::Script {
            file: file.to_owned(),
            line: text[..i].matches('\n').count() + 1,
            what,
        };
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let rest = &text[i..];
            let c = bytes[i];
            if rest.starts_with("--") {
                let end = rest.find('\n').map_or(text.len(), |n| i + n);
                i = end; // comments are dropped: the newline after them is kept
            } else if rest.starts_with("/*") {
                let mut nesting = 0;
                let mut j = i;
                loop {
                    if j >= bytes.len() {
                        return Err(err(i, "unterminated /* comment".into()));
                    }
                    if text[j..].starts_with("/*") {
                        nesting += 1;
                        j += 2;
                    } else if text[j..].starts_with("*/") {
                        nesting -= 1;
                        j += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                self.emit(" ");
                i = j;
            } else if c == b'\'' || c == b'"' {
                // A literal or quoted identifier, copied as it is: no variables inside.
                let escapes = c == b'\''
                    && i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && (i < 2 || !(bytes[i - 2].is_ascii_alphanumeric() || bytes[i - 2] == b'_'));
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => return Err(err(i, "unterminated quote".into())),
                        Some(b'\\') if escapes => j += 2,
                        Some(&q) if q == c => {
                            if bytes.get(j + 1) == Some(&c) {
                                j += 2;
                            } else {
                                j += 1;
                                break;
                            }
                        }
                        Some(_) => j += 1,
                    }
                }
                self.emit(&text[i..j]);
                i = j;
            } else if c == b'$' && !(i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) {
                // A dollar quote ($$...$$ or $tag$...$tag$), copied as it is.
                let tag_len = rest[1..].find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'));
                match tag_len {
                    Some(n)
                        if rest.as_bytes()[1 + n] == b'$' && !rest[1..].starts_with(|ch: char| ch.is_ascii_digit()) =>
                    {
                        let tag = &rest[..n + 2];
                        let close =
                            rest[tag.len()..].find(tag).ok_or_else(|| err(i, format!("unterminated {tag} quote")))?;
                        let end = i + tag.len() + close + tag.len();
                        self.emit(&text[i..end]);
                        i = end;
                    }
                    _ => {
                        self.emit("$");
                        i += 1;
                    }
                }
            } else if c == b':' && rest.starts_with("::") {
                self.emit("::");
                i += 2;
            } else if c == b':' && rest.starts_with(":'") {
                let end = rest[2..].find('\'').ok_or_else(|| err(i, "unterminated :'variable'".into()))?;
                let name = &rest[2..2 + end];
                if !is_name(name) {
                    return Err(err(i, format!(":'{name}' is not a variable name")));
                }
                self.referenced.insert(name.to_owned());
                if self.active() {
                    let value = self
                        .vars
                        .get(name)
                        .cloned()
                        .ok_or_else(|| err(i, format!("variable `{name}` is used but never set")))?;
                    let n = match self.current.binds.iter().position(|b| b == name) {
                        Some(k) => k + 1,
                        None => {
                            self.current.binds.push(name.to_owned());
                            self.current.values.push(value);
                            self.current.binds.len()
                        }
                    };
                    self.emit(&format!("${n}"));
                }
                i += 2 + end + 1;
            } else if c == b':'
                && (rest.starts_with(":\"") || rest[1..].starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_'))
            {
                let name: String =
                    rest[1..].chars().take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_').collect();
                if rest.starts_with(":\"") || self.vars.contains_key(&name) {
                    // psql would splice these in as SQL text: not done here, on purpose.
                    return Err(err(
                        i,
                        format!(
                            "only :'name' variables are supported (found {})",
                            &rest[..rest.len().min(name.len() + 2)]
                        ),
                    ));
                }
                self.emit(":");
                i += 1;
            } else if c == b'\\' {
                let end = rest.find('\n').map_or(text.len(), |n| i + n);
                self.meta(&text[i..end], depth).map_err(|what| err(i, what))?;
                i = end;
            } else if c == b';' {
                if self.active() {
                    self.finish_statement();
                }
                i += 1;
            } else {
                let ch = rest.chars().next().expect("not at the end");
                let mut buf = [0; 4];
                self.emit(ch.encode_utf8(&mut buf));
                i += ch.len_utf8();
            }
        }
        Ok(())
    }

    /// One line of meta-commands, e.g. `\if :{?since} \else \set since '-infinity' \endif`.
    fn meta(&mut self, line: &str, depth: usize) -> Result<(), String> {
        let mut commands: Vec<(String, Vec<String>)> = Vec::new();
        for (word, quoted) in meta_words(line)? {
            match word.strip_prefix('\\') {
                Some(name) if !quoted => commands.push((name.to_owned(), Vec::new())),
                _ => commands.last_mut().ok_or("a meta-command line starts with a backslash")?.1.push(word),
            }
        }
        for (name, args) in commands {
            match name.as_str() {
                "if" => {
                    let [expr] = args.as_slice() else { return Err("\\if takes one condition".into()) };
                    let parent = self.active();
                    let holds = self.condition(expr)?;
                    self.conditions.push((parent && holds, holds));
                }
                "else" => {
                    let parent =
                        self.conditions.len() < 2 || self.conditions[..self.conditions.len() - 1].iter().all(|c| c.0);
                    let top = self.conditions.last_mut().ok_or("\\else without \\if")?;
                    *top = (parent && !top.1, true);
                }
                "endif" => {
                    self.conditions.pop().ok_or("\\endif without \\if")?;
                }
                _ if !self.active() => {}
                "set" => {
                    let (var, value) = args.split_first().ok_or("\\set without a name")?;
                    if !is_name(var) {
                        return Err(format!("\\set {var}: not a variable name"));
                    }
                    self.vars.insert(var.clone(), value.concat());
                }
                "ir" | "include_relative" | "i" | "include" => {
                    let [file] = args.as_slice() else { return Err(format!("\\{name} takes one file")) };
                    let (_, text) = INCLUDES
                        .iter()
                        .find(|(n, _)| n == file)
                        .ok_or_else(|| format!("\\{name} {file}: only {} can be included", INCLUDES[0].0))?;
                    if depth > 4 {
                        return Err("includes nest too deep".into());
                    }
                    self.run(file, text, depth + 1).map_err(|e| e.to_string())?;
                }
                other => return Err(format!("the psql meta-command \\{other} is not supported in reports")),
            }
        }
        Ok(())
    }

    fn condition(&mut self, expr: &str) -> Result<bool, String> {
        if let Some(name) = expr.strip_prefix(":{?").and_then(|e| e.strip_suffix('}')) {
            return Ok(self.vars.contains_key(name));
        }
        match expr.to_ascii_lowercase().as_str() {
            "true" | "on" | "1" => Ok(true),
            "false" | "off" | "0" => Ok(false),
            _ => Err(format!("\\if {expr}: only :{{?name}}, true and false are supported")),
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits a meta-command line into words; '...' is one word, with '' for a quote.
fn meta_words(line: &str) -> Result<Vec<(String, bool)>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        let quoted = c == '\'';
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quote in a meta-command".into()),
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        word.push('\'');
                    }
                    Some('\'') => break,
                    Some(ch) => word.push(ch),
                }
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || (ch == '\\' && !word.is_empty()) {
                    break;
                }
                word.push(ch);
                chars.next();
            }
        }
        words.push((word, quoted));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn every_file_in_sql_is_embedded_and_prepares() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok()?.strip_suffix(".sql").map(str::to_owned))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = REPORTS.iter().map(|r| r.name).collect();
        assert_eq!(on_disk, embedded);
        for r in REPORTS {
            let statements = r.prepare(&[]).unwrap_or_else(|e| panic!("{}: {e}", r.name));
            assert!(statements.iter().any(|s| s.returns_rows), "{} prints something", r.name);
            assert!(!r.description().is_empty(), "{} says what it answers", r.name);
            for s in &statements {
                assert!(!s.sql.contains(":'") && !s.sql.contains('\\'), "{}: {}", r.name, s.sql);
            }
        }
    }

    #[test]
    fn variables_become_binds_with_the_defaults_of_params_psql() {
        let r = find("agent_usage").unwrap();
        let statements = r.prepare(&[p("tenant", "acme")]).unwrap();
        let select = statements.iter().find(|s| s.returns_rows).unwrap();
        assert!(select.sql.contains("reporting.ticket_counts($1::timestamptz, $2::timestamptz)"), "{}", select.sql);
        assert!(select.sql.contains("($3 = '' OR t.tenant_id = $3)"), "{}", select.sql);
        assert_eq!(select.binds, ["-infinity", "infinity", "acme"]);
        let set: Vec<&str> = statements.iter().filter(|s| !s.returns_rows).map(|s| s.sql.as_str()).collect();
        assert_eq!(set, ["SET TIME ZONE 'UTC'", "SET jit = off", "SET work_mem = '64MB'"]);
    }

    #[test]
    fn a_value_is_never_sql() {
        let evil = "x'; DROP TABLE deliveries; --";
        let r = find("failed_commands").unwrap();
        for s in r.prepare(&[p("tenant", evil)]).unwrap() {
            assert!(!s.sql.contains("DROP"), "{}", s.sql);
            if s.returns_rows {
                assert!(s.binds.contains(&evil.to_owned()));
            }
        }
    }

    #[test]
    fn unknown_reports_and_parameters_are_named() {
        assert!(matches!(find("nope"), Err(ReportError::Unknown { .. })));
        assert_eq!(find("top_tools.sql").unwrap().name, "top_tools");
        let e = find("agent_usage").unwrap().prepare(&[p("snce", "2025-01-01")]).unwrap_err();
        assert!(e.to_string().contains("snce") && e.to_string().contains("since"), "{e}");
        assert_eq!(parse_param("since=a=b").unwrap(), p("since", "a=b"));
        assert!(parse_param("since").is_err());
    }

    #[test]
    fn the_interpreter_keeps_quotes_and_refuses_what_it_cannot_do_safely() {
        let r = Report { name: "t", source: "-- t\nSELECT ':''x''', $$ :'y' ; $$, E'\\' ;' AS c WHERE a = :'v';" };
        let s = r.prepare(&[p("v", "1")]).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].sql, "SELECT ':''x''', $$ :'y' ; $$, E'\\' ;' AS c WHERE a = $1");
        let raw = Report { name: "t", source: "\\set n 5\nSELECT :n;" };
        assert!(raw.prepare(&[]).is_err(), "an unquoted :n would be spliced into the SQL");
        let meta = Report { name: "t", source: "\\! rm -rf /\nSELECT 1;" };
        assert!(meta.prepare(&[]).is_err());
        let unset = Report { name: "t", source: "SELECT :'nope';" };
        assert!(unset.prepare(&[]).unwrap_err().to_string().contains("t.sql:1"));
    }

    #[test]
    fn parameters_are_listed_with_their_defaults() {
        let params = find("agent_usage").unwrap().parameters();
        assert!(params.contains(&p("since", "-infinity")), "{params:?}");
        assert!(params.contains(&p("tenant", "")), "{params:?}");
        assert!(!params.iter().any(|(k, _)| k == "limit"), "agent_usage prints no list: {params:?}");
        let e = find("agent_usage").unwrap().prepare(&[p("limit", "5")]).unwrap_err();
        assert!(matches!(e, ReportError::UnknownParam { .. }), "a parameter the report ignores is refused: {e}");
    }
}
