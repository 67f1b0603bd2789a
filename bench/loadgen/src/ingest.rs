//! `ingest`: signed deliveries from N concurrent senders, each on its own connection.
//!
//! Every body is signed before the clock starts, so the figures measure the service and not the
//! generator's HMAC. Sender `i` sends lines `i, i+N, i+2N, ...` in order, one at a time, until
//! its share, `--count` or `--duration` runs out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request};
use sha2::Sha256;

use crate::client::{Connection, Error, Target};
use crate::report::{self, Latencies};

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// NDJSON from bench/gen_deliveries.py: {"body": ..., "headers": {"webhook-id": ...}, ...} per line.
    #[arg(long)]
    pub file: PathBuf,
    /// The service's WEBHOOK_SECRET (whsec_<base64>). Without it, bodies are sent unsigned.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Concurrent senders, each with one connection and one request in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Stop sending after this many seconds (requests in flight finish).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Send at most this many lines (default: the whole file, or until --duration).
    #[arg(long)]
    pub count: Option<usize>,
    /// Skip this many lines first (to send another part of the same file).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Prefix added to every webhook-id, so the same file can be sent again as new deliveries
    /// (lines that repeat an id within the file still repeat it: those answer 200 duplicate).
    #[arg(long, default_value = "")]
    pub id_prefix: String,
    /// Seconds added to the signing time (the service accepts 300 either way; a run that lasts
    /// longer than that needs a timestamp in the future).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub ts_offset: i64,
    /// A label printed with the results.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// One delivery, signed and ready to send.
#[derive(Clone)]
struct Prepared {
    body: Bytes,
    id: HeaderValue,
    timestamp: HeaderValue,
    signature: Option<HeaderValue>,
}

impl Prepared {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/webhooks")
            .body(Full::new(self.body.clone()))
            .expect("a valid request");
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("webhook-id", self.id.clone());
        if let Some(sig) = &self.signature {
            h.insert("webhook-timestamp", self.timestamp.clone());
            h.insert("webhook-signature", sig.clone());
        }
        req
    }
}

#[derive(serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    body: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
}

fn read_lines(args: &IngestArgs) -> Result<Vec<(String, Bytes)>, Error> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let take = args.count.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(args.skip) {
        if out.len() >= take {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line<'_> = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let (body, id) = match parsed.body {
            Some(raw) => {
                let id = parsed.headers.get("webhook-id").and_then(|v| v.as_str()).map(str::to_owned);
                (raw.get().to_owned(), id.unwrap_or_else(|| format!("line-{}", n + 1)))
            }
            // A line that is not an import line is itself the body.
            None => (line.to_owned(), format!("line-{}", n + 1)),
        };
        out.push((format!("{}{id}", args.id_prefix), Bytes::from(body)));
    }
    Ok(out)
}

fn signing_key(secret: &str) -> Result<Vec<u8>, Error> {
    let b64 = secret.strip_prefix("whsec_").ok_or("the secret must look like whsec_<base64>")?;
    Ok(B64.decode(b64).map_err(|e| format!("the secret's base64: {e}"))?)
}

fn sign(key: &[u8], lines: Vec<(String, Bytes)>, ts: i64) -> Result<Vec<Prepared>, Error> {
    let timestamp = HeaderValue::from_str(&ts.to_string())?;
    let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
    lines
        .into_iter()
        .map(|(id, body)| {
            let mut m = mac.clone();
            m.update(id.as_bytes());
            m.update(b".");
            m.update(timestamp.as_bytes());
            m.update(b".");
            m.update(&body);
            let sig = format!("v1,{}", B64.encode(m.finalize().into_bytes()));
            Ok(Prepared {
                body,
                id: HeaderValue::from_str(&id)?,
                timestamp: timestamp.clone(),
                signature: Some(HeaderValue::from_str(&sig)?),
            })
        })
        .collect()
}

#[derive(Default)]
struct SenderResult {
    latencies: Option<Histogram<u64>>,
    statuses: BTreeMap<String, u64>,
}

