//! Watch fan-out: many watchers on one key through a target; a writer puts
//! the key directly on a member and times, for each watcher, the delay from
//! the put's acknowledgement to the event's arrival.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use etcd_grpc_proxy::proto::etcdserverpb::watch_client::WatchClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    watch_request, PutRequest, WatchCreateRequest, WatchRequest,
};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::load::new_hist;
use crate::target::Target;

/// Watchers sharing one client Watch stream (as etcd's Go client multiplexes them).
pub const PER_STREAM: usize = 10;
/// HTTP/2 connections the watch streams are spread over.
pub const CONNECTIONS: usize = 16;

/// Live watchers on one key through one target.
pub struct WatchSet {
    /// The watched key.
    pub key: Vec<u8>,
    /// How many watchers.
    pub watchers: usize,
    tasks: Vec<JoinHandle<()>>,
    /// Request halves, kept open so the streams stay up.
    _senders: Vec<mpsc::Sender<WatchRequest>>,
    receipts: mpsc::UnboundedReceiver<(u64, Instant)>,
    next_seq: u64,
}

impl Drop for WatchSet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl WatchSet {
    /// Opens `watchers` watchers on `key` through `target` and waits until
    /// every one is created.
    pub async fn open(target: &Target, key: Vec<u8>, watchers: usize) -> WatchSet {
        let channels = target.connect(CONNECTIONS).await;
        let created = Arc::new(AtomicUsize::new(0));
        let (rtx, receipts) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        let mut senders = Vec::new();
        let streams = watchers.div_ceil(PER_STREAM);
        for s in 0..streams {
            let n = PER_STREAM.min(watchers - s * PER_STREAM);
            let (tx, rx) = mpsc::channel(n + 1);
            for _ in 0..n {
                let create = WatchCreateRequest {
                    key: key.clone(),
                    ..Default::default()
                };
                tx.send(WatchRequest {
                    request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
                })
                .await
                .expect("queue create");
            }
            senders.push(tx);
            let mut client = WatchClient::new(channels[s % channels.len()].clone());
            let (created, rtx) = (created.clone(), rtx.clone());
            tasks.push(tokio::spawn(async move {
                let mut stream = match client.watch(ReceiverStream::new(rx)).await {
                    Ok(r) => r.into_inner(),
                    Err(e) => {
                        eprintln!("watch stream failed: {e}");
                        return;
                    }
                };
                while let Ok(Some(resp)) = stream.message().await {
                    let now = Instant::now();
                    if resp.created {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    for ev in &resp.events {
                        let seq = ev
                            .kv
                            .as_ref()
                            .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok());
                        if let Some(seq) = seq {
                            let _ = rtx.send((seq, now));
                        }
                    }
                }
            }));
        }
        let start = Instant::now();
        while created.load(Ordering::Relaxed) < watchers {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{}: only {} of {watchers} watchers created",
                target.name,
                created.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        WatchSet {
            key,
            watchers,
            tasks,
            _senders: senders,
            receipts,
            next_seq: 1,
        }
    }

    /// Puts the key `puts` times through `writer`, each time waiting until
    /// every watcher has the event (or 10 s); returns delivery latencies
    /// (µs after the put's ack, 0 when the event came first) and the count
    /// of deliveries that never came.
    pub async fn round(&mut self, writer: Channel, puts: usize) -> (Histogram<u64>, u64) {
        let mut kv = KvClient::new(writer);
        let mut hist = new_hist();
        let mut missed = 0u64;
        for _ in 0..puts {
            let seq = self.next_seq;
            self.next_seq += 1;
            kv.put(PutRequest {
                key: self.key.clone(),
                value: seq.to_string().into_bytes(),
                ..Default::default()
            })
            .await
            .expect("watch put");
            let ack = Instant::now();
            let deadline = ack + Duration::from_secs(10);
            let mut got = 0usize;
            while got < self.watchers {
                match tokio::time::timeout_at(deadline.into(), self.receipts.recv()).await {
                    Ok(Some((s, at))) => {
                        if s == seq {
                            got += 1;
                            let _ = hist.record(
                                (at.saturating_duration_since(ack).as_micros() as u64).max(1),
                            );
                        }
                    }
                    _ => break,
                }
            }
            missed += (self.watchers - got) as u64;
        }
        (hist, missed)
    }
}
