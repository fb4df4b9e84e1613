//! The hub's own rules, without a member: which watchers share a broadcast.

use super::*;

fn hub() -> Arc<WatchHub> {
    let pool = Pool::new(Vec::new(), Default::default()).expect("a pool without members");
    WatchHub::new(pool, 16, crate::tasks::Tasks::default())
}

fn key(k: &str) -> WatchKey {
    WatchKey {
        key: k.as_bytes().to_vec(),
        range_end: Vec::new(),
    }
}

fn spec(watch_id: i64) -> WatcherSpec {
    WatcherSpec {
        watch_id,
        ..WatcherSpec::default()
    }
}

fn fwd() -> Forwarded {
    Forwarded::split(tonic::Request::new(())).0
}

#[tokio::test]
async fn watchers_of_one_range_share_one_broadcast() {
    let hub = hub();
    let (tx, _rx) = mpsc::channel(4);
    let a = hub.add(key("k"), spec(1), tx.clone(), &Opener::new(fwd()));
    let b = hub.add(key("k"), spec(2), tx.clone(), &Opener::new(fwd()));
    let c = hub.add(key("other"), spec(3), tx, &Opener::new(fwd()));
    {
        let st = lock(&hub.state);
        assert_eq!(st.shared.len(), 2);
        let on = |w: WatcherId| st.owner.get(&w.0).expect("every watcher has a broadcast");
        assert!(
            Arc::ptr_eq(on(a), on(b)),
            "both watchers of k on one broadcast"
        );
        assert!(!Arc::ptr_eq(on(a), on(c)), "another range has its own");
        assert_eq!(on(a).watcher_count(), 2);
    }
    assert!(hub.remove(a));
    assert!(!hub.remove(a), "a watcher is removed once");
}
