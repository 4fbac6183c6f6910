//! A TCP proxy for network-fault tests: it forwards bytes between clients
//! and a server until told to black-hole them. In a black hole it stops
//! forwarding in both directions without closing anything, as a network
//! partition does to a TCP connection (the bytes wait in the socket
//! buffers); once told to forward again, what waited flows on.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// How often a pump looks at the proxy's state while idle or black-holed.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct Shared {
    black_hole: AtomicBool,
    stopped: AtomicBool,
}

/// A TCP proxy on a free loopback port in front of `127.0.0.1:<target>`;
/// stopped (every connection closed) on drop.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts a proxy that forwards to `127.0.0.1:target`.
    pub fn start(target: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        thread::spawn(move || accept_loop(&listener, target, &s));
        Ok(Self { port, shared })
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops forwarding (both directions, every connection, new ones too)
    /// without closing anything.
    pub fn black_hole(&self) {
        self.shared.black_hole.store(true, Ordering::SeqCst);
    }

    /// Forwards again; bytes that waited flow on.
    pub fn forward(&self) {
        self.shared.black_hole.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(listener: &TcpListener, target: u16, shared: &Arc<Shared>) {
    while !shared.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue; // the client sees its connection closed
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let s = shared.clone();
                    thread::spawn(move || pump(from, to, &s));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Copies `from` to `to` while forwarding; in a black hole it neither reads
/// nor writes. Closes the other side's write half at end of stream.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if shared.stopped.load(Ordering::SeqCst) {
            break;
        }
        if shared.black_hole.load(Ordering::SeqCst) {
            thread::sleep(POLL);
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
