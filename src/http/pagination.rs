//! Keyset pages: an opaque cursor holding the last key of the page before, and the limit rule.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
}
