//! The HTTP surface: routes, layers, and the extractors every handler shares.

pub mod anomalies;
pub mod auth;
pub mod deliveries;
pub mod error;
pub mod forward;
pub mod health;
pub mod ledger;
pub mod metrics;
pub mod min_seq;
pub mod pagination;
pub mod proofs;
pub mod server;
pub mod stream;
pub mod tickets;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use self::auth::{ApiAuth, WebhookAuth};
use self::error::{problem, ApiError};
use crate::domain::timestamp;
use crate::store::Writer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    /// The primary: what must see every acknowledged write (proofs, checkpoints, the ledger head).
    pub pool: PgPool,
    /// A streaming replica (`DATABASE_READ_URL`), when one is given: use [`AppState::read_pool`].
    pub replica: Option<PgPool>,
    /// Longest a read with `X-Min-Seq` waits for [`AppState::read_pool`] to show that seq.
    pub min_seq_wait: Duration,
    pub writer: Writer,
    pub webhook_auth: WebhookAuth,
    pub api_auth: ApiAuth,
    pub max_body_bytes: usize,
    /// Most messages and commands taken from one delivery (`MAX_DELIVERY_ROWS`).
    pub max_delivery_rows: usize,
    /// The verifier key of the log's checkpoints.
    pub log_key: crate::domain::checkpoint::Verifier,
    /// The live tail (`GET /api/v1/stream`).
    pub stream: Arc<stream::Hub>,
    /// Passes deliveries on to the instance that writes (`ADVERTISE_URL`), when set.
    pub forwarder: Option<Arc<forward::Forwarder>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }

    /// Where the read API and the page read the record: the replica when there is one (it may
    /// lag the primary: a caller that must see its own write sends `X-Min-Seq`), else the primary.
    pub fn read_pool(&self) -> &PgPool {
        self.replica.as_ref().unwrap_or(&self.pool)
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "ticket-audit", description = "The audit record of an AI ServiceDesk: webhook ingest and the read API."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        api.components.get_or_insert_with(Default::default).add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes, and the OpenAPI document generated from those same routes.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let api = OpenApiRouter::new()
        .routes(routes!(tickets::list))
        .routes(routes!(tickets::one))
        .routes(routes!(tickets::timeline))
        .routes(routes!(tickets::commands))
        .routes(routes!(tickets::all_commands))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::one))
        .routes(routes!(deliveries::raw))
        .routes(routes!(deliveries::redact))
        .routes(routes!(ledger::head))
        .routes(routes!(ledger::verify))
        .routes(routes!(anomalies::list))
        .routes(routes!(proofs::checkpoint))
        .routes(routes!(proofs::checkpoints))
        .routes(routes!(proofs::key))
        .routes(routes!(proofs::inclusion))
        .routes(routes!(proofs::consistency))
        .routes(routes!(proofs::command_evidence))
        .routes(routes!(stream::stream))
        // Tenant data: no cache may keep a copy, shared or private (the token that read it may
        // be revoked, and a shared cache could serve it to another tenant).
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(webhooks::receive))
        .nest("/api/v1", api)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::render))
        .split_for_parts()
}

pub fn router(state: AppState, request_timeout: Duration, max_concurrent: usize) -> Router {
    let (routes, doc) = routes();
    let doc = std::sync::Arc::new(doc);
    routes
        .route("/openapi.json", axum::routing::get(move || async move { axum::Json(doc.as_ref().clone()) }))
        .merge(crate::ui::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), min_seq::wait))
        .route_layer(middleware::from_fn(metrics::track))
        .route_layer(middleware::from_fn(record_route))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        // Over the cap, shed at once (a queue in front of a full service only adds latency); a
        // request that takes too long, a sender trickling its body included, is cut off.
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: tower::BoxError| async move {
                    if e.is::<tower::timeout::error::Elapsed>() {
                        ApiError::RequestTimeout
                    } else {
                        ApiError::Unavailable("too many requests in flight", None)
                    }
                }))
                .layer(tower::load_shed::LoadShedLayer::new())
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(max_concurrent.max(1)))
                .layer(tower::timeout::TimeoutLayer::new(request_timeout)),
        )
        .layer(CatchPanicLayer::custom(|_| {
            problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed to answer; the error is logged".into())
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                // The path only: query strings are the caller's business, and headers may carry tokens.
                tracing::info_span!("request", method = %req.method(), path = req.uri().path(), route = tracing::field::Empty, request_id = id)
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Outermost, so that every answer the router makes has it: JSON and raw bytes are never
        // to be sniffed into something a browser would run.
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
}

async fn record_route(req: Request, next: Next) -> Response {
    if let Some(route) = req.extensions().get::<MatchedPath>() {
        tracing::Span::current().record("route", route.as_str());
    }
    next.run(req).await
}

/// Query parameters, refused with a problem document (and unknown names refused too: a
/// misspelt filter must not silently return everything).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(Query)
            .map_err(|e| ApiError::BadRequest(format!("query string: {e}")))
    }
}

/// Path parameters, with rejections as problem documents.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| Path(p.0)).map_err(|e| match e {
            axum::extract::rejection::PathRejection::FailedToDeserializePathParams(_) => ApiError::NotFound,
            other => ApiError::BadRequest(other.body_text()),
        })
    }
}

