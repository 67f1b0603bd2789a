//! One keep-alive HTTP/1 connection, reopened after an error: each sender owns one, so no pool
//! or lock sits between the senders and the service.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where the service is: `http://host:port`, with no path.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, to connect to and to send as `Host`.
    pub authority: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, Error> {
        let rest = url.strip_prefix("http://").ok_or("the URL must start with http:// (no TLS here)")?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("`{url}`: give the service's base URL only, e.g. http://127.0.0.1:8080").into());
        }
        let authority = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
        Ok(Target { authority })
    }
}

pub struct Connection {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(target: Target) -> Self {
        Connection { target, sender: None }
    }

    /// Opens the connection now, so the first timed request does not pay for it.
    pub async fn open(&mut self) -> Result<(), Error> {
        let stream = TcpStream::connect(&self.target.authority).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes; either way nothing to report.
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends `req` (origin-form URI; `Host` is added) and reads the whole answer.
    pub async fn send(&mut self, mut req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), Error> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.open().await?;
        }
        req.headers_mut().insert(hyper::header::HOST, self.target.authority.parse()?);
        let result = async {
            let sender = self.sender.as_mut().expect("opened above");
            sender.ready().await?;
            let res = sender.send_request(req).await?;
            let status = res.status();
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, Error>((status, body))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}
