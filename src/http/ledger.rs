//! The ledger for operators: its head, to record elsewhere, and an on-demand verification.

use axum::extract::State;
use axum::Json;

use super::auth::Admin;
use super::error::ApiError;
use super::AppState;
use crate::store::ledger::{self, Head, Report};

/// `{seq, hash, at}`: record it somewhere else, and `verify --expect-head SEQ:HASH` later proves
/// the chain still passes through it. Admin tokens only: the head tells how much all tenants sent.
pub async fn head(State(app): State<AppState>, _: Admin) -> Result<Json<Head>, ApiError> {
    let mut conn = app.pool.acquire().await?;
    Ok(Json(ledger::head(&mut conn).await?))
}

/// Runs the same check as `ticket-audit verify`; 200 with `ok: false` and the break when it fails.
pub async fn verify(State(app): State<AppState>, _: Admin) -> Result<Json<Report>, ApiError> {
    let mut conn = app.pool.acquire().await?;
    Ok(Json(ledger::verify(&mut conn, None).await?))
}
