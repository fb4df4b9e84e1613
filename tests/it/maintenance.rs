//! Maintenance and Cluster through the proxy: `endpoint status`, `hashkv`,
//! `snapshot save`, `defrag`, `alarm list`, `member list` and `move-leader`
//! work as they do against a member.

use std::time::Duration;

use crate::support::ctl::ok;
use crate::support::{etcdctl, eventually, Cluster, TestProxy};

/// `endpoint status -w simple` fields: endpoint, id, version, ... (later
/// columns differ between etcdctl releases).
fn status_fields(line: &str) -> Vec<String> {
    line.split(',').map(|f| f.trim().to_string()).collect()
}

/// A number after `"field":` in etcdctl's JSON output.
fn json_number(text: &str, field: &str) -> Option<u64> {
    let rest = text.split(&format!("\"{field}\":")).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Per endpoint of `endpoint status -w json`: (member id in hex, whether it leads).
fn leaders(json: &str) -> Vec<(String, bool)> {
    json.split("\"Endpoint\":")
        .skip(1)
        .filter_map(|e| {
            let id = json_number(e, "member_id")?;
            Some((format!("{id:x}"), json_number(e, "leader") == Some(id)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_commands_work_through_the_proxy() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();

    for i in 0..50 {
        ok(&via, &["put", &format!("k{i}"), &"v".repeat(1000)]);
    }

    // Status and HashKV answer with the member's numbers.
    // Status reports the member's own version (field 3 of `endpoint status`).
    let status = ok(&via, &["endpoint", "status"]);
    let version = |s: &str| {
        status_fields(s.lines().next().unwrap_or_default())
            .get(2)
            .cloned()
    };
    assert_eq!(
        version(&status),
        version(&ok(&direct, &["endpoint", "status"])),
        "{status}"
    );
    assert_eq!(
        version(&status),
        Some(crate::support::etcd::server_version()),
        "{status}"
    );
    let hash_direct = ok(&direct, &["endpoint", "hashkv"]);
    let hash_proxy = ok(&via, &["endpoint", "hashkv"]);
    assert_eq!(
        hash_proxy.split(',').nth(1).map(str::trim),
        hash_direct.split(',').nth(1).map(str::trim),
        "hashkv differs"
    );

    // The snapshot streams through whole and is a valid database.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    let saved = ok(&via, &["snapshot", "save", file.to_str().unwrap()]);
    assert!(saved.contains("Snapshot saved"), "{saved}");
    // A bbolt database: its meta page carries bbolt's magic number (etcdctl
    // 3.6 moved `snapshot status` to etcdutl, so the file is read here).
    let db = std::fs::read(&file).unwrap();
    assert!(
        db.len() > 50 * 1000,
        "the snapshot holds the 50 values: {} bytes",
        db.len()
    );
    assert_eq!(
        db.get(16..20),
        Some(&0xED0C_DAEDu32.to_le_bytes()[..]),
        "bbolt magic"
    );

    assert!(ok(&via, &["defrag"]).contains("Finished defragmenting"));
    assert_eq!(
        ok(&via, &["alarm", "list"]),
        ok(&direct, &["alarm", "list"])
    );
    assert_eq!(
        ok(&via, &["member", "list"]),
        ok(&direct, &["member", "list"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_through_the_proxy_reaches_the_leader() {
    let cluster = Cluster::start(3).await;
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let via = proxy.endpoint();

    // The proxy answers Status from the leader once it has probed the
    // members (five answers in a row, so not by chance).
    let leader_id = eventually(
        "proxy status answered by the leader",
        Duration::from_secs(20),
        || {
            let via = via.clone();
            async move {
                let mut ids = Vec::new();
                for _ in 0..5 {
                    let out = etcdctl(&via, &["endpoint", "status", "-w", "json"]);
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    match leaders(&text).first() {
                        Some((id, true)) if out.status.success() => ids.push(id.clone()),
                        _ => return None,
                    }
                }
                ids.windows(2).all(|w| w[0] == w[1]).then(|| ids[0].clone())
            }
        },
    )
    .await;

    let members = ok(&via, &["member", "list"]);
    let target = members
        .lines()
        .map(|l| l.split(',').next().unwrap_or("").trim().to_string())
        .find(|id| *id != leader_id)
        .expect("another member");

    // etcdctl asks Status first and needs the leader to answer it: on a
    // busy machine a probe of the leader can time out and Status is then
    // answered by a follower for a moment ("no leader endpoint given", as
    // etcdctl says to a follower directly), so the move is retried.
    let moved = eventually(
        "move-leader through the proxy",
        Duration::from_secs(20),
        || {
            let (via, target) = (via.clone(), target.clone());
            async move {
                let out =
                    tokio::task::spawn_blocking(move || etcdctl(&via, &["move-leader", &target]))
                        .await
                        .ok()?;
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            }
        },
    )
    .await;
    assert!(
        moved.contains(&format!(
            "Leadership transferred from {leader_id} to {target}"
        )),
        "{moved}"
    );

    let direct = cluster.endpoints();
    eventually("new leader seen directly", Duration::from_secs(20), || {
        let (direct, target) = (direct.clone(), target.clone());
        async move {
            let out = etcdctl(&direct, &["endpoint", "status", "-w", "json"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            leaders(&text)
                .iter()
                .any(|(id, leads)| *leads && *id == target)
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_add_promote_update_remove_are_forwarded() {
    let cluster = Cluster::start(3).await;
    let direct = cluster.endpoints();
    let proxy = TestProxy::start(&cluster.members[0].addr()).await;
    let via = proxy.endpoint();
    let peer = format!("http://127.0.0.1:{}", crate::support::free_port());

    // etcd says "unhealthy cluster" for the first seconds after start.
    let added = eventually("member add accepted", Duration::from_secs(30), || {
        let (via, peer) = (via.clone(), peer.clone());
        async move {
            let out = etcdctl(
                &via,
                &[
                    "member",
                    "add",
                    "spare",
                    &format!("--peer-urls={peer}"),
                    "--learner",
                ],
            );
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        }
    })
    .await;
    assert!(
        added.starts_with("Member ") && added.contains(" to cluster "),
        "{added}"
    );
    let list = ok(&via, &["member", "list"]);
    let line = list
        .lines()
        .find(|l| l.contains(&peer))
        .expect("new member listed")
        .to_string();
    let id = line.split(',').next().unwrap().trim().to_string();
    assert!(
        line.contains("unstarted") && line.trim_end().ends_with("true"),
        "{line}"
    );

    // Promote of a learner that never started: etcd's refusal, word for word.
    let d = etcdctl(&direct, &["member", "promote", &id]);
    let p = etcdctl(&via, &["member", "promote", &id]);
    assert!(!d.status.success() && !p.status.success());
    let last = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(last(&p), last(&d));

    let other_peer = format!("http://127.0.0.1:{}", crate::support::free_port());
    assert!(ok(
        &via,
        &[
            "member",
            "update",
            &id,
            &format!("--peer-urls={other_peer}")
        ]
    )
    .contains("updated"));
    assert!(ok(&via, &["member", "remove", &id]).contains("removed"));
    assert!(!ok(&direct, &["member", "list"]).contains(&id));
}
