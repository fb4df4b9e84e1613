//! The Auth service: every RPC forwarded with the caller's metadata, so
//! etcd enforces permissions per user. Reads (status, get, list,
//! Authenticate) may be retried on another member; changes only when they
//! never took effect.

use tonic::Request;

use crate::backend::RetryPolicy;
use crate::error::RpcResult;
use crate::forward_unary;
use crate::proto::etcdserverpb::auth_client::AuthClient;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::services::Context;

/// Serves `etcdserverpb.Auth`.
pub struct AuthService {
    /// Pool and limits shared by all services.
    pub ctx: Context,
}

#[tonic::async_trait]
impl Auth for AuthService {
    /// Once auth is on, nothing cached for token-less clients may be served.
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> RpcResult<AuthEnableResponse> {
        self.ctx.cache.suspend();
        let answer: RpcResult<AuthEnableResponse> = forward_unary!(
            self,
            request,
            AuthClient,
            auth_enable,
            RetryPolicy::UnlessApplied
        );
        self.ctx.cache.suspend();
        answer
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> RpcResult<AuthDisableResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            auth_disable,
            RetryPolicy::UnlessApplied
        )
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> RpcResult<AuthStatusResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            auth_status,
            RetryPolicy::Idempotent
        )
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> RpcResult<AuthenticateResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            authenticate,
            RetryPolicy::Idempotent
        )
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> RpcResult<AuthUserAddResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            user_add,
            RetryPolicy::UnlessApplied
        )
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> RpcResult<AuthUserGetResponse> {
        forward_unary!(self, request, AuthClient, user_get, RetryPolicy::Idempotent)
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> RpcResult<AuthUserListResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            user_list,
            RetryPolicy::Idempotent
        )
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> RpcResult<AuthUserDeleteResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            user_delete,
            RetryPolicy::UnlessApplied
        )
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> RpcResult<AuthUserChangePasswordResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            user_change_password,
            RetryPolicy::UnlessApplied
        )
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> RpcResult<AuthUserGrantRoleResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            user_grant_role,
            RetryPolicy::UnlessApplied
        )
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> RpcResult<AuthUserRevokeRoleResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            user_revoke_role,
            RetryPolicy::UnlessApplied
        )
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> RpcResult<AuthRoleAddResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            role_add,
            RetryPolicy::UnlessApplied
        )
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> RpcResult<AuthRoleGetResponse> {
        forward_unary!(self, request, AuthClient, role_get, RetryPolicy::Idempotent)
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> RpcResult<AuthRoleListResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            role_list,
            RetryPolicy::Idempotent
        )
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> RpcResult<AuthRoleDeleteResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            role_delete,
            RetryPolicy::UnlessApplied
        )
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> RpcResult<AuthRoleGrantPermissionResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            role_grant_permission,
            RetryPolicy::UnlessApplied
        )
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> RpcResult<AuthRoleRevokePermissionResponse> {
        forward_unary!(
            self,
            request,
            AuthClient,
            role_revoke_permission,
            RetryPolicy::UnlessApplied
        )
    }
}
