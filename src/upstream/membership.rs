//! The background task that keeps the pool true to the cluster: it probes
//! every member's health and, unless auto-sync is off, replaces the member
//! set with the started, non-learner members MemberList reports.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::{sleep, timeout, Instant};
use tracing::{debug, info_span, warn, Instrument};

use super::endpoint::EndpointUrl;
use super::pool::{describe, Backend, Pool};
use crate::proto::etcdserverpb::{
    cluster_client::ClusterClient, maintenance_client::MaintenanceClient,
};
use crate::proto::etcdserverpb::{Member, MemberListRequest, StatusRequest};

/// How often the task looks at the cluster.
#[derive(Debug, Clone)]
pub struct MembershipSettings {
    /// MemberList refresh interval (`--endpoints-auto-sync-interval`); `None` = fixed set.
    pub sync_interval: Option<Duration>,
    /// How often each member's health is probed.
    pub health_interval: Duration,
    /// How long one probe or MemberList may take.
    pub probe_timeout: Duration,
}

/// Never loop faster than this, however many calls report dead members.
const MIN_GAP: Duration = Duration::from_millis(200);

/// Runs until the task is aborted.
pub async fn run(pool: Pool, settings: MembershipSettings) {
    let mut last_sync: Option<Instant> = None;
    loop {
        pool.authenticate_own_user(false).await;
        probe_all(&pool, settings.probe_timeout).await;
        if let Some(interval) = settings.sync_interval {
            let due = last_sync.is_none_or(|t| t.elapsed() >= interval);
            let unhealthy = pool.backends().iter().any(|b| !b.is_healthy());
            if due || unhealthy {
                sync(&pool, settings.probe_timeout)
                    .instrument(info_span!("membership_sync"))
                    .await;
                last_sync = Some(Instant::now());
            }
        }
        let next = match settings.sync_interval {
            Some(i) => i.min(settings.health_interval),
            None => settings.health_interval,
        };
        tokio::select! {
            _ = sleep(next) => {}
            _ = pool.refresh_requested() => {
                sleep(MIN_GAP).await;
                // A dead member found by a call: sync at once.
                last_sync = None;
            }
        }
    }
}

/// Probes every member in parallel and updates its health flag.
pub async fn probe_all(pool: &Pool, probe_timeout: Duration) {
    let backends = pool.backends();
    let probes = backends.iter().map(|b| async move {
        let verdict = probe(pool, b, probe_timeout).await;
        (b, verdict)
    });
    let verdicts = futures::future::join_all(probes).await;
    if verdicts
        .iter()
        .any(|(_, v)| v.as_ref().is_err_and(|e| e.contains("invalid auth token")))
    {
        pool.authenticate_own_user(true).await;
    }
    for (backend, verdict) in verdicts {
        match verdict {
            Ok(()) => pool.mark_healthy(backend),
            Err(why) => pool.mark_unhealthy_quiet(backend, &why),
        }
    }
}

/// One member is healthy when it answers Status in time and knows a leader.
/// (With auth on, etcd 3.4.42, 3.5.28, 3.6.9 and later answer Status only
/// to an authenticated user: the proxy's own, with `--user`.)
async fn probe(pool: &Pool, backend: &Backend, probe_timeout: Duration) -> Result<(), String> {
    let mut client = MaintenanceClient::new(backend.channel.clone());
    let mut req = pool.own_request(StatusRequest {});
    req.set_timeout(probe_timeout);
    match timeout(probe_timeout, client.status(req)).await {
        Err(_) => Err("status probe timed out".into()),
        Ok(Err(status)) => Err(describe(&status)),
        Ok(Ok(resp)) => {
            let resp = resp.into_inner();
            if let Some(h) = resp.header {
                backend.set_member_id(h.member_id);
                backend.set_last_header(h);
            }
            backend.set_leader_seen(resp.leader);
            if resp.leader == 0 {
                Err("etcdserver: no leader".into())
            } else {
                Ok(())
            }
        }
    }
}

/// Replaces the member set with what MemberList says, asking healthy
/// members first, then the rest, then the start-up endpoints.
async fn sync(pool: &Pool, probe_timeout: Duration) {
    let backends = pool.backends();
    let mut order: Vec<EndpointUrl> = backends
        .iter()
        .filter(|b| b.is_healthy())
        .map(|b| b.url.clone())
        .collect();
    order.extend(
        backends
            .iter()
            .filter(|b| !b.is_healthy())
            .map(|b| b.url.clone()),
    );
    for seed in pool.seeds() {
        if !order.contains(seed) {
            order.push(seed.clone());
        }
    }
    for url in order {
        let channel = match backends.iter().find(|b| b.url == url) {
            Some(b) => b.channel.clone(),
            None => match pool.dial(&url) {
                Ok(c) => c,
                Err(_) => continue,
            },
        };
        let mut req = pool.own_request(MemberListRequest {
            linearizable: false,
        });
        req.set_timeout(probe_timeout);
        let members =
            match timeout(probe_timeout, ClusterClient::new(channel).member_list(req)).await {
                Ok(Ok(resp)) => resp.into_inner().members,
                Ok(Err(status)) => {
                    debug!(endpoint = %url, error = %describe(&status), "MemberList failed");
                    continue;
                }
                Err(_) => continue,
            };
        let urls = serving_urls(&members, url.is_tls());
        if urls.is_empty() {
            continue;
        }
        if let Err(e) = pool.set_members(urls) {
            warn!(error = %e, "could not dial a member from MemberList");
        }
        return;
    }
    debug!("no member answered MemberList; keeping the current set");
}

/// The URL to use for each member that serves clients: started (it has a
/// name and client URLs) and not a learner. One URL per member, preferring
/// the scheme the proxy already uses. A URL that is not UTF-8 is skipped
/// like any other that does not parse.
pub fn serving_urls(members: &[Member], tls: bool) -> BTreeSet<EndpointUrl> {
    members
        .iter()
        .filter(|m| !m.is_learner && !m.name.is_empty() && !m.client_ur_ls.is_empty())
        .filter_map(|m| {
            let parsed: Vec<EndpointUrl> = m
                .client_ur_ls
                .iter()
                .filter_map(|u| EndpointUrl::parse(std::str::from_utf8(u).ok()?, tls).ok())
                .collect();
            parsed
                .iter()
                .find(|u| u.is_tls() == tls)
                .or(parsed.first())
                .cloned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, urls: &[&str], learner: bool) -> Member {
        Member {
            id: 1,
            name: name.into(),
            peer_ur_ls: vec![],
            client_ur_ls: urls.iter().map(|s| s.as_bytes().to_vec()).collect(),
            is_learner: learner,
        }
    }

    #[test]
    fn only_started_voting_members_serve() {
        let members = [
            member("m1", &["http://127.0.0.1:1"], false),
            member("", &[], false),                      // added, not started
            member("m3", &["http://127.0.0.1:3"], true), // learner
            member("m4", &["http://127.0.0.1:4", "https://127.0.0.1:5"], false),
        ];
        let got: Vec<String> = serving_urls(&members, false)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(got, ["http://127.0.0.1:1", "http://127.0.0.1:4"]);
    }
}
