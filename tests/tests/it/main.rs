//! End-to-end tests against a private `redis-server` per test.

mod acl;
mod axum_service;
mod cancel;
mod cluster;
mod common;
mod delayed;
mod demo;
mod failures;
mod flow;
mod history;
mod lanes;
mod lanes_metrics;
mod library;
mod metrics;
mod otel;
mod processes;
mod producer;
mod reliability;
mod retries;
mod routine;
mod runner;
mod schedules;
mod status;
mod tls;
mod unique;
