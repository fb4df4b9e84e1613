//! `etcdctl lock` and `etcdctl elect` through the proxy, including a lock
//! holder that dies without unlocking: its lease expires and frees the lock.

use std::time::Duration;

use crate::support::{Background, Cluster, TestProxy};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_exclusive_and_freed_when_the_holder_dies() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let via = proxy.endpoint();

    // The holder prints the lock key and keeps the lock (its lease kept alive
    // through the proxy) until killed.
    let mut holder = Background::etcdctl(&via, &["lock", "--ttl=2", "jobs"]);
    holder.wait_line_matching("jobs/", WAIT);

    let mut waiter =
        Background::etcdctl(&via, &["lock", "--ttl=2", "jobs", "echo", "got-the-lock"]);
    assert!(
        !waiter.has_exited(),
        "second locker must wait while the first holds the lock"
    );

    // SIGKILL: no unlock, no revoke. Only lease expiry can free the lock.
    holder.signal("KILL");
    waiter.wait_line("got-the-lock", WAIT);
    assert!(waiter.wait_exit(WAIT), "second locker failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_campaign_observe_and_resign_through_the_proxy() {
    let cluster = Cluster::start(1).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let via = proxy.endpoint();

    let mut first = Background::etcdctl(&via, &["elect", "leader-of-jobs", "alpha"]);
    first.wait_line("alpha", WAIT);

    let mut observer = Background::etcdctl(&via, &["elect", "-l", "leader-of-jobs"]);
    observer.wait_line("alpha", WAIT);

    let mut second = Background::etcdctl(&via, &["elect", "leader-of-jobs", "beta"]);
    assert!(!second.seen.iter().any(|l| l == "beta"));

    // etcdctl resigns on SIGINT; the waiting candidate wins and the observer sees it.
    first.signal("INT");
    second.wait_line("beta", WAIT);
    observer.wait_line("beta", WAIT);
}
