//! The forwarding handler, said once: most etcd methods are served by
//! sending the client's request to the members as it is, with the client's
//! metadata and a retry policy, and handing the answer back. [`forward!`]
//! writes such a handler from one line naming the method, its types, its
//! gRPC path and its retry policy, so the services list only what differs.

use std::future::Future;
use std::pin::Pin;

use crate::error::RpcResult;

/// What a forwarding handler returns: the boxed future `#[tonic::async_trait]`
/// makes of an `async fn` (the handlers [`forward!`] writes are plain
/// functions, as that attribute does not look inside macros).
pub(crate) type Forwarding<'a, T> = Pin<Box<dyn Future<Output = RpcResult<T>> + Send + 'a>>;

/// One handler of a tonic service trait, inside its
/// `#[tonic::async_trait] impl`, for a service whose `deps` are
/// [`super::ServiceDeps`]: `name: Request => Response, "/pkg.Service/Method",
/// Policy` forwards to the balanced members with `RetryPolicy::Policy`;
/// `, to Target` picks other members (`Target::Pinned`); `, then after`
/// passes the answer through `self.after` before it is returned.
macro_rules! forward {
    (
        $(#[$attr:meta])*
        $name:ident: $req:ty => $resp:ty, $path:literal, $policy:ident
        $(, to $target:ident)? $(, then $after:ident)?
    ) => {
        $(#[$attr])*
        fn $name<'life0, 'async_trait>(
            &'life0 self,
            request: tonic::Request<$req>,
        ) -> $crate::services::forward::Forwarding<'async_trait, $resp>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let answer: $crate::error::RpcResult<$resp> = self
                    .deps
                    .upstream
                    .forward_to(
                        $crate::services::forward::forward!(@target $($target)?),
                        $path,
                        $crate::upstream::RetryPolicy::$policy,
                        request,
                    )
                    .await;
                $(let answer = self.$after(answer);)?
                answer
            })
        }
    };
    (@target) => { $crate::upstream::Target::Balanced };
    (@target $target:ident) => { $crate::upstream::Target::$target };
}

pub(crate) use forward;
