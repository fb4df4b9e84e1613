//! Client connections curve: `n` idle HTTP/2 connections, each made real
//! by one unary Range. The client is a minimal hand-rolled HTTP/2 speaker
//! (preface, SETTINGS, one HEADERS + DATA request, read to END_STREAM,
//! acking SETTINGS and PINGs) so an idle connection costs the load
//! generator one socket and nothing else; sockets bind to many loopback
//! source addresses so 100k connections fit the ephemeral port range.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_grpc_proxy::proto::etcdserverpb::RangeRequest;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::common::{self, Watchdog};
use crate::report::{fmt_count, Point};

/// How connections are made and held.
pub struct Params {
    /// Connections being set up at once.
    pub parallel: usize,
    /// Most connections per source address.
    pub per_source: usize,
    /// How long they idle before they are checked for still being open.
    pub hold: Duration,
}

const FRAME_DATA: u8 = 0;
const FRAME_HEADERS: u8 = 1;
const FRAME_RST: u8 = 3;
const FRAME_SETTINGS: u8 = 4;
const FRAME_PING: u8 = 6;
const FRAME_GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK "literal header field without indexing, new name" (no Huffman).
fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127 && value.len() < 127);
    out.push(0);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

/// The bytes a client sends: preface, SETTINGS, a Range call on stream 1.
fn request_bytes(authority: &str) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: a small initial window (4 KiB) is all the answer needs.
    let mut settings = Vec::new();
    settings.extend_from_slice(&4u16.to_be_bytes());
    settings.extend_from_slice(&4096u32.to_be_bytes());
    frame(&mut out, FRAME_SETTINGS, 0, 0, &settings);
    let mut h = Vec::new();
    header(&mut h, ":method", "POST");
    header(&mut h, ":scheme", "http");
    header(&mut h, ":path", "/etcdserverpb.KV/Range");
    header(&mut h, ":authority", authority);
    header(&mut h, "content-type", "application/grpc");
    header(&mut h, "te", "trailers");
    frame(&mut out, FRAME_HEADERS, END_HEADERS, 1, &h);
    let msg = RangeRequest {
        key: b"scale/conn".to_vec(),
        serializable: true,
        ..Default::default()
    }
    .encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    frame(&mut out, FRAME_DATA, END_STREAM, 1, &body);
    out
}

