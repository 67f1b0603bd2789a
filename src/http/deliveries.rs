//! Stored deliveries: metadata, the JSON body exactly as received, and the raw bytes.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::auth::Reader;
use super::error::{ApiError, ReadProblems};
use super::pagination::{Page, PageParams};
use super::{query_time, rfc3339, AppState, Path, Query};
use crate::store::read::{self, DeliveryFilter, DeliveryRecord};

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
    /// Only on `GET /deliveries/{id}`: the body as received, byte for byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<Box<RawValue>>,
}

impl From<DeliveryRecord> for Delivery {
    fn from(r: DeliveryRecord) -> Self {
        let s = |v: Option<_>| v.map(String::from);
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
    let body = read::delivery_body(app.read_pool(), &scope, id).await?.ok_or(ApiError::NotFound)?;
    let mut d = Delivery::from(record);
    // Stored bodies were checked to be JSON when received; embedding the bytes keeps numbers
    // beyond 64 bits and duplicate keys exactly as sent.
    let text = String::from_utf8(body).map_err(|e| ApiError::Internal(Box::new(e)))?;
    d.body = Some(RawValue::from_string(text).map_err(|e| ApiError::Internal(Box::new(e)))?);
    Ok(Json(d))
}

/// The exact bytes received.
#[utoipa::path(get, path = "/deliveries/{id}/raw", tag = "deliveries", params(("id" = i64, Path, description = "the delivery_id")),
    responses((status = 200, body = Object, content_type = "application/json", description = "the body as received"), ReadProblems),
    security(("bearer" = [])))]
pub async fn raw(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let body = read::delivery_body(app.read_pool(), &scope, id).await?.ok_or(ApiError::NotFound)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
