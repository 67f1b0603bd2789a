//! `POST /webhooks`: authenticate, read the body within its limit, check it, key it, normalize
//! it, and answer only once the writer has committed it.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use time::OffsetDateTime;

use super::error::ApiError;
use super::AppState;
use crate::domain::ledger::sha256;
use crate::domain::ticket::truncate_to_micros;
use crate::domain::{normalize, DeliveryKey, Envelope};
use crate::store::NewDelivery;

/// Headers kept with each delivery: who sent it and under which identity.
const IDENTITY_HEADERS: [&str; 9] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "idempotency-key",
    "content-type",
    "user-agent",
];

#[derive(Debug, Serialize)]
pub struct Receipt {
    pub delivery_id: i64,
    pub seq: i64,
    pub duplicate: bool,
}

pub async fn receive(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let received_at = truncate_to_micros(OffsetDateTime::now_utc());
    app.webhook_auth.check_headers(&headers)?;
    let body = read_limited(&headers, body, app.max_body_bytes).await?;
    app.webhook_auth.check_body(&headers, &body, received_at.unix_timestamp())?;

    let envelope = Envelope::parse(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let body_sha256 = sha256(&body);
    let get = |name: &str| headers.get(name).map(|v| v.as_bytes());
    let key = DeliveryKey::choose(get("webhook-id"), get("svix-id"), get("idempotency-key"), &body_sha256)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let normalized = normalize(&envelope);
    drop(envelope);

    let outcome = app
        .writer
        .submit(NewDelivery {
            key,
            received_at,
            body: body.to_vec(),
            body_sha256,
            headers: identity_headers(&headers),
            normalized,
        })
        .await?;
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::ACCEPTED };
    let receipt = Receipt { delivery_id: outcome.seq, seq: outcome.seq, duplicate: outcome.duplicate };
    Ok((status, Json(receipt)).into_response())
}

/// Reads at most `limit` bytes: a declared length over the limit is refused before reading,
/// and a chunked body is cut off at the first byte past it, without buffering the rest.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge(limit)),
        Err(e) => Err(ApiError::BadRequest(format!("could not read the body: {e}"))),
    }
}

fn identity_headers(headers: &HeaderMap) -> serde_json::Value {
    let map = IDENTITY_HEADERS
        .iter()
        .filter_map(|name| {
            let v = headers.get(*name)?;
            let mut s = String::from_utf8_lossy(v.as_bytes()).into_owned();
            let mut end = s.len().min(1024);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            Some((name.to_string(), serde_json::Value::String(s)))
        })
        .collect();
    serde_json::Value::Object(map)
}
