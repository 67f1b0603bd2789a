//! What the record refused to believe: deliveries that claimed a ticket for a tenant other than
//! its owner. Admins only; nothing moved when they arrived.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Admin;
use super::error::{ApiError, ReadProblems};
use super::pagination::{Page, PageParams};
use super::{rfc3339, AppState, Query};
use crate::store::read::{self, AnomalyRecord};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Anomaly {
    /// `seq.position`: the delivery, and which of its ticket updates.
    pub id: String,
    pub delivery_id: i64,
    pub ticket: String,
    /// `tenant_conflict`.
    pub kind: String,
    /// The tenant that owns the ticket: the first one stated for it.
    pub owner_tenant: String,
    /// The tenant the delivery stated instead.
    pub claimed_tenant: String,
    pub recorded_at: String,
}

impl From<AnomalyRecord> for Anomaly {
    fn from(r: AnomalyRecord) -> Self {
        Anomaly {
            id: format!("{}.{}", r.seq, r.position),
            delivery_id: r.seq,
            ticket: r.ticket_name.0,
            kind: r.kind,
            owner_tenant: r.owner_tenant.0,
            claimed_tenant: r.claimed_tenant.0,
            recorded_at: rfc3339(r.recorded_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnomalyParams {
    /// Only this ticket's.
    ticket: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Conflicting tenant claims, newest first. The ticket stays its first tenant's.
#[utoipa::path(get, path = "/anomalies", tag = "ledger", params(AnomalyParams),
    responses((status = 200, body = inline(Page<Anomaly>)), ReadProblems),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _: Admin,
    Query(p): Query<AnomalyParams>,
) -> Result<Json<Page<Anomaly>>, ApiError> {
    let page = PageParams { limit: p.limit, cursor: p.cursor };
    let limit = page.limit()?;
    let rows = read::list_anomalies(app.read_pool(), p.ticket.as_deref(), page.after()?, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |r| (r.seq, r.position), Anomaly::from)))
}
