//! `X-Min-Seq: N` on a read: answer only once the database it reads shows seq N (a replica may
//! lag the primary that acknowledged it), waiting at most `MIN_SEQ_WAIT_MS`; then 503. A seq
//! the primary does not have either is a 400 at once.

use axum::extract::{Request, State};
use axum::http::{HeaderName, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::store::replica;

pub static MIN_SEQ: HeaderName = HeaderName::from_static("x-min-seq");

pub async fn wait(State(app): State<AppState>, req: Request, next: Next) -> Response {
    // Reads only: a write is answered by the primary, which has every seq it acknowledged.
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let Some(value) = req.headers().get(&MIN_SEQ) else { return next.run(req).await };
    let Some(seq) = value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).filter(|s| *s >= 0) else {
        return ApiError::BadRequest("X-Min-Seq must be a seq: a whole number, 0 or more".into()).into_response();
    };
    // Only a seq the primary has is worth waiting for (one acknowledged always is): anything
    // else is refused at once, so no request can keep the service polling for nothing.
    match replica::visible_seq(app.read_pool()).await {
        Ok(at) if at >= seq => return next.run(req).await,
        Ok(_) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    match replica::visible_seq(&app.pool).await {
        Ok(head) if head < seq => {
            let detail = format!("X-Min-Seq {seq} is beyond the record's last seq ({head}): no delivery has it");
            return ApiError::BadRequest(detail).into_response();
        }
        Ok(_) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    match replica::wait_for_seq(app.read_pool(), seq, app.min_seq_wait).await {
        Ok(None) => next.run(req).await,
        Ok(Some(at)) => {
            metrics::counter!("ticket_audit_min_seq_timeouts_total").increment(1);
            tracing::info!(min_seq = seq, visible = at, "X-Min-Seq: the read database does not show it yet");
            ApiError::Unavailable("the replica has not replayed that seq yet (X-Min-Seq)", None).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
