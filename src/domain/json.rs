//! Reading JSON that is valid but that serde_json refuses: lone UTF-16 surrogate escapes, and
//! numbers beyond what a 64-bit float holds.
//!
//! Both are valid JSON (RFC 8259 allows any `\uXXXX` and any number of digits) and real senders
//! send them: JavaScript's `JSON.stringify` writes a lone surrogate when a string is cut inside a
//! pair, and `1e400` is a number like any other. The raw bytes are always stored as received;
//! this module only decides what the normalized rows say:
//! - a lone surrogate escape (a high one not followed by a low one, or a low one alone) reads as
//!   U+FFFD REPLACEMENT CHARACTER, which is what a UTF-8 decoder makes of it;
//! - a number whose value is beyond ±1.8e308 reads as a string holding its text exactly as sent.
//!
//! The rewrite runs only when the strict parse fails, so ordinary bodies pay nothing for it.

use serde_json::Value;

/// What was read leniently, for the delivery's recorded problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leniency {
    LoneSurrogate,
    HugeNumber,
}

impl Leniency {
    pub fn describe(self) -> &'static str {
        match self {
            Leniency::LoneSurrogate => "lone UTF-16 surrogate escapes read as U+FFFD",
            Leniency::HugeNumber => "numbers beyond 64-bit floating point read as their text",
        }
    }
}

/// Parses `body` strictly, or, when that fails, a copy with the rewrites above. The error is the
/// strict parse's when the copy does not parse either (the body is not JSON).
pub fn parse(body: &[u8]) -> Result<(Value, Vec<Leniency>), serde_json::Error> {
    let strict = from_slice(body);
    let err = match strict {
        Ok(v) => return Ok((v, Vec::new())),
        Err(e) => e,
    };
    let (copy, found) = rewrite(body);
    if found.is_empty() {
        return Err(err);
    }
    from_slice(&copy).map(|v| (v, found)).map_err(|_| err)
}

