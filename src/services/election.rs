//! The v3election service. Campaign blocks until elected; Observe relays
//! the leader's changes as a stream from one member.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::RpcResult;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::*;
use crate::services::ServiceDeps;
use crate::upstream::Forwarded;
use crate::upstream::{Credentials, RetryPolicy};

/// Serves `v3electionpb.Election`.
pub struct ElectionService {
    /// Pool and limits shared by all services.
    pub deps: ServiceDeps,
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, mut request: Request<CampaignRequest>) -> RpcResult<CampaignResponse> {
        let ns = self.deps.namespace.clone();
        if let Some(ns) = &ns {
            ns.name_in(&mut request.get_mut().name);
        }
        let mut resp: Response<CampaignResponse> = self
            .deps
            .upstream
            .forward(
                "/v3electionpb.Election/Campaign",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await?;
        if let (Some(ns), Some(leader)) = (&ns, resp.get_mut().leader.as_mut()) {
            ns.leader_key_out(leader);
        }
        Ok(resp)
    }

    async fn proclaim(&self, mut request: Request<ProclaimRequest>) -> RpcResult<ProclaimResponse> {
        if let (Some(ns), Some(leader)) = (&self.deps.namespace, request.get_mut().leader.as_mut())
        {
            ns.leader_key_in(leader);
        }
        self.deps
            .upstream
            .forward(
                "/v3electionpb.Election/Proclaim",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn leader(&self, mut request: Request<LeaderRequest>) -> RpcResult<LeaderResponse> {
        let ns = self.deps.namespace.clone();
        if let Some(ns) = &ns {
            ns.name_in(&mut request.get_mut().name);
        }
        let mut resp: Response<LeaderResponse> = self
            .deps
            .upstream
            .forward(
                "/v3electionpb.Election/Leader",
                RetryPolicy::Idempotent,
                request,
            )
            .await?;
        if let (Some(ns), Some(kv)) = (&ns, resp.get_mut().kv.as_mut()) {
            ns.kv_out(kv);
        }
        Ok(resp)
    }

    type ObserveStream =
        Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

    async fn observe(&self, mut request: Request<LeaderRequest>) -> RpcResult<Self::ObserveStream> {
        let ns = self.deps.namespace.clone();
        if let Some(ns) = &ns {
            ns.name_in(&mut request.get_mut().name);
        }
        let (fwd, msg) = Forwarded::split(request);
        let upstream: Streaming<LeaderResponse> = self
            .deps
            .upstream
            .server_stream(
                "/v3electionpb.Election/Observe",
                RetryPolicy::Idempotent,
                Credentials::Client(&fwd),
                msg,
            )
            .await?;
        let Some(ns) = ns else {
            return Ok(Response::new(Box::pin(upstream)));
        };
        let relative = upstream.map(move |answer| {
            answer.map(|mut resp| {
                if let Some(kv) = resp.kv.as_mut() {
                    ns.kv_out(kv);
                }
                resp
            })
        });
        Ok(Response::new(Box::pin(relative)))
    }

    async fn resign(&self, mut request: Request<ResignRequest>) -> RpcResult<ResignResponse> {
        if let (Some(ns), Some(leader)) = (&self.deps.namespace, request.get_mut().leader.as_mut())
        {
            ns.leader_key_in(leader);
        }
        self.deps
            .upstream
            .forward(
                "/v3electionpb.Election/Resign",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }
}
