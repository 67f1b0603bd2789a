//! Passing webhook deliveries on to the instance that writes.
//!
//! With several instances on one database, one writes at a time (the writers' lease,
//! [`crate::store::lease`]). Without forwarding, an instance that does not hold the lease keeps
//! its senders waiting until it gets its turn: two instances stored 0.74-0.78x of what one did.
//! With `ADVERTISE_URL` set, each instance names its writer's connections after the URL it is
//! reached at, looks every [`LOOK_EVERY`] at who holds the lease, and, when another instance
//! does, sends each delivery it receives there, as it came (headers and bytes), to that
//! instance's `POST /webhooks`, and answers with that instance's answer. That instance checks
//! everything again (signature, timestamp, limits) and answers only once the delivery is
//! committed, so the promise holds: 2xx only after the delivery's own commit.
//!
//! A delivery is passed on once at most: the request carries [`FORWARDED`], and a delivery with
//! it is written where it arrives (a sender setting it only gets its delivery written locally,
//! which is always correct). When the holder cannot be reached or does not answer within
//! [`ANSWER_MAX`], the delivery is written here, as without forwarding: a delivery the holder
//! stored meanwhile is found by its key (a duplicate, with its seq).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, Request, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store::lease;

/// Set on a delivery passed on (its value: the URL of the instance that passed it on).
pub const FORWARDED: HeaderName = HeaderName::from_static("ticket-audit-forwarded-by");

/// How often an instance looks at who holds the writers' lease.
pub const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The longest wait for the holder's answer; then the delivery is written here.
pub const ANSWER_MAX: Duration = Duration::from_secs(5);

/// The largest answer taken from the holder (a receipt or a problem).
const ANSWER_BYTES: usize = 64 * 1024;

/// Headers that belong to one connection, not to the delivery.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
];

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("could not reach {0}: {1}")]
    Unreachable(String, String),
    #[error("{0} did not answer within {ANSWER_MAX:?}")]
    Slow(String),
}

pub struct Forwarder {
    /// This instance's URL.
    own: String,
    /// Where deliveries go now: the holder's URL when it is another instance's.
    target: RwLock<Option<String>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Forwarder {
    /// Starts looking at the lease's holder on `pool`'s database until `stop` is cancelled.
    pub fn start(pool: PgPool, own: String, stop: CancellationToken) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let forwarder = Arc::new(Forwarder { own, target: RwLock::new(None), client });
        let looking = forwarder.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(LOOK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = stop.cancelled() => break,
                }
                // Unknown (the database is away): write here, as without forwarding.
                let holder = lease::holder_url(&pool).await.ok().flatten();
                looking.set_target(holder);
            }
        });
        forwarder
    }

    fn set_target(&self, holder: Option<String>) {
        let target = holder.filter(|url| *url != self.own);
        *self.target.write().unwrap_or_else(PoisonError::into_inner) = target;
    }

    /// Where to pass a delivery on to, if anywhere.
    pub fn target(&self) -> Option<String> {
        self.target.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sends the delivery to `target` and returns its answer. On an error, deliveries are written
    /// here until the next look at the holder.
    pub async fn forward(
        &self,
        target: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, ForwardError> {
        let answer = tokio::time::timeout(ANSWER_MAX, self.send(target, headers, body)).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(_) => Err(ForwardError::Slow(target.to_owned())),
        };
        if answer.is_err() {
            let mut current = self.target.write().unwrap_or_else(PoisonError::into_inner);
            if current.as_deref() == Some(target) {
                *current = None;
            }
        }
        answer
    }

    async fn send(&self, target: &str, headers: &HeaderMap, body: Bytes) -> Result<Response<Body>, ForwardError> {
        let unreachable = |e: &dyn std::fmt::Display| ForwardError::Unreachable(target.to_owned(), e.to_string());
        let mut request =
            Request::post(format!("{target}/webhooks")).body(Full::new(body)).map_err(|e| unreachable(&e))?;
        for (name, value) in headers {
            if !HOP_BY_HOP.contains(name) && *name != FORWARDED {
                request.headers_mut().append(name.clone(), value.clone());
            }
        }
        let own = self.own.parse().map_err(|e: header::InvalidHeaderValue| unreachable(&e))?;
        request.headers_mut().insert(FORWARDED, own);
        let answer = self.client.request(request).await.map_err(|e| unreachable(&e))?;
        let (parts, body) = answer.into_parts();
        let body = Limited::new(body, ANSWER_BYTES).collect().await.map_err(|e| unreachable(&*e))?.to_bytes();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = parts.status;
        for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
            if let Some(value) = parts.headers.get(&name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        Ok(response)
    }
}

/// The URL an instance advertises: `auto` is `http://` and the address it listens on, which must
/// then be a particular one (a wildcard address is no address to reach).
pub fn advertised(setting: &str, listening: std::net::SocketAddr) -> Result<String, String> {
    let url = if setting == "auto" {
        if listening.ip().is_unspecified() {
            return Err(format!(
                "ADVERTISE_URL=auto needs LISTEN_ADDR to name an address others reach this instance at, not {listening}"
            ));
        }
        format!("http://{listening}")
    } else {
        setting.trim_end_matches('/').to_owned()
    };
    let ok_scheme = url.strip_prefix("http://").is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
    if !ok_scheme {
        return Err(format!("ADVERTISE_URL must be http://host:port (or auto), not {url:?}"));
    }
    if lease::ADVERTISED.len() + url.len() > 63 {
        return Err(format!("ADVERTISE_URL is longer than {} bytes: {url}", 63 - lease::ADVERTISED.len()));
    }
    if url.parse::<axum::http::HeaderValue>().is_err() || url.parse::<axum::http::Uri>().is_err() {
        return Err(format!("ADVERTISE_URL is not a URL: {url:?}"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advertised_url_is_one_others_can_reach() {
        let at: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(advertised("auto", at).unwrap(), "http://127.0.0.1:8080");
        assert!(advertised("auto", any).is_err(), "a wildcard address");
        assert_eq!(advertised("http://ta-1:8080/", any).unwrap(), "http://ta-1:8080");
        for bad in ["https://ta-1", "ta-1:8080", "http://", "http://ta-1/webhooks", "http://a b:1"] {
            assert!(advertised(bad, any).is_err(), "{bad}");
        }
        let long = format!("http://{}:8080", "h".repeat(60));
        assert!(advertised(&long, any).is_err(), "too long for application_name");
    }
}
