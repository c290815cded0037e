//! A TCP proxy to put between a worker and the runtime, so a test can cut the connection: drop
//! every connection through it (both sides see the TCP connection end), or stop listening for a
//! while and listen again on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A restartable TCP proxy on a fixed loopback port.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let mut proxy = Proxy {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream,
            accept: None,
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.listen();
        proxy
    }

    /// Where to connect (the port stays the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection through the proxy (both ends see it close); keeps listening.
    pub fn cut(&self) -> usize {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        for conn in &conns {
            conn.abort();
        }
        conns.len()
    }

    /// Stops listening and drops every connection: dials are refused until [`Proxy::resume`].
    pub fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.cut();
    }

    /// Listens again on the same port.
    pub fn resume(&mut self) {
        if self.accept.is_none() {
            self.listen();
        }
    }

    /// Live connections through the proxy.
    pub fn connections(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        conns.retain(|c| !c.is_finished());
        conns.len()
    }

    fn listen(&mut self) {
        // std's bind sets SO_REUSEADDR on Unix, so the port can be bound again at once after a
        // stop, even with connections in TIME_WAIT.
        let std = std::net::TcpListener::bind(self.addr).expect("proxy listens");
        std.set_nonblocking(true).unwrap();
        self.addr = std.local_addr().unwrap();
        let listener = TcpListener::from_std(std).unwrap();
        let (upstream, conns) = (self.upstream, Arc::clone(&self.conns));
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                let task = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        }));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}