pub async fn run(args: IngestArgs) -> Result<(), Error> {
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let target = Target::parse(&args.url)?;
    let lines = read_lines(&args)?;
    if lines.is_empty() {
        return Err("no lines to send".into());
    }
    let bytes: usize = lines.iter().map(|(_, b)| b.len()).sum();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let sign_started = Instant::now();
    let prepared = match &args.secret {
        Some(secret) => sign(&signing_key(secret)?, lines, now + args.ts_offset)?,
        None => lines
            .into_iter()
            .map(|(id, body)| {
                Ok(Prepared {
                    body,
                    id: HeaderValue::from_str(&id)?,
                    timestamp: HeaderValue::from_static("0"),
                    signature: None,
                })
            })
            .collect::<Result<_, Error>>()?,
    };
    let signing = sign_started.elapsed();
    if args.duration.is_some_and(|d| d + (args.ts_offset.unsigned_abs() as f64) > 280.0) {
        eprintln!("warning: a run this long may outlive the service's 300 s timestamp tolerance");
    }

    // Connections are opened before the clock starts, as a sender's would already be.
    let mut conns = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let mut c = Connection::new(target.clone());
        c.open().await.map_err(|e| format!("connect to {}: {e}", args.url))?;
        conns.push(c);
    }

    let prepared = std::sync::Arc::new(prepared);
    let deadline = args.duration.map(Duration::from_secs_f64);
    let cpu_before = report::own_cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.concurrency);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let prepared = prepared.clone();
        let n = args.concurrency;
        tasks.push(tokio::spawn(async move {
            let mut hist = report::histogram();
            let mut statuses = BTreeMap::new();
            for p in prepared.iter().skip(i).step_by(n) {
                if deadline.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
                let t0 = Instant::now();
                let outcome = conn.send(p.request()).await;
                hist.saturating_record(t0.elapsed().as_micros() as u64);
                let key = match outcome {
                    Ok((status, _)) => status.as_u16().to_string(),
                    Err(_) => "error".to_owned(),
                };
                *statuses.entry(key).or_insert(0u64) += 1;
            }
            SenderResult { latencies: Some(hist), statuses }
        }));
    }
    let mut all = report::histogram();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let r = t.await?;
        if let Some(h) = r.latencies {
            all.add(&h)?;
        }
        for (k, v) in r.statuses {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = report::own_cpu_seconds() - cpu_before;
    let acknowledged: u64 = statuses.iter().filter(|(k, _)| k.starts_with('2')).map(|(_, v)| v).sum();
    let sent: u64 = statuses.values().sum();
    let l = Latencies::of(&all);
    let rate = acknowledged as f64 / elapsed;
    if args.json {
        let v = serde_json::json!({
            "label": args.label,
            "concurrency": args.concurrency,
            "sent": sent,
            "acknowledged": acknowledged,
            "seconds": elapsed,
            "deliveries_per_sec": rate,
            "p50_ms": l.p50_ms, "p90_ms": l.p90_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms,
            "statuses": statuses,
            "avg_body_bytes": bytes as f64 / prepared.len() as f64,
            "signing_ms": signing.as_secs_f64() * 1e3,
            "cpu_s": cpu,
        });
        println!("{v}");
    } else {
        let label = if args.label.is_empty() { String::new() } else { format!("{} ", args.label) };
        println!(
            "{label}concurrency {}: {sent} sent in {elapsed:.2} s, {acknowledged} acknowledged: {rate:.0} deliveries/s",
            args.concurrency
        );
        println!("  latency {}", l.describe());
        let counts: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("  by status: {}", counts.join(", "));
        println!("  load generator CPU: {:.2} s ({:.0} µs per request)", cpu, cpu * 1e6 / sent.max(1) as f64);
        println!(
            "  (signed {} bodies of {:.0} bytes on average in {:.0} ms, before the clock started)",
            prepared.len(),
            bytes as f64 / prepared.len() as f64,
            signing.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
