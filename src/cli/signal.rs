//! Stop signals: SIGINT, SIGTERM and SIGHUP all ask for a graceful stop (a terminal closing sends
//! SIGHUP; there is no configuration to reload, and an abrupt exit would cut uploads mid-body).

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// A token cancelled at the first stop signal, with a log line naming it. The handlers are
/// installed before this returns, so from then on no stop signal kills the process outright.
pub fn stop_token() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut streams = Vec::new();
    for (kind, name) in
        [(SignalKind::interrupt(), "SIGINT"), (SignalKind::terminate(), "SIGTERM"), (SignalKind::hangup(), "SIGHUP")]
    {
        streams.push((signal(kind)?, name));
    }
    let cancel = token.clone();
    tokio::spawn(async move {
        let waits = streams.iter_mut().map(|(s, name)| Box::pin(async move { (s.recv().await, *name) }));
        let ((_, name), _, _) = futures_util::future::select_all(waits).await;
        tracing::info!(signal = name, "{name}: shutting down, finishing requests in flight");
        cancel.cancel();
    });
    Ok(token)
}
