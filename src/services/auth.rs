//! The Auth service: every RPC forwarded with the caller's metadata, so
//! etcd enforces permissions per user. Reads (status, get, list,
//! Authenticate) may be retried on another member; changes only when they
//! never took effect.

use tonic::Request;

use crate::error::RpcResult;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::services::forward::forward;
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

    forward!(auth_disable: AuthDisableRequest => AuthDisableResponse, "/etcdserverpb.Auth/AuthDisable", UnlessApplied);
    forward!(auth_status: AuthStatusRequest => AuthStatusResponse, "/etcdserverpb.Auth/AuthStatus", Idempotent);

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

    forward!(user_add: AuthUserAddRequest => AuthUserAddResponse, "/etcdserverpb.Auth/UserAdd", UnlessApplied);
    forward!(user_get: AuthUserGetRequest => AuthUserGetResponse, "/etcdserverpb.Auth/UserGet", Idempotent);
    forward!(user_list: AuthUserListRequest => AuthUserListResponse, "/etcdserverpb.Auth/UserList", Idempotent);
    forward!(user_delete: AuthUserDeleteRequest => AuthUserDeleteResponse, "/etcdserverpb.Auth/UserDelete", UnlessApplied);
    forward!(user_change_password: AuthUserChangePasswordRequest => AuthUserChangePasswordResponse, "/etcdserverpb.Auth/UserChangePassword", UnlessApplied);
    forward!(user_grant_role: AuthUserGrantRoleRequest => AuthUserGrantRoleResponse, "/etcdserverpb.Auth/UserGrantRole", UnlessApplied);
    forward!(user_revoke_role: AuthUserRevokeRoleRequest => AuthUserRevokeRoleResponse, "/etcdserverpb.Auth/UserRevokeRole", UnlessApplied);
    forward!(role_add: AuthRoleAddRequest => AuthRoleAddResponse, "/etcdserverpb.Auth/RoleAdd", UnlessApplied);
    forward!(role_get: AuthRoleGetRequest => AuthRoleGetResponse, "/etcdserverpb.Auth/RoleGet", Idempotent);
    forward!(role_list: AuthRoleListRequest => AuthRoleListResponse, "/etcdserverpb.Auth/RoleList", Idempotent);
    forward!(role_delete: AuthRoleDeleteRequest => AuthRoleDeleteResponse, "/etcdserverpb.Auth/RoleDelete", UnlessApplied);
    forward!(role_grant_permission: AuthRoleGrantPermissionRequest => AuthRoleGrantPermissionResponse, "/etcdserverpb.Auth/RoleGrantPermission", UnlessApplied);
    forward!(role_revoke_permission: AuthRoleRevokePermissionRequest => AuthRoleRevokePermissionResponse, "/etcdserverpb.Auth/RoleRevokePermission", UnlessApplied);
}
