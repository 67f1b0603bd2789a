//! `streams`: N open live-tail connections (`GET /api/v1/stream`), each its own HTTP/1
//! connection, reading events until `--duration` ends; prints how many opened and the events read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::client::{Error, Target};

#[derive(Debug, clap::Args)]
pub struct StreamsArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// A read token (API_TOKENS), if the service has any.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Open streams.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Path and query of each stream.
    #[arg(long, default_value = "/api/v1/stream")]
    pub path: String,
    /// Keep them open this many seconds, then report and exit.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// A file created once every stream has its answer's head (for a script to wait on).
    #[arg(long)]
    pub ready_file: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    failed: AtomicU64,
    ended: AtomicU64,
    events: AtomicU64,
}

pub async fn run(args: StreamsArgs) -> Result<(), Error> {
    let target = Target::parse(&args.url)?;
    let counts = Arc::new(Counts::default());
    let (heads_tx, mut heads) = tokio::sync::mpsc::channel::<()>(args.count.max(1));
    for _ in 0..args.count {
        let (target, counts, heads_tx) = (target.clone(), counts.clone(), heads_tx.clone());
        let (path, token) = (args.path.clone(), args.token.clone());
        tokio::spawn(async move {
            if let Err(e) = one(&target, &path, token.as_deref(), &counts, heads_tx).await {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("a stream failed: {e}");
            }
        });
    }
    drop(heads_tx);
    // Every stream has answered (or failed) once the channel closes or `count` heads came.
    let mut answered = 0;
    while answered < args.count && heads.recv().await.is_some() {
        answered += 1;
    }
    if let Some(f) = &args.ready_file {
        std::fs::write(f, format!("{}\n", counts.opened.load(Ordering::Relaxed)))?;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    println!(
        "{{\"streams\": {}, \"opened\": {}, \"failed\": {}, \"ended\": {}, \"events\": {}}}",
        args.count,
        counts.opened.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.ended.load(Ordering::Relaxed),
        counts.events.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn one(
    target: &Target,
    path: &str,
    token: Option<&str>,
    counts: &Counts,
    head: tokio::sync::mpsc::Sender<()>,
) -> Result<(), Error> {
    let stream = TcpStream::connect(&target.authority).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::get(path).header(hyper::header::HOST, &target.authority);
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = sender.send_request(req.body(Empty::<Bytes>::new())?).await?;
    if !res.status().is_success() {
        let _ = head.send(()).await;
        return Err(format!("status {}", res.status()).into());
    }
    counts.opened.fetch_add(1, Ordering::Relaxed);
    let _ = head.send(()).await;
    drop(head);
    let mut body = res.into_body();
    // Events counted by their `id:` lines, which a frame may split: the tail of the last frame
    // is kept to find one that straddles two.
    let mut carry = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        carry.extend_from_slice(&data);
        let n = carry.windows(4).filter(|w| w == b"\nid:").count() as u64;
        counts.events.fetch_add(n, Ordering::Relaxed);
        let keep = carry.len().min(3);
        carry.drain(..carry.len() - keep);
    }
    counts.ended.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
