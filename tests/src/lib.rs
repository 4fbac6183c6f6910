//! # millrace-tests
//!
//! The test harness: [`RedisServer`] starts a private `redis-server` on a
//! free port in a temporary directory (`--save "" --appendonly no` unless
//! asked otherwise), waits until it answers PING, and kills it on drop. A
//! test can stop, restart or pause its own server to test reconnects. The
//! demo, the benchmark and the chaos run use it too, to start a local
//! Redis when none is configured. [`RedisOptions`] starts it with TLS
//! ([`TlsMode`], certificates made by the test: [`TestCerts`]) or extra
//! `redis-server` arguments; [`RedisCluster`] starts a local Redis Cluster
//! (three masters, three replicas); [`readme_acl_users`] are the README's
//! least-privilege users, for [`RedisServer::create_users`]. [`Proxy`] puts a TCP proxy that can
//! black-hole traffic between a worker and its server. [`PostgresServer`]
//! starts a private PostgreSQL the same way (or uses
//! `MILLRACE_TEST_DATABASE_URL`), for the outbox tests.
//!
//! ```no_run
//! let redis = millrace_tests::RedisServer::start().unwrap();
//! println!("test Redis at {}", redis.url());
//! ```

mod acl;
mod cluster;
mod postgres;
mod proxy;
mod tls;
mod worker;

pub use acl::{AclUser, readme_acl_users};
pub use cluster::{NODE_TIMEOUT_MS, RedisCluster};
pub use postgres::{PostgresError, PostgresServer, TEST_DATABASE_URL_ENV};
pub use proxy::Proxy;
pub use tls::{TestCerts, TlsMode, tls_flags};
pub use worker::WorkerProcess;

use millrace_core::connect::{Endpoint, TlsConfig};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the harness failed to start a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// `redis-server` is not installed.
    #[error(
        "redis-server not found on PATH: install it (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`) or set MILLRACE_REDIS_URL"
    )]
    NotInstalled,
    /// The server did not come up; its log is attached.
    #[error("redis-server did not start on port {port}: {reason}\n--- redis log ---\n{log}")]
    NotStarted {
        /// The port tried.
        port: u16,
        /// Why.
        reason: String,
        /// The server's log.
        log: String,
    },
    /// A filesystem or process error.
    #[error("harness i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Persistence of a test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk (`--save "" --appendonly no`).
    None,
    /// Append-only file with `appendfsync everysec`.
    AofEverySec,
    /// Append-only file with `appendfsync always`.
    AofAlways,
}

/// How a test server is started.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Persistence. Defaults to none.
    pub persistence: Persistence,
    /// TLS on the server's only port (`--port 0 --tls-port P`), with
    /// certificates made in its directory. Defaults to none.
    pub tls: Option<TlsMode>,
    /// Extra `redis-server` arguments, after the harness's own.
    pub args: Vec<String>,
    /// Certificates shared with other servers (a TLS cluster's nodes must
    /// trust one CA); by default each TLS server makes its own.
    pub certs: Option<TestCerts>,
    /// The host clients name in the server's URL (it listens on
    /// 127.0.0.1 either way). Defaults to `127.0.0.1`.
    pub host: String,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            persistence: Persistence::None,
            tls: None,
            args: Vec::new(),
            certs: None,
            host: "127.0.0.1".to_owned(),
        }
    }
}

impl RedisOptions {
    /// A TLS server (see [`TlsMode`]).
    #[must_use]
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = Some(mode);
        self
    }
}

/// A private `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: RedisOptions,
}

