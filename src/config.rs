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
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 1000;

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
    /// Write a checkpoint signing key (a file, mode 0600) and print its verifier key.
    Keygen(KeygenArgs),
    /// Print a command's evidence document: what `check-evidence` checks offline.
    Evidence(EvidenceArgs),
    /// Check an evidence document offline (no database, no network); exit non-zero naming what failed.
    CheckEvidence(CheckEvidenceArgs),
}

/// The verifiable log's signing key and checkpoints.
#[derive(Debug, Clone, Default, Args)]
pub struct CheckpointSettings {
    /// The checkpoint signing key (`ticket-audit keygen` writes one). Without it, one is generated
    /// in DATA_DIR on first start (checkpoint.key) and its verifier key is logged.
    #[arg(long, env = "CHECKPOINT_KEY_FILE")]
    pub checkpoint_key_file: Option<PathBuf>,
    /// The log's name in its checkpoints, unique per deployment (the key's name; by default the
    /// name the key was made with).
    #[arg(long, env = "CHECKPOINT_ORIGIN")]
    pub checkpoint_origin: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// The key's name: the log's origin. Defaults to CHECKPOINT_ORIGIN.
    #[arg(long, env = "CHECKPOINT_ORIGIN")]
    pub name: Option<String>,
    /// Where to write the key (refuses to overwrite).
    #[arg(long, default_value = "checkpoint.key")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct EvidenceArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The command's id, as the read API gives it (`SEQ.POSITION`).
    pub command_id: String,
}

#[derive(Debug, Clone, Args)]
pub struct CheckEvidenceArgs {
    /// The log's verifier key line (from GET /api/v1/ledger/key), or a file holding it.
    #[arg(long)]
    pub key: String,
    /// The evidence document (`-` for standard input).
    pub file: PathBuf,
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
    /// Also prove that today's tree extends this checkpoint, saved earlier (a signed note), and
    /// that every stored tree hash matches the deliveries.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// The verifier key to check the checkpoint's signature with (a line or a file); by default
    /// the configured signing key's.
    #[arg(long, value_name = "VERIFIER_KEY", requires = "checkpoint")]
    pub key: Option<String>,
    #[command(flatten)]
    pub signing: CheckpointSettings,
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
    #[command(flatten)]
    pub signing: CheckpointSettings,
    /// Most often a checkpoint is signed while the tree grows, in milliseconds.
    #[arg(long, env = "CHECKPOINT_INTERVAL_MS", default_value_t = DEFAULT_CHECKPOINT_INTERVAL_MS)]
    pub checkpoint_interval_ms: u64,
    /// Also write every checkpoint signed here, one file each (somewhere the database's superuser cannot reach).
    #[arg(long, env = "CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
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
            signing: CheckpointSettings::default(),
            checkpoint_interval_ms: DEFAULT_CHECKPOINT_INTERVAL_MS,
            checkpoint_dir: None,
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
