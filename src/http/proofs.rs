//! The verifiable log for outside auditors: signed checkpoints, the verifier key, inclusion and
//! consistency proofs (RFC 6962), and a command's evidence to check offline.
//!
//! All on the primary, never the replica: a proof or a command's evidence must cover what was
//! just acknowledged and the checkpoint just signed, and a replica may lag both.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Reader;
use super::error::{ApiError, ReadProblems};
use super::pagination::{Page, PageParams};
use super::tickets::Command;
use super::{rfc3339, AppState, Path, Query};
use crate::domain::evidence::{b64, Evidence};
use crate::store::evidence::{self, Found};
use crate::store::{read, tree};

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The latest checkpoint: a C2SP signed note (`origin`, tree size, root hash; a blank line; signature).
#[utoipa::path(get, path = "/ledger/checkpoint", tag = "verifiable log",
    responses((status = 200, body = String, content_type = "text/plain"), ReadProblems),
    security(("bearer" = [])))]
pub async fn checkpoint(State(app): State<AppState>, _: Reader) -> Result<Response, ApiError> {
    let mut conn = app.pool.acquire().await?;
    let cp =
        tree::latest_checkpoint(&mut conn).await?.ok_or(ApiError::Unavailable("no checkpoint is signed yet", None))?;
    Ok(text(cp.note))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckpointItem {
    pub id: i64,
    pub tree_size: i64,
    /// Base64.
    pub root_hash: String,
    pub signed_at: String,
    /// The signed note, as `GET /ledger/checkpoint` serves it.
    pub note: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckpointParams {
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Every checkpoint kept, newest first.
#[utoipa::path(get, path = "/ledger/checkpoints", tag = "verifiable log", params(CheckpointParams),
    responses((status = 200, body = Page<CheckpointItem>), ReadProblems),
    security(("bearer" = [])))]
pub async fn checkpoints(
    State(app): State<AppState>,
    _: Reader,
    Query(p): Query<CheckpointParams>,
) -> Result<Json<Page<CheckpointItem>>, ApiError> {
    let page = PageParams { limit: p.limit, cursor: p.cursor };
    let limit = page.limit()?;
    let before = page.after::<i64>()?;
    let mut conn = app.pool.acquire().await?;
    let rows = tree::list_checkpoints(&mut conn, before, limit + 1).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |r| r.id,
        |r| CheckpointItem {
            id: r.id,
            tree_size: r.tree_size,
            root_hash: b64::encode(&r.root_hash),
            signed_at: rfc3339(r.signed_at),
            note: r.note,
        },
    )))
}

/// The verifier key that checks the checkpoints: `<name>+<hex key id>+<base64(0x01 || Ed25519 public key)>`.
#[utoipa::path(get, path = "/ledger/key", tag = "verifiable log",
    responses((status = 200, body = String, content_type = "text/plain"), ReadProblems),
    security(("bearer" = [])))]
pub async fn key(State(app): State<AppState>, _: Reader) -> Response {
    text(format!("{}\n", app.log_key))
}

/// Checks that `size` may be proven against: the current tree's, or one some checkpoint signed.
async fn provable_size(conn: &mut sqlx::PgConnection, size: u64, what: &str) -> Result<(), ApiError> {
    let current = tree::tree_size(conn).await?;
    if size > current {
        return Err(ApiError::BadRequest(format!("{what} {size} is beyond the tree, which has {current} leaves")));
    }
    if size != current && tree::checkpoint_of_size(conn, size).await?.is_none() {
        return Err(ApiError::BadRequest(format!("no checkpoint signs a tree of size {size}")));
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionParams {
    /// The delivery's seq (its leaf is seq - 1), at most `tree_size`.
    #[param(minimum = 1)]
    seq: i64,
    /// A signed tree size, or the current one.
    #[param(minimum = 1)]
    tree_size: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Base64.
    pub leaf_hash: String,
    /// The RFC 6962 audit path, base64, leaf side first.
    pub hashes: Vec<String>,
}

/// The audit path of one delivery's leaf to the root of a signed (or the current) tree.
#[utoipa::path(get, path = "/ledger/proof/inclusion", tag = "verifiable log", params(InclusionParams),
    responses((status = 200, body = InclusionProof), ReadProblems),
    security(("bearer" = [])))]
