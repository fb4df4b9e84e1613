//! The Auth service: every RPC forwarded with the caller's metadata, so
//! etcd enforces permissions per user. Reads (status, get, list,
//! Authenticate) may be retried on another member; changes only when they
//! never took effect.

use tonic::Request;

use crate::error::RpcResult;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::services::ServiceDeps;
use crate::upstream::RetryPolicy;

/// Serves `etcdserverpb.Auth`.
pub struct AuthService {
    /// Pool and limits shared by all services.
    pub deps: ServiceDeps,
}

#[tonic::async_trait]
impl Auth for AuthService {
    /// Once auth is on, nothing cached for token-less clients may be served.
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> RpcResult<AuthEnableResponse> {
        self.deps.cache.suspend();
        let answer: RpcResult<AuthEnableResponse> = self
            .deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/AuthEnable",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await;
        self.deps.cache.suspend();
        answer
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> RpcResult<AuthDisableResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/AuthDisable",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> RpcResult<AuthStatusResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/AuthStatus",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> RpcResult<AuthenticateResponse> {
        let Some(limits) = &self.deps.limits else {
            return self
                .deps
                .upstream
                .forward(
                    "/etcdserverpb.Auth/Authenticate",
                    RetryPolicy::Idempotent,
                    request,
                )
                .await;
        };
        // Per-client limits count a token's calls against its user.
        let name = request.get_ref().name.clone();
        let answer: RpcResult<AuthenticateResponse> = self
            .deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/Authenticate",
                RetryPolicy::Idempotent,
                request,
            )
            .await;
        if let Ok(resp) = &answer {
            limits.users.learn(&resp.get_ref().token, &name);
        }
        answer
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> RpcResult<AuthUserAddResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/UserAdd",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> RpcResult<AuthUserGetResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/UserGet",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> RpcResult<AuthUserListResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/UserList",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> RpcResult<AuthUserDeleteResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/UserDelete",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> RpcResult<AuthUserChangePasswordResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/UserChangePassword",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> RpcResult<AuthUserGrantRoleResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/UserGrantRole",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> RpcResult<AuthUserRevokeRoleResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/UserRevokeRole",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> RpcResult<AuthRoleAddResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/RoleAdd",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> RpcResult<AuthRoleGetResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/RoleGet",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> RpcResult<AuthRoleListResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/RoleList",
                RetryPolicy::Idempotent,
                request,
            )
            .await
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> RpcResult<AuthRoleDeleteResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/RoleDelete",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> RpcResult<AuthRoleGrantPermissionResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/RoleGrantPermission",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> RpcResult<AuthRoleRevokePermissionResponse> {
        self.deps
            .upstream
            .forward(
                "/etcdserverpb.Auth/RoleRevokePermission",
                RetryPolicy::UnlessApplied,
                request,
            )
            .await
    }
}