/// Times in query filters (`since`, `until`, `created_after`, `created_before`): RFC 3339, and
/// within what the record can hold, so that every accepted value can be bound to a query; any
/// other value is a 400.
pub(crate) mod query_time {
    use serde::de::Error;
    use serde::Deserializer;
    use time::OffsetDateTime;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        let Some(t) = time::serde::rfc3339::option::deserialize(d)? else { return Ok(None) };
        super::filter_bound(t).map(Some).ok_or_else(|| {
            D::Error::custom(format!(
                "a time must be between {} and {} in UTC",
                super::rfc3339(crate::domain::timestamp::MIN),
                super::rfc3339(crate::domain::timestamp::MAX)
            ))
        })
    }
}

/// Whether `t` is a time the record can hold (at any precision).
pub(crate) fn in_range(t: time::OffsetDateTime) -> bool {
    (timestamp::MIN..=timestamp::MAX).contains(&t)
}

/// A filter's bound on stored times, which are whole microseconds: in range, and rounded up to
/// the microsecond, which keeps an inclusive lower bound (`>=`) and an exclusive upper one (`<`)
/// exact. (Binding the time as given would truncate it, and `since=…00.0000005Z` would take
/// a row stored at `…00.000000`.)
pub(crate) fn filter_bound(t: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
    if !in_range(t) {
        return None;
    }
    let t = t.to_offset(time::UtcOffset::UTC);
    let sub_micro = t.nanosecond() % 1_000;
    if sub_micro == 0 {
        return Some(t);
    }
    // At most timestamp::MAX, itself a whole microsecond, so this cannot leave the range.
    Some(t + time::Duration::nanoseconds(i64::from(1_000 - sub_micro)))
}

/// Times in answers: RFC 3339 in UTC, total (the domain's rule: a year RFC 3339 cannot write
/// comes in ISO 8601's expanded form, `-0001-12-31T23:59:00.000000Z`).
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    timestamp::format(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::format_description::well_known::Rfc3339;
    use time::macros::datetime;
    use time::{OffsetDateTime, UtcOffset};

    /// Any instant the `time` crate holds in UTC (as every time read from PostgreSQL is), at
    /// nanoseconds, at every offset.
    fn any_time() -> impl Strategy<Value = OffsetDateTime> {
        let lo = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT).unix_timestamp();
        let hi = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT).unix_timestamp() + 86_399;
        (lo..=hi, 0u32..1_000_000_000, -93_599i32..=93_599).prop_filter_map("a UTC form", |(s, ns, off)| {
            let t = OffsetDateTime::from_unix_timestamp(s).ok()?.replace_nanosecond(ns).ok()?;
            t.checked_to_offset(UtcOffset::from_whole_seconds(off).ok()?)
        })
    }

    #[test]
    fn edges() {
        assert_eq!(rfc3339(datetime!(-0001-12-31 23:59 UTC)), "-0001-12-31T23:59:00.000000Z");
        assert_eq!(rfc3339(datetime!(0000-01-01 00:00 +00:01)), "-0001-12-31T23:59:00.000000Z");
        assert_eq!(rfc3339(datetime!(-9999-01-01 00:00 UTC)), "-9999-01-01T00:00:00.000000Z");
        assert_eq!(filter_bound(datetime!(9999-12-31 23:59:59 -23:59)), None, "year 10000 in UTC");
        assert_eq!(rfc3339(datetime!(0000-01-01 00:00 UTC)), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(datetime!(2026-01-02 01:04:05.5 +02:00)), "2026-01-01T23:04:05.5Z");
        assert_eq!(filter_bound(datetime!(0000-12-31 23:59:59.999999999 UTC)), None);
        assert_eq!(filter_bound(datetime!(0001-01-01 00:00 +00:01)), None, "year 0 in UTC");
        assert_eq!(filter_bound(timestamp::MIN), Some(timestamp::MIN));
        assert_eq!(filter_bound(timestamp::MAX), Some(timestamp::MAX));
        assert_eq!(filter_bound(datetime!(9999-12-31 23:59:59.9999991 UTC)), None);
        assert_eq!(
            filter_bound(datetime!(2026-01-01 00:00:00.000000001 UTC)),
            Some(datetime!(2026-01-01 00:00:00.000001 UTC))
        );
    }

    proptest! {
        /// Formatting never fails, and what is in RFC 3339's range comes out as RFC 3339 that reads
        /// back as the same instant; the rest in the expanded form, never mistaken for RFC 3339.
        #[test]
        fn formatting_is_total(t in any_time()) {
            let s = rfc3339(t);
            prop_assert!(s.ends_with('Z'), "{}", s);
            match OffsetDateTime::parse(&s, &Rfc3339) {
                Ok(back) => prop_assert_eq!(back, t),
                Err(_) => {
                    let year = t.to_offset(UtcOffset::UTC).year();
                    prop_assert!(!(0..=9999).contains(&year), "{} for {}", s, t);
                    let sign = if year < 0 { '-' } else { '+' };
                    prop_assert!(s.starts_with(sign), "{}", s);
                    prop_assert!(s.starts_with(&format!("{year:+05}-")), "{}", s);
                }
            }
        }

        /// A filter bound is given exactly for the times the record can hold, is the least whole
        /// microsecond at or after the time, and formats as RFC 3339.
        #[test]
        fn filter_bounds_are_in_range_and_round_up(t in any_time()) {
            match filter_bound(t) {
                None => prop_assert!(!in_range(t)),
                Some(b) => {
                    prop_assert!(in_range(b));
                    prop_assert!(b >= t && b - t < time::Duration::microseconds(1));
                    prop_assert_eq!(b.nanosecond() % 1_000, 0);
                    prop_assert!(b.to_offset(UtcOffset::UTC).format(&Rfc3339).is_ok());
                }
            }
        }
    }
}