pub async fn inclusion(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Query(p): Query<InclusionParams>,
) -> Result<Json<InclusionProof>, ApiError> {
    if p.tree_size == 0 {
        return Err(ApiError::BadRequest("tree_size must be at least 1".into()));
    }
    if p.seq < 1 || p.seq as u64 > p.tree_size {
        return Err(ApiError::BadRequest(format!("seq {} is outside a tree of size {}", p.seq, p.tree_size)));
    }
    let mut conn = app.pool.acquire().await?;
    provable_size(&mut conn, p.tree_size, "tree_size").await?;
    // Hashes only, but of this scope's deliveries only (an admin's: any in the tree).
    if let read::Scope::Tenant(_) = scope {
        read::get_delivery(&app.pool, &scope, p.seq).await?.ok_or(ApiError::NotFound)?;
    }
    let index = p.seq as u64 - 1;
    let (leaf, hashes) = tree::leaf_and_inclusion(&mut conn, p.tree_size, index).await?;
    Ok(Json(InclusionProof {
        leaf_index: index,
        tree_size: p.tree_size,
        leaf_hash: b64::encode(&leaf),
        hashes: hashes.iter().map(|h| b64::encode(h)).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The earlier size (0: the empty proof).
    first: u64,
    /// A signed tree size, or the current one.
    second: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    /// The RFC 6962 consistency proof, base64.
    pub hashes: Vec<String>,
}

/// The proof that the tree of size `second` extends the one of size `first`.
#[utoipa::path(get, path = "/ledger/proof/consistency", tag = "verifiable log", params(ConsistencyParams),
    responses((status = 200, body = ConsistencyProof), ReadProblems),
    security(("bearer" = [])))]
pub async fn consistency(
    State(app): State<AppState>,
    _: Reader,
    Query(p): Query<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    if p.first > p.second {
        return Err(ApiError::BadRequest(format!("first ({}) is beyond second ({})", p.first, p.second)));
    }
    let mut conn = app.pool.acquire().await?;
    provable_size(&mut conn, p.second, "second").await?;
    let hashes = tree::consistency(&mut conn, p.first, p.second).await?;
    Ok(Json(ConsistencyProof {
        first: p.first,
        second: p.second,
        hashes: hashes.iter().map(|h| b64::encode(h)).collect(),
    }))
}

/// Parses a command id, `SEQ.POSITION`.
pub fn command_id(id: &str) -> Option<(i64, i32)> {
    let (seq, pos) = id.split_once('.')?;
    Some((seq.parse().ok()?, pos.parse().ok()?))
}

/// Builds the evidence document of a command, or says why there is none.
pub async fn evidence_of(conn: &mut sqlx::PgConnection, scope: &read::Scope, id: &str) -> Result<Evidence, ApiError> {
    let (seq, position) = command_id(id).ok_or(ApiError::NotFound)?;
    match evidence::evidence(conn, scope, seq, position).await? {
        Found::Evidence(found) => {
            let (command, mut evidence) = *found;
            evidence.command =
                serde_json::to_value(Command::from(command)).map_err(|e| ApiError::Internal(e.into()))?;
            Ok(evidence)
        }
        Found::NotFound => Err(ApiError::NotFound),
        Found::NotYetSigned => Err(ApiError::Unavailable("no checkpoint covers this command yet", None)),
        Found::Archived(at) => Err(ApiError::Gone(format!(
            "command {id} is archived: its delivery (seq {seq}) is line {} of {} in the archive written to {}; \
             its leaf is still in the log (GET /api/v1/ledger/proof/inclusion?seq={seq}&tree_size=N)",
            at.line, at.file, at.directory
        ))),
        Found::Redacted(r) => Err(ApiError::Redacted(format!(
            "command {id} belongs to delivery {seq}, redacted {} by {} (redaction entry {}): {}. No body is left to \
             check it against; the delivery's leaf is still in the log (GET /api/v1/ledger/proof/inclusion?seq={seq}&tree_size=N)",
            crate::http::rfc3339(r.redacted_at), r.actor, r.redaction_seq, r.reason
        ))),
    }
}

/// Everything needed to check one command offline with the log's key: the command, its
/// delivery's fields and raw body, the leaf, the audit path and the checkpoint it leads to.
#[utoipa::path(get, path = "/commands/{id}/evidence", tag = "verifiable log",
    params(("id" = String, Path, description = "the command's id (SEQ.POSITION)")),
    responses((status = 200, body = Object, description = "{command, delivery: {seq, received_at, key, action, status_code, body_sha256, body}, leaf_index, leaf_hash, tree_size, inclusion, checkpoint}"),
        (status = 410, description = "the command's month is archived (the detail names the file and line of its delivery), or its delivery was redacted (`urn:ticket-audit:problem:redacted`)", content_type = "application/problem+json"),
        ReadProblems),
    security(("bearer" = [])))]
pub async fn command_evidence(
    State(app): State<AppState>,
    Reader(scope): Reader,
    Path(id): Path<String>,
) -> Result<Json<Evidence>, ApiError> {
    let mut conn = app.pool.acquire().await?;
    Ok(Json(evidence_of(&mut conn, &scope, &id).await?))
}
