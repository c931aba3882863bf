//! End-to-end tests of `broker-server`, in the integration-test binary `e2e/main.rs`.
//!
//! This library is empty: Cargo needs a library or binary target in every package. The tests
//! start the real server binary on `127.0.0.1:0` and speak HTTP and SSE to it over TCP; run them
//! with `cargo build -p broker-server && cargo test -p broker-tests`.
