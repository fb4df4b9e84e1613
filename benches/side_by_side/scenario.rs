//! The two cluster-changing scenarios, run through one proxy while reads
//! flow: a new member joining (how long until the proxy sends it calls),
//! and the busiest member dying (how many reads fail, for how long).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_grpc_proxy::proto::etcdserverpb::kv_client::KvClient;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::load::{one_call, Workload};
use crate::procs::Cluster;

/// Linearizable reads running in the background until stopped.
pub struct BackgroundReads {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<(Instant, String)>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl BackgroundReads {
    /// Starts `inflight` reading tasks per channel.
    pub fn start(rt: &Runtime, channels: &[Channel], inflight: usize) -> BackgroundReads {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for ch in channels {
            for _ in 0..inflight {
                let mut client = KvClient::new(ch.clone());
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                tasks.push(rt.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match one_call(&mut client, Workload::LinGet).await {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failures
                                    .lock()
                                    .expect("failures lock")
                                    .push((Instant::now(), e));
                                // A failing target answers fast; do not spin.
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                }));
            }
        }
        BackgroundReads {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// Stops the tasks and returns (successful reads, failures).
    pub fn finish(self, rt: &Runtime) -> (u64, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = rt.block_on(t);
        }
        let failures = std::mem::take(&mut *self.failures.lock().expect("failures lock"));
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// Result of the membership scenario for one target.
pub struct Pickup {
    /// Target name.
    pub target: &'static str,
    /// From the new member's process start to its first Range through the target.
    pub after_start: Option<Duration>,
    /// From `member add` to that first Range.
    pub after_add: Option<Duration>,
    /// How long we waited at most.
    pub limit: Duration,
}

/// Adds a member while reads flow through `channels`, and times until the
/// new member serves its first Range.
pub fn membership_pickup(
    rt: &Runtime,
    cluster: &mut Cluster,
    target: &'static str,
    channels: &[Channel],
    limit: Duration,
) -> Pickup {
    let reads = BackgroundReads::start(rt, channels, 32);
    let added = Instant::now();
    let (idx, spawned) = cluster.add_member();
    // A new member has served nothing before it started.
    let mut seen = None;
    while spawned.elapsed() < limit {
        if cluster.members[idx].ranges_served() > 0.0 {
            seen = Some(Instant::now());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reads.finish(rt);
    Pickup {
        target,
        after_start: seen.map(|s| s - spawned),
        after_add: seen.map(|s| s - added),
        limit,
    }
}

/// Result of the failover scenario for one target.
pub struct Failover {
    /// Target name.
    pub target: &'static str,
    /// The member killed (the one serving the most reads through the target).
    pub victim: String,
    /// Successful reads during the whole scenario.
    pub ok_reads: u64,
    /// Reads that failed after the kill.
    pub failed_reads: usize,
    /// From the kill to the last failed read (zero when none failed).
    pub recovery: Duration,
    /// The first failure's message.
    pub first_error: Option<String>,
}

/// Reads through `channels`, kills the member serving most of them, keeps
/// reading for `after`, then restarts the member and waits for it.
pub fn failover(
    rt: &Runtime,
    cluster: &mut Cluster,
    target: &'static str,
    channels: &[Channel],
    after: Duration,
) -> Failover {
    let reads = BackgroundReads::start(rt, channels, 32);
    std::thread::sleep(Duration::from_millis(500));
    let before: Vec<f64> = cluster
        .members
        .iter()
        .map(|m| {
            if m.is_running() {
                m.ranges_served()
            } else {
                0.0
            }
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let victim = cluster
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.is_running())
        .map(|(i, m)| (i, m.ranges_served() - before[i]))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
        .expect("a running member");
    cluster.members[victim].kill();
    let killed = Instant::now();
    std::thread::sleep(after);
    let (ok_reads, failures) = reads.finish(rt);
    let after_kill: Vec<&(Instant, String)> =
        failures.iter().filter(|(t, _)| *t >= killed).collect();
    let recovery = after_kill
        .iter()
        .map(|(t, _)| *t - killed)
        .max()
        .unwrap_or_default();
    let result = Failover {
        target,
        victim: cluster.members[victim].name.clone(),
        ok_reads,
        failed_reads: after_kill.len(),
        recovery,
        first_error: failures.first().map(|(_, e)| e.clone()),
    };
    cluster.members[victim].restart();
    cluster.wait_healthy(Duration::from_secs(60));
    result
}
