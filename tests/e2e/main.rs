//! End-to-end tests of `broker-server`: each test starts the real binary on `127.0.0.1:0` with
//! its own database in a temporary directory and talks to it over TCP, checking what
//! `docs/PROTOCOL.md` promises to clients.
//!
//! Build the server first (`cargo build -p broker-server`; `cargo xtask ci` does it), or point
//! `BROKER_SERVER_BIN` at a binary.

mod audit;
mod auth;
mod browser;
mod bulk;
mod cors;
mod durability;
mod errors;
mod events;
mod h2;
mod idempotency;
mod insert;
mod lifecycle;
mod limits;
mod memory;
mod nats_cluster;
mod nats_durability;
mod nats_storage;
mod observability;
mod openapi;
mod recovery;
mod regressions;
mod resume;
mod retention;
mod scaling;
mod snapshot;
mod storage_faults;
mod support;
mod tls;
