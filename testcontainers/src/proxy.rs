//! A fault-injecting TCP proxy in front of Redis: pass through, refuse, cut a connection after
//! forwarding a matching request but before its reply (a lost reply), or delay.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    PassThrough,
    /// Accepts and immediately closes new connections; existing ones are cut too.
    Refuse,
    /// Forwards a request containing these bytes, then closes the client side before the reply
    /// arrives: the command ran on Redis, the caller never hears of it.
    DropReplyTo(Vec<u8>),
    /// Holds every chunk this long in both directions.
    Delay(Duration),
}

pub struct FaultProxy {
    port: u16,
    fault: Arc<Mutex<Fault>>,
    accepted: Arc<AtomicUsize>,
}

impl FaultProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(Fault::PassThrough));
        let shared = fault.clone();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::Relaxed);
                let fault = shared.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if *fault.lock().unwrap() == Fault::Refuse {
                        return;
                    }
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        pipe(client, server, fault).await;
                    }
                });
            }
        });
        Self {
            port,
            fault,
            accepted,
        }
    }

    /// Connections accepted so far, refused ones included.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// `127.0.0.1:<port>` for `AUTHSESSION_REDIS_ADDR`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

fn current(fault: &Mutex<Fault>) -> Fault {
    fault.lock().unwrap().clone()
}

async fn pipe(client: TcpStream, server: TcpStream, fault: Arc<Mutex<Fault>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set once a matching request went through: its reply (and anything after) is discarded.
    let discard = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let discard_up = discard.clone();
    let fault_up = fault.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            match current(&fault_up) {
                Fault::Refuse => return,
                Fault::Delay(d) => tokio::time::sleep(d).await,
                Fault::DropReplyTo(pattern) if contains(&buf[..n], &pattern) => {
                    discard_up.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = server_write.write_all(&buf[..n]).await;
                    // Keep the server side open until Redis has run the command.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    return;
                }
                _ => {}
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if discard.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            match current(&fault) {
                Fault::Refuse => return,
                Fault::Delay(d) => tokio::time::sleep(d).await,
                _ => {}
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either direction ending closes both sockets (they drop with this task).
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
