//! Liveness and readiness, open to all.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::problem;
use super::AppState;
use crate::store::read::readiness;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the database answers and its schema is at least this build's newest migration.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Object), (status = 503, body = super::error::Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let r = readiness(&app.pool).await;
    let migrated = r.schema_version.is_some_and(|v| v >= r.expected_version);
    let writer = app.writer.is_alive();
    if r.database && migrated && writer {
        return Json(serde_json::json!({"status": "ready", "database": "ok", "writer": "ok", "schema_version": r.schema_version}))
            .into_response();
    }
    let detail = if !writer {
        "the writer has stopped: no delivery can be stored"
    } else if r.database {
        "the database is not migrated"
    } else {
        "the database is unreachable"
    };
    let mut res = problem(StatusCode::SERVICE_UNAVAILABLE, "not-ready", detail.into());
    res.headers_mut().insert(axum::http::header::RETRY_AFTER, super::error::RETRY_AFTER_SECS.into());
    res.into_response()
}
