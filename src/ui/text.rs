//! Sender-controlled text made safe to look at: escaping is the template's job; this makes what
//! would be invisible or misleading visible (direction overrides, control characters, ANSI
//! escapes), folds long output, and indents JSON without reading its numbers.

use maud::{html, Markup};

/// Characters shown as a visible mark instead of being obeyed: C0 controls but tab and newline,
/// DEL, C1 controls, and the Unicode direction controls (U+202E makes `exe.txt` read `txt.exe`).
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The text with every hidden character written as a visible mark: control characters as
/// their Unicode control pictures (ESC as `␛`, so an ANSI colour code reads `␛[31m`), the
/// others as `⟨U+202E⟩`.
pub fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(hidden) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            c if !hidden(c) => out.push(c),
            '\u{7F}' => out.push('\u{2421}'),
            c if (c as u32) < 0x20 => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{FFFD}')),
            c => out.push_str(&format!("\u{27E8}U+{:04X}\u{27E9}", c as u32)),
        }
    }
    out.into()
}

/// Lines shown before a long text is folded.
const PREVIEW_LINES: usize = 12;
/// Characters shown before a long text is folded.
const PREVIEW_CHARS: usize = 1_200;
/// Most characters put in the page; the rest is in the delivery's raw bytes.
const MAX_CHARS: usize = 64 * 1024;

/// Output as preformatted text: short output as it is, long output as a preview with the rest
/// one click away in a `<details>`; beyond MAX_CHARS a link to the raw bytes of delivery `seq`.
/// The preview and the text shown are slices of `s` (a page holds a thousand of these).
pub fn output(s: &str, seq: i64) -> Markup {
    // One pass: the lines, the characters, and where the preview and the shown text end.
    let (mut lines, mut chars) = (0usize, 0usize);
    let mut preview_end = s.len();
    let mut shown_end = s.len();
    let mut last = '\n';
    for (i, c) in s.char_indices() {
        if chars == PREVIEW_CHARS && preview_end == s.len() {
            preview_end = i;
        }
        if chars == MAX_CHARS {
            shown_end = i;
        }
        if c == '\n' {
            lines += 1;
            // The preview is the first PREVIEW_LINES lines, without the last one's line break.
            if lines == PREVIEW_LINES {
                preview_end = preview_end.min(i);
            }
        }
        chars += 1;
        last = c;
    }
    // As str::lines counts them: a last line without a line break is a line too.
    if last != '\n' {
        lines += 1;
    }
    if lines <= PREVIEW_LINES && chars <= PREVIEW_CHARS {
        return html! { pre.out { (visible(s)) } };
    }
    let preview = s[..preview_end].strip_suffix('\r').unwrap_or(&s[..preview_end]);
    let cut = shown_end < s.len();
    html! {
        pre.out.preview { (visible(preview)) }
        details.fold {
            summary { "Show all " (lines) " lines (" (chars) " characters)" }
            pre.out { (visible(&s[..shown_end])) }
            @if cut {
                p.hint { "The first " (MAX_CHARS) " characters are shown. " a href={"/api/v1/deliveries/" (seq) "/raw"} { "The whole delivery, as received" } "." }
            }
        }
    }
}

/// JSON text indented by two spaces per level, its tokens (numbers beyond 64 bits, escapes,
/// duplicate keys) left exactly as they are. The input is JSON the service checked on receipt.
pub fn pretty_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + raw.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|n| matches!((c, n), ('{', '}') | ('[', ']'))) {
                    out.push(chars.next().unwrap_or(' '));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_become_visible() {
        assert_eq!(visible("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(visible("\u{1b}[31mred"), "\u{241b}[31mred");
        assert_eq!(visible("a\u{202E}txt.exe"), "a\u{27E8}U+202E\u{27E9}txt.exe");
        assert_eq!(visible("\r\0"), "\u{240d}\u{2400}");
    }

    #[test]
    fn json_is_indented_and_otherwise_untouched() {
        let raw = r#"{"a": [1, 18446744073709551616123, {}], "b": "x, {y}: \"z\"", "c":[] }"#;
        let pretty = pretty_json(raw);
        assert_eq!(
            pretty,
            "{\n  \"a\": [\n    1,\n    18446744073709551616123,\n    {}\n  ],\n  \"b\": \"x, {y}: \\\"z\\\"\",\n  \"c\": []\n}"
        );
        let a: serde_json::Value = serde_json::from_str(raw).unwrap();
        let b: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(a, b);
    }

    /// The fold as it was written before it sliced instead of copying (without line breaks
    /// `\r\n`, whose `\r` the old preview dropped and the full text always showed).
    fn output_by_copies(s: &str, raw_link: &str) -> String {
        let lines = s.lines().count();
        let chars = s.chars().count();
        if lines <= PREVIEW_LINES && chars <= PREVIEW_CHARS {
            return html! { pre.out { (visible(s)) } }.into_string();
        }
        let mut preview: String = s.lines().take(PREVIEW_LINES).collect::<Vec<_>>().join("\n");
        if preview.chars().count() > PREVIEW_CHARS {
            preview = preview.chars().take(PREVIEW_CHARS).collect();
        }
        let (shown, cut) = if chars > MAX_CHARS {
            (s.chars().take(MAX_CHARS).collect::<String>(), true)
        } else {
            (s.to_owned(), false)
        };
        html! {
            pre.out.preview { (visible(&preview)) }
            details.fold {
                summary { "Show all " (lines) " lines (" (chars) " characters)" }
                pre.out { (visible(&shown)) }
                @if cut {
                    p.hint { "The first " (MAX_CHARS) " characters are shown. " a href=(raw_link) { "The whole delivery, as received" } "." }
                }
            }
        }
        .into_string()
    }

    #[test]
    fn output_is_folded_as_before() {
        let mut cases = vec![String::new(), "\n".into(), "one line".into(), "é\n".repeat(12), "é\n".repeat(13)];
        for n in [11, 12, 13, 40] {
            cases.push("line\n".repeat(n));
            cases.push("line\n".repeat(n).trim_end().to_owned());
            cases.push(format!("{}\n\n", "x".repeat(n * 100)));
        }
        cases.push("ü".repeat(PREVIEW_CHARS));
        cases.push("ü".repeat(PREVIEW_CHARS + 1));
        cases.push(format!("{}\n{}", "a".repeat(PREVIEW_CHARS - 1), "b\n".repeat(20)));
        cases.push("\u{1b}[31m€\n".repeat(MAX_CHARS / 6));
        cases.push("€".repeat(MAX_CHARS));
        cases.push("€".repeat(MAX_CHARS + 1));
        for s in &cases {
            assert_eq!(
                output(s, 7).into_string(),
                output_by_copies(s, "/api/v1/deliveries/7/raw"),
                "{:?}",
                &s[..s.len().min(40)]
            );
        }
    }

    #[test]
    fn long_output_is_folded_and_capped() {
        let long = "line\n".repeat(100_000);
        let html = output(&long, 7).into_string();
        assert!(html.contains("<details"));
        assert!(html.contains("href=\"/api/v1/deliveries/7/raw\""));
        assert!(html.len() < 100_000);
        assert!(!output("short", 7).into_string().contains("<details"));
    }
}
