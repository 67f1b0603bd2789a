//! The accept loop: hyper driven directly, for the limits `axum::serve` does not set (a cap on
//! open connections, the time a client has to send a request head, idle time, the head's size),
//! and a graceful shutdown that cannot hang on a client that stops reading.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::{HttpSettings, MIN_HEADER_BYTES};

/// The limits of one listener, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For a request's line and headers (HTTP/1), and for a new connection's first request.
    pub header_read: Duration,
    /// With no request in flight.
    pub idle: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    /// How long a connection asked to close may finish what it is doing before it is dropped.
    pub grace: Duration,
}

impl Limits {
    pub fn from_settings(s: &HttpSettings) -> Self {
        Limits {
            header_read: Duration::from_millis(s.header_read_timeout_ms.max(1)),
            idle: Duration::from_secs(s.keepalive_idle_timeout_secs.max(1)),
            max_connections: s.max_connections.max(1),
            // hyper panics below its minimum; the flag refuses it, a struct built in code is raised to it.
            max_header_bytes: s.max_header_bytes.clamp(MIN_HEADER_BYTES, u32::MAX as usize),
            // A request may take REQUEST_TIMEOUT_SECS; then its answer still has to be written.
            grace: Duration::from_secs(s.request_timeout_secs.max(1)).saturating_mul(2),
        }
    }

    fn builder(&self) -> Builder<TokioExecutor> {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read)
            // The whole head must fit in the read buffer: this is the HTTP/1 head size limit.
            .max_buf_size(self.max_header_bytes);
        builder.http2().timer(TokioTimer::new()).max_header_list_size(self.max_header_bytes as u32);
        builder
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to finish its requests in flight and close, and returns once all have closed
/// (those still open after the grace period are dropped).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    warn_if_descriptors_run_short(limits.max_connections);
    let builder = Arc::new(limits.builder());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Each connection holds a receiver: a send asks them to close; `closed()` says they have.
    let (stop_tx, stop_rx) = watch::channel(());
    let refusals = RateLimitedWarn::new(Duration::from_secs(10));
    let accept_errors = RateLimitedWarn::new(Duration::from_secs(10));
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait a little instead of spinning.
                metrics::counter!("ticket_audit_accept_errors_total").increment(1);
                accept_errors.warn(|n| tracing::warn!(error = %e, errors = n, "accepting connections fails"));
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closed at once: cheaper than an answer under a flood, and right for every protocol.
            // Counted first, so whoever sees the close can already read the count.
            metrics::counter!("ticket_audit_connections_refused_total", "reason" => "max_connections").increment(1);
            drop(stream);
            refusals.warn(|n| {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused = n,
                    "too many open connections: closing new ones as they come (MAX_CONNECTIONS)"
                )
            });
            continue;
        };
        metrics::counter!("ticket_audit_connections_accepted_total").increment(1);
        tokio::spawn(connection(stream, app.clone(), builder.clone(), limits, stop_rx.clone(), permit));
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    stop_tx.closed().await;
    Ok(())
}

/// File descriptors the process needs besides client connections: the database pools, the
/// listener, logs, the private cluster's socket, and the connection accepted only to be closed.
const DESCRIPTORS_BESIDES_CONNECTIONS: u64 = 64;

/// The cap only protects the service if the process may open that many descriptors: say so at
/// start when it may not, rather than with EMFILE under load.
fn warn_if_descriptors_run_short(max_connections: usize) {
    use nix::sys::resource::{getrlimit, Resource};
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let needed = (max_connections as u64).saturating_add(DESCRIPTORS_BESIDES_CONNECTIONS);
    if needed > soft {
        tracing::warn!(
            max_connections,
            open_file_limit = soft,
            "MAX_CONNECTIONS leaves too few file descriptors under the open-file limit (ulimit -n): \
             lower MAX_CONNECTIONS or raise the limit"
        );
    }
}

/// Errors of one connection that `accept` reports; the listener is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

