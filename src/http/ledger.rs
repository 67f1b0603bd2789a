//! The ledger for operators: its head, to record elsewhere, and an on-demand verification.

use axum::extract::State;
use axum::Json;

use super::auth::Admin;
use super::error::ApiError;
use super::error::ReadProblems;
use super::AppState;
use crate::store::ledger;

/// The ledger's head.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Head {
    pub seq: i64,
    /// SHA-256, hex.
    pub hash: String,
    /// Time the last delivery was received (null before the first).
    pub at: Option<String>,
}

/// `{seq, hash, at}`: record it somewhere else, and `verify --expect-head SEQ:HASH` later proves
/// the chain still passes through it. Admin tokens only: the head tells how much all tenants sent.
#[utoipa::path(get, path = "/ledger/head", tag = "ledger",
    responses((status = 200, body = Head), ReadProblems),
    security(("bearer" = [])))]
pub async fn head(State(app): State<AppState>, _: Admin) -> Result<Json<Head>, ApiError> {
    // The primary's: a head recorded elsewhere must be the newest, not a replica's older one.
    let mut conn = app.pool.acquire().await?;
    let h = ledger::head(&mut conn).await?;
    Ok(Json(Head { seq: h.seq, hash: hex::encode(&h.hash), at: h.at.map(super::rfc3339) }))
}

/// Runs the same check as `ticket-audit verify`; 200 with `ok: false` and the break when it fails.
#[utoipa::path(get, path = "/ledger/verify", tag = "ledger",
    responses((status = 200, body = Object, description = "{ok, deliveries, commands, head, break: {kind, seq, detail} | null, redacted: [{seq, redaction_seq, reason, actor, at}]}"), ReadProblems),
    security(("bearer" = [])))]
pub async fn verify(State(app): State<AppState>, _: Admin) -> Result<Json<ledger::Report>, ApiError> {
    // A scan of the whole record: the replica's work, when there is one.
    let mut conn = app.read_pool().acquire().await?;
    Ok(Json(ledger::verify(&mut conn, None).await?))
}
