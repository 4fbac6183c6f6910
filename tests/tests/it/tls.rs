//! TLS: the SDK, the worker library and the worker binary over `rediss://`,
//! a server that requires client certificates, a TLS Redis Cluster that
//! announces hostnames, and the one-line errors for a wrong CA, a plain
//! `redis://` to a TLS port and a missing file.

use millrace::{Client, EnqueueError, TlsConfig};
use millrace_jobs::Noop;
use millrace_tests::{RedisCluster, RedisOptions, RedisServer, TlsMode};
use millrace_worker::Worker;

use crate::common::*;
use crate::processes::{start_worker, wait_all_ran, worker_output};

fn tls_redis(mode: TlsMode) -> RedisServer {
    RedisServer::start_options(RedisOptions::default().tls(mode))
        .unwrap_or_else(|e| panic!("cannot start a TLS redis-server: {e}"))
}

async fn client(url: &str, tls: TlsConfig) -> Result<Client, EnqueueError> {
    Client::builder(url).tls(tls).connect().await
}

/// A probe worker and a producer on `redis`, with its TLS files.
async fn worker_and_client(
    redis: &RedisServer,
) -> (Running, Client, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = fast_config(&redis.url());
    config.tls = redis.tls_config();
    let worker =
        spawn(Worker::builder(config).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let client = client(&redis.url(), redis.tls_config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (worker, client, rx)
}

/// The first `n` attempts the probe worker reports: (tag, attempt).
async fn attempts(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    n: usize,
) -> Vec<(String, u32)> {
    let mut attempts = Vec::new();
    while attempts.len() < n {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {} attempts ran: {attempts:?}", attempts.len()));
        attempts.push((s.tag, s.attempt));
    }
    attempts
}

/// The error of a client that cannot connect, as one line.
async fn refused(url: &str, tls: TlsConfig) -> String {
    match client(url, tls).await {
        Ok(_) => panic!("connected to {url}"),
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
            line
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_enqueued_worked_and_retried_over_tls() {
    let redis = tls_redis(TlsMode::ServerOnly);
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let (worker, client, mut rx) = worker_and_client(&redis).await;
    for i in 0..20 {
        client
            .enqueue(&probe_job(&format!("ok{i}"), 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Fails its first attempt: the retry goes through the delayed set and
    // the promoter, over TLS too.
    client
        .enqueue(&probe_job("retried", 2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let attempts = attempts(&mut rx, 22).await;
    assert!(attempts.contains(&("retried".into(), 2)), "{attempts:?}");
    let c = redis
        .endpoint()
        .command_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_left(&c, "default", Left::default()).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let redis = tls_redis(TlsMode::Mutual);
    let url = redis.url();
    let certs = redis.certs();
    let err = refused(&url, TlsConfig::default().ca_file(certs.ca())).await;
    assert!(
        err.starts_with(&format!("cannot connect to Redis at {url}: ")),
        "{err}"
    );
    assert!(
        err.ends_with(
            "TLS: the server requires a client certificate (received fatal alert: CertificateRequired); give --tls-cert-file and --tls-key-file"
        ),
        "{err}"
    );

    // With its certificate the SDK and the worker (commands and the
    // blocking readers' pool) work.
    let (worker, client, mut rx) = worker_and_client(&redis).await;
    client
        .enqueue(&probe_job("mtls", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = tokio::time::timeout(WAIT, rx.recv()).await.ok().flatten();
    assert_eq!(seen.map(|s| s.tag).as_deref(), Some("mtls"));
    worker.shutdown().await;
}

#[tokio::test]
async fn a_wrong_ca_fails_in_one_line_with_the_password_hidden() {
    let redis = tls_redis(TlsMode::ServerOnly);
    let url = format!("rediss://:s3cret@127.0.0.1:{}", redis.port());
    let tls = TlsConfig::default().ca_file(redis.certs().other_ca());
    let err = refused(&url, tls).await;
    let shown = format!("rediss://:***@127.0.0.1:{}", redis.port());
    assert!(
        err.starts_with(&format!("cannot connect to Redis at {shown}: ")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(
        err.ends_with(
            "TLS: the server's certificate is not signed by a trusted CA (invalid peer certificate: UnknownIssuer); trust its CA with --tls-ca-file"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn plain_redis_to_a_tls_port_fails_in_one_line() {
    let redis = tls_redis(TlsMode::ServerOnly);
    let url = format!("redis://127.0.0.1:{}", redis.port());
    let err = refused(&url, TlsConfig::default()).await;
    assert!(
        err.starts_with(&format!("cannot connect to Redis at {url}: ")),
        "{err}"
    );
    assert!(err.contains("use rediss://"), "{err}");
}

#[tokio::test]
async fn a_missing_or_misplaced_tls_file_is_named() {
    let redis = tls_redis(TlsMode::ServerOnly);
    let url = redis.url();
    let err = refused(&url, TlsConfig::default().ca_file("/nonexistent/ca.pem")).await;
    assert_eq!(
        err,
        format!(
            "cannot connect to Redis at {url}: cannot read the TLS CA file /nonexistent/ca.pem: No such file or directory (os error 2)"
        )
    );
    // TLS files with a plain URL are a mistake, not silently ignored.
    let plain = format!("redis://127.0.0.1:{}", redis.port());
    let err = refused(&plain, redis.tls_config()).await;
    assert!(err.contains("the URL is not rediss://"), "{err}");
    // A certificate without its key.
    let certs = redis.certs();
    let half = TlsConfig::from_files(Some(certs.ca()), Some(certs.client_cert()), None);
    let err = refused(&url, half).await;
    assert!(err.contains("needs its key (--tls-key-file)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_takes_the_tls_flags() {
    let redis = tls_redis(TlsMode::Mutual);
    let url = redis.url();
    let certs = redis.certs();
    let (ca, cert, key) = (certs.ca(), certs.client_cert(), certs.client_key());
    let flags = [
        "--tls-ca-file",
        path(&ca),
        "--tls-cert-file",
        path(&cert),
        "--tls-key-file",
        path(&key),
    ];
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let record = dir.path().join("runs");
    let _worker = start_worker(&url, &record, &flags);
    let client = client(&url, redis.tls_config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = client
        .enqueue(&Noop::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_all_ran(&[record.as_path()], &[id]).await;

    // The wrong CA through the variable: one line, exit non-zero.
    let other = certs.other_ca();
    let (ok, err) = worker_output(&["--tls-ca-file", path(&other)], &url);
    assert!(!ok);
    assert!(
        err.starts_with(&format!(
            "millrace-worker: cannot connect to Redis at {url}: "
        )),
        "{err}"
    );
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("{p:?} is not UTF-8"))
}

/// A Redis Cluster with mutual TLS on every link that announces the
/// hostname its certificate names (`localhost`), not the IPs its nodes
/// listen on, as managed clusters do: the producer, a worker (whose
/// blocking readers connect to each master by the announced name) and a
/// retry all work, on queues of two masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_announcing_hostnames_runs_jobs() {
    let cluster = RedisCluster::start_tls(TlsMode::Mutual)
        .unwrap_or_else(|e| panic!("cannot start the TLS test cluster: {e}"));
    let url = cluster.url();
    assert!(url.starts_with("rediss://localhost:"), "{url}");
    let tls = cluster.nodes()[0].tls_config();
    // The certificate does not name the IP: a client following the IPs
    // (as `CLIENT INFO`'s laddr gives them) would be refused.
    let by_ip = url
        .split(',')
        .next()
        .unwrap_or_default()
        .replace("localhost", "127.0.0.1");
    let err = refused(&by_ip, tls.clone()).await;
    assert!(err.contains("certificate"), "{err}");

    let client = Client::builder(&url)
        .cluster(true)
        .tls(tls.clone())
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let conn = cluster
        .endpoint()
        .command_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let home = cluster.master_of("millrace:{default}:stream");
    let other = (0..100)
        .map(|i| format!("q{i}"))
        .find(|q| cluster.master_of(&format!("millrace:{{{q}}}:stream")) != home)
        .unwrap_or_else(|| panic!("every queue name hashes to one master"));
    for i in 0..10 {
        client
            .enqueue(&probe_job(&format!("ok{i}"), 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .enqueue_with(
                &probe_job(&format!("there{i}"), 1),
                millrace::EnqueueOptions::new().queue(other.clone()),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    client
        .enqueue(&probe_job("retried", 2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = fast_config(&url);
    config.redis_cluster = true;
    config.tls = tls;
    config.queues = vec!["default".into(), other.clone()];
    let worker =
        spawn(Worker::builder(config).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let attempts = attempts(&mut rx, 22).await;
    assert!(attempts.contains(&("retried".into(), 2)), "{attempts:?}");
    assert!(attempts.contains(&("there9".into(), 1)), "{attempts:?}");
    wait_left(&conn, "default", Left::default()).await;
    wait_left(&conn, &other, Left::default()).await;
    worker.shutdown().await;
}
