//! The HTTP surface: routes, layers, and the extractors every handler shares.

pub mod anomalies;
pub mod auth;
pub mod deliveries;
pub mod error;
pub mod health;
pub mod ingest;
pub mod ledger;
pub mod metrics;
pub mod pagination;
pub mod server;
pub mod tickets;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use self::auth::{ApiAuth, WebhookAuth};
use self::error::{problem, ApiError};
use crate::store::Writer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    pub writer: Writer,
    pub webhook_auth: WebhookAuth,
    pub api_auth: ApiAuth,
    pub max_body_bytes: usize,
    /// Most messages and commands taken from one delivery (`MAX_DELIVERY_ROWS`).
    pub max_delivery_rows: usize,
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
        .routes(routes!(ledger::head))
        .routes(routes!(ledger::verify))
        .routes(routes!(anomalies::list));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ingest::receive))
        .nest("/api/v1", api)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::render))
        .split_for_parts()
}

/// The OpenAPI document, as `GET /openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

pub fn router(state: AppState, request_timeout: Duration, max_concurrent: usize) -> Router {
    let (routes, doc) = routes();
    let doc = std::sync::Arc::new(doc);
    routes
        .route("/openapi.json", axum::routing::get(move || async move { axum::Json(doc.as_ref().clone()) }))
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

/// RFC 3339 query times, in UTC.
pub(crate) mod rfc3339_opt {
    use serde::{Deserialize, Deserializer};
    use time::OffsetDateTime;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else { return Ok(None) };
        OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not an RFC 3339 time")))
    }
}

/// Times in answers: RFC 3339, UTC.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a timestamptz formats as RFC 3339")
}
