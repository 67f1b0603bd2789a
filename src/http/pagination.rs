//! Keyset pages: an opaque cursor holding the last key of the page before, and the limit rule.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
            Some(_) => Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}"))),
        }
    }

    pub fn after<K: DeserializeOwned>(&self) -> Result<Option<K>, ApiError> {
        self.cursor.as_deref().map(decode).transpose()
    }
}

/// A page of a list; pass `next_cursor` as `cursor` for the next one (null: this was the last).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says there is more.
    pub fn from_rows<R, K: Serialize>(
        mut rows: Vec<R>,
        limit: i64,
        key: impl Fn(&R) -> K,
        item: impl FnMut(R) -> T,
    ) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| encode(&key(r))) } else { None };
        Page { items: rows.into_iter().map(item).collect(), next_cursor }
    }
}

/// A time in a cursor, as whole microseconds since 1970 UTC. Decoding takes only times the record
/// can hold: a forged cursor with any other would fail the query (PostgreSQL refuses years before
/// 4713 BC), and is a 400 like any cursor the service did not give out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorTime(pub OffsetDateTime);

impl Serialize for CursorTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Within the record's range, microseconds since 1970 fit an i64 many times over.
        s.serialize_i64((self.0.unix_timestamp_nanos() / 1_000) as i64)
    }
}

impl<'de> Deserialize<'de> for CursorTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let micros = i64::deserialize(d)?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .ok()
            .filter(|t| super::in_range(*t))
            .map(CursorTime)
            .ok_or_else(|| serde::de::Error::custom("a cursor time outside the record's range"))
    }
}

fn encode<K: Serialize>(key: &K) -> String {
    B64.encode(serde_json::to_vec(key).expect("cursor keys serialize"))
}

fn decode<K: DeserializeOwned>(cursor: &str) -> Result<K, ApiError> {
    B64.decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::BadRequest("cursor is not one this service gave out".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let p = Page::<i64>::from_rows(vec![1i64, 2, 3], 2, |r| (*r, "x".to_string()), |r| r);
        assert_eq!(p.items, vec![1, 2]);
        let params = PageParams { limit: None, cursor: p.next_cursor };
        assert_eq!(params.after::<(i64, String)>().unwrap(), Some((2, "x".to_string())));
        let bad = PageParams { limit: Some(0), cursor: Some("!!".into()) };
        assert!(bad.limit().is_err());
        assert!(bad.after::<(i64, String)>().is_err());
        let last = Page::<i64>::from_rows(vec![1i64], 2, |r| *r, |r| r);
        assert_eq!(last.next_cursor, None);
    }

    fn cursor_of(v: &serde_json::Value) -> PageParams {
        PageParams { limit: None, cursor: Some(B64.encode(v.to_string())) }
    }

    proptest::proptest! {
        /// Any i64 a forged cursor may carry as a time is either a time the record holds (and
        /// encodes back to itself) or refused; never a value that reaches the query.
        #[test]
        fn cursor_times_are_in_range_or_refused(micros in proptest::prop_oneof![
            proptest::prelude::any::<i64>(),
            // Around the record's range (years 0001 to 9999), where the answer changes.
            -62_200_000_000_000_000i64..=253_500_000_000_000_000i64,
        ]) {
            let decoded = cursor_of(&serde_json::json!([micros, "n"])).after::<(CursorTime, String)>();
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok();
            match decoded {
                Ok(Some((CursorTime(at), _))) => {
                    proptest::prop_assert!(super::super::in_range(at));
                    proptest::prop_assert_eq!(Some(at), t);
                    proptest::prop_assert_eq!(serde_json::to_value(CursorTime(at)).unwrap(), serde_json::json!(micros));
                }
                Ok(None) => proptest::prop_assert!(false, "a cursor was given"),
                Err(_) => proptest::prop_assert!(!t.is_some_and(super::super::in_range)),
            }
        }
    }

    #[test]
    fn cursor_times_at_the_edges() {
        use time::macros::datetime;
        let micros = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000) as i64;
        let ok = |m: i64| cursor_of(&serde_json::json!([m, "n"])).after::<(CursorTime, String)>().is_ok();
        assert!(ok(micros(crate::domain::timestamp::MIN)));
        assert!(ok(micros(crate::domain::timestamp::MAX)));
        assert!(!ok(micros(crate::domain::timestamp::MIN) - 1));
        assert!(!ok(micros(crate::domain::timestamp::MAX) + 1));
        assert!(!ok(micros(datetime!(-9999-01-01 0:00 UTC))), "year -9999: PostgreSQL cannot hold it");
        assert!(!ok(i64::MIN) && !ok(i64::MAX));
    }
}
