//! Integration tests: the app on port 0, real HTTP, a fresh PostgreSQL database per test.

mod helpers;

mod archive;
mod auth;
mod browser;
mod cli;
mod columns;
mod connections;
mod contract;
mod edge;
mod hostile;
mod ingest;
mod instances;
mod interop;
mod ledger;
mod limits;
mod metrics;
mod normalization;
mod outage;
mod ownership;
mod partitions;
mod pipeline;
mod plans;
mod poison;
mod reads;
mod redaction;
mod replica;
mod reports;
mod resilience;
mod secrets;
mod stream;
mod tenancy;
mod ui;
mod verifiable;
