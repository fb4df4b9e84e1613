//! [`Upstream`]: the one way a client's unary call reaches an etcd member.
//! Long-lived streams (watch, keep-alive, leasing) run as
//! `resilient_stream` sessions, and membership probes call each member
//! directly; all of them use the channels of the same [`Pool`], so members,
//! health, TLS and message limits are decided in one place.
//!
//! It owns what every upstream call needs: the member pool (leader or
//! balanced choice, retry on another member by [`RetryPolicy`], the
//! `upstream` span), the message limits towards members, and the
//! credentials the call carries: the client's forwarded metadata, or the
//! proxy's own user.

use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::codec::LeanCodec;
use crate::error::{ProxyError, RpcResult};
use crate::upstream::retry::NotSent;
use crate::upstream::Forwarded;
use crate::upstream::{Pool, RetryPolicy, Target};

/// Whose credentials an upstream call carries.
#[derive(Clone, Copy, Debug)]
pub enum Credentials<'a> {
    /// The client's own metadata (its auth token among it), cleaned of
    /// what belongs to its connection.
    Client(&'a Forwarded),
    /// The proxy's own user (`--user`), or none when it has none.
    Own,
    /// No credentials at all: what any token-less client would be answered.
    Anonymous,
}

impl Credentials<'_> {
    /// `msg` as a request carrying these credentials.
    fn request<T>(self, pool: &Pool, msg: T) -> Request<T> {
        match self {
            Credentials::Client(fwd) => fwd.request(msg),
            Credentials::Own => pool.own_request(msg),
            Credentials::Anonymous => Request::new(msg),
        }
    }
}

/// The upstream call layer over the member pool. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    pool: Pool,
    max_recv: usize,
    max_send: usize,
}

impl Upstream {
    /// An upstream over `pool`, accepting answers up to `max_recv` bytes
    /// and sending requests up to `max_send` bytes.
    pub fn new(pool: Pool, max_recv: usize, max_send: usize) -> Upstream {
        Upstream {
            pool,
            max_recv,
            max_send,
        }
    }

    /// The pool behind this upstream, for what is not a call (membership,
    /// health flags, picking a member for a long-lived stream).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Largest message accepted from a member.
    pub fn max_recv(&self) -> usize {
        self.max_recv
    }

    /// Largest message sent to a member.
    pub fn max_send(&self) -> usize {
        self.max_send
    }

    /// One unary call of `method` (a gRPC path such as
    /// `/etcdserverpb.KV/Range`) on a member, retried on others as `policy`
    /// allows. A member's answer, refusal included, comes back unchanged.
    pub async fn unary<Req, Resp>(
        &self,
        method: &'static str,
        policy: RetryPolicy,
        credentials: Credentials<'_>,
        msg: Req,
    ) -> Result<Resp, ProxyError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.unary_to(Target::Balanced, method, policy, credentials, msg)
            .await
    }

    /// Like [`Upstream::unary`], on the members `target` chooses.
    pub async fn unary_to<Req, Resp>(
        &self,
        target: Target,
        method: &'static str,
        policy: RetryPolicy,
        credentials: Credentials<'_>,
        msg: Req,
    ) -> Result<Resp, ProxyError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.pool
            .call_on(target, policy, |channel| {
                let request = credentials.request(&self.pool, msg.clone());
                self.unary_call(channel, method, request)
            })
            .await
    }

    /// One server-streaming call of `method` on a member; only opening it
    /// is retried as `policy` allows, the messages come as the member sends them.
    pub async fn server_stream<Req, Resp>(
        &self,
        method: &'static str,
        policy: RetryPolicy,
        credentials: Credentials<'_>,
        msg: Req,
    ) -> Result<tonic::Streaming<Resp>, ProxyError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.server_stream_to(Target::Balanced, method, policy, credentials, msg)
            .await
    }

    /// Like [`Upstream::server_stream`], on the members `target` chooses.
    pub async fn server_stream_to<Req, Resp>(
        &self,
        target: Target,
        method: &'static str,
        policy: RetryPolicy,
        credentials: Credentials<'_>,
        msg: Req,
    ) -> Result<tonic::Streaming<Resp>, ProxyError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.pool
            .call_on(target, policy, |channel| {
                let mut request = credentials.request(&self.pool, msg.clone());
                crate::trace::inject(&mut request);
                let mut grpc = self.client(channel);
                async move {
                    ready(&mut grpc).await?;
                    grpc.server_streaming(
                        request,
                        PathAndQuery::from_static(method),
                        LeanCodec::<Req, Resp>::default(),
                    )
                    .await
                    .map(Response::into_inner)
                }
            })
            .await
    }

    /// One unary call on the given member only (the leader, for calls
    /// etcd accepts there alone), without retry: its refusal comes back.
    pub async fn unary_on<Req, Resp>(
        &self,
        backend: &std::sync::Arc<crate::upstream::Backend>,
        method: &'static str,
        request: Request<Req>,
    ) -> Result<Resp, ProxyError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let _inflight = backend.start_call();
        self.unary_call(backend.channel.clone(), method, request)
            .await
            .map_err(ProxyError::Upstream)
    }

    /// A gRPC client on `channel` with this upstream's message limits.
    fn client(&self, channel: Channel) -> Grpc<Channel> {
        Grpc::new(channel)
            .max_decoding_message_size(self.max_recv)
            .max_encoding_message_size(self.max_send)
    }

    /// One attempt of a unary call on `channel`.
    fn unary_call<Req, Resp>(
        &self,
        channel: Channel,
        method: &'static str,
        request: Request<Req>,
    ) -> impl std::future::Future<Output = Result<Resp, Status>> + Send + 'static
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut request = request;
        crate::trace::inject(&mut request);
        let mut grpc = self.client(channel);
        async move {
            ready(&mut grpc).await?;
            grpc.unary(
                request,
                PathAndQuery::from_static(method),
                LeanCodec::<Req, Resp>::default(),
            )
            .await
            .map(Response::into_inner)
        }
    }

    /// A client's unary call forwarded as it came: its metadata goes with
    /// every attempt and the answer goes back as the member gave it.
    pub async fn forward<Req, Resp>(
        &self,
        method: &'static str,
        policy: RetryPolicy,
        request: Request<Req>,
    ) -> RpcResult<Resp>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.forward_to(Target::Balanced, method, policy, request)
            .await
    }

    /// Like [`Upstream::forward`], on the members `target` chooses.
    pub async fn forward_to<Req, Resp>(
        &self,
        target: Target,
        method: &'static str,
        policy: RetryPolicy,
        request: Request<Req>,
    ) -> RpcResult<Resp>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let (fwd, msg) = Forwarded::split(request);
        let answer = self
            .unary_to(target, method, policy, Credentials::Client(&fwd), msg)
            .await?;
        Ok(Response::new(answer))
    }
}

/// Waits until `grpc` can take a call, in the words tonic's generated
/// clients use; a failure here is typed [`NotSent`]: no request left.
async fn ready(grpc: &mut Grpc<Channel>) -> Result<(), Status> {
    grpc.ready().await.map_err(NotSent::status)
}
