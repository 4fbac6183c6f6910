//! `millrace web`: the web dashboard (the `millrace-web` crate) on
//! 127.0.0.1:8080 until SIGINT/SIGTERM. A non-loopback `--listen` needs
//! `--auth-token` or `--basic-auth`; the check runs before connecting.

use std::net::SocketAddr;
use std::time::Duration;

use millrace_core::connect::Endpoint;
use millrace_web::{Auth, Server, WebConfig};

use crate::duration;

/// Flags of `millrace web`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on. A non-loopback address needs --auth-token or
    /// --basic-auth.
    #[arg(long, env = "MILLRACE_WEB_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Hide and refuse every action (pause, requeue, run now, replay,
    /// purge, prune).
    #[arg(long)]
    read_only: bool,
    /// Require this token (at least 16 characters): `Authorization: Bearer
    /// <token>`, or open the dashboard once with `?token=<token>` (kept in
    /// a cookie).
    #[arg(
        long,
        env = "MILLRACE_WEB_TOKEN",
        hide_env_values = true,
        conflicts_with = "basic_auth"
    )]
    auth_token: Option<String>,
    /// Require HTTP basic auth, given as user:password.
    #[arg(long, env = "MILLRACE_WEB_BASIC_AUTH", hide_env_values = true)]
    basic_auth: Option<String>,
    /// A consumer with no heartbeat for this long is dead (consumers page
    /// and prune), as `millrace consumers --dead-after`.
    #[arg(long, value_parser = duration, default_value = "30s")]
    dead_after: Duration,
}

/// Runs `millrace web` until a stop signal.
pub async fn run(a: Args, redis: &Endpoint, prefix: &str) -> anyhow::Result<()> {
    let mut config = WebConfig::new(prefix, &redis.url);
    config.listen = a.listen;
    config.read_only = a.read_only;
    config.dead_after = a.dead_after;
    config.auth = match (a.auth_token, a.basic_auth) {
        (Some(t), _) => Some(Auth::Token(t)),
        (None, Some(b)) => Some(Auth::basic(&b)?),
        (None, None) => None,
    };
    config.validate()?;
    let conn = redis.command_connection().await?;
    let shown = config.redis_shown.clone();
    let read_only = config.read_only;
    let server = Server::bind(config, conn).await?;
    println!(
        "millrace web: serving http://{} (Redis {shown}, prefix {prefix:?}{}); Ctrl-C stops",
        server.local_addr(),
        if read_only { ", read-only" } else { "" }
    );
    server.run(crate::stop_signal()).await?;
    Ok(())
}
