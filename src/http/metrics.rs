//! `GET /metrics`: Prometheus text. Counters and histograms are recorded where things happen;
//! gauges (queue depth, pool use) are read when scraped.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// Latency buckets, in seconds: from a fast read to a request timing out.
const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// How often the histograms' samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide recorder (the `metrics` facade has one), installed on first use, with its
/// upkeep running.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    let mut installed = false;
    let handle = HANDLE.get_or_init(|| {
        installed = true;
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("ticket_audit_write_batch_size".into()), BATCH))
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a host program's); then ours renders empty counters.
        let _ = metrics::set_global_recorder(recorder);
        handle
    });
    if installed {
        start_upkeep(handle, UPKEEP_EVERY, |_| true);
    }
    handle
}

/// Folds the histograms' raw samples into their buckets every `every`, on a thread of its own.
/// The exporter keeps each sample (24 bytes) until then: without this, a service nobody scrapes
/// grows by about 37 bytes per delivery, without bound. `ran` is told after each upkeep and
/// says whether to go on.
fn start_upkeep(handle: &'static PrometheusHandle, every: Duration, mut ran: impl FnMut(u64) -> bool + Send + 'static) {
    let spawned = std::thread::Builder::new().name("ticket-audit-metrics".into()).spawn(move || {
        for n in 1.. {
            std::thread::sleep(every);
            handle.run_upkeep();
            if !ran(n) {
                break;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the metrics' upkeep: histograms are folded only when scraped");
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn render(State(app): State<AppState>) -> Response {
    metrics::gauge!("ticket_audit_write_queue_depth").set(app.writer.queue_depth() as f64);
    let replica = app.replica.as_ref().map(|r| ("replica", r));
    for (name, pool) in [("read", &app.pool), ("write", app.writer.pool())].into_iter().chain(replica) {
        let idle = pool.num_idle() as f64;
        metrics::gauge!("ticket_audit_db_pool_connections", "pool" => name, "state" => "idle").set(idle);
        metrics::gauge!("ticket_audit_db_pool_connections", "pool" => name, "state" => "in_use")
            .set(pool.size() as f64 - idle);
    }
    if let Some(replica) = &app.replica {
        replica_gauges(&app.pool, replica).await;
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle().render()).into_response()
}

/// Times every request by matched route, method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let method = req.method().to_string();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!("ticket_audit_http_request_seconds", "route" => route, "method" => method, "status" => status)
        .record(start.elapsed().as_secs_f64());
    res
}

/// The replica's state, asked when scraped (two small queries, bounded so that a replica that
/// hangs does not hang the scrape): `ticket_audit_replica_up` 0 then, and the lags not updated.
async fn replica_gauges(primary: &sqlx::PgPool, replica: &sqlx::PgPool) {
    match crate::store::replica::lag(primary, replica).await {
        Ok(lag) => {
            metrics::gauge!("ticket_audit_replica_up").set(1.0);
            metrics::gauge!("ticket_audit_replica_replay_paused").set(if lag.paused { 1.0 } else { 0.0 });
            if let Some(s) = lag.seconds {
                metrics::gauge!("ticket_audit_replica_lag_seconds").set(s);
            }
            if let Some(b) = lag.bytes {
                metrics::gauge!("ticket_audit_replica_lag_bytes").set(b as f64);
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "the replica does not answer");
            metrics::gauge!("ticket_audit_replica_up").set(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upkeep runs without a scrape, again and again, and what it folded is what a scrape shows.
    #[test]
    fn upkeep_runs_without_a_scrape() {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .expect("buckets")
            .build_recorder();
        let handle: &'static PrometheusHandle = Box::leak(Box::new(recorder.handle()));
        let (tx, rx) = std::sync::mpsc::channel();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("t_seconds").record(0.001);
        });
        start_upkeep(handle, Duration::from_millis(1), move |n| tx.send(n).is_ok() && n < 2);
        let wait = Duration::from_secs(10);
        assert_eq!(rx.recv_timeout(wait).expect("a first upkeep"), 1);
        assert_eq!(rx.recv_timeout(wait).expect("a second upkeep"), 2, "upkeep keeps running");
        let text = handle.render();
        assert!(text.contains("t_seconds_count 1"), "the sample was kept in its bucket: {text}");
    }
}
