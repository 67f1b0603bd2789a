//! Stored deliveries: metadata, the JSON body exactly as received, and the raw bytes.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::auth::Reader;
use super::error::{ApiError, ReadProblems};
use super::pagination::{Page, PageParams};
use super::{query_time, rfc3339, AppState, Path, Query};
use crate::store::read::{self, DeliveryFilter, DeliveryRecord, Scope};
use crate::store::redaction::{self, RedactError};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub delivery_id: i64,
    pub seq: i64,
    pub received_at: String,
    /// When the delivery was sequenced: never earlier than the one before it in seq order.
    pub recorded_at: String,
    pub key: String,
    pub key_source: String,
    pub action: Option<String>,
    pub status_code: Option<i32>,
    pub size: i32,
    pub body_sha256: String,
    pub hash: String,
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    pub normalize_error: Option<String>,
    /// The database refused its projection: it is stored, and shows as a bare event.
    pub unprojected: bool,
    pub ticket: Option<String>,
    pub tenant_id: Option<String>,
    /// Set when the delivery was redacted: its body is gone (`size` 0), `body_sha256`, `hash` and
    /// its leaf stay.
    pub redacted: Option<Redacted>,
    /// Only on `GET /deliveries/{id}`, and not once redacted: the body as received, byte for byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<Box<RawValue>>,
}

/// A redaction: the ledger entry that records it, why, by whom and when.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Redacted {
    /// The seq of the redaction's own ledger entry.
    pub redaction_seq: i64,
    pub reason: String,
    /// Who redacted it: the operator (`ticket-audit redact`) or the admin token's fingerprint.
    pub by: String,
    pub at: String,
}

impl From<crate::store::redaction::Redaction> for Redacted {
    fn from(r: crate::store::redaction::Redaction) -> Self {
        Redacted { redaction_seq: r.redaction_seq, reason: r.reason, by: r.actor, at: rfc3339(r.redacted_at) }
    }
}

impl From<DeliveryRecord> for Delivery {
    fn from(r: DeliveryRecord) -> Self {
        let s = |v: Option<_>| v.map(String::from);
        let redacted = r.redaction.map(Redacted::from);
        Delivery {
            id: r.seq,
            delivery_id: r.seq,
            seq: r.seq,
            // All six digits, as the leaf covers it: a reader recomputes the leaf from this.
            received_at: crate::domain::timestamp::format_micros(r.received_at),
            recorded_at: rfc3339(r.recorded_at),
            key: r.dedup_key.0,
            key_source: r.key_source,
            action: s(r.action),
            status_code: r.status_code,
            size: r.size,
            body_sha256: hex::encode(r.body_sha256),
            hash: hex::encode(r.hash),
            headers: r.headers.0,
            normalize_error: s(r.normalize_error),
            unprojected: r.unprojected,
            ticket: s(r.ticket_name),
            tenant_id: s(r.tenant_id),
            redacted,
            body: None,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    action: Option<String>,
    /// RFC 3339, inclusive, on `received_at`.
    #[serde(default, deserialize_with = "query_time::deserialize")]
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<time::OffsetDateTime>,
    /// RFC 3339, exclusive, on `received_at`.
    #[serde(default, deserialize_with = "query_time::deserialize")]
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<time::OffsetDateTime>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Stored deliveries, newest first (metadata only).
#[utoipa::path(get, path = "/deliveries", tag = "deliveries", params(DeliveryParams),
    responses((status = 200, body = Page<Delivery>), ReadProblems),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Query(p): Query<DeliveryParams>,
) -> Result<Json<Page<Delivery>>, ApiError> {
    let page = PageParams { limit: p.limit, cursor: p.cursor };
    let limit = page.limit()?;
    let before = page.after::<i64>()?;
    let filter = DeliveryFilter { action: p.action, since: p.since, until: p.until };
    let rows = read::list_deliveries(app.read_pool(), &scope, &filter, before, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |r| r.seq, Delivery::from)))
}

/// One delivery: its metadata and its body, embedded exactly as received.
#[utoipa::path(get, path = "/deliveries/{id}", tag = "deliveries", params(("id" = i64, Path, description = "the delivery_id")),
    responses((status = 200, body = Delivery), ReadProblems),
    security(("bearer" = [])))]
