//! The outbox, the relay and exactly-once effects against a private
//! PostgreSQL and a private redis-server per test.

mod acl;
mod common;
mod crash;
mod effects;
mod enqueue;
mod faults;
mod processes;
mod relays;
