//! The `millrace` command over TLS: `--tls-ca-file`, `--tls-cert-file`,
//! `--tls-key-file` (or their `MILLRACE_TLS_*` variables) against a server
//! that requires client certificates, and each mistake in one line.

use millrace_tests::{RedisOptions, TlsMode};

use crate::common::*;

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn the_cli_reads_and_fixes_over_mutual_tls() {
    let env = Env::with(RedisOptions::default().tls(TlsMode::Mutual));
    assert!(env.url.starts_with("rediss://"), "{}", env.url);
    let s = seed(&env);
    let certs = env.redis.certs();
    let (ca, cert, key) = (
        path(&certs.ca()),
        path(&certs.client_cert()),
        path(&certs.client_key()),
    );
    let flags = [
        "--tls-ca-file",
        &ca,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
    ];
    let run = |args: &[&str]| env.run(&[&flags[..], args].concat());
    let out = run(&["--json", "queues"]).ok();
    let queues = out.json();
    assert_eq!(queues[0]["name"], Q, "{queues}");
    assert_eq!(queues[0]["dead"], 2, "{queues}");
    run(&["dead", "replay", Q, &s.dead_noop]).ok();
    let out = run(&["--json", "show", Q, &s.dead_noop]).ok();
    assert_eq!(out.json()["found"][0]["state"], "ready", "{}", out.stdout);

    // The same files through the variables.
    let out = env
        .cmd(&["--json", "queues"])
        .env("MILLRACE_TLS_CA_FILE", &ca)
        .env("MILLRACE_TLS_CERT_FILE", &cert)
        .env("MILLRACE_TLS_KEY_FILE", &key)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn tls_mistakes_are_one_line_each() {
    let env = Env::with(RedisOptions::default().tls(TlsMode::Mutual));
    let certs = env.redis.certs();
    let url = env.url.clone();
    let (ca, other) = (path(&certs.ca()), path(&certs.other_ca()));
    let prefix = format!("error: cannot connect to Redis at {url}: ");

    // No client certificate for a server that requires one.
    let line = env.run(&["--tls-ca-file", &ca, "queues"]).err();
    assert!(line.starts_with(&prefix), "{line}");
    assert!(line.contains("requires a client certificate"), "{line}");

    // The wrong CA.
    let line = env.run(&["--tls-ca-file", &other, "queues"]).err();
    assert!(line.starts_with(&prefix), "{line}");
    assert!(line.contains("not signed by a trusted CA"), "{line}");

    // A plain redis:// URL to the TLS port.
    let plain = format!("redis://127.0.0.1:{}", env.redis.port());
    let line = env.run(&["--redis-url", &plain, "queues"]).err();
    assert!(line.contains("a TLS port? then use rediss://"), "{line}");

    // A file that is not there, and a certificate without its key.
    let line = env
        .run(&["--tls-ca-file", "/nonexistent/ca.pem", "queues"])
        .err();
    assert_eq!(
        line,
        format!(
            "{prefix}cannot read the TLS CA file /nonexistent/ca.pem: No such file or directory (os error 2)"
        )
    );
    let cert = path(&certs.client_cert());
    let line = env.run(&["--tls-cert-file", &cert, "queues"]).err();
    assert_eq!(
        line,
        "error: a TLS client certificate (--tls-cert-file) needs its key (--tls-key-file)"
    );
}
