//! The Millrace web dashboard: every queue's counts, rates and a throughput
//! chart, refreshing by itself; a queue's ready, pending, delayed and dead
//! jobs with requeue, run-now, replay and purge; one job's whole story; the
//! consumers with their heartbeats; the cron schedules with pause and
//! resume. The `millrace web` command serves it.
//!
//! Server-rendered HTML (axum + maud) with one small script of our own
//! (`assets/app.js`, compiled into the binary) that refreshes the overview.
//! It reads through [`millrace_core::inspect`] and writes through
//! [`millrace_core::admin`], like the CLI, so every page costs a bounded
//! number of Redis commands and the worker's hot path never sees it.
//!
//! Safe by default: it listens on loopback unless told otherwise, and
//! refuses a non-loopback address without an auth token or basic auth;
//! `read_only` hides and refuses every action; every action is a POST that
//! must carry the page's CSRF token and come from the same origin; bulk
//! actions show what they will touch on a confirmation page first.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use millrace_web::{Server, WebConfig};
//!
//! let conn = millrace_core::connect::command_connection("redis://127.0.0.1:6379").await?;
//! let config = WebConfig::new("millrace", "redis://127.0.0.1:6379");
//! let server = Server::bind(config, conn).await?;
//! println!("dashboard on http://{}", server.local_addr());
//! server.run(std::future::pending()).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod actions;
mod app;
mod config;
mod confirm;
mod consumers;
mod error;
mod fmt;
mod history;
mod job;
mod lanes;
mod layout;
mod overview;
mod queue_page;
mod schedules;
mod security;

use std::future::Future;
use std::net::SocketAddr;

use millrace_core::Conn;

pub use config::{Auth, WebConfig};
pub use error::WebError;

/// A bound dashboard, ready to serve.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    addr: SocketAddr,
}

impl Server {
    /// Checks `config` (a non-loopback address needs auth) and binds its
    /// address. `conn` is the command connection every page shares.
    pub async fn bind(config: WebConfig, conn: Conn) -> Result<Self, WebError> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| WebError::Bind {
                addr: config.listen,
                reason: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| WebError::Bind {
            addr: config.listen,
            reason: e.to_string(),
        })?;
        let router = app::router(app::App::new(config, conn)?);
        Ok(Self {
            listener,
            router,
            addr,
        })
    }

    /// The address it listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then finishes the requests under
    /// way.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WebError> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| WebError::Serve(e.to_string()))
    }
}
