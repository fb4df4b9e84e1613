//! A raw HTTP/1.1 client for the proxy's HTTP endpoints (no HTTP crate
//! needed): one request per connection, `Connection: close`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An HTTP answer: status code, headers (raw) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// The header block, as received.
    pub head: String,
    /// The body (the proxy never uses chunked encoding for these).
    pub body: String,
}

/// Sends `method path` to `addr`; `None` when the connection fails or no
/// answer comes within 10 s.
pub fn request(addr: &str, method: &str, path: &str) -> Option<Answer> {
    request_within(addr, method, path, Duration::from_secs(10))
}

/// Like [`request`], waiting up to `limit` for the answer.
pub fn request_within(addr: &str, method: &str, path: &str, limit: Duration) -> Option<Answer> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// GET `path` from `addr` on a blocking thread.
pub async fn get(addr: &str, path: &str) -> Option<Answer> {
    let (addr, path) = (addr.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || request(&addr, "GET", &path))
        .await
        .ok()?
}

/// GET that may take long (a CPU profile on a busy test machine).
pub async fn get_slow(addr: &str, path: &str) -> Option<Answer> {
    let (addr, path) = (addr.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || {
        request_within(&addr, "GET", &path, Duration::from_secs(120))
    })
    .await
    .ok()?
}

/// Sum of a Prometheus sample over the lines of `name` matching every filter.
pub fn metric(body: &str, name: &str, filters: &[&str]) -> f64 {
    body.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l.len() == name.len() || l[name.len()..].starts_with(['{', ' ']))
        })
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
