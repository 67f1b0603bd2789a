//! Integration tests: the app on port 0, real HTTP, a fresh PostgreSQL database per test.

mod helpers;

mod auth;
mod cli;
mod columns;
mod connections;
mod contract;
mod edge;
mod hostile;
mod ingest;
mod interop;
mod ledger;
mod limits;
mod metrics;
mod normalization;
mod outage;
mod ownership;
mod plans;
mod poison;
mod reads;
mod reports;
mod resilience;
mod secrets;
mod stream;
mod tenancy;
mod verifiable;
