//! `reads`: the latency of the read paths a support engineer and an analyst use, over tickets,
//! agents and tenants taken from the API itself.
//!
//! Requests go one at a time on one connection (latency, not throughput), interleaved across the
//! reads so that a disturbance on the machine lands on all of them alike.

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::{Method, Request};
use serde_json::Value;

use crate::client::{Connection, Error, Target};
use crate::report::{self, Latencies};

#[derive(Debug, clap::Args)]
pub struct ReadsArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// A read token (an admin one: `API_TOKENS=token`). Without it, requests carry none.
    #[arg(long, env = "BENCH_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Timed requests per read.
    #[arg(long, short = 'k', default_value_t = 200)]
    pub iterations: usize,
    /// Pages walked (untimed) before a deep page of all commands is timed.
    #[arg(long, default_value_t = 200)]
    pub deep_pages: usize,
    /// Pages walked before a deep page of one agent's commands is timed (an agent has a sixth of
    /// the commands, and a small store has fewer than 200 pages of them).
    #[arg(long, default_value_t = 50)]
    pub deep_filtered_pages: usize,
    /// Pages of 500 tickets read to pick tickets, agents and tenants from.
    #[arg(long, default_value_t = 10)]
    pub sample_pages: usize,
    /// Substrings for `contains` (repeat the flag); the default is commands an auditor looks for.
    #[arg(long = "needle")]
    pub needles: Vec<String>,
    /// Untimed requests per read first, so connections and plans are warm.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A label printed with the results.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

const DEFAULT_NEEDLES: [&str; 6] =
    ["terminate-instances", "kubectl delete", "rm -rf", "drop table", "get-secret-value", "terraform destroy"];

/// A small seeded generator (xorshift64*): the same seed picks the same tickets.
struct Rng(u64);

impl Rng {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        &items[(r % items.len() as u64) as usize]
    }
}

/// Percent-encodes a query value or a path segment.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Api {
    conn: Connection,
    auth: Option<HeaderValue>,
}

impl Api {
    async fn get(&mut self, path: &str) -> Result<Value, Error> {
        let mut req = Request::builder().method(Method::GET).uri(path).body(Full::new(Bytes::new()))?;
        if let Some(a) = &self.auth {
            req.headers_mut().insert(AUTHORIZATION, a.clone());
        }
        let (status, body) = self.conn.send(req).await?;
        if status != 200 {
            return Err(format!("GET {path}: {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        Ok(serde_json::from_slice(&body)?)
    }

    async fn timed(&mut self, path: &str, h: &mut Histogram<u64>) -> Result<Value, Error> {
        let t0 = Instant::now();
        let v = self.get(path).await?;
        h.saturating_record(t0.elapsed().as_micros() as u64);
        Ok(v)
    }
}

/// The histogram of read `k`, or a scratch one while warming up.
fn slot<'a>(
    hists: &'a mut [Histogram<u64>],
    scratch: &'a mut Histogram<u64>,
    timed: bool,
    k: usize,
) -> &'a mut Histogram<u64> {
    if timed {
        &mut hists[k]
    } else {
        scratch
    }
}

fn with_cursor(path: &str, cursor: Option<&str>) -> String {
    match cursor {
        None => path.to_owned(),
        Some(c) => format!("{path}{}cursor={}", if path.contains('?') { '&' } else { '?' }, enc(c)),
    }
}

/// A list walked `deep` pages in (untimed) before each timed page; starts over when it ends.
struct DeepWalk {
    path: String,
    cursor: Option<String>,
    depth: usize,
}

impl DeepWalk {
    async fn timed(&mut self, api: &mut Api, deep: usize, h: &mut Histogram<u64>) -> Result<(), Error> {
        while self.depth < deep {
            let page = api.get(&with_cursor(&self.path, self.cursor.as_deref())).await?;
            self.advance(&page, deep)?;
        }
        let path = with_cursor(&self.path, self.cursor.as_deref());
        let page = api.timed(&path, h).await?;
        self.advance(&page, deep)
    }