fn from_slice(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    // The caller bounds the depth (delivery::MAX_DEPTH) before parsing; serde_json's own limit
    // (127) must not refuse what that allows.
    de.disable_recursion_limit();
    let v: Value = serde::Deserialize::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// The body with lone surrogate escapes replaced by `\uFFFD` and out-of-range numbers quoted.
/// Bytes that are not JSON are copied as they are: the parse that follows refuses them.
pub fn rewrite(body: &[u8]) -> (Vec<u8>, Vec<Leniency>) {
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut found = Vec::new();
    let note = |l: Leniency, found: &mut Vec<Leniency>| {
        if !found.contains(&l) {
            found.push(l);
        }
    };
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'"' {
            // A string: copy it, fixing surrogate escapes.
            out.push(b);
            i += 1;
            while i < body.len() {
                let c = body[i];
                if c == b'"' {
                    out.push(c);
                    i += 1;
                    break;
                }
                if c != b'\\' {
                    out.push(c);
                    i += 1;
                    continue;
                }
                match (body.get(i + 1), hex4(body, i + 2)) {
                    (Some(b'u'), Some(u)) if (0xD800..0xDC00).contains(&u) => {
                        let low = (body.get(i + 6) == Some(&b'\\') && body.get(i + 7) == Some(&b'u'))
                            .then(|| hex4(body, i + 8))
                            .flatten()
                            .filter(|l| (0xDC00..0xE000).contains(l));
                        if low.is_some() {
                            out.extend_from_slice(&body[i..i + 12]);
                            i += 12;
                        } else {
                            out.extend_from_slice(b"\\uFFFD");
                            note(Leniency::LoneSurrogate, &mut found);
                            i += 6;
                        }
                    }
                    (Some(b'u'), Some(u)) if (0xDC00..0xE000).contains(&u) => {
                        out.extend_from_slice(b"\\uFFFD");
                        note(Leniency::LoneSurrogate, &mut found);
                        i += 6;
                    }
                    (Some(&e), _) => {
                        out.push(c);
                        out.push(e);
                        i += 2;
                    }
                    (None, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let end = body[i..]
                .iter()
                .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .map_or(body.len(), |n| i + n);
            let token = &body[i..end];
            let huge = std::str::from_utf8(token)
                .ok()
                .filter(|t| is_json_number(t))
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(|f| f.is_infinite());
            if huge {
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
                note(Leniency::HugeNumber, &mut found);
            } else {
                out.extend_from_slice(token);
            }
            i = end;
            continue;
        }
        out.push(b);
        i += 1;
    }
    (out, found)
}

fn hex4(body: &[u8], at: usize) -> Option<u32> {
    let digits = body.get(at..at + 4)?;
    let s = std::str::from_utf8(digits).ok()?;
    if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// RFC 8259's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn lenient(s: &str) -> (Value, Vec<Leniency>) {
        parse(s.as_bytes()).expect("parses leniently")
    }

    #[test]
    fn lone_surrogates_read_as_replacement() {
        assert_eq!(lenient(r#"{"a":"output cut \ud83d"}"#).0, json!({"a": "output cut \u{FFFD}"}));
        assert_eq!(lenient(r#"{"a":"\udc00"}"#).0, json!({"a": "\u{FFFD}"}));
        assert_eq!(lenient(r#"{"a":"\ude00\ud83d"}"#).0, json!({"a": "\u{FFFD}\u{FFFD}"}), "a reversed pair");
        assert_eq!(lenient(r#"{"a":"\ud83d\ude00 \ud83d"}"#).0, json!({"a": "\u{1F600} \u{FFFD}"}));
        assert_eq!(
            lenient(r#"{"\ud800":"\\ud800"}"#).0,
            json!({"\u{FFFD}": "\\ud800"}),
            "an escaped backslash is no escape"
        );
        assert_eq!(lenient(r#"{"a":"\ud83d"}"#).1, vec![Leniency::LoneSurrogate]);
        assert!(lenient(r#"{"a":"\ud83d\ude00"}"#).1.is_empty(), "a pair parses strictly");
    }

    #[test]
    fn huge_numbers_read_as_their_text() {
        let big = "9".repeat(400);
        let (v, found) = lenient(&format!(r#"{{"a":1e400,"b":-1e400,"c":1E+999,"d":{big},"e":[1.5,0,1e-400]}}"#));
        assert_eq!(v, json!({"a": "1e400", "b": "-1e400", "c": "1E+999", "d": big, "e": [1.5, 0, 0.0]}));
        assert_eq!(found, vec![Leniency::HugeNumber]);
    }

    #[test]
    fn what_is_not_json_stays_refused() {
        for s in [r#"{"a":"\ud83d"#, r#"{"a":1e400"#, r#"{"a":"\ud83d"} x"#, "{\"a\":01e400}", "{\"a\":\"\\uZZZZ\"}"] {
            assert!(parse(s.as_bytes()).is_err(), "{s}");
        }
        assert!(parse(b"{\"a\":\"\xff\"}").is_err(), "not UTF-8");
        assert!(parse(b"{\"a\":\"\\ud83d\"}").is_ok());
    }

    proptest! {
        /// Any string of UTF-16 code units, escaped as JavaScript escapes them, is read, and reads
        /// as the units with each unpaired surrogate replaced.
        #[test]
        fn any_code_units(units in proptest::collection::vec(prop_oneof![0u16..0x80, 0xD800u16..0xE000, any::<u16>()], 0..24)) {
            let escaped: String = units.iter().map(|u| format!("\\u{u:04x}")).collect();
            let body = format!(r#"{{"k":"{escaped}"}}"#);
            let (v, _) = parse(body.as_bytes()).expect("lenient parse");
            let want: String = char::decode_utf16(units.iter().copied()).map(|r| r.unwrap_or('\u{FFFD}')).collect();
            prop_assert_eq!(v, json!({"k": want}));
        }

        /// Any number the grammar allows is read: as a number when a float holds it, else as its text.
        #[test]
        fn any_number(neg in any::<bool>(), int in "0|[1-9][0-9]{0,400}", frac in proptest::option::of("[0-9]{1,20}"), exp in proptest::option::of((prop_oneof![Just("e"), Just("E")], prop_oneof![Just(""), Just("+"), Just("-")], 0u32..2000))) {
            let mut t = format!("{}{int}", if neg { "-" } else { "" });
            if let Some(f) = frac { t.push('.'); t.push_str(&f); }
            if let Some((e, s, n)) = exp { t.push_str(&format!("{e}{s}{n}")); }
            let (v, _) = parse(format!(r#"{{"n":{t}}}"#).as_bytes()).expect("lenient parse");
            match &v["n"] {
                Value::String(s) => { prop_assert_eq!(s, &t); prop_assert!(t.parse::<f64>().unwrap().is_infinite()); }
                Value::Number(n) => prop_assert!(n.as_f64().is_some_and(f64::is_finite)),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        /// Arbitrary bytes never panic, and a body the strict parser accepts reads the same.
        #[test]
        fn arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let strict = from_slice(&b).ok();
            if let Ok((v, found)) = parse(&b) {
                if let Some(s) = strict { prop_assert_eq!(v, s); prop_assert!(found.is_empty()); }
            } else {
                prop_assert!(strict.is_none());
            }
        }
    }
}
