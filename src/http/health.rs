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
/// With a replica, also says whether it answers and how far behind it is; its state does not
/// make the service unready: ingest needs only the primary, and every instance shares the
/// replica, so a load balancer taking them all out for it would stop ingest too.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Object), (status = 503, body = super::error::Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let r = readiness(&app.pool).await;
    let migrated = r.schema_version.is_some_and(|v| v >= r.expected_version);
    let writer = app.writer.is_alive();
    if r.database && migrated && writer {
        let mut body = serde_json::json!({"status": "ready", "database": "ok", "writer": "ok", "schema_version": r.schema_version});
        if let Some(replica) = &app.replica {
            body["replica"] = replica_state(&app.pool, replica).await;
        }
        return Json(body).into_response();
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

/// `{status: "ok" | "unreachable", lag_seconds, lag_bytes, replay_paused}`.
async fn replica_state(primary: &sqlx::PgPool, replica: &sqlx::PgPool) -> serde_json::Value {
    match crate::store::replica::lag(primary, replica).await {
        Ok(lag) => serde_json::json!({
            "status": if lag.in_recovery { "ok" } else { "not_a_standby" },
            "lag_seconds": lag.seconds,
            "lag_bytes": lag.bytes,
            "replay_paused": lag.paused,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "the replica (DATABASE_READ_URL) does not answer");
            serde_json::json!({"status": "unreachable"})
        }
    }
}