    fn advance(&mut self, page: &Value, deep: usize) -> Result<(), Error> {
        match page["next_cursor"].as_str() {
            Some(c) => {
                self.cursor = Some(c.to_owned());
                self.depth += 1;
            }
            None if self.depth < deep => {
                return Err(
                    format!("{} has fewer than {deep} pages: load more, or lower --deep-pages", self.path).into()
                )
            }
            None => {
                self.cursor = None;
                self.depth = 0;
            }
        }
        Ok(())
    }
}

pub async fn run(args: ReadsArgs) -> Result<(), Error> {
    let target = Target::parse(&args.url)?;
    let auth = args.token.as_deref().map(|t| HeaderValue::from_str(&format!("Bearer {t}"))).transpose()?;
    let mut api = Api { conn: Connection::new(target), auth };

    // What to read: tickets, agents and tenants as the API lists them.
    let (mut tickets, mut agents, mut tenants) = (Vec::new(), BTreeSet::new(), BTreeSet::new());
    let mut cursor: Option<String> = None;
    for _ in 0..args.sample_pages.max(1) {
        let page = api.get(&with_cursor("/api/v1/tickets?limit=500", cursor.as_deref())).await?;
        for t in page["items"].as_array().into_iter().flatten() {
            if let Some(name) = t["name"].as_str() {
                tickets.push(name.to_owned());
            }
            if let Some(a) = t["assignee"]["agent_name"].as_str() {
                agents.insert(a.to_owned());
            }
            if let Some(x) = t["tenant_id"].as_str() {
                tenants.insert(x.to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let agents: Vec<String> = agents.into_iter().collect();
    let tenants: Vec<String> = tenants.into_iter().collect();
    if tickets.is_empty() || agents.is_empty() || tenants.is_empty() {
        return Err("the store has no tickets with an agent and a tenant: load some first".into());
    }
    let needles: Vec<String> = if args.needles.is_empty() {
        DEFAULT_NEEDLES.iter().map(|s| s.to_string()).collect()
    } else {
        args.needles.clone()
    };

    let names = [
        "ticket_timeline",
        "ticket_commands",
        "commands_by_agent",
        "commands_by_tenant",
        "commands_contains",
        "commands_deep",
        "commands_by_agent_deep",
    ];
    let mut hists: Vec<Histogram<u64>> = names.iter().map(|_| report::histogram()).collect();
    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let deep_agent = rng.pick(&agents).clone();
    let mut deep = DeepWalk { path: "/api/v1/commands".into(), cursor: None, depth: 0 };
    let mut deep_agent_walk =
        DeepWalk { path: format!("/api/v1/commands?agent_name={}", enc(&deep_agent)), cursor: None, depth: 0 };

    let started = Instant::now();
    for i in 0..args.warmup + args.iterations {
        let timed = i >= args.warmup;
        let mut scratch = report::histogram();
        let ticket = enc(rng.pick(&tickets).as_str());
        let agent = enc(rng.pick(&agents).as_str());
        let tenant = enc(rng.pick(&tenants).as_str());
        let needle = enc(rng.pick(&needles).as_str());
        let h = &mut hists;
        api.timed(&format!("/api/v1/tickets/{ticket}/timeline"), slot(h, &mut scratch, timed, 0)).await?;
        api.timed(&format!("/api/v1/tickets/{ticket}/commands"), slot(h, &mut scratch, timed, 1)).await?;
        api.timed(&format!("/api/v1/commands?agent_name={agent}"), slot(h, &mut scratch, timed, 2)).await?;
        api.timed(&format!("/api/v1/commands?tenant_id={tenant}"), slot(h, &mut scratch, timed, 3)).await?;
        api.timed(&format!("/api/v1/commands?contains={needle}"), slot(h, &mut scratch, timed, 4)).await?;
        deep.timed(&mut api, args.deep_pages, slot(h, &mut scratch, timed, 5)).await?;
        deep_agent_walk.timed(&mut api, args.deep_filtered_pages, slot(h, &mut scratch, timed, 6)).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();

    let results: Vec<(&str, Latencies)> = names.iter().zip(&hists).map(|(n, h)| (*n, Latencies::of(h))).collect();
    if args.json {
        let reads: serde_json::Map<String, Value> = results.iter().map(|(n, l)| (n.to_string(), l.json())).collect();
        let v = serde_json::json!({
            "label": args.label,
            "iterations": args.iterations,
            "deep_pages": args.deep_pages,
            "deep_filtered_pages": args.deep_filtered_pages,
            "tickets_sampled": tickets.len(), "agents": agents.len(), "tenants": tenants.len(),
            "seconds": elapsed,
            "reads": reads,
        });
        println!("{v}");
    } else {
        let label = if args.label.is_empty() { String::new() } else { format!("{}: ", args.label) };
        println!(
            "{label}{} timed requests per read over {} tickets, {} agents, {} tenants; deep = after {} pages of 50 \
             ({} for one agent's)",
            args.iterations,
            tickets.len(),
            agents.len(),
            tenants.len(),
            args.deep_pages,
            args.deep_filtered_pages
        );
        println!("  {:<24} {:>9} {:>9} {:>9} {:>9}", "read", "p50 ms", "p90 ms", "p99 ms", "max ms");
        for (n, l) in &results {
            println!("  {:<24} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", n, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms);
        }
    }
    Ok(())
}
