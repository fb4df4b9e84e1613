//! A TCP relay in front of a real member, to lose a member's answer the
//! way a network does: the member receives and applies the request, its
//! bytes back are dropped, then the connection is reset.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One relayed connection: its two pumps and whether answers are dropped.
struct Relayed {
    drop_answers: Arc<AtomicBool>,
    pumps: [JoinHandle<()>; 2],
}

/// A relay listening on loopback and forwarding to one member.
pub struct Relay {
    /// Where the proxy is told the member is.
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Relayed>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// A relay to `target` (`127.0.0.1:<port>`).
    pub async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let conns: Arc<Mutex<Vec<Relayed>>> = Arc::default();
        let registry = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(member) = TcpStream::connect(&target).await else {
                    continue;
                };
                // Closing the client side then resets it rather than ending it.
                // Deprecated because a non-zero linger blocks the runtime on drop; zero
                // never blocks, and it is how a test sends a reset.
                #[allow(deprecated)]
                let _ = client.set_linger(Some(Duration::ZERO));
                let _ = client.set_nodelay(true);
                let _ = member.set_nodelay(true);
                let drop_answers = Arc::new(AtomicBool::new(false));
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut member_rx, mut member_tx) = member.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_rx, &mut member_tx).await;
                });
                let dropping = drop_answers.clone();
                let down = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match member_rx.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if dropping.load(Ordering::SeqCst) {
                            continue;
                        }
                        if client_tx.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                registry.lock().expect("relay lock").push(Relayed {
                    drop_answers,
                    pumps: [up, down],
                });
            }
        });
        Relay {
            addr,
            conns,
            accept,
        }
    }

    /// `127.0.0.1:<port>` of the relay.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// How many connections are open through the relay.
    pub fn connections(&self) -> usize {
        self.conns
            .lock()
            .expect("relay lock")
            .iter()
            .filter(|c| !c.pumps[1].is_finished())
            .count()
    }

    /// From now on, the member's bytes on every open connection are dropped.
    pub fn lose_answers(&self) {
        for c in self.conns.lock().expect("relay lock").iter() {
            c.drop_answers.store(true, Ordering::SeqCst);
        }
    }

    /// Resets every connection whose answers were being dropped; new
    /// connections relay normally.
    pub fn reset_losing(&self) {
        self.conns.lock().expect("relay lock").retain(|c| {
            if c.drop_answers.load(Ordering::SeqCst) {
                c.pumps.iter().for_each(JoinHandle::abort);
                false
            } else {
                true
            }
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().expect("relay lock").iter() {
            c.pumps.iter().for_each(JoinHandle::abort);
        }
    }
}
