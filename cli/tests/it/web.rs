//! `millrace web`: refuses a public address without auth in one line, and
//! serves the dashboard until SIGTERM.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

#[test]
fn web_refuses_a_public_address_without_auth() {
    let env = Env::new();
    let line = env.run(&["web", "--listen", "0.0.0.0:0"]).err();
    assert_eq!(
        line,
        "error: refusing to serve the dashboard on non-loopback address 0.0.0.0:0 without --auth-token or --basic-auth"
    );
    let line = env
        .run(&["web", "--listen", "0.0.0.0:0", "--auth-token", "short"])
        .err();
    assert!(line.contains("at least 16 characters"), "{line}");
}

/// The body of `GET /` on `port`, once something answers there.
fn overview(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut page = String::new();
    s.read_to_string(&mut page).ok()?;
    page.starts_with("HTTP/1.1 200").then_some(page)
}

#[test]
fn web_serves_the_dashboard_until_sigterm() {
    let env = Env::new();
    seed(&env);
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let listen = format!("127.0.0.1:{port}");
    let child = env
        .cmd(&["web", "--listen", &listen, "--read-only"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let page =
        millrace_tests::wait_for("the dashboard", Duration::from_secs(20), || overview(port))
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(page.contains("data-queue=\"emails\""), "{page}");
    assert!(page.contains("read-only"), "{page}");
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("millrace web: serving http://{listen}")),
        "{stdout}"
    );
}
