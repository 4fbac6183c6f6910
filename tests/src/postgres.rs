//! [`PostgresServer`]: a private PostgreSQL per test, from the binaries of
//! Debian's `postgresql` package (`initdb`, `pg_ctl` under
//! `/usr/lib/postgresql/<version>/bin`), in a temporary directory on a free
//! port, with trust authentication on 127.0.0.1 only. As root, the binaries
//! run as the `postgres` user (`runuser -u postgres --`; PostgreSQL refuses
//! to run as root) and the directory is handed to that user. The server is
//! stopped on drop, and a watcher process stops it if the test process
//! dies without dropping it (a SIGKILL, an abort).
//!
//! `MILLRACE_TEST_DATABASE_URL` points the tests at an existing server
//! instead (tests that restart the server are then skipped).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that points tests at an existing PostgreSQL.
pub const TEST_DATABASE_URL_ENV: &str = "MILLRACE_TEST_DATABASE_URL";

/// How the harness failed to start PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The PostgreSQL server binaries are not installed.
    #[error(
        "PostgreSQL's initdb and pg_ctl not found (looked in $MILLRACE_PG_BINDIR, /usr/lib/postgresql/*/bin and PATH): install them (Debian/Ubuntu: `sudo apt-get install postgresql`) or set {TEST_DATABASE_URL_ENV}"
    )]
    NotInstalled,
    /// A step failed; the output and the server log say why.
    #[error("PostgreSQL test server: {step} failed: {reason}\n--- log ---\n{log}")]
    Failed {
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        reason: String,
        /// The server log (or the command's output).
        log: String,
    },
    /// The server is not one this harness started (`MILLRACE_TEST_DATABASE_URL`).
    #[error("the PostgreSQL test server is external ({TEST_DATABASE_URL_ENV}): it cannot be {0}")]
    External(&'static str),
    /// A filesystem or process error.
    #[error("harness i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A private PostgreSQL server (or an external one), stopped on drop.
#[derive(Debug)]
pub struct PostgresServer {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    External(String),
    Local(Local),
}

#[derive(Debug)]
struct Local {
    dir: tempfile::TempDir,
    port: u16,
    bindir: PathBuf,
    as_postgres: bool,
    running: bool,
    durable: bool,
}

impl PostgresServer {
    /// The server of `MILLRACE_TEST_DATABASE_URL` when set, else a private
    /// one on a free port.
    pub fn start() -> Result<Self, PostgresError> {
        match std::env::var(TEST_DATABASE_URL_ENV) {
            Ok(url) if !url.is_empty() => Ok(Self {
                inner: Inner::External(url),
            }),
            _ => Self::start_local(),
        }
    }

    /// A private server on a free port, whatever the environment says,
    /// with `fsync` off (fast, and a server crash still loses nothing: the
    /// operating system keeps what was written).
    pub fn start_local() -> Result<Self, PostgresError> {
        Self::start_local_with(false)
    }

    /// A private server with PostgreSQL's durable defaults (`fsync` and
    /// `full_page_writes` on): for benchmarks whose commits must cost what
    /// they cost in production.
    pub fn start_local_durable() -> Result<Self, PostgresError> {
        Self::start_local_with(true)
    }

    fn start_local_with(durable: bool) -> Result<Self, PostgresError> {
        let bindir = find_bindir().ok_or(PostgresError::NotInstalled)?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("millrace-pg")
            .tempdir_in(std::env::temp_dir())?;
        if as_postgres {
            run_quiet(
                Command::new("chown").arg("postgres:").arg(dir.path()),
                "chown of the data directory to postgres",
            )?;
        }
        let mut local = Local {
            dir,
            port: 0,
            bindir,
            as_postgres,
            running: false,
            durable,
        };
        local.initdb()?;
        let mut last = None;
        for _ in 0..5 {
            local.port = crate::free_tcp_port()?;
            match local.pg_start() {
                Ok(()) => {
                    local.spawn_watcher()?;
                    return Ok(Self {
                        inner: Inner::Local(local),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(PostgresError::Failed {
            step: "start",
            reason: "no free port".into(),
            log: String::new(),
        }))
    }

    /// The URL of its `postgres` database (superuser `postgres`), e.g.
    /// `postgres://postgres@127.0.0.1:40123/postgres`.
    pub fn url(&self) -> String {
        match &self.inner {
            Inner::External(url) => url.clone(),
            Inner::Local(l) => format!("postgres://postgres@127.0.0.1:{}/postgres", l.port),
        }
    }

    /// The URL of database `name` on this server.
    pub fn url_of(&self, name: &str) -> String {
        let url = self.url();
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b.to_owned(), format!("?{q}")),
            None => (url.clone(), String::new()),
        };
        // postgres://user@host:port/db → replace the path.
        let after_scheme = base.find("://").map_or(0, |i| i + 3);
        let base = match base[after_scheme..].find('/') {
            Some(slash) => base[..after_scheme + slash].to_owned(),
            None => base,
        };
        format!("{base}/{name}{query}")
    }

    /// True when the server is `MILLRACE_TEST_DATABASE_URL`'s, not ours.
    pub fn is_external(&self) -> bool {
        matches!(self.inner, Inner::External(_))
    }

    /// The server's log so far (empty for an external server).
    pub fn log(&self) -> String {
        match &self.inner {
            Inner::External(_) => String::new(),
            Inner::Local(l) => l.log(),
        }
    }

    /// Kills the server at once (`pg_ctl stop -m immediate`: no shutdown
    /// checkpoint, as a crash would; committed work survives).
    pub fn kill(&mut self) -> Result<(), PostgresError> {
        match &mut self.inner {
            Inner::External(_) => Err(PostgresError::External("stopped")),
            Inner::Local(l) => l.stop(),
        }
    }

    /// Starts a killed server again on the same port and data.
    pub fn start_again(&mut self) -> Result<(), PostgresError> {
        match &mut self.inner {
            Inner::External(_) => Err(PostgresError::External("started")),
            Inner::Local(l) => {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    match l.pg_start() {
                        Ok(()) => return Ok(()),
                        Err(e) if Instant::now() > deadline => return Err(e),
                        Err(_) => std::thread::sleep(Duration::from_millis(200)),
                    }
                }
            }
        }
    }

    /// [`kill`](Self::kill), then [`start_again`](Self::start_again).
    pub fn restart(&mut self) -> Result<(), PostgresError> {
        self.kill()?;
        self.start_again()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Inner::Local(l) = &mut self.inner {
            let _ = l.stop();
        }
    }
}

impl Local {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A command for binary `bin`, run as `postgres` when we are root.
    fn cmd(&self, bin: &str) -> Command {
        let path = self.bindir.join(bin);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn initdb(&mut self) -> Result<(), PostgresError> {
        let mut c = self.cmd("initdb");
        c.arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"]);
        run_quiet(&mut c, "initdb")
    }

    fn pg_start(&mut self) -> Result<(), PostgresError> {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        if !self.durable {
            opts.push_str(" -c fsync=off -c full_page_writes=off");
        }
        let mut c = self.cmd("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "30", "-l"])
            .arg(self.log_path())
            .arg("-o")
            .arg(opts)
            .arg("start");
        match run_quiet(&mut c, "pg_ctl start") {
            Ok(()) => {
                self.running = true;
                Ok(())
            }
            Err(PostgresError::Failed { step, reason, .. }) => {
                let _ = self.stop();
                Err(PostgresError::Failed {
                    step,
                    reason,
                    log: self.log(),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn stop(&mut self) -> Result<(), PostgresError> {
        let mut c = self.cmd("pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]);
        let r = run_quiet(&mut c, "pg_ctl stop");
        if self.running {
            self.running = false;
            r
        } else {
            Ok(())
        }
    }

    /// A shell that stops the server once this process is gone, so a test
    /// killed without unwinding leaves no PostgreSQL behind.
    fn spawn_watcher(&self) -> std::io::Result<()> {
        let stop = format!(
            "{} {} -D {} -m immediate stop",
            if self.as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            self.bindir.join("pg_ctl").display(),
            self.data().display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null && [ -d {data} ]; do sleep 1; done; [ -d {data} ] && {stop} >/dev/null 2>&1; exit 0",
            pid = std::process::id(),
            data = self.data().display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
    }
}

fn run_quiet(cmd: &mut Command, step: &'static str) -> Result<(), PostgresError> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(PostgresError::Failed {
        step,
        reason: format!("exited with {}", out.status),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The directory holding `initdb` and `pg_ctl`: `$MILLRACE_PG_BINDIR`, the
/// newest `/usr/lib/postgresql/<version>/bin`, or `initdb`'s directory on
/// PATH.
pub fn find_bindir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("MILLRACE_PG_BINDIR").map(PathBuf::from) {
        return has(&d).then_some(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).find(|d| has(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_of_replaces_the_database_and_keeps_the_query() {
        let s = PostgresServer {
            inner: Inner::External("postgres://u:p@h:5/db?sslmode=disable".into()),
        };
        assert_eq!(s.url_of("t1"), "postgres://u:p@h:5/t1?sslmode=disable");
        let s = PostgresServer {
            inner: Inner::External("postgres://h".into()),
        };
        assert_eq!(s.url_of("t1"), "postgres://h/t1");
        assert!(s.is_external());
    }
}
