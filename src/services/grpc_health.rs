//! `grpc.health.v1.Health`, as members serve it, answered from the proxy's
//! own readiness (see [`crate::upstream::health::readiness`]): SERVING while it takes
//! calls, NOT_SERVING while no member is in rotation or once it drains.
//!
//! Like a member (grpc-go's health server), the proxy reports on one
//! service, the whole server, named "": Check of any other name answers
//! NotFound, Watch of it SERVICE_UNKNOWN.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::drain::Drain;
use crate::error::{HealthError, RpcResult};
use crate::proto::grpc_health_v1::health_check_response::ServingStatus;
use crate::proto::grpc_health_v1::health_server::Health;
use crate::proto::grpc_health_v1::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use crate::upstream::Pool;

/// The one service name reported on: the whole server.
const WHOLE_SERVER: &str = "";

/// How often a Watch looks at the readiness again.
pub const WATCH_POLL: Duration = Duration::from_millis(500);

/// Serves `grpc.health.v1.Health`.
#[derive(Clone)]
pub struct HealthService {
    /// The members whose rotation makes the proxy ready.
    pub pool: Pool,
    /// Whether the proxy drains (then it is never ready again).
    pub drain: Arc<Drain>,
}

/// The answers of one Watch call.
pub type HealthStream =
    Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

impl HealthService {
    fn status(&self) -> ServingStatus {
        match crate::upstream::health::readiness(&self.pool, &self.drain) {
            Ok(()) => ServingStatus::Serving,
            Err(_) => ServingStatus::NotServing,
        }
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, request: Request<HealthCheckRequest>) -> RpcResult<HealthCheckResponse> {
        if request.get_ref().service != WHOLE_SERVER {
            return Err(HealthError::UnknownService.into());
        }
        Ok(Response::new(answer(self.status())))
    }

    async fn list(&self, _request: Request<HealthListRequest>) -> RpcResult<HealthListResponse> {
        let statuses = HashMap::from([(WHOLE_SERVER.to_string(), answer(self.status()))]);
        Ok(Response::new(HealthListResponse { statuses }))
    }

    type WatchStream = HealthStream;

    /// The current status, then each change, until the client leaves (or
    /// the drain ends the stream). An unknown name gets SERVICE_UNKNOWN
    /// once, and the stream stays open, as with grpc-go.
    async fn watch(&self, request: Request<HealthCheckRequest>) -> RpcResult<HealthStream> {
        if request.get_ref().service != WHOLE_SERVER {
            let unknown =
                futures::stream::once(async { Ok(answer(ServingStatus::ServiceUnknown)) });
            return Ok(Response::new(Box::pin(
                unknown.chain(futures::stream::pending()),
            )));
        }
        let service = self.clone();
        let changes = futures::stream::unfold(None, move |last: Option<ServingStatus>| {
            let service = service.clone();
            async move {
                loop {
                    let now = service.status();
                    if last != Some(now) {
                        return Some((Ok(answer(now)), Some(now)));
                    }
                    tokio::time::sleep(WATCH_POLL).await;
                }
            }
        });
        Ok(Response::new(Box::pin(changes)))
    }
}