impl RedisServer {
    /// Starts a server with no persistence on a free port.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(Persistence::None)
    }

    /// Starts a server with the given persistence on a free port.
    pub fn start_with(persistence: Persistence) -> Result<Self, HarnessError> {
        Self::start_options(RedisOptions {
            persistence,
            ..RedisOptions::default()
        })
    }

    /// Starts a server with `options` on a free port.
    pub fn start_options(options: RedisOptions) -> Result<Self, HarnessError> {
        let mut dir = tempfile::Builder::new()
            .prefix("millrace-redis")
            .tempdir()?;
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = Self {
                child: None,
                port,
                dir,
                options: options.clone(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    dir = server.take_dir()?;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(HarnessError::NotStarted {
            port: 0,
            reason: "no free port".into(),
            log: String::new(),
        }))
    }

    fn take_dir(mut self) -> Result<tempfile::TempDir, HarnessError> {
        self.kill();
        let fresh = tempfile::Builder::new()
            .prefix("millrace-redis")
            .tempdir()?;
        Ok(std::mem::replace(&mut self.dir, fresh))
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let mut cmd = Command::new("redis-server");
        match self.options.tls {
            None => cmd.arg("--port").arg(self.port.to_string()),
            Some(mode) => {
                let certs = match &self.options.certs {
                    Some(shared) => shared.clone(),
                    None => TestCerts::in_dir(self.dir.path())?,
                };
                let auth = if mode == TlsMode::Mutual { "yes" } else { "no" };
                cmd.args(["--port", "0", "--tls-port"])
                    .arg(self.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(certs.server_cert())
                    .arg("--tls-key-file")
                    .arg(certs.server_key())
                    .arg("--tls-ca-cert-file")
                    .arg(certs.ca())
                    .args(["--tls-auth-clients", auth])
            }
        };
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .arg("--save")
            .arg("")
            .arg("--enable-debug-command")
            .arg("yes")
            .arg("--maxmemory-policy")
            .arg("noeviction");
        match self.options.persistence {
            Persistence::None => {
                cmd.arg("--appendonly").arg("no");
            }
            Persistence::AofEverySec | Persistence::AofAlways => {
                let sync = if self.options.persistence == Persistence::AofAlways {
                    "always"
                } else {
                    "everysec"
                };
                cmd.arg("--appendonly")
                    .arg("yes")
                    .arg("--appendfsync")
                    .arg(sync);
            }
        }
        cmd.args(&self.options.args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HarnessError::NotInstalled);
            }
            Err(e) => return Err(e.into()),
        };
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(10))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(self.not_started(format!("exited with {status}")));
            }
            if self.ping() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_started(format!("no PONG within {limit:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn not_started(&self, reason: String) -> HarnessError {
        HarnessError::NotStarted {
            port: self.port,
            reason,
            log: self.log(),
        }
    }

    fn ping(&self) -> bool {
        let Ok(client) = self.endpoint().client() else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        // While loading an AOF the server answers LOADING: not ready yet.
        redis::cmd("PING").query::<String>(&mut conn).is_ok()
    }

    /// The server's URL, e.g. `redis://127.0.0.1:40123`, or
    /// `rediss://127.0.0.1:40123` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{}:{}", self.options.host, self.port)
    }

    /// The certificates of a TLS server (made at its first start, or
    /// shared with its cluster).
    pub fn certs(&self) -> TestCerts {
        match &self.options.certs {
            Some(shared) => shared.clone(),
            None => TestCerts::at(self.dir.path()),
        }
    }

    /// What a client needs to connect: the CA for a TLS server, and the
    /// client certificate for a mutual-TLS one; nothing otherwise.
    pub fn tls_config(&self) -> TlsConfig {
        let Some(mode) = self.options.tls else {
            return TlsConfig::default();
        };
        let certs = self.certs();
        let tls = TlsConfig::default().ca_file(certs.ca());
        match mode {
            TlsMode::ServerOnly => tls,
            TlsMode::Mutual => tls.client_cert(certs.client_cert(), certs.client_key()),
        }
    }

    /// The server's URL with [`tls_config`](Self::tls_config).
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.url()).with_tls(self.tls_config())
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A blocking connection, for test setup and checks.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = self
            .endpoint()
            .client()
            .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))?;
        client.get_connection()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same port and data
    /// directory (an AOF, if any, is reloaded).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Stops the server with SIGTERM (it writes and syncs its AOF, as a
    /// clean `SHUTDOWN` does) and starts it again on the same port and data
    /// directory.
    pub fn restart_graceful(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.restart()
    }

    /// True until [`kill`](Self::kill) (or a failed restart) took the
    /// process away.
    fn child_running(&self) -> bool {
        self.child.is_some()
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A free TCP port on 127.0.0.1 (for a worker's metrics port, say).
pub fn free_tcp_port() -> std::io::Result<u16> {
    free_port()
}

/// Polls `check` every 10 ms until it returns `Some`, or fails after
/// `limit` with `what` in the message.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Path of a binary of this workspace built next to the running test (e.g.
/// `millrace-worker`), building it with cargo first when it is missing.
pub fn workspace_bin(package: &str, bin: &str) -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-exe> or target/<profile>/<exe> → target/<profile>/<bin>
    let mut profile_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let path = profile_dir.join(bin);
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!("cargo build of {bin} failed")).into());
    }
    Ok(path)
}

/// Path of example `example` of workspace package `package`, built first
/// (`cargo build --example`) in the profile of the running test (a user's
/// own binary, written as an example of the crate it uses).
pub fn workspace_example(package: &str, example: &str) -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe()?;
    let mut profile_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let path = profile_dir.join("examples").join(example);
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--quiet", "-p", package, "--example", example]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(
            std::io::Error::other(format!("cargo build of example {example} failed")).into(),
        );
    }
    Ok(path)
}
