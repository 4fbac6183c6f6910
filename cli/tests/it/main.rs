//! End-to-end tests of the `millrace` binary against a private redis-server.