async fn connection(
    stream: TcpStream,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    limits: Limits,
    mut stop: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) {
    let _open = OpenConnection::new();
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            let activity = activity.clone();
            let app = app.clone();
            async move {
                let res = app.oneshot(req.map(Body::new)).await;
                drop(in_flight);
                // A body still being sent (a live tail's events) is activity on the connection.
                res.map(|r| r.map(|body| Touching { body, activity }))
            }
        })
    };
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let mut idle = pin!(activity.idle(limits.header_read, limits.idle));
    let mut deadline = pin!(tokio::time::sleep(Duration::MAX));
    // Why this side closes the connection, if it does: one count per connection.
    let mut timed_out: Option<&'static str> = None;
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                let error = result.err();
                match error.as_deref().and_then(|e| e.downcast_ref::<hyper::Error>()) {
                    Some(e) if e.is_timeout() => timed_out = Some("header"),
                    _ => {}
                }
                if let Some(kind) = timed_out {
                    metrics::counter!("ticket_audit_connection_timeouts_total", "kind" => kind).increment(1);
                } else if let Some(e) = &error {
                    count_error(&**e);
                }
                return;
            }
            _ = stop.changed(), if !closing => {}
            served = &mut idle, if !closing => {
                timed_out = Some(if served { "idle" } else { "first_request" });
            }
            () = &mut deadline, if closing => {
                metrics::counter!("ticket_audit_connection_timeouts_total", "kind" => "close_grace").increment(1);
                tracing::debug!("dropping a connection that did not close within its grace period");
                return;
            }
        }
        // Shutdown or idle: finish what is in flight, then close; no later than the grace period.
        closing = true;
        conn.as_mut().graceful_shutdown();
        deadline.as_mut().reset(Instant::now() + limits.grace);
    }
}

/// Counts why a connection failed (hyper has already answered a framing error itself).
fn count_error(e: &(dyn std::error::Error + 'static)) {
    let kind = match e.downcast_ref::<hyper::Error>() {
        Some(h) if h.is_parse() || h.is_parse_too_large() => "framing",
        Some(h) if h.is_incomplete_message() => "incomplete",
        Some(_) => "other",
        // Our own graceful shutdown cancels a connection still choosing its protocol.
        None if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::Interrupted) => {
            return
        }
        None => "io",
    };
    metrics::counter!("ticket_audit_connection_errors_total", "kind" => kind).increment(1);
    tracing::debug!(error = %e, kind, "connection ended with an error");
}

/// The open-connections gauge, kept right however the connection task ends.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics::gauge!("ticket_audit_connections_open").increment(1.0);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("ticket_audit_connections_open").decrement(1.0);
    }
}

/// Requests in flight on one connection, and since when there has been none.
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

#[derive(Clone, Copy)]
struct ActivityState {
    in_flight: usize,
    idle_since: Instant,
    served: bool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            state: Mutex::new(ActivityState { in_flight: 0, idle_since: Instant::now(), served: false }),
            changed: Notify::new(),
        }
    }
}

struct InFlight(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight += 1;
        s.served = true;
        drop(s);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in flight for `idle` (`first` before its
    /// first request); says whether it had served one.
    async fn idle(&self, first: Duration, idle: Duration) -> bool {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let s = *self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.in_flight > 0 {
                changed.await;
                continue;
            }
            let until = s.idle_since + if s.served { idle } else { first };
            if Instant::now() >= until {
                return s.served;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = changed => {}
            }
        }
    }
}

/// A response body that counts each frame it gives as activity: a connection streaming an
/// answer (Server-Sent Events, whose keep-alives come well within the idle timeout) is not
/// idle, while one whose client stopped reading stops giving frames and is closed as idle.
struct Touching {
    body: Body,
    activity: Arc<Activity>,
}

impl hyper::body::Body for Touching {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(_))) = &polled {
            self.activity.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Activity {
    /// Something was sent: the idle time counts from now.
    fn touch(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.idle_since = Instant::now();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
        drop(s);
        self.0.changed.notify_waiters();
    }
}

/// A warning logged at most once per period, with how many times it happened in between.
struct RateLimitedWarn {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedWarn {
    fn new(period: Duration) -> Self {
        RateLimitedWarn { period, state: Mutex::new((None, 0)) }
    }

    fn warn(&self, log: impl FnOnce(u64)) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1 += 1;
        let now = Instant::now();
        if s.0.is_none_or(|last| now.duration_since(last) >= self.period) {
            let n = std::mem::take(&mut s.1);
            s.0 = Some(now);
            drop(s);
            log(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_warning_counts_what_it_did_not_log() {
        let w = RateLimitedWarn::new(Duration::from_secs(3600));
        let mut logged = Vec::new();
        for _ in 0..5 {
            w.warn(|n| logged.push(n));
        }
        assert_eq!(logged, vec![1], "the first is logged, the next four wait for the period");
        assert_eq!(w.state.lock().unwrap().1, 4);
    }

    #[test]
    fn limits_never_go_below_what_hyper_accepts() {
        let s = HttpSettings { max_header_bytes: 10, max_connections: 0, ..HttpSettings::default() };
        let l = Limits::from_settings(&s);
        assert_eq!(l.max_header_bytes, MIN_HEADER_BYTES);
        assert_eq!(l.max_connections, 1);
        // Building must not panic (hyper panics on a buffer below 8 KiB or a timeout without a timer).
        let _ = l.builder();
    }
}
