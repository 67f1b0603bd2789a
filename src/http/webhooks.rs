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

use super::error::{ApiError, Problem};
use super::{forward, AppState};
use crate::domain::timestamp::truncate_to_micros;
use crate::ingest::{identity_headers, prepare};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    pub delivery_id: i64,
    pub seq: i64,
    pub duplicate: bool,
}

/// Receives one webhook delivery; answers once it is committed.
#[utoipa::path(post, path = "/webhooks", tag = "ingest",
    request_body(content = Object, content_type = "application/json", description = "a ServiceDesk delivery: {Action, Data: {RequestBody, ResponseBody, StatusCode}}"),
    params(("webhook-id" = Option<String>, Header, pattern = "^[!-~]{1,256}$", description = "the delivery's key (svix-id is an alias)"),
           ("webhook-timestamp" = Option<String>, Header, pattern = "^(0|[1-9][0-9]{0,11})$", description = "Unix seconds, digits only (signed deliveries)"),
           ("webhook-signature" = Option<String>, Header, description = "v1,<base64> entries (signed deliveries)"),
           ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,256}$", description = "the key when there is no webhook-id")),
    responses((status = 202, body = Receipt, description = "new delivery, committed"),
              (status = 200, body = Receipt, description = "already stored"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 413, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn receive(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let start = std::time::Instant::now();
    // Another instance writes now: the delivery goes there, unless it was passed on already.
    let passing = app.forwarder.clone().filter(|_| !headers.contains_key(forward::FORWARDED));
    let Some((forwarder, target)) = passing.and_then(|f| f.target().map(|t| (f, t))) else {
        return answer(start, store(app, headers, body).await);
    };
    let bytes = match read_limited(&headers, body, app.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(e) => return answer(start, Err(e)),
    };
    match forwarder.forward(&target, &headers, bytes.clone()).await {
        Ok(response) => {
            metrics::counter!("ticket_audit_deliveries_forwarded_total", "outcome" => "answered").increment(1);
            Ok(response)
        }
        Err(e) => {
            tracing::warn!(error = %e, "writing the delivery here instead of passing it on");
            metrics::counter!("ticket_audit_deliveries_forwarded_total", "outcome" => "written_here").increment(1);
            answer(start, store(app, headers, Body::from(bytes)).await)
        }
    }
}

fn answer(start: std::time::Instant, result: Result<(StatusCode, Receipt), ApiError>) -> Result<Response, ApiError> {
    let outcome = match &result {
        Ok((_, r)) if r.duplicate => "duplicate",
        Ok(_) => "stored",
        Err(_) => "rejected",
    };
    let reason = match &result {
        Ok(_) => "",
        Err(ApiError::Unauthorized(_)) => "unauthorized",
        Err(ApiError::PayloadTooLarge(_)) => "too_large",
        Err(ApiError::TooManyRows(_)) => "too_many_rows",
        Err(ApiError::BadRequest(_)) => "invalid",
        Err(ApiError::Unavailable(..)) => "unavailable",
        Err(_) => "error",
    };
    metrics::counter!("ticket_audit_deliveries_total", "outcome" => outcome, "reason" => reason).increment(1);
    metrics::histogram!("ticket_audit_ingest_seconds", "outcome" => outcome).record(start.elapsed().as_secs_f64());
    let (status, receipt) = result?;
    Ok((status, Json(receipt)).into_response())
}

/// Headers whose value authenticates a delivery or keys it.
/// The identity headers kept with a delivery, but for `content-type` and `user-agent`.
const SINGLE_VALUED: &[&str] = crate::ingest::IDENTITY_HEADERS.split_at(7).0;

/// The signature check reads the first value of a header and the stored identity the last, so a
/// captured delivery replayed with a second `webhook-id` would pass the check under a new key.
/// Each of these headers must therefore have one value: a repeat of the same value is that
/// value, and two different values are refused.
fn one_value_each(headers: &mut HeaderMap) -> Result<(), ApiError> {
    for &name in SINGLE_VALUED {
        let mut values = headers.get_all(name).iter();
        let (Some(first), Some(_)) = (values.next(), values.next()) else { continue };
        if headers.get_all(name).iter().any(|v| v != first) {
            return Err(ApiError::BadRequest(format!("two different {name} headers: a delivery has one")));
        }
        let first = first.clone();
        headers.insert(name, first);
    }
    Ok(())
}

async fn store(app: AppState, mut headers: HeaderMap, body: Body) -> Result<(StatusCode, Receipt), ApiError> {
    let received_at = truncate_to_micros(OffsetDateTime::now_utc());
    one_value_each(&mut headers)?;
    super::auth::check_timestamp_form(&app.webhook_auth, &headers)?;
    app.webhook_auth.check_headers(&headers)?;
    let body = read_limited(&headers, body, app.max_body_bytes).await?;
    app.webhook_auth.check_body(&headers, &body, received_at.unix_timestamp())?;

    let identity = identity_headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let delivery = prepare(body.to_vec(), identity, received_at, app.max_delivery_rows)?;
    let outcome = app.writer.submit(delivery).await?;
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Receipt { delivery_id: outcome.seq, seq: outcome.seq, duplicate: outcome.duplicate }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn identity_headers_have_one_value() {
        for &name in SINGLE_VALUED {
            let mut h = HeaderMap::new();
            h.append(name, HeaderValue::from_static("a"));
            h.append(name, HeaderValue::from_static("a"));
            h.append("x-other", HeaderValue::from_static("1"));
            h.append("x-other", HeaderValue::from_static("2"));
            one_value_each(&mut h).unwrap();
            assert_eq!(h.get_all(name).iter().collect::<Vec<_>>(), vec!["a"], "{name}: repeats are one value");
            assert_eq!(h.get_all("x-other").iter().count(), 2, "other headers are left alone");

            h.append(name, HeaderValue::from_static("b"));
            assert!(matches!(one_value_each(&mut h), Err(ApiError::BadRequest(_))), "{name}: two values");
        }
    }
}
