//! The v3election service. Campaign blocks until elected; Observe relays
//! the leader's changes as a stream from one member.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::backend::RetryPolicy;
use crate::error::RpcResult;
use crate::forward_unary;
use crate::proto::v3electionpb::election_client::ElectionClient;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::*;
use crate::services::{Context, Forwarded};

/// Serves `v3electionpb.Election`.
pub struct ElectionService {
    /// Pool and limits shared by all services.
    pub ctx: Context,
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, request: Request<CampaignRequest>) -> RpcResult<CampaignResponse> {
        forward_unary!(self, request, ElectionClient, campaign, RetryPolicy::UnlessApplied)
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> RpcResult<ProclaimResponse> {
        forward_unary!(self, request, ElectionClient, proclaim, RetryPolicy::UnlessApplied)
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> RpcResult<LeaderResponse> {
        forward_unary!(self, request, ElectionClient, leader, RetryPolicy::Idempotent)
    }

    type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

    async fn observe(&self, request: Request<LeaderRequest>) -> RpcResult<Self::ObserveStream> {
        let (fwd, msg) = Forwarded::split(request);
        let ctx = &self.ctx;
        let upstream: Streaming<LeaderResponse> = ctx
            .pool
            .call(RetryPolicy::Idempotent, |ch| {
                let req = fwd.request(msg.clone());
                let mut client = ElectionClient::new(ch).max_decoding_message_size(ctx.upstream_max_recv);
                async move { client.observe(req).await.map(Response::into_inner) }
            })
            .await?;
        Ok(Response::new(Box::pin(upstream)))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> RpcResult<ResignResponse> {
        forward_unary!(self, request, ElectionClient, resign, RetryPolicy::UnlessApplied)
    }
}
