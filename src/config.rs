//! Every setting in one place: a flag each, with an environment variable of the same name.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;
pub const DEFAULT_BATCH_MAX: usize = 256;
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_KEEPALIVE_IDLE_TIMEOUT_SECS: u64 = 60;
/// Room under the common 1,024 open-file limit for the database pools, the private cluster's
/// socket and log files, and the connection accepted only to be closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 768;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper's HTTP/1 read buffer cannot be smaller.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// A value that must never be printed: its Debug shows nothing of it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "ticket-audit",
    version,
    about = "The audit record of an AI ServiceDesk: receive, record, normalize, serve."
)]
pub struct Cli {
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, then serve HTTP.
    Serve(ServeArgs),
    /// Apply migrations and exit.
    Migrate(DatabaseArgs),
    /// Check the tamper-evidence of the stored record; exit non-zero on a break, naming where.
    Verify(VerifyArgs),
    /// Write the compliance record (executed commands) as NDJSON or CSV.
    Export(ExportArgs),
    /// Load deliveries from NDJSON, one stored delivery per line, as if received.
    Import(ImportArgs),
    /// Rebuild the normalized tables from the stored deliveries.
    Reproject(DatabaseArgs),
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Also prove the chain still passes through this head, recorded earlier (from GET /api/v1/ledger/head).
    #[arg(long, env = "EXPECT_HEAD", value_name = "SEQ:HASH")]
    pub expect_head: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// First time included (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub since: Option<time::OffsetDateTime>,
    /// First time excluded (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub until: Option<time::OffsetDateTime>,
    #[arg(long, value_enum, default_value_t = crate::store::export::Format::Ndjson)]
    pub format: crate::store::export::Format,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// NDJSON file (`-` for standard input). Each line: {"body": <the delivery>, "headers": {...}, "received_at": "..."}
    /// (or "body_base64" for the exact bytes); a line without "body" or "body_base64" is itself the body.
    pub file: PathBuf,
}

fn rfc3339(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("`{s}` is not an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"))
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL. Without one, a private cluster is run in DATA_DIR from the PostgreSQL binaries installed here.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Where the private PostgreSQL cluster lives when DATABASE_URL is not set.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Most connections the service opens for reads (the writer keeps two more).
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// How long to wait for a database connection before answering 503, in milliseconds.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    #[command(flatten)]
    pub http: HttpSettings,
}

/// What the HTTP application needs to know, apart from where its database is.
#[derive(Debug, Clone, Args)]
pub struct HttpSettings {
    /// Largest webhook body accepted, in bytes; one more is answered 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Standard Webhooks secrets (`whsec_...`), space-separated; any may sign (rotation).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,
    /// Largest accepted difference between webhook-timestamp and now, in seconds.
    #[arg(long, env = "WEBHOOK_TOLERANCE_SECS", default_value_t = DEFAULT_TOLERANCE_SECS)]
    pub webhook_tolerance_secs: u64,
    /// Bearer token senders must present (used when WEBHOOK_SECRET is not set).
    #[arg(long, env = "INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<Secret>,
    /// Read API tokens: `token` (admin) or `token=tenant_id`, separated by spaces or commas.
    #[arg(long, env = "API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<Secret>,
    /// Deliveries that may wait for the writer; beyond this, senders get 503 and retry.
    #[arg(long, env = "WRITE_QUEUE_CAPACITY", default_value_t = DEFAULT_QUEUE_CAPACITY)]
    pub write_queue_capacity: usize,
    /// Most deliveries committed in one transaction (1: one transaction per delivery).
    #[arg(long, env = "WRITE_BATCH_MAX", default_value_t = DEFAULT_BATCH_MAX)]
    pub write_batch_max: usize,
    /// Longest time a request may take, in seconds (a sender trickling its body is cut off then).
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS)]
    pub request_timeout_secs: u64,
    /// Most requests served at once; beyond, 503 with Retry-After at once rather than a queue.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,
    /// Most messages and commands one delivery may add; a delivery with more is refused (413), so
    /// no single delivery holds up everyone else's for long.
    #[arg(long, env = "MAX_DELIVERY_ROWS", default_value_t = crate::ingest::DEFAULT_MAX_DELIVERY_ROWS)]
    pub max_delivery_rows: usize,
    /// Longest time a client may take to send a request's line and headers, in milliseconds,
    /// counted from when the connection waits for it (accepted, or the previous answer sent);
    /// then the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed, in seconds (HTTP/1
    /// connections between requests are also bound by HEADER_READ_TIMEOUT_MS, whichever is shorter).
    #[arg(long, env = "KEEPALIVE_IDLE_TIMEOUT_SECS", default_value_t = DEFAULT_KEEPALIVE_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_idle_timeout_secs: u64,
    /// Most client connections open at once; beyond, a new connection is closed as soon as it is
    /// accepted (counted and logged), so the service never runs out of file descriptors.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// Largest request head (request line and headers) accepted, in bytes; beyond, 431. HTTP/2:
    /// the largest header list (RFC 9113 SETTINGS_MAX_HEADER_LIST_SIZE). At least 8192.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(MIN_HEADER_BYTES as u64..=u32::MAX as u64))]
    pub max_header_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            webhook_secret: None,
            webhook_tolerance_secs: DEFAULT_TOLERANCE_SECS,
            ingest_token: None,
            api_tokens: None,
            write_queue_capacity: DEFAULT_QUEUE_CAPACITY,
            write_batch_max: DEFAULT_BATCH_MAX,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_delivery_rows: crate::ingest::DEFAULT_MAX_DELIVERY_ROWS,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            keepalive_idle_timeout_secs: DEFAULT_KEEPALIVE_IDLE_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("whsec_abc".into());
        assert!(!format!("{s:?}").contains("abc"));
    }
}
