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

pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['\0', ESC]) {
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

impl Encode<'_, Postgres> for PgText {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let escaped = escape(&self.0);
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
    }

    proptest! {
        #[test]
        fn round_trips(s in "(\\PC|\u{0}|\u{2400}|0)*") {
            let e = escape(&s);
            prop_assert!(!e.contains('\0'));
            prop_assert_eq!(unescape(&e).into_owned(), s.clone());
        }
    }
}
