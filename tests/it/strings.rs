//! Strings are bytes: etcd (3.4 to 3.6) never checks its API's `string`
//! fields for UTF-8, so user names, role names and passwords may be any
//! bytes. Through the proxy they pass as they do to the member (before the
//! proxy declared them `bytes`, prost refused them with `Internal`). The
//! client here is raw gRPC, since etcdctl 3.7 itself refuses to send them;
//! every answer is compared with the member's, whatever its release says.

use etcd_grpc_proxy::proto::etcdserverpb::auth_client::AuthClient;
use etcd_grpc_proxy::proto::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleListRequest, AuthUserAddRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, AuthUserListRequest, AuthenticateRequest,
};
use tonic::transport::Channel;

use crate::support::{Cluster, TestProxy};

async fn auth(endpoint: &str) -> AuthClient<Channel> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    AuthClient::new(ch)
}

/// An answer as comparable text: the message, or the status code and text.
fn outcome<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(r) => {
            // Headers name the member that answered; keep only the body.
            let text = format!("{:?}", r.into_inner());
            match text.split_once("header: ") {
                Some((a, rest)) => format!("{a}{}", rest.split_once("}), ").map_or("", |(_, b)| b)),
                None => text,
            }
        }
        Err(s) => format!("error {:?} {}", s.code(), s.message()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_user_and_role_names_pass_through() {
    let cluster = Cluster::start(1).await;
    let direct = cluster.members[0].addr();
    let proxy = TestProxy::start(&direct).await;
    let via = proxy.endpoint();
    let (mut d, mut p) = (auth(&direct).await, auth(&via).await);

    // Each side writes its own user and role (names differ in their first byte).
    let named = |side: u8, rest: &[u8]| [&[side][..], rest].concat();
    let mut writes = Vec::new();
    for (client, side) in [(&mut d, b'd'), (&mut p, b'p')] {
        let user = named(side, b"u\xff");
        let role = named(side, b"r\xfe");
        let add = AuthUserAddRequest {
            name: user.clone(),
            password: b"p\xfd".to_vec(),
            ..Default::default()
        };
        let a = outcome(client.user_add(add).await);
        let r = outcome(
            client
                .role_add(AuthRoleAddRequest { name: role.clone() })
                .await,
        );
        let g = outcome(
            client
                .user_grant_role(AuthUserGrantRoleRequest { user, role })
                .await,
        );
        writes.push([a, r, g]);
    }
    assert_eq!(
        writes[1], writes[0],
        "user add, role add, grant: proxy (left), member (right)"
    );

    // Reads: the same bytes through the proxy as from the member.
    let reads = |c: &mut AuthClient<Channel>| {
        let mut c = c.clone();
        async move {
            [
                outcome(c.user_list(AuthUserListRequest {}).await),
                outcome(c.role_list(AuthRoleListRequest {}).await),
                outcome(
                    c.user_get(AuthUserGetRequest {
                        name: b"pu\xff".to_vec(),
                    })
                    .await,
                ),
                outcome(
                    c.user_get(AuthUserGetRequest {
                        name: b"du\xff".to_vec(),
                    })
                    .await,
                ),
                outcome(
                    c.authenticate(AuthenticateRequest {
                        name: b"pu\xff".to_vec(),
                        password: b"p\xfd".to_vec(),
                    })
                    .await,
                ),
            ]
        }
    };
    let (from_member, through_proxy) = (reads(&mut d).await, reads(&mut p).await);
    assert_eq!(
        through_proxy, from_member,
        "reads: proxy (left), member (right)"
    );
}