/// One connection: connect from `src`, one Range, then the bare socket.
async fn open_one(
    src: Ipv4Addr,
    dst: SocketAddr,
    req: &[u8],
) -> Result<std::net::TcpStream, String> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    sock.bind(SocketAddr::new(src.into(), 0))
        .map_err(|e| format!("bind {src}: {e}"))?;
    let mut s = sock
        .connect(dst)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).ok();
    s.write_all(req).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut data_bytes = 0usize;
    loop {
        // Parse every complete frame in `buf`.
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match kind {
                FRAME_SETTINGS if flags & ACK == 0 => {
                    let mut ack = Vec::new();
                    frame(&mut ack, FRAME_SETTINGS, ACK, 0, &[]);
                    s.write_all(&ack).await.map_err(|e| format!("write: {e}"))?;
                }
                FRAME_PING if flags & ACK == 0 => {
                    let mut pong = Vec::new();
                    frame(&mut pong, FRAME_PING, ACK, 0, &payload);
                    s.write_all(&pong)
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                }
                FRAME_GOAWAY => return Err("GOAWAY from the server".to_string()),
                FRAME_RST if stream == 1 => return Err("RST_STREAM from the server".to_string()),
                FRAME_DATA if stream == 1 => {
                    data_bytes += len;
                    if flags & END_STREAM != 0 {
                        return Err("response ended without trailers".to_string());
                    }
                }
                FRAME_HEADERS if stream == 1 && flags & END_STREAM != 0 => {
                    if data_bytes >= 5 {
                        return s.into_std().map_err(|e| e.to_string());
                    }
                    return Err("Range failed (trailers-only answer)".to_string());
                }
                _ => {}
            }
        }
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server has closed `s` (EOF or error); data waiting is fine.
fn closed(s: &std::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Runs one point: `n` connections to `addr`, source addresses starting
/// at 127.`net`.0.1.
pub async fn run(
    addr: &str,
    pid: Option<u32>,
    n: usize,
    net: u8,
    p: &Params,
    wd: &Watchdog,
) -> Point {
    let mut pt = Point::new(n as u64);
    let dst: SocketAddr = addr.parse().expect("proxy address");
    let req: Arc<[u8]> = request_bytes(addr).into();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pid.and_then(common::rss_kib);
    let gen_before = common::rss_kib(std::process::id());
    // The generator holds one socket per connection: past its own
    // RLIMIT_NOFILE it cannot go (256 kept for everything else).
    let budget = common::fds_left().saturating_sub(256);
    let capped = n > budget;
    let n_req = n;
    let n = n.min(budget);
    let give_up = Arc::new(AtomicBool::new(false));
    let sources = n.div_ceil(p.per_source).max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    // `parallel` workers pull connection numbers, so only that many
    // half-open connections (and read buffers) exist at once.
    let mut workers = Vec::with_capacity(p.parallel);
    for _ in 0..p.parallel.min(n) {
        let (next, req, give_up) = (next.clone(), req.clone(), give_up.clone());
        workers.push(tokio::spawn(async move {
            let mut socks = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || give_up.load(Ordering::Relaxed) {
                    break;
                }
                let s = (i % sources) as u32 + 1;
                let src = Ipv4Addr::new(127, net, (s >> 8) as u8, (s & 0xff) as u8);
                let r =
                    match tokio::time::timeout(Duration::from_secs(20), open_one(src, dst, &req))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err("timeout: no answer in 20 s".to_string()),
                    };
                match r {
                    Ok(s) => socks.push(s),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                        // A target that refuses this many is done.
                        if errors >= 50 {
                            give_up.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            (socks, errors, first_error)
        }));
    }
    let mut socks = Vec::with_capacity(n);
    let mut errors = 0usize;
    let mut first_error = None;
    for w in workers {
        let (s, e, f) = w.await.expect("connection worker");
        socks.extend(s);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let took = start.elapsed();
    pt.set("ok", Some(socks.len() as f64));
    pt.set("connect_s", Some(took.as_secs_f64()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pid.and_then(common::rss_kib);
    if let (Some(a), Some(b)) = (after, before) {
        pt.set(
            "rss_kb",
            Some((a as f64 - b as f64) / socks.len().max(1) as f64 * 1.024),
        );
        pt.set("rss_mib", Some(a as f64 / 1024.0));
    }
    if let (Some(a), Some(b)) = (common::rss_kib(std::process::id()), gen_before) {
        pt.set(
            "gen_kb",
            Some((a as f64 - b as f64) / socks.len().max(1) as f64 * 1.024),
        );
    }
    tokio::time::sleep(p.hold).await;
    let dropped = socks.iter().filter(|s| closed(s)).count();
    pt.set("closed", Some(dropped as f64));
    if let Some(r) = wd.failed() {
        pt.failure = Some(r);
    } else if errors > 0 {
        pt.failure = Some(format!(
            "connection errors: {errors} of {} tried{}; first: {}",
            next.load(Ordering::Relaxed).min(n),
            if give_up.load(Ordering::Relaxed) {
                " (stopped after the 50th)"
            } else {
                ""
            },
            first_error.unwrap_or_default()
        ));
    } else if capped {
        pt.failure = Some(format!(
            "load generator out of file descriptors: RLIMIT_NOFILE {} (hard limit, not raisable \
             without CAP_SYS_RESOURCE) holds {} of the {} connections; the proxy inherits the same \
             limit",
            nofile(),
            socks.len(),
            fmt_count(n_req as u64)
        ));
    } else if dropped > 0 {
        pt.failure = Some(format!(
            "{dropped} idle connections closed by the server within {:?}",
            p.hold
        ));
    }
    pt.set("peak_mib", pid.map(|_| wd.peak_kib() as f64 / 1024.0));
    drop(socks);
    pt
}

fn nofile() -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}
