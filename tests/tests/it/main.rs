//! End-to-end tests against a private `redis-server` per test.

mod common;
mod delayed;
mod flow;
mod failures;
mod processes;
mod producer;