pub async fn one(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Path(id): Path<i64>,
) -> Result<Json<Delivery>, ApiError> {
    let record = read::get_delivery(app.read_pool(), &scope, id).await?.ok_or(ApiError::NotFound)?;
    let mut d = Delivery::from(record);
    if d.redacted.is_some() {
        // The tombstone is no body: the metadata says who redacted it and why.
        return Ok(Json(d));
    }
    let body = read::delivery_body(app.read_pool(), &scope, id).await?.ok_or(ApiError::NotFound)?;
    // Stored bodies were checked to be JSON when received; embedding the bytes keeps numbers
    // beyond 64 bits and duplicate keys exactly as sent.
    let text = String::from_utf8(body).map_err(|e| ApiError::Internal(Box::new(e)))?;
    d.body = Some(RawValue::from_string(text).map_err(|e| ApiError::Internal(Box::new(e)))?);
    Ok(Json(d))
}

/// The exact bytes received; 410 once the delivery was redacted.
#[utoipa::path(get, path = "/deliveries/{id}/raw", tag = "deliveries", params(("id" = i64, Path, description = "the delivery_id")),
    responses((status = 200, body = Object, content_type = "application/json", description = "the body as received"),
        (status = 410, description = "the delivery was redacted (`urn:ticket-audit:problem:redacted`): the detail says when, by whom and why", content_type = "application/problem+json"),
        ReadProblems),
    security(("bearer" = [])))]
pub async fn raw(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let body = read::delivery_body(app.read_pool(), &scope, id).await?.ok_or(ApiError::NotFound)?;
    // Only a redacted delivery has an empty body (every other one is a JSON object).
    if body.is_empty() {
        if let Some(r) = redaction::find(app.read_pool(), id).await? {
            return Err(redacted_problem(id, &r.into()));
        }
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn redacted_problem(id: i64, r: &Redacted) -> ApiError {
    ApiError::Redacted(format!(
        "delivery {id} was redacted {} by {} (redaction entry {}): {}. Its body_sha256, chain hash and leaf remain",
        r.at, r.by, r.redaction_seq, r.reason
    ))
}

/// `{"reason": "..."}`: why the delivery is redacted (1 to 1,000 characters, no control character).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactRequest {
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

/// The redaction made (or found, when the delivery was redacted before).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedactAnswer {
    pub delivery_id: i64,
    pub redaction: Redacted,
    /// True when the delivery had been redacted before: that redaction is the answer, nothing changed.
    pub duplicate: bool,
}

/// Redacts a delivery: replaces its body and the text of its projection with a tombstone,
/// keeping `body_sha256`, its chain link, its leaf and every checkpoint valid, and records the
/// redaction as a ledger entry of its own. Admin tokens only (403 otherwise); 201 when made, 200
/// with `duplicate: true` when the delivery was redacted already.
#[utoipa::path(post, path = "/admin/deliveries/{id}/redact", tag = "deliveries",
    params(("id" = i64, Path, description = "the delivery_id")),
    request_body = RedactRequest,
    responses((status = 201, body = RedactAnswer, description = "redacted now"),
        (status = 200, body = RedactAnswer, description = "redacted before: the earlier redaction, nothing changed"),
        (status = 403, description = "not an admin token", content_type = "application/problem+json"),
        (status = 409, description = "a redaction entry, or a delivery whose month was archived and dropped: the detail says what to do", content_type = "application/problem+json"),
        ReadProblems),
    security(("bearer" = [])))]
pub async fn redact(
    State(app): State<AppState>,
    Reader(scope): Reader,
    headers: axum::http::HeaderMap,
    Path(id): Path<i64>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    if scope != Scope::All {
        return Err(ApiError::Forbidden("redacting is for admin tokens only"));
    }
    let body =
        body.map_err(|e| ApiError::BadRequest(format!("the request body could not be read: {}", e.body_text())))?;
    let request: RedactRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body must be {{\"reason\": \"...\"}}: {e}")))?;
    let actor = app.api_auth.actor(&headers);
    let (done, duplicate) =
        redaction::redact(&app.writer, &app.pool, id, &request.reason, &actor).await.map_err(|e| match e {
            RedactError::Invalid(why) => ApiError::BadRequest(why.to_string()),
            RedactError::NotFound(_) => ApiError::NotFound,
            e @ (RedactError::Archived { .. } | RedactError::RedactionEntry(_) | RedactError::Unreadable(_)) => {
                ApiError::Conflict(e.to_string())
            }
            RedactError::Write(e) => e.into(),
            RedactError::Db(e) => e.into(),
        })?;
    let status = if duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(RedactAnswer { delivery_id: id, redaction: done.into(), duplicate })).into_response())
}
