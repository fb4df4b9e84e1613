//! The proxy's own user (`--user`): logged in through the pool, its token
//! kept for the calls the proxy makes on its own behalf.

use tracing::{info, warn};

use super::Pool;
use crate::sync::{read, write};
use crate::upstream::retry::RetryPolicy;

impl Pool {
    /// The metadata of the proxy's own calls: its user's token, if it has
    /// one (see [`Pool::authenticate_own_user`]); empty otherwise.
    pub fn own_metadata(&self) -> tonic::metadata::MetadataMap {
        crate::upstream::Caller::metadata(self.own_token().as_ref())
    }

    /// The proxy's own token, if it has logged in.
    pub fn own_token(&self) -> Option<tonic::metadata::AsciiMetadataValue> {
        read(&self.inner.own_token).clone()
    }

    /// `msg` as one of the proxy's own calls (see [`Pool::own_metadata`]).
    pub fn own_request<T>(&self, msg: T) -> tonic::Request<T> {
        tonic::Request::from_parts(self.own_metadata(), tonic::Extensions::default(), msg)
    }

    /// Logs the proxy's own user in (once, or again after `stale` said its
    /// token was refused). Without `--user` it does nothing.
    pub async fn authenticate_own_user(&self, stale: bool) {
        let Some(user) = self.inner.settings.own_user.clone() else {
            return;
        };
        if !stale && read(&self.inner.own_token).is_some() {
            return;
        }
        let req = crate::proto::etcdserverpb::AuthenticateRequest {
            name: user.name.clone(),
            password: user.password.clone(),
        };
        let answer = self
            .call(RetryPolicy::Idempotent, |ch| {
                let req = req.clone();
                async move {
                    crate::proto::etcdserverpb::auth_client::AuthClient::new(ch)
                        .authenticate(req)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await;
        let token = match answer {
            Ok(resp) => std::str::from_utf8(&resp.token)
                .ok()
                .and_then(|t| t.parse::<tonic::metadata::AsciiMetadataValue>().ok()),
            Err(e) => {
                warn!(user = %String::from_utf8_lossy(&user.name), error = %e, "the proxy's own user cannot log in");
                None
            }
        };
        if token.is_some() {
            info!(user = %String::from_utf8_lossy(&user.name), "the proxy's own calls are authenticated");
        }
        *write(&self.inner.own_token) = token;
    }
}
