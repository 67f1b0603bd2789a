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
    /// A file of paths, one a line: stream i opens line i (modulo their number) instead of --path
    /// (e.g. one ticket's stream each, as pages open them).
    #[arg(long)]
    pub paths_file: Option<std::path::PathBuf>,
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
    bytes: AtomicU64,
}

pub async fn run(args: StreamsArgs) -> Result<(), Error> {
    let target = Target::parse(&args.url)?;
    let counts = Arc::new(Counts::default());
    let paths: Vec<String> = match &args.paths_file {
        Some(f) => std::fs::read_to_string(f)?.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect(),
        None => vec![args.path.clone()],
    };
    if paths.is_empty() {
        return Err("the paths file has no path".into());
    }
    let (heads_tx, mut heads) = tokio::sync::mpsc::channel::<()>(args.count.max(1));
    for i in 0..args.count {
        let (target, counts, heads_tx) = (target.clone(), counts.clone(), heads_tx.clone());
        let (path, token) = (paths[i % paths.len()].clone(), args.token.clone());
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
        "{{\"streams\": {}, \"opened\": {}, \"failed\": {}, \"ended\": {}, \"events\": {}, \"bytes\": {}}}",
        args.count,
        counts.opened.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.ended.load(Ordering::Relaxed),
        counts.events.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed)
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
    let mut ids = IdLines::default();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        counts.events.fetch_add(ids.count(&data), Ordering::Relaxed);
        counts.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
    }
    counts.ended.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Counts events by their `id:` lines (`\nid:`) across frames, which may split one, without
/// copying what it reads: the client must cost little beside the service it measures.
#[derive(Default)]
struct IdLines {
    /// The last bytes of the previous frame (at most 3), for a line split across two.
    tail: Vec<u8>,
}

impl IdLines {
    const NEEDLE: &'static [u8] = b"\nid:";

    fn count(&mut self, data: &[u8]) -> u64 {
        let k = Self::NEEDLE.len() - 1;
        let mut n = memchr::memmem::find_iter(data, Self::NEEDLE).count() as u64;
        // The tail (shorter than the needle) and this frame's first bytes: the matches that start
        // in the tail end here (or later, and are counted then: they stay in the tail).
        let from_tail = self.tail.len();
        self.tail.extend_from_slice(&data[..data.len().min(k)]);
        n += memchr::memmem::find_iter(&self.tail, Self::NEEDLE).filter(|&i| i < from_tail).count() as u64;
        // The new tail: the last k bytes read, across frames.
        if data.len() >= k {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - k..]);
        } else {
            let extra = self.tail.len().saturating_sub(k);
            self.tail.drain(..extra);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::IdLines;

    #[test]
    fn id_lines_are_counted_once_however_frames_split_them() {
        let events = b"event: command\nid: 1.2\ndata: {}\n\n:\n\nevent: command\nid: 1.3\ndata: {}\n\n".repeat(3);
        for a in 0..events.len() {
            for b in a..events.len() {
                let mut ids = IdLines::default();
                let n = ids.count(&events[..a]) + ids.count(&events[a..b]) + ids.count(&events[b..]);
                assert_eq!(n, 6, "split at {a} and {b}");
            }
        }
    }
}
