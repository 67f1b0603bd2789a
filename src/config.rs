//! Every setting in one place: a flag each, with an environment variable of the same name.

use std::path::PathBuf;

use std::time::Duration;

use clap::{Args, ValueEnum};

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

/// A value that must never be printed: its Debug shows nothing of it, and it is zeroed when dropped.
pub type Secret = secrecy::SecretString;

/// Settings every command takes: how logs are written.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format: human-readable text (coloured only on a terminal), or one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info,ticket_audit=debug`).
    #[arg(long = "rust-log", alias = "log-filter", env = "RUST_LOG", default_value = "info", global = true)]
    pub rust_log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the database is, and how to talk to it: every command that reads or writes the record takes these.
impl DatabaseArgs {
    /// The data directory as given, or the default (where the generated checkpoint key lives).
    pub fn data_dir_or_default(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(crate::store::database::DEFAULT_DATA_DIR))
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL. Without one, a private cluster is run in DATA_DIR from the PostgreSQL binaries installed here.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// PostgreSQL URL of a streaming replica of DATABASE_URL's database: the read API, the page,
    /// `report` and `psql` read there; the writer, the checkpointer, the classifier and proofs stay
    /// on the primary. A replica may lag: see X-Min-Seq (docs/operations.md, "Read replicas").
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<Secret>,
    /// Where the private PostgreSQL cluster lives when DATABASE_URL is not set [default: ./data; run as root
    /// where the server's user cannot reach ./data, /var/lib/ticket-audit]
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most connections the service opens for reads (the writer keeps two more).
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// How long to wait for a database connection before answering 503, in milliseconds.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,
    /// How long opening a connection may take (TCP, TLS, authentication), in milliseconds; then the
    /// command stops with an error naming the host.
    #[arg(long, env = "DB_CONNECT_TIMEOUT_MS", default_value_t = DEFAULT_CONNECT_TIMEOUT_MS)]
    pub db_connect_timeout_ms: u64,
    /// Longest a single SQL statement may run, in milliseconds (PostgreSQL's statement_timeout; 0: no
    /// limit) [default: 60000 for `serve`, no limit for the other commands, which stream the whole record]
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS")]
    pub db_statement_timeout_ms: Option<u64>,
    /// Never apply migrations: start only if the schema is already the one this build needs (for a login that
    /// may write rows but not change the schema). Without it, migrations are applied when the schema is behind.
    #[arg(long, env = "NO_MIGRATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_migrate: bool,
}

pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5000;
pub const DEFAULT_STATEMENT_TIMEOUT_MS_SERVE: u64 = 60_000;

impl Default for DatabaseArgs {
    fn default() -> Self {
        DatabaseArgs {
            database_url: None,
            database_read_url: None,
            data_dir: None,
            db_max_connections: 10,
            db_acquire_timeout_ms: 3000,
            db_connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            db_statement_timeout_ms: None,
            no_migrate: false,
        }
    }
}

impl DatabaseArgs {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.db_connect_timeout_ms)
    }
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
    #[command(flatten)]
    pub signing: CheckpointSettings,
    /// Most often a checkpoint is signed while the tree grows, in milliseconds.
    #[arg(long, env = "CHECKPOINT_INTERVAL_MS", default_value_t = DEFAULT_CHECKPOINT_INTERVAL_MS)]
    pub checkpoint_interval_ms: u64,
    /// Also write every checkpoint signed here, one file each (somewhere the database's superuser cannot reach).
    #[arg(long, env = "CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Longest a read with `X-Min-Seq: N` waits for the replica to show seq N, in milliseconds;
    /// then 503 with Retry-After.
    #[arg(long, env = "MIN_SEQ_WAIT_MS", default_value_t = DEFAULT_MIN_SEQ_WAIT_MS)]
    pub min_seq_wait_ms: u64,
    /// With several instances on one database: the URL the other instances reach this one at
    /// (`http://host:port`, or `auto` for `http://` and the address it listens on). Given, an
    /// instance that is not writing passes each webhook delivery on to the one that holds the
    /// writers' lease, so that one writer batches every instance's deliveries
    /// (docs/operations.md); unset, each instance writes its own, in turn.
    #[arg(long, env = "ADVERTISE_URL")]
    pub advertise_url: Option<String>,
}

pub const DEFAULT_MIN_SEQ_WAIT_MS: u64 = 2000;

pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 1000;

/// The verifiable log's signing key and origin (`serve`, and `verify --checkpoint` without `--key`).
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
            signing: CheckpointSettings::default(),
            checkpoint_interval_ms: DEFAULT_CHECKPOINT_INTERVAL_MS,
            checkpoint_dir: None,
            min_seq_wait_ms: DEFAULT_MIN_SEQ_WAIT_MS,
            advertise_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::from("whsec_abc");
        assert!(!format!("{s:?}").contains("abc"));
        assert_eq!(s.expose_secret(), "whsec_abc");
    }
}
