//! ticket-audit: the audit record of an AI ServiceDesk. Receives its webhook deliveries, keeps
//! each byte for byte in a hash-chained ledger, normalizes them into tickets, messages and
//! commands, and serves them over a read API.
//!
//! The parts, outside in:
//! - [`cli`]: the commands of the binary, one file each;
//! - [`serve()`]: start-up and shutdown of the service;
//! - [`http`]: the HTTP surface (ingest, read API, health, metrics);
//! - [`ui`]: the web page at `/ui`, server-rendered over the read API's store functions;
//! - [`ingest`]: from received bytes to a delivery ready to store;
//! - [`domain`]: pure rules (parsing, normalizing, the chain, the Merkle tree, checkpoints), no I/O;
//! - [`checkpointing`]: the log's signing key and the task that signs checkpoints;
//! - [`store`]: PostgreSQL (connecting, migrations, writes, reads, the ledger, reports);
//! - [`reports`]: the analysts' reports of `sql/`, embedded;
//! - [`postgres_local`]: the private cluster used when no database is configured;
//! - [`config`], [`telemetry`]: settings shared by the commands, and logs.

pub mod checkpointing;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod log_commands;
pub mod postgres_local;
pub mod reports;
mod serve;
pub mod store;
pub mod telemetry;
pub mod ui;

pub use serve::{migrate, serve};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
