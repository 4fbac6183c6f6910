//! End-to-end tests of the `millrace` binary: each test starts a private
//! `redis-server`, puts real jobs in every state through the protocol's own
//! operations (or a real `millrace-worker`), runs the binary and checks its
//! output and what it changed.

mod acl;
mod cluster;
mod common;
mod destructive;
mod errors;
mod history;
mod lanes;
mod outbox;
mod partitions;
mod read;
mod schedules;
mod tls;
mod top;
mod unique;
mod web;
