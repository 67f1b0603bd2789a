//! Text columns: PostgreSQL `text` cannot hold U+0000, so strings are stored with a reversible escape.
//!
//! The escape character is U+2400 (SYMBOL FOR NULL, `␀`): U+0000 is stored as `␀0`, and a `␀`
//! that was in the string is stored as `␀␀`. Strings with neither character, nearly all, are
//! stored unchanged. Decoding reverses it exactly.

use std::borrow::Cow;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

const ESC: char = '\u{2400}';

/// U+2400 in UTF-8.
const ESC_UTF8: &[u8] = "\u{2400}".as_bytes();

/// Whether `s` needs the escape: it holds U+0000 or U+2400. Byte searches (memchr's, vectorized),
/// not a walk over the chars: every text value the writer binds passes here.
fn needs_escape(s: &str) -> bool {
    let b = s.as_bytes();
    memchr::memchr(0, b).is_some() || memchr::memmem::find(b, ESC_UTF8).is_some()
}

pub fn escape(s: &str) -> Cow<'_, str> {
    if !needs_escape(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\0' => {
                out.push(ESC);
                out.push('0');
            }
            ESC => {
                out.push(ESC);
                out.push(ESC);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains(ESC) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != ESC {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some(ESC) => out.push(ESC),
            // Not written by `escape`: keep what is there rather than lose it.
            Some(other) => {
                out.push(ESC);
                out.push(other);
            }
            None => out.push(ESC),
        }
    }
    Cow::Owned(out)
}

/// A string bound to or read from a `text` column through the escape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct PgText(pub String);

impl From<String> for PgText {
    fn from(s: String) -> Self {
        PgText(s)
    }
}

/// Text read back is the string as it was before the escape: the one way out of a column.
impl From<PgText> for String {
    fn from(t: PgText) -> Self {
        t.0
    }
}

impl From<&str> for PgText {
    fn from(s: &str) -> Self {
        PgText(s.to_owned())
    }
}

impl Type<Postgres> for PgText {
    fn type_info() -> PgTypeInfo {
        <String as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for PgText {
    fn array_type_info() -> PgTypeInfo {
        <String as PgHasArrayType>::array_type_info()
    }
}

/// Encoded as its borrowed form: one way into a column, through the escape.
impl Encode<'_, Postgres> for PgText {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        PgStr(&self.0).encode_by_ref(buf)
    }
}

/// A string bound to a `text` column through the escape, borrowed: the writer binds the
/// deliveries' own strings without copying each into a `String` first.
#[derive(Debug, Clone, Copy)]
pub struct PgStr<'a>(pub &'a str);

impl Type<Postgres> for PgStr<'_> {
    fn type_info() -> PgTypeInfo {
        <String as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for PgStr<'_> {
    fn array_type_info() -> PgTypeInfo {
        <String as PgHasArrayType>::array_type_info()
    }
}

impl Encode<'_, Postgres> for PgStr<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let escaped = escape(self.0);
        <&str as Encode<Postgres>>::encode(escaped.as_ref(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for PgText {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as Decode<Postgres>>::decode(value)?;
        Ok(PgText(unescape(s).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\0b"), "a␀0b");
        assert_eq!(escape("␀"), "␀␀");
        assert_eq!(unescape("a␀0b␀␀"), "a\0b␀");
        assert!(!escape("\0\0␀0").contains('\0'));
        // The search is byte-wise: other characters sharing U+2400's first byte (U+2401, U+2000)
        // or its last (U+0400) are left alone.
        assert_eq!(escape("\u{2401}\u{2000}\u{0400}"), "\u{2401}\u{2000}\u{0400}");
        assert!(matches!(escape("\u{2401}\u{2000}"), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn round_trips(s in "(\\PC|\u{0}|\u{2400}|0)*") {
            let e = escape(&s);
            prop_assert!(!e.contains('\0'));
            prop_assert_eq!(unescape(&e).into_owned(), s.clone());
        }

        /// The byte search agrees with the definition, over text near the escape's bytes.
        #[test]
        fn needs_escape_is_contains(s in "(\\PC|\u{0}|\u{2400}|\u{2401}|\u{2000}|\u{0400}|\u{10400})*") {
            prop_assert_eq!(needs_escape(&s), s.contains(['\0', ESC]));
        }
    }
}
