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

/// `endpoint status -w json` over `endpoints`: per endpoint, in order, the
/// member id and whether it leads.
fn status_of(endpoints: &[String]) -> Vec<(String, bool)> {
    let out = etcdctl(&endpoints.join(","), &["endpoint", "status", "-w", "json"]);
    leaders(&String::from_utf8_lossy(&out.stdout))
}

/// MoveLeader sent straight to `addr` (no etcdctl endpoint search): the
/// answer's code and text, or "moved".
async fn move_leader_at(addr: &str, target: &str) -> (tonic::Code, String) {
    use etcd_grpc_proxy::proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use etcd_grpc_proxy::proto::etcdserverpb::MoveLeaderRequest;
    let target_id = u64::from_str_radix(target, 16).expect("hex member id");
    let channel = crate::support::grpc::channel(addr).await;
    match MaintenanceClient::new(channel)
        .move_leader(MoveLeaderRequest { target_id })
        .await
    {
        Ok(_) => (tonic::Code::Ok, "moved".into()),
        Err(s) => crate::support::grpc::status_text(&s),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_proxies_each_given_one_member_answer_as_those_members() {
    let cluster = Cluster::start(3).await;
    let members: Vec<String> = cluster.members.iter().map(|m| m.addr()).collect();
    let mut proxies = Vec::new();
    for m in &members {
        proxies.push(TestProxy::start(m).await);
    }
    let via: Vec<String> = proxies.iter().map(TestProxy::endpoint).collect();

    // endpoint status: each proxy is its own member, with the same leader
    // flags as the members show (no proxy claims to be the leader).
    let direct_status = eventually("a leader", Duration::from_secs(20), || {
        let members = members.clone();
        async move {
            let s = status_of(&members);
            (s.len() == 3 && s.iter().filter(|(_, l)| *l).count() == 1).then_some(s)
        }
    })
    .await;
    assert_eq!(status_of(&via), direct_status);
    let leader = direct_status.iter().position(|(_, l)| *l).expect("leader");
    let follower = (leader + 1) % 3;
    let (leader_id, follower_id) = (
        direct_status[leader].0.clone(),
        direct_status[follower].0.clone(),
    );

    // A MoveLeader sent to a follower's proxy is refused as that follower
    // refuses it.
    let other = (leader + 2) % 3;
    assert_eq!(
        move_leader_at(&via[follower], &direct_status[other].0).await,
        move_leader_at(&members[follower], &direct_status[other].0).await
    );

    // etcdctl move-leader over the three proxies finds the leader's proxy
    // and moves leadership away from it, as over the three members.
    let moved = ok(&via.join(","), &["move-leader", &follower_id]);
    assert!(
        moved.contains(&format!(
            "Leadership transferred from {leader_id} to {follower_id}"
        )),
        "{moved}"
    );
    eventually(
        "the new leader seen directly",
        Duration::from_secs(20),
        || {
            let (members, follower_id) = (members.clone(), follower_id.clone());
            async move {
                status_of(&members)
                    .iter()
                    .any(|(id, leads)| *leads && *id == follower_id)
                    .then_some(())
            }
        },
    )
    .await;
    // ... and back to the first leader, so the move works to and from it.
    let back = eventually("move-leader back", Duration::from_secs(20), || {
        let (via, leader_id) = (via.join(","), leader_id.clone());
        async move {
            let out =
                tokio::task::spawn_blocking(move || etcdctl(&via, &["move-leader", &leader_id]))
                    .await
                    .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        }
    })
    .await;
    assert!(
        back.contains(&format!(
            "Leadership transferred from {follower_id} to {leader_id}"
        )),
        "{back}"
    );

    // defrag through each proxy defragments that proxy's member.
    for (i, p) in via.iter().enumerate() {
        let before =
            cluster.members[i].metric("etcd_disk_backend_defrag_duration_seconds_count", &[]);
        assert!(ok(p, &["defrag"]).contains("Finished defragmenting"));
        let after =
            cluster.members[i].metric("etcd_disk_backend_defrag_duration_seconds_count", &[]);
        assert!(
            after > before,
            "member {i} was not defragmented through its proxy"
        );
    }
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
