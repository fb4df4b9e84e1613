//! Listening sockets as etcd opens them: Go's `net.Listen` sets
//! `SO_REUSEADDR` and a backlog of the kernel's `somaxconn` (4096 on
//! current kernels), where a plain `TcpListener::bind` gets 128. With 128,
//! a thousand clients reconnecting at once (after a proxy restart behind a
//! VIP) wait out SYN retries of a second or more.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The largest backlog Go asks for (it caps `somaxconn` at 65535).
const MAX_BACKLOG: u32 = 65_535;

/// Go's fallback when `somaxconn` cannot be read.
const DEFAULT_BACKLOG: u32 = 4_096;

/// The backlog Go would use here: `/proc/sys/net/core/somaxconn`, capped.
pub fn backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .map_or(DEFAULT_BACKLOG, |n| n.min(MAX_BACKLOG))
}

/// Listens on `addr` (`host:port`, names resolved) with `SO_REUSEADDR` and
/// [`backlog`], trying each address the name resolves to in turn.
pub async fn listen(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match listen_on(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}

fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_the_kernels_as_go_reads_it() {
        let b = backlog();
        assert!((1..=MAX_BACKLOG).contains(&b), "{b}");
        if let Ok(s) = std::fs::read_to_string("/proc/sys/net/core/somaxconn") {
            let kernel: u32 = s.trim().parse().expect("somaxconn is a number");
            assert_eq!(b, kernel.min(MAX_BACKLOG));
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_nothing_is_an_error_not_a_panic() {
        assert!(listen("no-such-host.invalid:0").await.is_err());
        let l = listen("127.0.0.1:0").await.expect("loopback");
        assert!(l.local_addr().expect("bound").port() > 0);
    }
}
